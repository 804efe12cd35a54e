import * as fs from 'node:fs';
import { IceError } from '../errors';
import { expectAllClose, flat, goldenPath } from '../testing/golden.testing';
import {
  BBox,
  boxIou,
  camThresholds,
  CorLocAccumulator,
  CubLocAccumulator,
  labelComponents,
  largestComponentBox,
  largestContour,
  MaxBoxAccAccumulator,
  normalizeScoremap,
  outerContours,
  scoremapBox,
} from './boxes.metric';
import { attentionMassKeep, attentionMassThreshold, JaccardAccumulator, vocJaccard, vocJaccardMulti } from './jaccard.metric';
import { averagePrecision, SegmentationAccumulator, segmentationImage } from './segmentation.metric';

const TOL = 1e-9;

interface SegPerImage {
  normalized_map: number[][] | null;
  mean_threshold: number | null;
  pred_fg: number[][];
  correct: number;
  labeled: number;
  inter: number[];
  union: number[];
  AP: number;
}
interface SegCase {
  maps: number[][][];
  gts: number[][][];
  per_image: SegPerImage[];
  pixAcc: number;
  IoU_bg: number;
  IoU_fg: number;
  mIoU: number;
  mAP: number;
}
interface GoldenMetrics {
  imagenet_segmentation: Record<string, SegCase>;
  voc_jaccard: { name: string; pred: number[][]; target: number[][]; per_class: Record<string, number>; score: number }[];
  attention_mass_threshold: {
    values: number[];
    tau: number;
    sorted_ascending: number[];
    cumsum_normalized: number[];
    threshold: number;
    keep: number[];
  }[];
  box_iou: { box_a: BBox; box_b: BBox; iou_inclusive: number; iou_continuous: number };
  corloc: {
    images: {
      pred: BBox;
      gts: BBox[];
      ious_inclusive: number[];
      hit_inclusive: number;
      ious_continuous: number[];
      hit_continuous: number;
    }[];
    threshold: number;
    corloc_inclusive: number;
    corloc_continuous: number;
  };
  mask_to_box: {
    mask: number[][];
    labels_4conn: number[][];
    num_components_4conn: number;
    sizes_4conn: number[];
    largest_label: number;
    largest_size: number;
    box_inclusive: BBox;
    box_exclusive: BBox;
    for_contrast_8conn: { num_components: number; sizes: number[]; box_inclusive: BBox };
  };
}

const golden = JSON.parse(fs.readFileSync(goldenPath('golden-metrics.json'), 'utf8')) as GoldenMetrics;
const close = (got: number, ref: number, what: string): void => expectAllClose([got], [ref], TOL, 0, what);

