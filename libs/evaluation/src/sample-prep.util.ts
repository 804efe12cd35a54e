import { IceError } from '@ice/core';
import { type Box, resizeImage, resizeMaskNearest, resizeU8, type VisionSample } from '@ice/datasets';
import type { NormalizationChoice } from './evaluation.types';

/**
 * One sample as every protocol sees it: the image resized to the model's S×S (Pillow bilinear,
 * antialiased, aspect ratio not kept, no crop — what torchvision's Resize((S, S)) does on a PIL
 * image), normalised to CHW, and its masks resized with Pillow's nearest rule. Boxes stay in the
 * original image's pixel frame; each protocol maps them as its reference does.
 */
export interface PreparedSample {
  index: number;
  id: string;
  label: number;
  /** Model input side. */
  size: number;
  /** S×S×3 in [0, 1] (for the saved overlays). */
  rgb: Float32Array;
  /** 3×S×S, normalised. */
  input: Float32Array;
  /** The original image size. */
  height: number;
  width: number;
  /** S×S 0/1 foreground. */
  mask?: Uint8Array;
  /** S×S label map (0 background, k class, 255 void), when the sample has one. */
  segmentation?: Uint8Array;
  /** Original-frame boxes, inclusive pixel indices. */
  boxes?: Box[];
  /** CUB's raw [x, y, w, h], when the sample has it. */
  bboxXywh?: [number, number, number, number];
  /** The CLS head's top-1 class, when the protocol asks for it. */
  top1?: number;
}

const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];
const HALF: [number, number, number] = [0.5, 0.5, 0.5];

export function normalizationStats(
  choice: NormalizationChoice,
  model: { mean: [number, number, number]; std: [number, number, number] },
): { mean: [number, number, number]; std: [number, number, number] } {
  switch (choice) {
    case 'half':
      return { mean: HALF, std: HALF };
    case 'imagenet':
      return { mean: IMAGENET_MEAN, std: IMAGENET_STD };
    case 'model':
      return { mean: model.mean, std: model.std };
  }
}

/** True when every value is an 8-bit level v/255 (file-backed images), so Pillow's 8-bit path applies. */
function isEightBit(data: Float32Array): boolean {
  for (let i = 0; i < data.length; i++) {
    const v = data[i] * 255;
    if (Math.abs(v - Math.round(v)) > 1e-3) return false;
  }
  return true;
}

/** RGB HWC [0, 1] → S×S, Pillow bilinear: bit-exact on 8-bit images (as PIL sees a JPEG), float otherwise. */
export function resizeRgb(data: Float32Array, height: number, width: number, size: number): Float32Array {
  if (height === size && width === size) return data.slice();
  if (isEightBit(data)) {
    const u8 = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) u8[i] = Math.round(data[i] * 255);
    const out = resizeU8(u8, height, width, 3, size, size, 'bilinear');
    return Float32Array.from(out, (v) => v / 255);
  }
  return resizeImage({ data, height, width }, size, size, 'bilinear').data;
}

export function toChw(rgb: Float32Array, size: number, mean: readonly number[], std: readonly number[]): Float32Array {
  const plane = size * size;
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    const inv = 1 / std[c];
    for (let p = 0; p < plane; p++) out[c * plane + p] = (rgb[p * 3 + c] - mean[c]) * inv;
  }
  return out;
}

export function prepareSample(
  sample: VisionSample,
  index: number,
  size: number,
  stats: { mean: readonly number[]; std: readonly number[] },
): PreparedSample {
  const { height, width } = sample;
  if (sample.image.length !== height * width * 3) {
    throw new IceError('INPUT_INVALID', `sample ${sample.id}: image of ${sample.image.length} values is not ${height}×${width}×3`);
  }
  const rgb = resizeRgb(sample.image, height, width, size);
  const out: PreparedSample = {
    index,
    id: sample.id,
    label: sample.label,
    size,
    rgb,
    input: toChw(rgb, size, stats.mean, stats.std),
    height,
    width,
  };
  if (sample.mask) out.mask = resizeLabels(sample.mask, height, width, size, `${sample.id} mask`);
  const seg = (sample as VisionSample & { segmentation?: Uint8Array }).segmentation;
  if (seg instanceof Uint8Array) out.segmentation = resizeLabels(seg, height, width, size, `${sample.id} segmentation`);
  if (sample.boxes) out.boxes = sample.boxes.map((b) => [b[0], b[1], b[2], b[3]]);
  const xywh = (sample as VisionSample & { bboxXywh?: unknown }).bboxXywh;
  if (Array.isArray(xywh) && xywh.length === 4 && xywh.every((v): v is number => typeof v === 'number')) {
    const [x, y, w, h] = xywh;
    out.bboxXywh = [x, y, w, h];
  }
  return out;
}

function resizeLabels(m: Uint8Array, height: number, width: number, size: number, what: string): Uint8Array {
  if (m.length !== height * width) throw new IceError('INPUT_INVALID', `${what}: ${m.length} values for a ${height}×${width} image`);
  return height === size && width === size ? m.slice() : resizeMaskNearest(m, height, width, size, size);
}

/** Mean of each p×p block of an S×S map (S = g·p) → a g×g grid: the inverse of blockUpsample (e.g. a patch's ink share). */
export function blockMean(map: ArrayLike<number>, size: number, p: number): Float32Array {
  const g = size / p;
  if (!Number.isInteger(g)) throw new IceError('INPUT_INVALID', `blockMean: ${size} is not a multiple of the block side ${p}`);
  const out = new Float32Array(g * g);
  for (let y = 0; y < size; y++) {
    const row = Math.floor(y / p) * g;
    for (let x = 0; x < size; x++) out[row + Math.floor(x / p)] += map[y * size + x];
  }
  for (let i = 0; i < out.length; i++) out[i] /= p * p;
  return out;
}

/** Block repetition of a g×g grid to (g·p)×(g·p): nearest upsampling by an integer factor. */
export function blockUpsample(grid: ArrayLike<number>, g: number, p: number): Float32Array {
  const S = g * p;
  const out = new Float32Array(S * S);
  for (let y = 0; y < S; y++) {
    const row = Math.floor(y / p) * g;
    for (let x = 0; x < S; x++) out[y * S + x] = grid[row + Math.floor(x / p)];
  }
  return out;
}
