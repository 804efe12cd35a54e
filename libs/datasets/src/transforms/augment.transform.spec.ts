import { IceError, Rng } from '@ice/core';
import { resizeImage } from '../image/image-io';
import {
  NORMALIZE_PRESETS,
  applyTransforms,
  evalTransformSpec,
  normalizeImage,
  randomResizedCropParams,
  resolveNormalize,
  trainTransformSpec,
  transformOutputSize,
  validateTransformSpec,
  writeNormalizedCHW,
} from './augment.transform';
import {
  type AugSample,
  centerCropSample,
  cropSample,
  flipSample,
  resizeBoxes,
  resizeSample,
  roundHalfEven,
  shorterSideSize,
} from './geometry.transform';

/** An Rng whose draws are scripted, recording the bounds asked of int(). */
class ScriptedRng extends Rng {
  readonly intCalls: number[] = [];
  constructor(
    private readonly uniforms: number[],
    private readonly ints: number[] = [],
  ) {
    super(0);
  }
  override uniform(): number {
    const v = this.uniforms.shift();
    if (v === undefined) throw new Error('script ran out of uniforms');
    return v;
  }
  override int(n: number): number {
    this.intCalls.push(n);
    const v = this.ints.shift();
    if (v === undefined) throw new Error('script ran out of ints');
    return v;
  }
}

/** H×W×3 image whose pixel (y, x) channel c is (y·W + x)/100 + c/1000 (every value distinct). */
function ramp(h: number, w: number): AugSample {
  const image = new Float32Array(h * w * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) image[(y * w + x) * 3 + c] = (y * w + x) / 100 + c / 1000;
  return { image, height: h, width: w };
}

function pixel(s: AugSample, y: number, x: number): number[] {
  const p = (y * s.width + x) * 3;
  return Array.from(s.image.subarray(p, p + 3));
}

describe('roundHalfEven (Python round)', () => {
  it('rounds halves to even', () => {
    expect([0.5, 1.5, 2.5, 3.5, 2.4, 2.6, -0.5, -1.5].map(roundHalfEven)).toEqual([0, 2, 2, 4, 2, 3, 0, -2]);
  });
});

describe('randomResizedCropParams (torchvision get_params)', () => {
  it('takes the first try that fits, with Python rounding and a uniform integer origin', () => {
    // try 1: area 20000·(0.08 + 0.92·0.5) = 10800, ratio exp(0) = 1 → 104 × 104 > height 100: rejected
    // try 2: area 1600, ratio 3/4 → w = round(√1200) = 35, h = round(√2133.3) = 46
    const rng = new ScriptedRng([0.5, 0.5, 0, 0], [7, 12]);
    expect(randomResizedCropParams(rng, 100, 200)).toEqual({ top: 7, left: 12, height: 46, width: 35 });
    expect(rng.intCalls).toEqual([100 - 46 + 1, 200 - 35 + 1]);
  });

  it('falls back after 10 tries to the centre crop clamped to the ratio range', () => {
    // every try: full area at ratio 4/3 → 163 × 122 does not fit in 100 × 200
    const wide = new ScriptedRng(new Array<number>(20).fill(1 - 2 ** -53));
    expect(randomResizedCropParams(wide, 100, 200)).toEqual({ top: 0, left: 33, height: 100, width: 133 });
    // tall 300 × 100: ratio 1/3 < 3/4 → w = 100, h = round(133.3) = 133, top = (300 − 133) // 2
    const tall = new ScriptedRng(new Array<number>(20).fill(1 - 2 ** -53));
    expect(randomResizedCropParams(tall, 300, 100)).toEqual({ top: 83, left: 0, height: 133, width: 100 });
    // in range: the whole image
    const square = new ScriptedRng(new Array<number>(20).fill(0), []);
    expect(randomResizedCropParams(square, 5, 5, [2, 2])).toEqual({ top: 0, left: 0, height: 5, width: 5 });
  });

  it('always gives crops inside the image with area in the scale range (real Rng)', () => {
    const rng = new Rng(3);
    for (let k = 0; k < 500; k++) {
      const h = 20 + rng.int(400);
      const w = 20 + rng.int(400);
      const c = randomResizedCropParams(rng, h, w);
      expect(c.top >= 0 && c.left >= 0 && c.top + c.height <= h && c.left + c.width <= w).toBe(true);
      expect(c.height * c.width).toBeLessThanOrEqual(h * w);
    }
  });
});