describe('ImageNet-segmentation protocol (golden-metrics.json)', () => {
  it.each(Object.keys(golden.imagenet_segmentation))('%s', (name) => {
    const c = golden.imagenet_segmentation[name];
    const acc = new SegmentationAccumulator();
    c.maps.forEach((map, i) => {
      const r = acc.add(flat(map), flat(c.gts[i]));
      const ref = c.per_image[i];
      if (ref.normalized_map === null) {
        expect(r.normalizedMap).toBeNull();
        expect(r.meanThreshold).toBeNull();
      } else {
        expectAllClose(r.normalizedMap!, flat(ref.normalized_map), TOL, 0, `${name}[${i}] normalized map`);
        close(r.meanThreshold!, ref.mean_threshold!, `${name}[${i}] mean`);
      }
      expect(Array.from(r.predFg)).toEqual(flat(ref.pred_fg));
      expect([r.correct, r.labeled]).toEqual([ref.correct, ref.labeled]);
      expect(r.inter).toEqual(ref.inter);
      expect(r.union).toEqual(ref.union);
      close(r.ap, ref.AP, `${name}[${i}] AP`);
    });
    const res = acc.result();
    expect(res.images).toBe(c.maps.length);
    close(res.pixAcc, c.pixAcc, `${name} pixAcc`);
    close(res.iouBg, c.IoU_bg, `${name} IoU_bg`);
    close(res.iouFg, c.IoU_fg, `${name} IoU_fg`);
    close(res.mIoU, c.mIoU, `${name} mIoU`);
    close(res.mAP, c.mAP, `${name} mAP`);
  });

  it('README values: image A, image B, A+B, and a constant map', () => {
    const a = segmentationImage([0.1, 0.9, 0.5, 0.3], [0, 1, 0, 1]);
    expect(Array.from(a.predFg)).toEqual([0, 1, 1, 0]);
    close(a.ap, 0.8166666666666667, 'AP A');
    const acc = new SegmentationAccumulator();
    acc.add([0.1, 0.9, 0.5, 0.3], [0, 1, 0, 1]);
    acc.add([0, 0, 0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 0, 1, 1]);
    const r = acc.result();
    close(r.pixAcc, 8 / 13, 'pixAcc');
    close(r.iouBg, 6 / 11, 'IoU_bg');
    close(r.iouFg, 2 / 7, 'IoU_fg');
    // A constant map: all background and AP 0.5 whatever the ground truth, even all-foreground or all-background.
    for (const gt of [
      [0, 1, 1, 0, 0, 1],
      [1, 1, 1, 1, 1, 1],
      [0, 0, 0, 0, 0, 0],
    ]) {
      const c = segmentationImage([7, 7, 7, 7, 7, 7], gt);
      expect(Array.from(c.predFg)).toEqual([0, 0, 0, 0, 0, 0]);
      expect(c.ap).toBe(0.5);
    }
  });

  it('average precision is sklearn’s step-wise sum with ties as one threshold', () => {
    // thresholds 0.5 (tp 1, fp 1) then 0.2 (tp 2, fp 1): 0.5·0.5 + 0.5·2/3
    close(averagePrecision([0.5, 0.5, 0.2], [1, 0, 1]), 0.5 * 0.5 + 0.5 * (2 / 3), 'ties');
    close(averagePrecision([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]), 0.5 * 1 + 0.5 * (2 / 3), 'no ties');
    expect(averagePrecision([1, 1, 1, 1], [1, 0, 0, 0])).toBe(0.25);
    expect(averagePrecision([0.3, 0.2], [0, 0])).toBe(0);
    expect(() => averagePrecision([0.1], [2])).toThrow(IceError);
  });

  it('rejects bad inputs and empty accumulators', () => {
    expect(() => segmentationImage([1, 2], [0])).toThrow(IceError);
    expect(() => segmentationImage([1, NaN], [0, 1])).toThrow(IceError);
    expect(() => segmentationImage([1, 2], [0, 2])).toThrow(IceError);
    expect(() => new SegmentationAccumulator().result()).toThrow(IceError);
  });
});

