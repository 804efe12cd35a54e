/**
 * Geometric building blocks of the augmentations, on float RGB HWC images with the sample's
 * annotations carried along: the mask (nearest-neighbour, never mixed) and the boxes (inclusive
 * pixel boxes, clipped to the image; a box that leaves the image entirely is dropped).
 *
 * Images are resized with the Pillow-exact resampler (image-io `resizeImage`, clamped to [0, 1]),
 * i.e. what torchvision runs on the PIL images of the reference pipelines. (The training pipeline's
 * default resampler 'sharp' crops and resizes file-backed images natively, see
 * augment.transform `applyTransformsEncoded`, and uses only the annotation helpers here.)
 */
import { IceError } from '@ice/core';
import type { Box } from '../dataset.types';
import { type ResizeKernel, resizeImage, resizeMaskNearest } from '../image/image-io';

/** An image with the annotations that follow it through the transforms. */
export interface AugSample {
  /** RGB, HWC, float32 in [0, 1]. */
  image: Float32Array;
  height: number;
  width: number;
  /** H×W, nearest-neighbour through every resize. */
  mask?: Uint8Array;
  /** Inclusive pixel boxes [xmin, ymin, xmax, ymax]. */
  boxes?: Box[];
}

export type Interpolation = Exclude<ResizeKernel, 'nearest'> | 'nearest';

/** Python's round(): halves go to the even neighbour (torchvision's crop arithmetic uses it). */
export function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

function checkPositiveInt(what: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new IceError('INPUT_INVALID', `${what} must be a positive integer, got ${v}`);
}

/**
 * The region rows [top, top+height) × cols [left, left+width). Parts outside the image are filled with
 * 0 (image and mask), as torchvision pads before cropping; boxes are shifted and clipped.
 */
export function cropSample(s: AugSample, top: number, left: number, height: number, width: number): AugSample {
  checkPositiveInt('crop height', height);
  checkPositiveInt('crop width', width);
  if (!Number.isInteger(top) || !Number.isInteger(left))
    throw new IceError('INPUT_INVALID', `crop origin must be integers, got (${top}, ${left})`);
  const { height: H, width: W } = s;
  const image = new Float32Array(height * width * 3);
  const mask = s.mask ? new Uint8Array(height * width) : undefined;
  const y0 = Math.max(0, -top);
  const y1 = Math.min(height, H - top);
  const x0 = Math.max(0, -left);
  const x1 = Math.min(width, W - left);
  for (let y = y0; y < y1; y++) {
    const srcRow = (y + top) * W + left;
    image.set(s.image.subarray((srcRow + x0) * 3, (srcRow + x1) * 3), (y * width + x0) * 3);
    if (mask && s.mask) mask.set(s.mask.subarray(srcRow + x0, srcRow + x1), y * width + x0);
  }
  const out: AugSample = { image, height, width };
  if (mask) out.mask = mask;
  if (s.boxes) out.boxes = cropBoxes(s.boxes, top, left, height, width);
  return out;
}

/** Boxes shifted by the crop origin and clipped to the crop; boxes with no pixel inside are dropped. */
export function cropBoxes(boxes: readonly Box[], top: number, left: number, height: number, width: number): Box[] {
  const out: Box[] = [];
  for (const [bx0, by0, bx1, by1] of boxes) {
    const nb: Box = [Math.max(0, bx0 - left), Math.max(0, by0 - top), Math.min(width - 1, bx1 - left), Math.min(height - 1, by1 - top)];
    if (nb[0] <= nb[2] && nb[1] <= nb[3]) out.push(nb);
  }
  return out;
}

/**
 * Boxes of an inH×inW image in an outH×outW resize of it: the pixels a box covers, [x0, x1+1) as a
 * continuous interval, scale to [x0·s, (x1+1)·s), whose pixels are floor(x0·s) … ceil((x1+1)·s) − 1.
 */
export function resizeBoxes(boxes: readonly Box[], inH: number, inW: number, outH: number, outW: number): Box[] {
  const sx = outW / inW;
  const sy = outH / inH;
  return boxes.map(([x0, y0, x1, y1]): Box => [
    Math.min(outW - 1, Math.floor(x0 * sx)),
    Math.min(outH - 1, Math.floor(y0 * sy)),
    Math.max(0, Math.min(outW - 1, Math.ceil((x1 + 1) * sx) - 1)),
    Math.max(0, Math.min(outH - 1, Math.ceil((y1 + 1) * sy) - 1)),
  ]);
}

