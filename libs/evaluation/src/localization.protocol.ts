/**
 * Weakly-supervised localisation on CUB. GT-known Loc, Top-1 Loc and Top-1 Cls as TS-CAM
 * (lib/cams_deit.py) computes them: the map of the ground-truth class at S×S (bilinear), min-maxed,
 * pixels > ⌊τ·max⌋ of its 8-bit version, the largest outer contour's bounding rectangle
 * [x, y, x + w, y + h], IoU with the +1 (inclusive) convention; Top-1 Loc also needs the CLS head's
 * top-1 class to be right. And wsolevaluation's MaxBoxAcc (V1: largest contour), the best share of
 * images with IoU ≥ δ over a sweep of CAM thresholds, on the bicubic-resized, min-maxed map.
 */
import {
  type BBox,
  bicubicResize,
  CubLocAccumulator,
  type ExplainerName,
  MaxBoxAccAccumulator,
  normalizeScoremap,
  scoremapBox,
} from '@ice/core';
import type { MetricValue } from './evaluation.types';
import { type MethodMap, upsampleGrid } from './explain.runner';
import { isMaskMethod } from './map-masks.util';
import { fmt, type MethodScorer, missingField, type ProtocolDefinition, type ProtocolSettings, top1Text } from './protocol.types';
import { blockUpsample, type PreparedSample } from './sample-prep.util';

export function localizationColumns(deltas: readonly number[]): string[] {
  return ['top1Cls', 'gtKnownLoc', 'top1Loc', ...deltas.flatMap((d) => [`maxBoxAcc@${fmt(d)}`, `maxBoxAccTau@${fmt(d)}`])];
}

/**
 * Ground-truth boxes in the S×S frame as TS-CAM's cub.py builds them: [x, y, w, h] truncated to
 * integers, then ⌊max(x/W·S, 0)⌋, ⌊max(y/H·S, 0)⌋, ⌊min((x+w)/W·S, S−1)⌋, ⌊min((y+h)/H·S, S−1)⌋.
 * CUB samples use their file's [x, y, w, h]; other data sets' inclusive boxes give w = x1 − x0 + 1.
 */
export function tscamGtBoxes(p: PreparedSample): BBox[] {
  const S = p.size;
  const xywh: [number, number, number, number][] = p.bboxXywh
    ? [p.bboxXywh]
    : (p.boxes ?? []).map((b) => [b[0], b[1], b[2] - b[0] + 1, b[3] - b[1] + 1]);
  return xywh.map((raw) => {
    const [x, y, w, h] = raw.map(Math.trunc);
    return [
      Math.trunc(Math.max((x / p.width) * S, 0)),
      Math.trunc(Math.max((y / p.height) * S, 0)),
      Math.trunc(Math.min(((x + w) / p.width) * S, S - 1)),
      Math.trunc(Math.min(((y + h) / p.height) * S, S - 1)),
    ];
  });
}

/**
 * ICE's 0/1 mask at S×S by block repetition, used as it is: it already is the foreground, and
 * min-max would turn an all-foreground mask into zeros (no box). ICE's repository has no
 * mask → box rule; this one boxes the mask's largest contour, as for any other map.
 */
function iceScoremap(m: MethodMap, s: ProtocolSettings): Float64Array {
  return Float64Array.from(blockUpsample(m.grid, m.g, s.patch));
}

/** TS-CAM's CAM at S×S: bilinear (cv2.resize's default), min-maxed; ICE's mask as is. */
export function tscamScoremap(m: MethodMap, s: ProtocolSettings): Float64Array {
  return isMaskMethod(m.method) ? iceScoremap(m, s) : normalizeScoremap(upsampleGrid(m.grid, m.g, s.size, 'bilinear'));
}

/** The CAM thresholds of the MaxBoxAcc sweep, as the conventions state them. */
function thresholdsText(thresholds: readonly number[] | undefined): string {
  if (!thresholds) return "np.arange(0, 1, 0.001) (wsolevaluation's)";
  return `(${thresholds.length} of them, from ${fmt(thresholds[0])} to ${fmt(thresholds[thresholds.length - 1])})`;
}

/** wsolevaluation's CAM at S×S: bicubic (cv2.INTER_CUBIC, A = −0.75), min-maxed; ICE's mask as is. */
export function wsolScoremap(m: MethodMap, s: ProtocolSettings): Float64Array {
  return isMaskMethod(m.method) ? iceScoremap(m, s) : normalizeScoremap(bicubicResize(m.grid, m.g, m.g, 1, s.size, s.size));
}

