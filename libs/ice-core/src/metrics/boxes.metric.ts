/**
 * Box-based localisation protocols. Boxes are [xmin, ymin, xmax, ymax], x = column, y = row.
 *
 * - IoU in two conventions: 'inclusive' pixel indices (VOC, TS-CAM, wsolevaluation: width =
 *   xmax − xmin + 1) and 'continuous' coordinates (LOST's CorLoc: width = xmax − xmin).
 * - CorLoc (LOST): share of images whose box has IoU ≥ 0.5 with at least one ground-truth box.
 * - Mask → box: the largest connected component (scipy.ndimage.label, 4-connected by default).
 * - CUB localisation: GT-known Loc and Top-1 Loc (TS-CAM), and wsolevaluation's MaxBoxAcc, with
 *   boxes from thresholded score maps via the largest outer contour, as cv2 would give them.
 */
import { IceError } from '../errors';

export type BBox = readonly [number, number, number, number];
export type BoxConvention = 'inclusive' | 'continuous';

function checkBox(b: BBox, what: string): void {
  if (b.length !== 4 || !b.every(Number.isFinite))
    throw new IceError('INPUT_INVALID', `${what}: a box is 4 finite numbers, got [${b.join(', ')}]`);
}

/** IoU of two boxes; a degenerate union (≤ 0) gives 0, as wsolevaluation does. */
export function boxIou(a: BBox, b: BBox, convention: BoxConvention): number {
  checkBox(a, 'box IoU');
  checkBox(b, 'box IoU');
  const one = convention === 'inclusive' ? 1 : 0;
  const iw = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]) + one);
  const ih = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]) + one);
  const inter = iw * ih;
  const area = (x: BBox): number => (x[2] - x[0] + one) * (x[3] - x[1] + one);
  const union = area(a) + area(b) - inter;
  return union > 0 ? inter / union : 0;
}

/** Largest IoU of `box` with any of `gts` (0 with none). */
export function maxIou(box: BBox, gts: readonly BBox[], convention: BoxConvention): number {
  return gts.reduce((m, g) => Math.max(m, boxIou(box, g, convention)), 0);
}

// ---------------------------------------------------------------- CorLoc

export interface CorLocOptions {
  /** Default 'continuous', as LOST's bbox_iou (which also adds an eps of 1e-7, left out here). */
  convention?: BoxConvention;
  /** Default 0.5; a hit needs IoU ≥ threshold. */
  threshold?: number;
}

export class CorLocAccumulator {
  private hits = 0;
  private images = 0;
  private readonly convention: BoxConvention;
  private readonly threshold: number;

  constructor(opts: CorLocOptions = {}) {
    this.convention = opts.convention ?? 'continuous';
    this.threshold = opts.threshold ?? 0.5;
  }

  /** One predicted box per image against the image's ground-truth boxes. */
  add(pred: BBox, gts: readonly BBox[]): { ious: number[]; hit: boolean } {
    const ious = gts.map((g) => boxIou(pred, g, this.convention));
    const hit = ious.some((v) => v >= this.threshold);
    this.images++;
    if (hit) this.hits++;
    return { ious, hit };
  }

  result(): { corloc: number; hits: number; images: number } {
    if (this.images === 0) throw new IceError('INPUT_INVALID', 'CorLoc: no image was added');
    return { corloc: this.hits / this.images, hits: this.hits, images: this.images };
  }
}

// ---------------------------------------------------------------- components and mask → box

export type Connectivity = 4 | 8;

export interface Components {
  /** Per pixel, 0 for background, else the component's label 1..count. */
  labels: Int32Array;
  /** sizes[k − 1] = pixel count of label k. */
  sizes: number[];
  count: number;
}

function checkMask(mask: ArrayLike<number>, height: number, width: number, what: string): void {
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1 || mask.length !== height * width) {
    throw new IceError('INPUT_INVALID', `${what}: ${mask.length} pixels do not make a ${height}×${width} grid`);
  }
}

