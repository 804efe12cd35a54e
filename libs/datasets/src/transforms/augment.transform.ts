/**
 * The train/eval augmentations of the ViT reference recipes (timm/DeiT via torchvision), as a
 * serialisable spec (so a worker thread can be told what to do) and the functions that run it.
 *
 * - RandomResizedCrop: torchvision's `get_params` exactly: 10 tries of (area · U(scale), exp(U(log
 *   ratio))) with Python rounding, uniform integer origin, else the centre crop clamped to the
 *   ratio range; then crop and resize (bicubic by default, as timm's train transform).
 * - Horizontal flip with probability p (torchvision: flip when rand < p).
 * - Resize + centre crop (timm's eval transform): shorter side → floor(size / crop_pct), then the
 *   centre size × size.
 * - Normalisation presets: ImageNet mean/std, Inception 0.5/0.5 (ViT/DeiT weights use one or the other).
 *
 * Every random draw comes from the `Rng` handed in (one per sample in the pipeline), in step order.
 */
import { IceError, Rng } from '@ice/core';
import type { Box } from '../dataset.types';
import { type EncodedImage, decodeImage, decodeRegionResized } from '../image/image-io';
import {
  type AugSample,
  type Interpolation,
  centerCropSample,
  cropAnnotations,
  resizeAnnotations,
  cropSample,
  flipSample,
  resizeSample,
  roundHalfEven,
  shorterSideSize,
} from './geometry.transform';

export type SizeSpec = number | readonly [number, number];

export type TransformStep =
  | {
      kind: 'random-resized-crop';
      /** Output size: one number for a square, or [height, width]. */
      size: SizeSpec;
      /** Fraction of the image area (default [0.08, 1]). */
      scale?: readonly [number, number];
      /** Width / height (default [3/4, 4/3]). */
      ratio?: readonly [number, number];
      /** Default 'bicubic'. */
      interpolation?: Interpolation;
    }
  | { kind: 'horizontal-flip'; /** Default 0.5. */ p?: number }
  /** A number resizes the shorter side to it (aspect kept); [h, w] resizes to exactly that. */
  | { kind: 'resize'; size: SizeSpec; interpolation?: Interpolation }
  | { kind: 'center-crop'; size: SizeSpec }
  /** timm's eval transform: resize the shorter side to floor(size / cropPct), centre-crop size × size. */
  | { kind: 'resize-center-crop'; size: number; /** Default 0.875. */ cropPct?: number; interpolation?: Interpolation };

export type TransformKind = TransformStep['kind'];

export interface Normalization {
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

export const NORMALIZE_PRESETS = {
  /** torchvision/timm IMAGENET_DEFAULT_MEAN / _STD (DeiT). */
  imagenet: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
  /** timm IMAGENET_INCEPTION_MEAN / _STD = 0.5 / 0.5, i.e. [-1, 1] (the original ViT weights). */
  inception: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] },
  /** Leaves values in [0, 1]. */
  none: { mean: [0, 0, 0], std: [1, 1, 1] },
} as const satisfies Record<string, Normalization>;

export type NormalizePreset = keyof typeof NORMALIZE_PRESETS;
export type NormalizeSpec = NormalizePreset | Normalization;

/**
 * How file-backed images (ImageNet, VOC, CUB) are decoded and resized:
 * - 'sharp' (default): one native libvips pipeline per image — decode, EXIF-orient, extract the
 *   crop box, resize with sharp's kernel for the step's interpolation (bicubic → 'cubic', the
 *   Catmull-Rom kernel Pillow's BICUBIC also uses), 8-bit RGB out. Several times faster; differs
 *   from Pillow by up to half a pixel at the edges and by 8-bit rounding. For training.
 * - 'pillow': decode to float, then the Pillow-exact resampler in JS (what the PIL-based reference
 *   code does, bit for bit). For evaluation protocols that must match the reference.
 * The crop geometry and every random draw are the same with both. In-memory datasets (digits)
 * always take the JS path.
 */
export type Resampler = 'sharp' | 'pillow';

/** What the pipeline does to each sample: geometric steps in order, then normalisation (at batching). */
export interface TransformSpec {
  steps: TransformStep[];
  normalize: NormalizeSpec;
  /** Default 'sharp'. */
  resampler?: Resampler;
}