/** A sample's annotations (mask, boxes) on a height × width image, without the pixels. */
export type Annotations = Omit<AugSample, 'image'>;

/** The annotations of {@link cropSample} (the crop must lie inside the image), without touching pixels. */
export function cropAnnotations(s: Annotations, box: { top: number; left: number; height: number; width: number }): Annotations {
  const { top, left, height, width } = box;
  const out: Annotations = { height, width };
  if (s.mask) {
    if (top < 0 || left < 0 || top + height > s.height || left + width > s.width)
      throw new IceError('INPUT_INVALID', `crop ${JSON.stringify(box)} leaves the ${s.height}×${s.width} mask`);
    const mask = new Uint8Array(height * width);
    for (let y = 0; y < height; y++) mask.set(s.mask.subarray((y + top) * s.width + left, (y + top) * s.width + left + width), y * width);
    out.mask = mask;
  }
  if (s.boxes) out.boxes = cropBoxes(s.boxes, top, left, height, width);
  return out;
}

/** The annotations of {@link resizeSample} (mask nearest with Pillow's rule, boxes scaled), without touching pixels. */
export function resizeAnnotations(s: Annotations, height: number, width: number): Annotations {
  checkPositiveInt('resize height', height);
  checkPositiveInt('resize width', width);
  const out: Annotations = { height, width };
  if (s.mask) out.mask = resizeMaskNearest(s.mask, s.height, s.width, height, width);
  if (s.boxes) out.boxes = resizeBoxes(s.boxes, s.height, s.width, height, width);
  return out;
}

/** Resizes to exactly height × width: the image with `interpolation`, the mask nearest, the boxes scaled. */
export function resizeSample(s: AugSample, height: number, width: number, interpolation: Interpolation = 'bicubic'): AugSample {
  checkPositiveInt('resize height', height);
  checkPositiveInt('resize width', width);
  const img = resizeImage({ data: s.image, height: s.height, width: s.width }, height, width, interpolation);
  const out: AugSample = { image: img.data, height, width };
  if (s.mask) out.mask = resizeMaskNearest(s.mask, s.height, s.width, height, width);
  if (s.boxes) out.boxes = resizeBoxes(s.boxes, s.height, s.width, height, width);
  return out;
}

/** Mirrors left ↔ right. */
export function flipSample(s: AugSample): AugSample {
  const { height: H, width: W } = s;
  const image = new Float32Array(s.image.length);
  const mask = s.mask ? new Uint8Array(s.mask.length) : undefined;
  for (let y = 0; y < H; y++) {
    const row = y * W;
    for (let x = 0; x < W; x++) {
      const src = (row + x) * 3;
      const dst = (row + W - 1 - x) * 3;
      image[dst] = s.image[src];
      image[dst + 1] = s.image[src + 1];
      image[dst + 2] = s.image[src + 2];
      if (mask && s.mask) mask[row + W - 1 - x] = s.mask[row + x];
    }
  }
  const out: AugSample = { image, height: H, width: W };
  if (mask) out.mask = mask;
  if (s.boxes) out.boxes = s.boxes.map(([x0, y0, x1, y1]): Box => [W - 1 - x1, y0, W - 1 - x0, y1]);
  return out;
}

/**
 * torchvision's `Resize(size)` with an int: the shorter side becomes `size`, the longer one
 * int(size · long / short) (truncated, as torchvision's `_compute_resized_output_size`).
 */
export function shorterSideSize(height: number, width: number, size: number): [number, number] {
  checkPositiveInt('resize size', size);
  if (width <= height) return [Math.trunc((size * height) / width), size];
  return [size, Math.trunc((size * width) / height)];
}

/**
 * torchvision's CenterCrop: origin int(round((H − h) / 2)), int(round((W − w) / 2)); along a side where
 * the crop is larger than the image, the image is first zero-padded by (h − H) // 2 before it.
 */
export function centerCropSample(s: AugSample, height: number, width: number): AugSample {
  const origin = (size: number, crop: number): number => (crop > size ? -Math.floor((crop - size) / 2) : roundHalfEven((size - crop) / 2));
  return cropSample(s, origin(s.height, height), origin(s.width, width), height, width);
}