const N4: readonly [number, number][] = [
  [-1, 0],
  [0, -1],
  [0, 1],
  [1, 0],
];
const N8: readonly [number, number][] = [...N4, [-1, -1], [-1, 1], [1, -1], [1, 1]];

/**
 * Connected components of the truthy pixels, labelled in raster order of their first pixel
 * (scipy.ndimage.label's numbering; its default structure is 4-connectivity).
 */
export function labelComponents(mask: ArrayLike<number>, height: number, width: number, connectivity: Connectivity = 4): Components {
  checkMask(mask, height, width, 'component labelling');
  const labels = new Int32Array(height * width);
  const sizes: number[] = [];
  const nb = connectivity === 4 ? N4 : N8;
  const stack: number[] = [];
  for (let start = 0; start < labels.length; start++) {
    if (!mask[start] || labels[start]) continue;
    const label = sizes.length + 1;
    let size = 0;
    labels[start] = label;
    stack.push(start);
    while (stack.length) {
      const p = stack.pop()!;
      size++;
      const r = Math.floor(p / width);
      const c = p - r * width;
      for (const [dr, dc] of nb) {
        const rr = r + dr;
        const cc = c + dc;
        if (rr < 0 || rr >= height || cc < 0 || cc >= width) continue;
        const q = rr * width + cc;
        if (mask[q] && !labels[q]) {
          labels[q] = label;
          stack.push(q);
        }
      }
    }
    sizes.push(size);
  }
  return { labels, sizes, count: sizes.length };
}

export interface ComponentBox {
  label: number;
  size: number;
  /** [xmin, ymin, xmax, ymax] of the component's pixels. */
  boxInclusive: BBox;
  /** The same with xmax + 1, ymax + 1 (LOST's [min, max + 1]). */
  boxExclusive: BBox;
}

/**
 * The box of the largest connected component (first label on ties, as np.argmax); null for an
 * empty mask. This is the corrected rule: DINO-seg's largest-component baseline never considers
 * its last label and returns the background's box for a single component; that bug is not copied.
 */
export function largestComponentBox(
  mask: ArrayLike<number>,
  height: number,
  width: number,
  connectivity: Connectivity = 4,
): ComponentBox | null {
  const { labels, sizes, count } = labelComponents(mask, height, width, connectivity);
  if (count === 0) return null;
  let best = 0;
  for (let k = 1; k < count; k++) if (sizes[k] > sizes[best]) best = k;
  const label = best + 1;
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (let p = 0; p < labels.length; p++) {
    if (labels[p] !== label) continue;
    const y = Math.floor(p / width);
    const x = p - y * width;
    x0 = Math.min(x0, x);
    y0 = Math.min(y0, y);
    x1 = Math.max(x1, x);
    y1 = Math.max(y1, y);
  }
  return { label, size: sizes[best], boxInclusive: [x0, y0, x1, y1], boxExclusive: [x0, y0, x1 + 1, y1 + 1] };
}

// ---------------------------------------------------------------- contours (cv2.findContours + contourArea)

// Suzuki–Abe chain directions as OpenCV numbers them: 0 = east, counter-clockwise on screen (y down).
const DR = [0, -1, -1, -1, 0, 1, 1, 1];
const DC = [1, 1, 0, -1, -1, -1, 0, 1];

export interface OuterContour {
  /** Traced border pixels [x, y] in order. */
  points: [number, number][];
  /** cv2.contourArea: |shoelace| of the traced polygon (a 1-pixel-wide blob has area 0). */
  area: number;
  /** cv2.boundingRect as [x, y, w, h]. */
  rect: [number, number, number, number];
}

/**
 * Outer borders of the 8-connected components of the truthy pixels, traced as Suzuki & Abe
 * (cv2.findContours) with pixels outside the image taken as 0, in raster order of discovery.
 * Hole borders are not traced: a hole's contour lies inside its component's outer contour, so it
 * never has a larger area (and at equal area it has the same bounding box).
 */