export const RRC_DEFAULT_SCALE: readonly [number, number] = [0.08, 1];
export const RRC_DEFAULT_RATIO: readonly [number, number] = [3 / 4, 4 / 3];
/** timm's DEFAULT_CROP_PCT. */
export const DEFAULT_CROP_PCT = 0.875;

/** timm's default train transform: RandomResizedCrop(size, bicubic) + flip(0.5) + normalise. */
export function trainTransformSpec(size: number, normalize: NormalizeSpec = 'imagenet', resampler: Resampler = 'sharp'): TransformSpec {
  return { steps: [{ kind: 'random-resized-crop', size }, { kind: 'horizontal-flip' }], normalize, resampler };
}

/** timm's default eval transform: resize shorter side to floor(size / cropPct), centre crop, normalise. */
export function evalTransformSpec(
  size: number,
  normalize: NormalizeSpec = 'imagenet',
  cropPct = DEFAULT_CROP_PCT,
  resampler: Resampler = 'pillow',
): TransformSpec {
  return { steps: [{ kind: 'resize-center-crop', size, cropPct }], normalize, resampler };
}

export function resolveNormalize(spec: NormalizeSpec): Normalization {
  const n: Normalization | undefined =
    typeof spec === 'string' ? (Object.hasOwn(NORMALIZE_PRESETS, spec) ? NORMALIZE_PRESETS[spec] : undefined) : spec;
  if (!n)
    throw new IceError(
      'CONFIG_INVALID',
      `unknown normalisation preset ${JSON.stringify(spec)}; expected ${Object.keys(NORMALIZE_PRESETS).join(', ')} or {mean, std}`,
    );
  if (n.mean.length !== 3 || n.std.length !== 3 || !n.mean.every(Number.isFinite) || !n.std.every((v) => Number.isFinite(v) && v > 0)) {
    throw new IceError('CONFIG_INVALID', `normalisation needs 3 finite means and 3 positive stds, got ${JSON.stringify(n)}`);
  }
  return n;
}

function sizeOf(size: SizeSpec): [number, number] {
  return typeof size === 'number' ? [size, size] : [size[0], size[1]];
}

export interface CropBox {
  top: number;
  left: number;
  height: number;
  width: number;
}

/** torchvision RandomResizedCrop.get_params (10 tries, then a centre crop clamped to the ratio range). */
export function randomResizedCropParams(
  rng: Rng,
  height: number,
  width: number,
  scale: readonly [number, number] = RRC_DEFAULT_SCALE,
  ratio: readonly [number, number] = RRC_DEFAULT_RATIO,
): CropBox {
  const area = height * width;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let t = 0; t < 10; t++) {
    const targetArea = area * (scale[0] + (scale[1] - scale[0]) * rng.uniform());
    const aspect = Math.exp(logLo + (logHi - logLo) * rng.uniform());
    const w = roundHalfEven(Math.sqrt(targetArea * aspect));
    const h = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = rng.int(height - h + 1);
      const left = rng.int(width - w + 1);
      return { top, left, height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < Math.min(ratio[0], ratio[1])) {
    h = roundHalfEven(w / Math.min(ratio[0], ratio[1]));
  } else if (inRatio > Math.max(ratio[0], ratio[1])) {
    w = roundHalfEven(h * Math.max(ratio[0], ratio[1]));
  }
  return { top: Math.trunc((height - h) / 2), left: Math.trunc((width - w) / 2), height: h, width: w };
}

function checkRange(what: string, r: readonly [number, number] | undefined, positive: boolean): void {
  if (r === undefined) return;
  if (!Array.isArray(r) || r.length !== 2 || !r.every(Number.isFinite) || r[0] > r[1] || (positive ? r[0] <= 0 : r[0] < 0)) {
    throw new IceError('CONFIG_INVALID', `${what} must be [min, max] with ${positive ? '0 <' : '0 ≤'} min ≤ max, got ${JSON.stringify(r)}`);
  }
}

function checkSize(kind: string, size: SizeSpec): void {
  const [h, w] = sizeOf(size);
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1 || h > 16384 || w > 16384) {
    throw new IceError('CONFIG_INVALID', `${kind}: size must be positive integers, got ${JSON.stringify(size)}`);
  }
}

