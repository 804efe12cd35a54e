/**
 * Single-object discovery, CorLoc, as LOST (main_lost.py) scores it: one box per image, correct
 * when its IoU with any ground-truth box is ≥ 0.5, in continuous coordinates (no +1). The box is
 * that of the largest 4-connected component of the patch-grid foreground mask (scipy.ndimage.label's
 * default connectivity; first component on ties), [min, max + 1]·p as LOST's boxes, mapped back to
 * the original image frame.
 */
import { type BBox, CorLocAccumulator, type ExplainerName, largestComponentBox } from '@ice/core';
import type { MetricValue } from './evaluation.types';
import type { MethodMap } from './explain.runner';
import { mapMask, MASS_VALUES_RULE } from './map-masks.util';
import { fmt, type MethodScorer, missingField, type ProtocolDefinition, type ProtocolSettings, top1Text } from './protocol.types';
import type { PreparedSample } from './sample-prep.util';

export const CORLOC_COLUMNS = ['corloc', 'hits', 'noBox', 'skipped'] as const;

/** An inclusive-pixel box → LOST's continuous box (VOC's [xmin − 1, ymin − 1, xmax, ymax] for 1-based XML boxes). */
export function continuousBox(b: BBox): BBox {
  return [b[0], b[1], b[2] + 1, b[3] + 1];
}

/** The predicted box of a patch-grid mask in the original image frame; null for an empty mask. */
export function corlocBox(mask: Uint8Array, g: number, patch: number, size: number, height: number, width: number): BBox | null {
  const cb = largestComponentBox(mask, g, g, 4);
  if (!cb) return null;
  const [x0, y0, x1, y1] = cb.boxExclusive;
  const sx = (patch * width) / size;
  const sy = (patch * height) / size;
  return [x0 * sx, y0 * sy, x1 * sx, y1 * sy];
}

class CorLocScorer implements MethodScorer {
  private readonly acc = new CorLocAccumulator({ convention: 'continuous', threshold: 0.5 });
  private boxed = 0;
  private noBox = 0;
  private skipped = 0;

  constructor(
    private readonly method: ExplainerName,
    private readonly s: ProtocolSettings,
  ) {}

  add(p: PreparedSample, m: MethodMap): void {
    const gts = p.boxes!;
    if (gts.length === 0) {
      this.skipped++;
      return;
    }
    const mask = mapMask(this.method, m.grid, this.s.corlocMask, this.s.corlocTau);
    const box = corlocBox(mask, m.g, this.s.patch, this.s.size, p.height, p.width);
    if (!box) this.noBox++;
    else {
      this.acc.add(box, gts.map(continuousBox));
      this.boxed++;
    }
  }

  result(): Record<string, MetricValue> {
    const images = this.boxed + this.noBox;
    const hits = this.boxed > 0 ? this.acc.result().hits : 0;
    return { corloc: images > 0 ? hits / images : null, hits, noBox: this.noBox, skipped: this.skipped };
  }
}

export function corlocProtocol(s: ProtocolSettings): ProtocolDefinition {
  return {
    protocol: 'corloc',
    columns: [...CORLOC_COLUMNS],
    needsTop1: false,
    check(p: PreparedSample): void {
      if (!p.boxes) throw missingField('corloc', p, 'ground-truth boxes', 'use VOC, CUB or digits');
    },
    target: () => undefined,
    perHead: () => false,
    conventions: () => [
      `CorLoc protocol (LOST, main_lost.py): image resized to ${s.size}×${s.size} Pillow bilinear (LOST runs at full ` +
        'resolution with zero padding; this model has a fixed input size), predicted box mapped back to the original ' +
        'frame',
      `box rule: the largest 4-connected component of the ${s.grid}×${s.grid} patch-grid foreground mask ` +
        `(scipy.ndimage.label's default structure; first in raster order on ties; DINO-seg's off-by-one bug not copied), ` +
        `box = [min, max + 1]·${s.patch} px`,
      s.corlocMask === 'mass'
        ? `foreground mask: ICE's mask as is; other maps by attention mass τ = ${fmt(s.corlocTau)} (DINO/LOST's value)`
        : "foreground mask: ICE's mask as is; other maps min-max normalised and thresholded at their mean (Chefer's rule)",
      ...(s.corlocMask === 'mass' ? [MASS_VALUES_RULE] : []),
      "IoU in continuous coordinates (no +1; LOST's bbox_iou without its 1e-7 eps); ground-truth boxes [x0, y0, x1 + 1, " +
        'y1 + 1] from inclusive pixel boxes (VOC: [xmin − 1, ymin − 1, xmax, ymax]), difficult objects included (LOST ' +
        'without --no_hard)',
      'correct iff IoU ≥ 0.5 with any ground-truth box; CorLoc = correct / images; an empty mask gives no box and ' +
        'counts as a miss (noBox); images without ground-truth boxes are skipped',
      `target class (gradient methods): ${top1Text(s.targetSource)}; rollout and transformer attribution start at block ${s.rolloutStartLayer}`,
    ],
    scorer: (method) => new CorLocScorer(method, s),
  };
}