describe('VOC Jaccard and the attention-mass threshold (golden-metrics.json)', () => {
  it.each(golden.voc_jaccard.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const r = vocJaccard(flat(c.pred), flat(c.target));
    expect([...r.perClass.keys()]).toEqual(Object.keys(c.per_class).map(Number));
    for (const [k, v] of Object.entries(c.per_class)) close(r.perClass.get(Number(k))!, v, `J_${k}`);
    close(r.score!, c.score, 'score');
  });

  it('void pixels count in the union unless excluded; max over several masks; no object class → no score', () => {
    const c = golden.voc_jaccard.find((x) => x.name === 'void_in_union')!;
    const ex = vocJaccard(flat(c.pred), flat(c.target), { excludeVoid: true });
    close(ex.perClass.get(3)!, 4 / 6, 'J_3 without void');
    close(ex.perClass.get(7)!, 1 / 7, 'J_7 without void');
    // A second mask that is exactly class 7 raises J_7 to 1 but not J_3.
    const only7 = flat(c.target).map((v) => (v === 7 ? 1 : 0));
    const multi = vocJaccardMulti([flat(c.pred), only7], flat(c.target));
    close(multi.perClass.get(3)!, 4 / 7, 'J_3 max');
    close(multi.perClass.get(7)!, 1, 'J_7 max');
    close(multi.score!, (4 / 7 + 1) / 2, 'score max');
    expect(vocJaccard([1, 0, 1], [0, 255, 0]).score).toBeNull();

    const acc = new JaccardAccumulator();
    acc.add(flat(golden.voc_jaccard[0].pred), flat(golden.voc_jaccard[0].target));
    acc.add([flat(c.pred), only7], flat(c.target));
    acc.add([1, 0, 1], [0, 255, 0]);
    const r = acc.result();
    expect([r.images, r.skipped]).toEqual([2, 1]);
    close(r.jaccard, (0.25 + (4 / 7 + 1) / 2) / 2, 'dataset mean');
    expect(() => new JaccardAccumulator().result()).toThrow(IceError);
  });

  it.each(golden.attention_mass_threshold.map((c) => [c.tau, c] as const))('mass threshold τ = %s', (_tau, c) => {
    const r = attentionMassThreshold(c.values, c.tau);
    expectAllClose(r.sortedAscending, c.sorted_ascending, TOL, 0, 'sorted');
    expectAllClose(r.cumsumNormalized, c.cumsum_normalized, TOL, 0, 'cumsum');
    close(r.threshold, c.threshold, 'threshold');
    expect(Array.from(r.keep)).toEqual(c.keep);
  });

  it('mass threshold: notes case, kept mass ≥ τ, order-independent', () => {
    expect(Array.from(attentionMassKeep([0.5, 0.3, 0.12, 0.05, 0.03], 0.9))).toEqual([1, 1, 1, 0, 0]);
    expect(Array.from(attentionMassKeep([0.5, 0.3, 0.12, 0.05, 0.03], 0.6))).toEqual([1, 1, 0, 0, 0]);
    expect(Array.from(attentionMassKeep([0.03, 0.3, 0.05, 0.5, 0.12], 0.9))).toEqual([0, 1, 0, 1, 1]);
    const v = [4, 1, 7, 2, 9, 3, 3.5, 0.25];
    const keep = attentionMassKeep(v, 0.7);
    const total = v.reduce((a, b) => a + b, 0);
    expect(v.reduce((s, x, i) => s + (keep[i] ? x : 0), 0) / total).toBeGreaterThanOrEqual(0.7);
    expect(() => attentionMassKeep([1, 2], 1.5)).toThrow(IceError);
  });
});

describe('boxes: IoU, CorLoc, mask → box (golden-metrics.json)', () => {
  it('box IoU in both conventions', () => {
    const b = golden.box_iou;
    close(boxIou(b.box_a, b.box_b, 'inclusive'), b.iou_inclusive, 'inclusive');
    close(boxIou(b.box_a, b.box_b, 'continuous'), b.iou_continuous, 'continuous');
    close(boxIou([0, 0, 9, 9], [5, 0, 14, 9], 'inclusive'), 1 / 3, '1/3');
    close(boxIou([0, 0, 9, 9], [5, 0, 14, 9], 'continuous'), 36 / 126, '36/126');
    expect(boxIou([0, 0, 0, 0], [0, 0, 0, 0], 'continuous')).toBe(0); // degenerate union
    expect(boxIou([0, 0, 0, 0], [0, 0, 0, 0], 'inclusive')).toBe(1);
  });

  it('CorLoc, inclusive and continuous', () => {
    const c = golden.corloc;
    for (const convention of ['inclusive', 'continuous'] as const) {
      const acc = new CorLocAccumulator({ convention, threshold: c.threshold });
      c.images.forEach((img, i) => {
        const r = acc.add(img.pred, img.gts);
        expectAllClose(
          r.ious,
          convention === 'inclusive' ? img.ious_inclusive : img.ious_continuous,
          TOL,
          0,
          `image ${i} IoUs (${convention})`,
        );
        expect(r.hit ? 1 : 0).toBe(convention === 'inclusive' ? img.hit_inclusive : img.hit_continuous);
      });
      close(acc.result().corloc, convention === 'inclusive' ? c.corloc_inclusive : c.corloc_continuous, `CorLoc ${convention}`);
    }
    // Default: LOST's continuous coordinates; IoU exactly 0.5 is a hit.
    const acc = new CorLocAccumulator();
    expect(acc.add([0, 0, 10, 10], [[0, 0, 10, 5]]).hit).toBe(true);
    expect(acc.add(c.images[1].pred, c.images[1].gts).hit).toBe(false);
    expect(acc.result()).toEqual({ corloc: 0.5, hits: 1, images: 2 });
  });

  it('mask → box: largest 4-connected component, inclusive and exclusive boxes; 8-connectivity for contrast', () => {
    const m = golden.mask_to_box;
    const H = m.mask.length;
    const W = m.mask[0].length;
    const mask = flat(m.mask);
    const comp = labelComponents(mask, H, W);
    expect(Array.from(comp.labels)).toEqual(flat(m.labels_4conn));
    expect(comp.count).toBe(m.num_components_4conn);
    expect(comp.sizes).toEqual(m.sizes_4conn);
    const box = largestComponentBox(mask, H, W)!;
    expect(box.label).toBe(m.largest_label);
    expect(box.size).toBe(m.largest_size);
    expect(box.boxInclusive).toEqual(m.box_inclusive);
    expect(box.boxExclusive).toEqual(m.box_exclusive);
    const comp8 = labelComponents(mask, H, W, 8);
    expect(comp8.count).toBe(m.for_contrast_8conn.num_components);
    expect(comp8.sizes).toEqual(m.for_contrast_8conn.sizes);
    expect(largestComponentBox(mask, H, W, 8)!.boxInclusive).toEqual(m.for_contrast_8conn.box_inclusive);
    expect(largestComponentBox(new Array(W * H).fill(0), H, W)).toBeNull();
    // Ties go to the first label (np.argmax).
    expect(largestComponentBox([1, 0, 1], 1, 3)!.boxInclusive).toEqual([0, 0, 0, 0]);
    expect(() => labelComponents(mask, H, W + 1)).toThrow(IceError);
  });
});