/** CONFIG_INVALID for a spec that cannot run (unknown step, bad size, scale or ratio). */
export function validateTransformSpec(spec: TransformSpec): void {
  if (!spec || !Array.isArray(spec.steps)) throw new IceError('CONFIG_INVALID', 'transform spec needs a steps array');
  resolveNormalize(spec.normalize);
  if (spec.resampler !== undefined && spec.resampler !== 'sharp' && spec.resampler !== 'pillow') {
    throw new IceError('CONFIG_INVALID', `resampler must be 'sharp' or 'pillow', got ${JSON.stringify(spec.resampler)}`);
  }
  for (const step of spec.steps) {
    switch (step.kind) {
      case 'random-resized-crop':
        checkSize(step.kind, step.size);
        checkRange('random-resized-crop scale', step.scale, true);
        checkRange('random-resized-crop ratio', step.ratio, true);
        break;
      case 'horizontal-flip':
        if (step.p !== undefined && !(step.p >= 0 && step.p <= 1))
          throw new IceError('CONFIG_INVALID', `horizontal-flip p must be in [0, 1], got ${step.p}`);
        break;
      case 'resize':
      case 'center-crop':
        checkSize(step.kind, step.size);
        break;
      case 'resize-center-crop':
        checkSize(step.kind, step.size);
        if (step.cropPct !== undefined && !(step.cropPct > 0 && step.cropPct <= 4)) {
          throw new IceError('CONFIG_INVALID', `resize-center-crop cropPct must be in (0, 4], got ${step.cropPct}`);
        }
        break;
      default: {
        const unknown: never = step;
        throw new IceError('CONFIG_INVALID', `unknown transform step ${JSON.stringify(unknown)}`);
      }
    }
  }
}

/** [height, width] every sample has after the steps, or null when it depends on the input (no sizing step last). */
export function transformOutputSize(steps: readonly TransformStep[]): [number, number] | null {
  let out: [number, number] | null = null;
  for (const step of steps) {
    switch (step.kind) {
      case 'random-resized-crop':
      case 'center-crop':
        out = sizeOf(step.size);
        break;
      case 'resize':
        out = typeof step.size === 'number' ? null : sizeOf(step.size);
        break;
      case 'resize-center-crop':
        out = [step.size, step.size];
        break;
      case 'horizontal-flip':
        break;
    }
  }
  return out;
}

/** Runs the steps on one sample, drawing from `rng` in step order. The input is not modified. */
export function applyTransforms(sample: AugSample, steps: readonly TransformStep[], rng: Rng): AugSample {
  let s = sample;
  for (const step of steps) {
    switch (step.kind) {
      case 'random-resized-crop': {
        const [oh, ow] = sizeOf(step.size);
        const c = randomResizedCropParams(rng, s.height, s.width, step.scale, step.ratio);
        s = resizeSample(cropSample(s, c.top, c.left, c.height, c.width), oh, ow, step.interpolation ?? 'bicubic');
        break;
      }
      case 'horizontal-flip':
        if (rng.uniform() < (step.p ?? 0.5)) s = flipSample(s);
        break;
      case 'resize': {
        const [oh, ow] = typeof step.size === 'number' ? shorterSideSize(s.height, s.width, step.size) : sizeOf(step.size);
        if (oh !== s.height || ow !== s.width) s = resizeSample(s, oh, ow, step.interpolation ?? 'bicubic');
        break;
      }
      case 'center-crop': {
        const [oh, ow] = sizeOf(step.size);
        s = centerCropSample(s, oh, ow);
        break;
      }
      case 'resize-center-crop': {
        const scaleSize = Math.floor(step.size / (step.cropPct ?? DEFAULT_CROP_PCT));
        const [rh, rw] = shorterSideSize(s.height, s.width, scaleSize);
        if (rh !== s.height || rw !== s.width) s = resizeSample(s, rh, rw, step.interpolation ?? 'bicubic');
        s = centerCropSample(s, step.size, step.size);
        break;
      }
    }
  }
  return s;
}

/** A sample whose image is still encoded (see image-io `probeImage`), with its annotations. */
export interface EncodedAugSample {
  encoded: EncodedImage;
  height: number;
  width: number;
  mask?: Uint8Array;
  boxes?: Box[];
}