class LocalizationScorer implements MethodScorer {
  private readonly loc: CubLocAccumulator;
  private readonly sweep: MaxBoxAccAccumulator;

  constructor(private readonly s: ProtocolSettings) {
    this.loc = new CubLocAccumulator({ iouThreshold: 0.5, strictTop1: s.strictTop1, convention: 'inclusive' });
    this.sweep = new MaxBoxAccAccumulator({ iouThresholds: s.maxBoxAccIous, thresholds: s.maxBoxAccThresholds });
  }

  add(p: PreparedSample, m: MethodMap): void {
    const gts = tscamGtBoxes(p);
    const S = this.s.size;
    const box = scoremapBox(tscamScoremap(m, this.s), S, S, this.s.camThreshold, 'tscam');
    this.loc.add(box, gts, p.top1 === p.label);
    this.sweep.add(wsolScoremap(m, this.s), S, S, gts);
  }

  result(): Record<string, MetricValue> {
    const r = this.loc.result();
    const w = this.sweep.result();
    const out: Record<string, MetricValue> = { top1Cls: r.top1Cls, gtKnownLoc: r.gtKnownLoc, top1Loc: r.top1Loc };
    this.s.maxBoxAccIous.forEach((d, k) => {
      out[`maxBoxAcc@${fmt(d)}`] = w.maxBoxAcc[k];
      out[`maxBoxAccTau@${fmt(d)}`] = w.bestThreshold[k];
    });
    return out;
  }
}

export function localizationProtocol(s: ProtocolSettings, numClasses: number): ProtocolDefinition {
  return {
    protocol: 'localization',
    columns: localizationColumns(s.maxBoxAccIous),
    needsTop1: true,
    check(p: PreparedSample): void {
      if (!(Number.isInteger(p.label) && p.label >= 0 && p.label < numClasses)) {
        throw missingField(
          'localization',
          p,
          `a class label in 0..${numClasses - 1} (it has ${p.label})`,
          'use CUB, VOC or digits with a model of matching classes',
        );
      }
      if (!p.boxes?.length && !p.bboxXywh) throw missingField('localization', p, 'a ground-truth box', 'use CUB, VOC or digits');
    },
    target: (p) => p.label,
    perHead: () => false,
    conventions: () => [
      'CUB localisation protocol (TS-CAM, lib/cams_deit.py; wsolevaluation for MaxBoxAcc): image resized to ' +
        `${s.size}×${s.size} Pillow bilinear, no crop; ground-truth boxes scaled as TS-CAM's cub.py (int x, y, w, h; ` +
        '[⌊x/W·S⌋, ⌊y/H·S⌋, ⌊min((x+w)/W·S, S−1)⌋, ⌊min((y+h)/H·S, S−1)⌋])',
      `maps of the ground-truth class (class-agnostic maps: the map itself); Top-1 Cls = ${top1Text(s.targetSource)} equals the label`,
      "ICE's 0/1 mask: nearest ×p and used as it is, without min-max (which would turn an all-foreground mask into no " +
        "box; ICE's repository has no mask → box rule); a constant map of any other method gives no box",
      'GT-known Loc / Top-1 Loc: map upsampled bilinear, min-max (constant → zeros); box = bounding rectangle [x, y, x ' +
        '+ w, y + h] of the largest outer contour (cv2.findContours + contourArea) of 8-bit pixels > ' +
        `⌊${fmt(s.camThreshold)}·max⌋ (TS-CAM's CAM_THR)`,
      'IoU with the inclusive (+1) pixel convention (TS-CAM, wsolevaluation); GT-known: IoU ≥ 0.5; Top-1 Loc: top-1 ' +
        `correct and IoU ${s.strictTop1 ? "> 0.5 strictly (TS-CAM's code)" : '≥ 0.5 (option strictTop1=false)'}`,
      'MaxBoxAcc (wsolevaluation V1, largest contour): map bicubic (A = −0.75), min-max (constant → zeros); max over ' +
        `CAM thresholds ${thresholdsText(s.maxBoxAccThresholds)} of the share of images with IoU ≥ δ, ` +
        `δ ∈ {${s.maxBoxAccIous.map(fmt).join(', ')}}; boxes clipped to S − 1; maxBoxAccTau = the first best threshold`,
      `rollout and transformer attribution start at block ${s.rolloutStartLayer}`,
    ],
    scorer: (_method: ExplainerName) => new LocalizationScorer(s),
  };
}