describe('geometry', () => {
  it('crops image, mask and boxes (boxes clipped, outside ones dropped)', () => {
    const s = {
      ...ramp(4, 6),
      mask: Uint8Array.from({ length: 24 }, (_, i) => i),
      boxes: [
        [0, 0, 2, 1],
        [4, 2, 5, 3],
        [0, 3, 0, 3],
      ] as [number, number, number, number][],
    };
    const c = cropSample(s, 1, 2, 2, 3);
    expect([c.height, c.width]).toEqual([2, 3]);
    expect(pixel(c, 0, 0)).toEqual(pixel(s, 1, 2));
    expect(pixel(c, 1, 2)).toEqual(pixel(s, 2, 4));
    expect(Array.from(c.mask!)).toEqual([8, 9, 10, 14, 15, 16]);
    expect(c.boxes).toEqual([
      [0, 0, 0, 0],
      [2, 1, 2, 1],
    ]);
  });

  it('zero-pads a crop that reaches outside the image', () => {
    const s = { ...ramp(2, 2), mask: Uint8Array.from([1, 2, 3, 4]) };
    const c = centerCropSample(s, 4, 4); // torchvision pads (4 − 2) // 2 = 1 before
    expect(Array.from(c.mask!)).toEqual([0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0]);
    expect(pixel(c, 0, 0)).toEqual([0, 0, 0]);
    expect(pixel(c, 1, 1)).toEqual(pixel(s, 0, 0));
  });

  it('centre crop origin is round((H − h) / 2) with halves to even', () => {
    const s = ramp(5, 8);
    expect(pixel(centerCropSample(s, 2, 3), 0, 0)).toEqual(pixel(s, 2, 2)); // round(1.5) = 2, round(2.5) = 2
    expect(pixel(centerCropSample(s, 4, 4), 0, 0)).toEqual(pixel(s, 0, 2)); // round(0.5) = 0, round(2) = 2
  });

  it('flips image, mask and boxes left–right', () => {
    const s = { ...ramp(2, 3), mask: Uint8Array.from([1, 0, 0, 1, 1, 0]), boxes: [[0, 0, 0, 1]] as [number, number, number, number][] };
    const f = flipSample(s);
    expect(pixel(f, 0, 0)).toEqual(pixel(s, 0, 2));
    expect(pixel(f, 1, 2)).toEqual(pixel(s, 1, 0));
    expect(Array.from(f.mask!)).toEqual([0, 0, 1, 0, 1, 1]);
    expect(f.boxes).toEqual([[2, 0, 2, 1]]);
    expect(Array.from(flipSample(f).image)).toEqual(Array.from(s.image));
  });

  it('scales boxes by the pixels they cover', () => {
    expect(resizeBoxes([[1, 1, 2, 2]], 4, 4, 8, 8)).toEqual([[2, 2, 5, 5]]);
    expect(
      resizeBoxes(
        [
          [3, 3, 3, 3],
          [0, 0, 7, 7],
        ],
        8,
        8,
        4,
        4,
      ),
    ).toEqual([
      [1, 1, 1, 1],
      [0, 0, 3, 3],
    ]);
    expect(resizeBoxes([[2, 0, 2, 0]], 1, 3, 2, 4)).toEqual([[2, 0, 3, 1]]);
  });

  it('resizes the mask nearest (no invented labels) and the image with Pillow bicubic', () => {
    const s = { ...ramp(2, 2), mask: Uint8Array.from([0, 1, 2, 3]) };
    const r = resizeSample(s, 4, 4);
    expect(Array.from(r.mask!)).toEqual([0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]);
    expect(Array.from(r.image)).toEqual(Array.from(resizeImage({ data: s.image, height: 2, width: 2 }, 4, 4, 'bicubic').data));
  });

  it('shorter side → size, longer truncated (torchvision Resize(int))', () => {
    expect(shorterSideSize(375, 500, 256)).toEqual([256, 341]);
    expect(shorterSideSize(500, 375, 256)).toEqual([341, 256]);
    expect(shorterSideSize(7, 7, 3)).toEqual([3, 3]);
  });
});