export function outerContours(mask: ArrayLike<number>, height: number, width: number): OuterContour[] {
  checkMask(mask, height, width, 'contours');
  const on = (r: number, c: number): boolean => r >= 0 && r < height && c >= 0 && c < width && Boolean(mask[r * width + c]);
  const { labels, count } = labelComponents(mask, height, width, 8);
  const seen = new Uint8Array(count + 1);
  const out: OuterContour[] = [];
  for (let p = 0; p < labels.length; p++) {
    const label = labels[p];
    if (!label || seen[label]) continue;
    seen[label] = 1; // the first raster pixel of a component starts its outer border (its west is 0)
    const r0 = Math.floor(p / width);
    const c0 = p - r0 * width;
    const points: [number, number][] = [[c0, r0]];
    // 3.1: clockwise from the west neighbour for the first nonzero neighbour.
    let d1 = -1;
    for (let k = 0; k < 8; k++) {
      const d = (4 - k + 8) % 8;
      if (on(r0 + DR[d], c0 + DC[d])) {
        d1 = d;
        break;
      }
    }
    if (d1 >= 0) {
      const r1 = r0 + DR[d1];
      const c1 = c0 + DC[d1];
      let r3 = r0;
      let c3 = c0;
      let dPrev = d1; // direction from (r3, c3) to (r2, c2)
      for (;;) {
        // 3.3: counter-clockwise around (r3, c3), starting after (r2, c2).
        let d4 = -1;
        for (let k = 1; k <= 8; k++) {
          const d = (dPrev + k) % 8;
          if (on(r3 + DR[d], c3 + DC[d])) {
            d4 = d;
            break;
          }
        }
        const r4 = r3 + DR[d4];
        const c4 = c3 + DC[d4];
        if (r4 === r0 && c4 === c0 && r3 === r1 && c3 === c1) break; // 3.5: back at the start
        dPrev = (d4 + 4) % 8; // from (r4, c4) back to (r3, c3)
        r3 = r4;
        c3 = c4;
        points.push([c3, r3]);
      }
    }
    out.push({ points, area: shoelace(points), rect: boundingRect(points) });
  }
  return out;
}

function shoelace(points: readonly [number, number][]): number {
  let s = 0;
  for (let i = 0; i < points.length; i++) {
    const [x0, y0] = points[i];
    const [x1, y1] = points[(i + 1) % points.length];
    s += x0 * y1 - x1 * y0;
  }
  return Math.abs(s) / 2;
}

function boundingRect(points: readonly [number, number][]): [number, number, number, number] {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (const [x, y] of points) {
    x0 = Math.min(x0, x);
    y0 = Math.min(y0, y);
    x1 = Math.max(x1, x);
    y1 = Math.max(y1, y);
  }
  return [x0, y0, x1 - x0 + 1, y1 - y0 + 1];
}

/**
 * The largest-area outer contour (null with none). On equal areas the one discovered last in
 * raster order wins: cv2 lists contours bottom-up and Python's max keeps the first maximum.
 */
export function largestContour(mask: ArrayLike<number>, height: number, width: number): OuterContour | null {
  let best: OuterContour | null = null;
  for (const c of outerContours(mask, height, width)) if (!best || c.area >= best.area) best = c;
  return best;
}

// ---------------------------------------------------------------- boxes from score maps (CUB)

export type ScoremapBoxStyle = 'wsol' | 'tscam';

/**
 * A box from a [0, 1] score map as wsolevaluation / TS-CAM extract it: u8 = ⌊255·s⌋, keep
 * u8 > ⌊τ·max(u8)⌋, largest contour, boundingRect → [x, y, x + w, y + h]. 'wsol' clips x1, y1
 * to W − 1, H − 1 and gives [0, 0, 0, 0] without a contour; 'tscam' does not clip and gives
 * [0, 0, 1, 1]. The caller resizes and min-max-normalises the map first.
 */