/**
 * {@link applyTransforms} for an undecoded image through sharp (resampler 'sharp'): the first step,
 * when it sizes the image (random-resized-crop, resize, resize-center-crop), runs natively — decode →
 * orient → extract the crop box → resize, one sharp pipeline — with the crop box drawn from `rng`
 * exactly as in the JS path; the mask (nearest, Pillow's rule) and boxes follow the same crop and
 * scale in JS; the remaining steps (flip, …) run in JS on the result. Any other first step decodes
 * the full image and runs every step in JS.
 */
export async function applyTransformsEncoded(sample: EncodedAugSample, steps: readonly TransformStep[], rng: Rng): Promise<AugSample> {
  const { encoded, height: H, width: W } = sample;
  const first = steps[0] as TransformStep | undefined;
  const annotations = (s: AugSample): AugSample => {
    if (sample.mask) s.mask = sample.mask;
    if (sample.boxes) s.boxes = sample.boxes;
    return s;
  };
  let s: AugSample;
  let rest = steps.slice(1);
  switch (first?.kind) {
    case 'random-resized-crop': {
      const [oh, ow] = sizeOf(first.size);
      const c = randomResizedCropParams(rng, H, W, first.scale, first.ratio);
      const img = await decodeRegionResized(encoded, { height: oh, width: ow, kernel: first.interpolation ?? 'bicubic' }, c);
      s = { ...resizeAnnotations(cropAnnotations(sample, c), oh, ow), image: img.data };
      break;
    }
    case 'resize': {
      const [oh, ow] = typeof first.size === 'number' ? shorterSideSize(H, W, first.size) : sizeOf(first.size);
      const img = await decodeRegionResized(encoded, { height: oh, width: ow, kernel: first.interpolation ?? 'bicubic' });
      s = { ...resizeAnnotations(sample, oh, ow), image: img.data };
      break;
    }
    case 'resize-center-crop': {
      const [rh, rw] = shorterSideSize(H, W, Math.floor(first.size / (first.cropPct ?? DEFAULT_CROP_PCT)));
      const img = await decodeRegionResized(encoded, { height: rh, width: rw, kernel: first.interpolation ?? 'bicubic' });
      s = centerCropSample({ ...resizeAnnotations(sample, rh, rw), image: img.data }, first.size, first.size);
      break;
    }
    case 'center-crop':
    case 'horizontal-flip':
    case undefined: {
      const img = await decodeImage(encoded.bytes, { autoOrient: encoded.autoOrient }, encoded.label);
      if (img.height !== H || img.width !== W)
        throw new IceError('IMAGE_CORRUPT', `${encoded.label}: decoded ${img.height}×${img.width}, header said ${H}×${W}`, {
          path: encoded.label,
        });
      s = annotations({ image: img.data, height: H, width: W });
      rest = [...steps];
    }
  }
  return applyTransforms(s, rest, rng);
}

/** (v − mean[c]) / std[c] on an HWC float RGB image, into a new array. */
export function normalizeImage(image: Float32Array, norm: NormalizeSpec): Float32Array {
  const { mean, std } = resolveNormalize(norm);
  const out = new Float32Array(image.length);
  const inv = std.map((v) => 1 / v);
  for (let p = 0; p < image.length; p += 3) {
    out[p] = (image[p] - mean[0]) * inv[0];
    out[p + 1] = (image[p + 1] - mean[1]) * inv[1];
    out[p + 2] = (image[p + 2] - mean[2]) * inv[2];
  }
  return out;
}

/**
 * Writes a normalised HWC image into plane-major CHW at `out[offset…]` (one sample of an NCHW batch).
 */
export function writeNormalizedCHW(
  image: Float32Array,
  height: number,
  width: number,
  norm: Normalization,
  out: Float32Array,
  offset: number,
): void {
  const plane = height * width;
  if (image.length !== plane * 3) throw new IceError('INPUT_INVALID', `image has ${image.length} values, expected ${height}×${width}×3`);
  for (let c = 0; c < 3; c++) {
    const m = norm.mean[c];
    const inv = 1 / norm.std[c];
    const base = offset + c * plane;
    for (let p = 0; p < plane; p++) out[base + p] = (image[p * 3 + c] - m) * inv;
  }
}