describe('CUB localisation: GT-known, Top-1 Loc, contours, MaxBoxAcc', () => {
  /** A width×height 0/1 grid with the given inclusive rectangles set. */
  const grid = (width: number, height: number, rects: BBox[], value = 1, base = 0): number[] => {
    const g = new Array<number>(width * height).fill(base);
    for (const [x0, y0, x1, y1] of rects) for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) g[y * width + x] = value;
    return g;
  };

  it('IoU exactly 0.5 is correct for GT-known and for CorLoc, wrong for TS-CAM’s strict Top-1 Loc', () => {
    const gt: BBox = [0, 0, 9, 9];
    const box: BBox = [0, 0, 9, 4];
    expect(boxIou(box, gt, 'inclusive')).toBe(0.5);
    const strict = new CubLocAccumulator({ strictTop1: true });
    expect(strict.add(box, [gt], true)).toEqual({ iou: 0.5, gtKnown: true, top1Loc: false });
    const loose = new CubLocAccumulator();
    expect(loose.add(box, [gt], true)).toEqual({ iou: 0.5, gtKnown: true, top1Loc: true });
    expect(loose.add(gt, [gt], false)).toEqual({ iou: 1, gtKnown: true, top1Loc: false }); // wrong class
    expect(loose.add([20, 20, 30, 30], [gt, [19, 19, 30, 30]], true).top1Loc).toBe(true); // best GT box
    expect(loose.result()).toEqual({ images: 3, gtKnownLoc: 1, top1Loc: 2 / 3, top1Cls: 2 / 3 });
    expect(new CorLocAccumulator({ convention: 'inclusive' }).add(box, [gt]).hit).toBe(true);
  });

  it('contour area is cv2.contourArea of the traced border, not the pixel count', () => {
    const W = 12;
    const H = 8;
    // A 3×4 block (area (3−1)(4−1) = 6), a 1×9 line (area 0), a single pixel, a 3×3 ring (area 4).
    const mask = grid(W, H, [
      [0, 0, 2, 3],
      [0, 6, 8, 6],
      [11, 0, 11, 0],
      [6, 0, 8, 2],
    ]);
    mask[1 * W + 7] = 0; // the ring's hole
    const cs = outerContours(mask, H, W);
    expect(cs.map((c) => [c.area, c.rect])).toEqual([
      [6, [0, 0, 3, 4]],
      [4, [6, 0, 3, 3]],
      [0, [11, 0, 1, 1]],
      [0, [0, 6, 9, 1]],
    ]);
    // A diagonal pair is one 8-connected contour of area 0; an L tromino has area 0.5.
    expect(outerContours([1, 0, 0, 1], 2, 2).map((c) => c.area)).toEqual([0]);
    expect(outerContours([1, 0, 1, 1], 2, 2).map((c) => c.area)).toEqual([0.5]);
    // The 2×2 block (4 pixels, area 1) beats the 1×6 line (6 pixels, area 0).
    const m2 = grid(10, 6, [
      [0, 0, 5, 0],
      [7, 3, 8, 4],
    ]);
    expect(largestContour(m2, 6, 10)!.rect).toEqual([7, 3, 2, 2]);
    expect(largestComponentBox(m2, 6, 10)!.boxInclusive).toEqual([0, 0, 5, 0]);
  });

  it('score map → box as wsolevaluation (clipped) and TS-CAM (unclipped)', () => {
    // 0.3 background (u8 76), a 4×4 block of 1 at x 6..9, y 2..5 touching the right edge.
    const s = grid(10, 8, [[6, 2, 9, 5]], 1, 0.3);
    expect(scoremapBox(s, 8, 10, 0.5, 'wsol')).toEqual([6, 2, 9, 6]); // x1 = min(10, 9)
    expect(scoremapBox(s, 8, 10, 0.5, 'tscam')).toEqual([6, 2, 10, 6]);
    expect(scoremapBox(s, 8, 10, 0, 'wsol')).toEqual([0, 0, 9, 7]); // u8 > 0 everywhere
    // ⌊0.3·255⌋ = 76 is not > ⌊0.3·255⌋: the background drops at τ = 0.3.
    expect(scoremapBox(s, 8, 10, 0.3, 'wsol')).toEqual([6, 2, 9, 6]);
    const zero = new Array<number>(80).fill(0);
    expect(scoremapBox(zero, 8, 10, 0.1, 'wsol')).toEqual([0, 0, 0, 0]);
    expect(scoremapBox(zero, 8, 10, 0.1, 'tscam')).toEqual([0, 0, 1, 1]);
    expect(() => scoremapBox([1.5], 1, 1, 0.1, 'wsol')).toThrow(IceError);
    expect(Array.from(normalizeScoremap([2, 4, 3]))).toEqual([0, 1, 0.5]);
    expect(Array.from(normalizeScoremap([2, 2]))).toEqual([0, 0]);
  });

  it('MaxBoxAcc sweeps the CAM thresholds and takes the best', () => {
    expect(camThresholds().length).toBe(1000);
    expect(camThresholds()[500]).toBe(500 * 0.001);
    const acc = new MaxBoxAccAccumulator({ thresholds: [0, 0.5], iouThresholds: [0.3, 0.5, 0.7] });
    // Image 1: a 4×4 block at x 3..6, y 2..5 over 0.3. τ = 0 boxes the whole image (IoU 0.16);
    // τ = 0.5 boxes the block, one pixel larger (IoU 16/25 = 0.64).
    const ious = acc.add(grid(10, 10, [[3, 2, 6, 5]], 1, 0.3), 10, 10, [[3, 2, 6, 5]]);
    expectAllClose(ious, [0.16, 0.64], TOL, 0, 'IoUs');
    // Image 2: an empty map gives [0, 0, 0, 0] at every τ.
    expectAllClose(acc.add(new Array<number>(100).fill(0), 10, 10, [[0, 0, 4, 4]]), [0.04, 0.04], TOL, 0, 'empty');
    const r = acc.result();
    expect(r.images).toBe(2);
    expect(r.maxBoxAcc).toEqual([0.5, 0.5, 0]);
    expect(r.bestThreshold).toEqual([0.5, 0.5, 0]);
  });

  it('MaxBoxAcc with the default 1000 thresholds on a 224² map', () => {
    const W = 224;
    const s = new Float64Array(W * W);
    for (let y = 0; y < W; y++) for (let x = 0; x < W; x++) s[y * W + x] = Math.exp(-((x - 120) ** 2 + (y - 90) ** 2) / (2 * 30 ** 2));
    const acc = new MaxBoxAccAccumulator();
    const t0 = Date.now();
    const ious = acc.add(normalizeScoremap(s), W, W, [[80, 50, 160, 130]]);
    expect(Date.now() - t0).toBeLessThan(10000);
    expect(ious.length).toBe(1000);
    expect(Math.max(...ious)).toBeGreaterThan(0.9);
    expect(acc.result().maxBoxAcc).toEqual([1]);
  });
});