describe('applyTransforms', () => {
  it('RandomResizedCrop to the crop size is the crop itself (mask and boxes too)', () => {
    const s = {
      ...ramp(4, 6),
      mask: Uint8Array.from({ length: 24 }, (_, i) => i % 7),
      boxes: [[1, 1, 4, 2]] as [number, number, number, number][],
    };
    // area 24·(0.08 + 0.92·u) with u = 2/23 → 3.84 → ratio 1 (u = 0.5): w = h = round(1.96) = 2
    const rng = new ScriptedRng([2 / 23, 0.5], [1, 3]);
    const out = applyTransforms(s, [{ kind: 'random-resized-crop', size: 2 }], rng);
    expect(rng.intCalls).toEqual([3, 5]);
    const crop = cropSample(s, 1, 3, 2, 2);
    expect(Array.from(out.image)).toEqual(Array.from(crop.image));
    expect(Array.from(out.mask!)).toEqual(Array.from(crop.mask!));
    expect(out.boxes).toEqual([[0, 0, 1, 1]]);
  });

  it('RandomResizedCrop resizes the crop bicubically, the mask nearest, and scales boxes', () => {
    const s = {
      ...ramp(4, 6),
      mask: Uint8Array.from({ length: 24 }, (_, i) => i),
      boxes: [[3, 1, 3, 1]] as [number, number, number, number][],
    };
    const rng = new ScriptedRng([2 / 23, 0.5], [1, 3]);
    const out = applyTransforms(s, [{ kind: 'random-resized-crop', size: [4, 6] }], rng);
    const crop = cropSample(s, 1, 3, 2, 2);
    expect([out.height, out.width]).toEqual([4, 6]);
    expect(Array.from(out.image)).toEqual(Array.from(resizeImage({ data: crop.image, height: 2, width: 2 }, 4, 6, 'bicubic').data));
    expect(Array.from(out.mask!)).toEqual([9, 9, 9, 10, 10, 10, 9, 9, 9, 10, 10, 10, 15, 15, 15, 16, 16, 16, 15, 15, 15, 16, 16, 16]);
    expect(out.boxes).toEqual([[0, 0, 2, 1]]);
  });

  it('flips when the draw is below p, not otherwise', () => {
    const s = ramp(2, 3);
    const flipped = applyTransforms(s, [{ kind: 'horizontal-flip' }], new ScriptedRng([0.49]));
    const kept = applyTransforms(s, [{ kind: 'horizontal-flip' }], new ScriptedRng([0.5]));
    expect(pixel(flipped, 0, 0)).toEqual(pixel(s, 0, 2));
    expect(Array.from(kept.image)).toEqual(Array.from(s.image));
  });

  it("timm's eval transform: shorter side → floor(size / crop_pct), then the centre crop", () => {
    // 8 × 10, size 4, crop_pct 0.5 → shorter side 8 already: no resize; crop origin (2, 3)
    const s = { ...ramp(8, 10), mask: Uint8Array.from({ length: 80 }, (_, i) => i) };
    const out = applyTransforms(s, evalTransformSpec(4, 'imagenet', 0.5).steps, new Rng(0));
    expect(Array.from(out.image)).toEqual(Array.from(cropSample(s, 2, 3, 4, 4).image));
    expect(Array.from(out.mask!.subarray(0, 4))).toEqual([23, 24, 25, 26]);
    // 10 × 20, size 4, crop_pct 0.8 → 5 × 10 bicubic, then origin (round(0.5) = 0, 3)
    const t = ramp(10, 20);
    const got = applyTransforms(t, [{ kind: 'resize-center-crop', size: 4, cropPct: 0.8 }], new Rng(0));
    const resized = resizeImage({ data: t.image, height: 10, width: 20 }, 5, 10, 'bicubic');
    expect(Array.from(got.image)).toEqual(Array.from(cropSample({ image: resized.data, height: 5, width: 10 }, 0, 3, 4, 4).image));
    // ImageNet-sized: 375 × 500 at 224 → 256 × 341 → 224 × 224
    const big = applyTransforms(ramp(375, 500), evalTransformSpec(224).steps, new Rng(0));
    expect([big.height, big.width]).toEqual([224, 224]);
  });

  it('is a pure function of the Rng seed, and reports the output size', () => {
    const s = ramp(30, 40);
    const spec = trainTransformSpec(16);
    const a = applyTransforms(s, spec.steps, new Rng(11));
    const b = applyTransforms(s, spec.steps, new Rng(11));
    const c = applyTransforms(s, spec.steps, new Rng(12));
    expect(Array.from(a.image)).toEqual(Array.from(b.image));
    expect(Array.from(a.image)).not.toEqual(Array.from(c.image));
    expect([a.height, a.width]).toEqual([16, 16]);
    expect(transformOutputSize(spec.steps)).toEqual([16, 16]);
    expect(transformOutputSize([{ kind: 'resize', size: 10 }])).toBeNull();
    expect(transformOutputSize([])).toBeNull();
  });

  it('rejects bad specs with CONFIG_INVALID', () => {
    const bad = (spec: unknown): string | undefined => {
      try {
        validateTransformSpec(spec as Parameters<typeof validateTransformSpec>[0]);
      } catch (e) {
        return e instanceof IceError ? e.code : 'other';
      }
      return undefined;
    };
    expect(bad(trainTransformSpec(224))).toBeUndefined();
    expect(bad({ steps: [{ kind: 'random-resized-crop', size: 0 }], normalize: 'none' })).toBe('CONFIG_INVALID');
    expect(bad({ steps: [{ kind: 'random-resized-crop', size: 8, scale: [0.5, 0.1] }], normalize: 'none' })).toBe('CONFIG_INVALID');
    expect(bad({ steps: [{ kind: 'horizontal-flip', p: 2 }], normalize: 'none' })).toBe('CONFIG_INVALID');
    expect(bad({ steps: [{ kind: 'rotate' }], normalize: 'none' })).toBe('CONFIG_INVALID');
    expect(bad({ steps: [], normalize: 'nope' })).toBe('CONFIG_INVALID');
  });
});

describe('normalisation', () => {
  it('has the ImageNet and 0.5/0.5 presets', () => {
    expect(resolveNormalize('imagenet')).toEqual({ mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });
    expect(resolveNormalize('inception')).toEqual({ mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
    expect(NORMALIZE_PRESETS.none.std).toEqual([1, 1, 1]);
  });

  it('normalises HWC and writes CHW planes', () => {
    const img = Float32Array.from([0, 0.5, 1, 1, 0.5, 0]);
    expect(Array.from(normalizeImage(img, 'inception'))).toEqual([-1, 0, 1, 1, 0, -1]);
    const out = new Float32Array(8).fill(9);
    writeNormalizedCHW(img, 1, 2, resolveNormalize('inception'), out, 1);
    expect(Array.from(out)).toEqual([9, -1, 1, 0, 0, 1, -1, 9]);
    const imn = normalizeImage(Float32Array.from([0.485, 0.456, 0.406]), 'imagenet');
    imn.forEach((v) => expect(v).toBeCloseTo(0, 6));
  });
});
