/**
 * ImageNet-Segmentation as Chefer et al.'s imagenet_seg_eval.py scores it (and ICE's copy,
 * imagenet_seg_eval_ICE.py): the map at pixel resolution (bilinear ×p, or nearest for ICE's
 * mask), min-max, foreground = map > its mean; pixel accuracy and IoU pooled over the data set,
 * mIoU over {background, foreground}, mAP = mean of per-image average precision.
 */
import { type ExplainerName, SegmentationAccumulator } from '@ice/core';
import type { MetricValue } from './evaluation.types';
import { type MethodMap, upsampleGrid } from './explain.runner';
import { isMaskMethod } from './map-masks.util';
import { type MethodScorer, missingField, type ProtocolDefinition, type ProtocolSettings, top1Text } from './protocol.types';
import { blockUpsample, type PreparedSample } from './sample-prep.util';

export const SEGMENTATION_COLUMNS = ['pixAcc', 'mIoU', 'mAP', 'iouBg', 'iouFg'] as const;

/** The S×S map the protocol thresholds: ICE's mask by block repetition, any other map bilinear (half-pixel). */
export function segmentationPixelMap(m: MethodMap, s: ProtocolSettings): Float32Array {
  return isMaskMethod(m.method) ? blockUpsample(m.grid, m.g, s.patch) : upsampleGrid(m.grid, m.g, s.size, 'bilinear');
}

class SegmentationScorer implements MethodScorer {
  private readonly acc = new SegmentationAccumulator();
  constructor(private readonly s: ProtocolSettings) {}

  add(p: PreparedSample, m: MethodMap): void {
    this.acc.add(segmentationPixelMap(m, this.s), p.mask!);
  }

  result(): Record<string, MetricValue> {
    const r = this.acc.result();
    return { pixAcc: r.pixAcc, mIoU: r.mIoU, mAP: r.mAP, iouBg: r.iouBg, iouFg: r.iouFg };
  }
}

export function segmentationProtocol(s: ProtocolSettings): ProtocolDefinition {
  return {
    protocol: 'segmentation',
    columns: [...SEGMENTATION_COLUMNS],
    needsTop1: false,
    check(p: PreparedSample): void {
      if (!p.mask) throw missingField('segmentation', p, 'a foreground mask', 'use imagenet-seg, VOC with SegmentationClass, or digits');
    },
    target: () => undefined,
    perHead: () => false,
    conventions: () => [
      `ImageNet-Segmentation protocol (Chefer et al., imagenet_seg_eval.py): image resized to ${s.size}×${s.size} with ` +
        'Pillow bilinear (antialiased, no crop), ground-truth mask resized nearest',
      `maps upsampled ×${s.patch} bilinear (half-pixel centres, align_corners=False); ICE's foreground mask upsampled ` +
        'nearest (block repetition, as the released ICE code)',
      'per image: min-max normalisation, foreground = map > mean(map); a constant map (e.g. an all-foreground or ' +
        'all-background ICE mask) is scored as all background (the reference NaN rule)',
      'pixAcc and IoU_bg/IoU_fg pooled over the data set; mIoU = (IoU_bg + IoU_fg)/2; mAP = mean over images of average ' +
        'precision (sklearn, step-wise) of scores [1−map; map] against [gt=0; gt=1]',
      'mAP is computed for ICE as for every other map (the released ICE code hard-codes it to 0)',
      `target class: ${top1Text(s.targetSource)}; rollout and transformer attribution start at block ${s.rolloutStartLayer}`,
    ],
    scorer: (_method: ExplainerName) => new SegmentationScorer(s),
  };
}