export function scoremapBox(scoremap: ArrayLike<number>, height: number, width: number, tau: number, style: ScoremapBoxStyle): BBox {
  const u8 = toUint8(scoremap, height, width);
  return boxFromUint8(u8, height, width, thresholdU8(u8, tau), style);
}

function toUint8(scoremap: ArrayLike<number>, height: number, width: number): Uint8Array {
  checkMask(scoremap, height, width, 'score map');
  const u8 = new Uint8Array(scoremap.length);
  for (let i = 0; i < scoremap.length; i++) {
    const v = scoremap[i];
    if (!(v >= 0 && v <= 1)) throw new IceError('INPUT_INVALID', `score map value ${v} at ${i} is outside [0, 1]`);
    u8[i] = Math.floor(v * 255);
  }
  return u8;
}

function thresholdU8(u8: Uint8Array, tau: number): number {
  let max = 0;
  for (const v of u8) if (v > max) max = v;
  return Math.trunc(tau * max);
}

function boxFromUint8(u8: Uint8Array, height: number, width: number, thr: number, style: ScoremapBoxStyle): BBox {
  const bin = new Uint8Array(u8.length);
  for (let i = 0; i < u8.length; i++) bin[i] = u8[i] > thr ? 1 : 0;
  const c = largestContour(bin, height, width);
  if (!c) return style === 'wsol' ? [0, 0, 0, 0] : [0, 0, 1, 1];
  const [x, y, w, h] = c.rect;
  return style === 'wsol' ? [x, y, Math.min(x + w, width - 1), Math.min(y + h, height - 1)] : [x, y, x + w, y + h];
}

/** wsolevaluation's normalize_scoremap: min-max, a constant (or NaN) map becomes zeros. */
export function normalizeScoremap(cam: ArrayLike<number>): Float64Array {
  const out = new Float64Array(cam.length);
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < cam.length; i++) {
    if (Number.isNaN(cam[i])) return out;
    lo = Math.min(lo, cam[i]);
    hi = Math.max(hi, cam[i]);
  }
  if (!(hi > lo)) return out;
  for (let i = 0; i < cam.length; i++) out[i] = (cam[i] - lo) / (hi - lo);
  return out;
}

export interface CubLocOptions {
  /** Default 0.5. */
  iouThreshold?: number;
  /** TS-CAM's Top-1 Loc needs IoU > threshold (strict); GT-known stays ≥. Default false. */
  strictTop1?: boolean;
  /** Default 'inclusive' (TS-CAM's cal_iou). */
  convention?: BoxConvention;
}

export interface CubLocResult {
  images: number;
  gtKnownLoc: number;
  top1Loc: number;
  top1Cls: number;
}

/**
 * GT-known Loc (IoU ≥ 0.5 for the GT class's box) and Top-1 Loc (top-1 class correct AND
 * IoU ≥ 0.5, or > 0.5 with strictTop1). When the top-1 class is correct its CAM is the GT
 * class's, so one box per image serves both.
 */
export class CubLocAccumulator {
  private images = 0;
  private gtKnown = 0;
  private top1 = 0;
  private cls = 0;
  private readonly thr: number;
  private readonly strict: boolean;
  private readonly convention: BoxConvention;

  constructor(opts: CubLocOptions = {}) {
    this.thr = opts.iouThreshold ?? 0.5;
    this.strict = opts.strictTop1 ?? false;
    this.convention = opts.convention ?? 'inclusive';
  }

  add(box: BBox, gtBoxes: readonly BBox[], top1Correct: boolean): { iou: number; gtKnown: boolean; top1Loc: boolean } {
    if (gtBoxes.length === 0) throw new IceError('INPUT_INVALID', 'CUB localisation: an image needs a ground-truth box');
    const iou = maxIou(box, gtBoxes, this.convention);
    const gtKnown = iou >= this.thr;
    const top1Loc = top1Correct && (this.strict ? iou > this.thr : iou >= this.thr);
    this.images++;
    if (gtKnown) this.gtKnown++;
    if (top1Loc) this.top1++;
    if (top1Correct) this.cls++;
    return { iou, gtKnown, top1Loc };
  }

  result(): CubLocResult {
    if (this.images === 0) throw new IceError('INPUT_INVALID', 'CUB localisation: no image was added');
    return {
      images: this.images,
      gtKnownLoc: this.gtKnown / this.images,
      top1Loc: this.top1 / this.images,
      top1Cls: this.cls / this.images,
    };
  }
}

/** wsolevaluation's CAM thresholds: np.arange(0, 1, interval). */
export function camThresholds(interval = 0.001): number[] {
  const n = Math.ceil(1 / interval);
  return Array.from({ length: n }, (_, i) => i * interval);
}

export interface MaxBoxAccOptions {
  /** CAM thresholds τ; default np.arange(0, 1, 0.001). */
  thresholds?: number[];
  /** IoU thresholds δ; default [0.5] (later wsolevaluation versions report [0.3, 0.5, 0.7]). */
  iouThresholds?: number[];
}

export interface MaxBoxAccResult {
  images: number;
  /** Per δ: max over τ of the share of images with IoU ≥ δ. */
  maxBoxAcc: number[];
  /** Per δ: the first τ reaching it. */
  bestThreshold: number[];
}

/**
 * wsolevaluation's BoxEvaluator (one box per threshold from the largest contour, "V1"; the
 * later multi-contour "V2" variant is not implemented): at every τ, box the pixels
 * u8 > ⌊τ·max(u8)⌋, and count the image correct at δ if the box's IoU (inclusive) with any GT
 * box is ≥ δ. Score maps are [0, 1] (see normalizeScoremap).
 */
export class MaxBoxAccAccumulator {
  private readonly thresholds: number[];
  private readonly iouThresholds: number[];
  private readonly correct: Float64Array[];
  private images = 0;

  constructor(opts: MaxBoxAccOptions = {}) {
    this.thresholds = opts.thresholds ?? camThresholds();
    this.iouThresholds = opts.iouThresholds ?? [0.5];
    this.correct = this.iouThresholds.map(() => new Float64Array(this.thresholds.length));
  }

  /** Returns the best IoU at each τ. */
  add(scoremap: ArrayLike<number>, height: number, width: number, gtBoxes: readonly BBox[]): Float64Array {
    if (gtBoxes.length === 0) throw new IceError('INPUT_INVALID', 'MaxBoxAcc: an image needs a ground-truth box');
    const u8 = toUint8(scoremap, height, width);
    let max = 0;
    for (const v of u8) if (v > max) max = v;
    const byIntThreshold = new Map<number, number>(); // ⌊τ·max⌋ takes at most 256 values
    const ious = new Float64Array(this.thresholds.length);
    this.thresholds.forEach((tau, t) => {
      const thr = Math.trunc(tau * max);
      let iou = byIntThreshold.get(thr);
      if (iou === undefined) {
        iou = maxIou(boxFromUint8(u8, height, width, thr, 'wsol'), gtBoxes, 'inclusive');
        byIntThreshold.set(thr, iou);
      }
      ious[t] = iou;
      this.iouThresholds.forEach((delta, k) => {
        if (iou >= delta) this.correct[k][t]++;
      });
    });
    this.images++;
    return ious;
  }

  result(): MaxBoxAccResult {
    if (this.images === 0) throw new IceError('INPUT_INVALID', 'MaxBoxAcc: no image was added');
    const maxBoxAcc: number[] = [];
    const bestThreshold: number[] = [];
    for (const counts of this.correct) {
      let best = 0;
      for (let t = 1; t < counts.length; t++) if (counts[t] > counts[best]) best = t;
      maxBoxAcc.push(counts[best] / this.images);
      bestThreshold.push(this.thresholds[best]);
    }
    return { images: this.images, maxBoxAcc, bestThreshold };
  }
}
