/**
 * Image files in, RGB float HWC out: decoding, resizing and label-mask reading for the file-backed
 * datasets.
 *
 * Libraries: `sharp` (libvips) decodes. It ships prebuilt libvips binaries inside its npm packages
 * (no download at install time), detects JPEG/PNG/WebP/TIFF/GIF by content rather than by extension
 * (ImageNet has PNGs named .JPEG), converts greyscale/CMYK (via ICC) to sRGB, and applies EXIF
 * orientation. Pillow-exact resizing (evaluation, and training with resampler 'pillow') is NOT done
 * with sharp but with a port of Pillow's resampler (pil-resample.ts, which says why: sharp's
 * upsampling is shifted against Pillow and its float I/O is lossy), so images match what the
 * PIL-based reference code feeds its models. The training pipeline's default path
 * ({@link decodeRegionResized}) does decode → orient → crop → resize natively in sharp instead. Label masks are read
 * with `fast-png` (image-js) because sharp always expands palette PNGs to RGB, while VOC masks must be
 * read as palette INDICES; fast-png 6.x is its last CommonJS line (7+ is ESM-only, which jest's
 * CommonJS runtime cannot load).
 */
import { readFile } from 'node:fs/promises';
import { IceError } from '@ice/core';
import { decode as decodePng } from 'fast-png';
import sharp, { type KernelEnum } from 'sharp';
import { type ResampleFilter, resizeF32, resizeU8 } from './pil-resample';

export type ResizeKernel = ResampleFilter;

/** RGB, HWC, float32 in [0, 1]. */
export interface RgbImage {
  data: Float32Array;
  height: number;
  width: number;
}

export interface DecodedImage extends RgbImage {
  /** EXIF orientation tag of the file (1–8), when it has one. */
  orientation?: number;
  /** Size of the stored pixel grid (before auto-orientation and resizing). */
  storedHeight: number;
  storedWidth: number;
}

export interface ResizeSpec {
  height: number;
  width: number;
  /** Default 'bilinear'. */
  kernel?: ResizeKernel;
}

export interface DecodeOptions {
  /**
   * Apply the EXIF orientation tag (default true). torchvision's PIL loader does NOT do this; turn it
   * off to reproduce a reference pipeline byte for byte on files that carry the tag.
   */
  autoOrient?: boolean;
  /** Resize to exactly this size (aspect ratio not kept) on the 8-bit pixels, bit-exact with Pillow's `resize`. */
  resize?: ResizeSpec;
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Reads a file, mapping a missing file to FILE_NOT_FOUND and any other read failure to IMAGE_CORRUPT. */
export async function readImageFile(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new IceError('FILE_NOT_FOUND', `image not found: ${path}`, { path });
    throw new IceError('IMAGE_CORRUPT', `cannot read image ${path}: ${errMessage(err)}`, { path });
  }
}

function checkSize(what: string, height: number, width: number): void {
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1) {
    throw new IceError('INPUT_INVALID', `${what}: size must be positive integers, got ${height}×${width}`);
  }
}

/** 8-bit RGB HWC pixels (what the decoders produce before scaling to [0, 1]). */
export interface RgbImageU8 {
  data: Uint8Array;
  height: number;
  width: number;
}

/**
 * Decodes an image file (or its bytes) to 8-bit RGB HWC. Greyscale is replicated to RGB, CMYK is
 * converted through its ICC profile (or libvips' default CMYK profile), alpha is dropped (not
 * composited, as PIL's `convert('RGB')`). A file that does not decode fully (including a truncated
 * JPEG) is IMAGE_CORRUPT; a missing file is FILE_NOT_FOUND.
 */
export async function decodeImageU8(
  source: string | Uint8Array,
  opts: DecodeOptions = {},
  label = typeof source === 'string' ? source : '<buffer>',
): Promise<RgbImageU8 & Omit<DecodedImage, 'data'>> {
  const bytes = typeof source === 'string' ? await readImageFile(source) : source;
  if (opts.resize) checkSize(`resize of ${label}`, opts.resize.height, opts.resize.width);
  try {
    // failOn 'warning' (sharp's default, stated): truncated or damaged pixel data is an error, as in PIL.
    const input = sharp(bytes, { failOn: 'warning' });
    const meta = await input.metadata();
    const pipeline = (opts.autoOrient ?? true) ? input.rotate() : input;
    const { data, info } = await pipeline.removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    let rgb = toRgb(new Uint8Array(data.buffer, data.byteOffset, data.length), info.width, info.height, info.channels);
    let [height, width] = [info.height, info.width];
    if (opts.resize) {
      rgb = resizeU8(rgb, height, width, 3, opts.resize.height, opts.resize.width, opts.resize.kernel ?? 'bilinear');
      [height, width] = [opts.resize.height, opts.resize.width];
    }
    return {
      data: rgb,
      height,
      width,
      storedHeight: meta.height,
      storedWidth: meta.width,
      ...(meta.orientation !== undefined ? { orientation: meta.orientation } : {}),
    };
  } catch (err) {
    if (err instanceof IceError) throw err;
    throw new IceError('IMAGE_CORRUPT', `cannot decode image ${label}: ${errMessage(err)}`, { path: label });
  }
}

function toRgb(data: Uint8Array, width: number, height: number, channels: number): Uint8Array {
  const n = width * height;
  if (channels === 3) return data;
  if (channels !== 1) throw new Error(`unexpected ${channels} channels after conversion to sRGB`);
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = data[i];
  return out;
}

/** 8-bit values to float32 in [0, 1] (v / 255, as torchvision's ToTensor). */
export function u8ToFloat(data: Uint8Array): Float32Array {
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i] / 255;
  return out;
}

/** Decodes an image to RGB HWC float32 in [0, 1]; see {@link decodeImageU8} for the conversions and errors. */
export async function decodeImage(source: string | Uint8Array, opts: DecodeOptions = {}, label?: string): Promise<DecodedImage> {
  const img = await decodeImageU8(source, opts, label);
  return { ...img, data: u8ToFloat(img.data) };
}

/**
 * Resizes a float RGB image to exactly height × width (aspect ratio not kept) with Pillow's
 * algorithm in float precision (mode 'F'); results are clamped to [0, 1] (bicubic overshoots).
 */
export function resizeImage(img: RgbImage, height: number, width: number, kernel: ResizeKernel = 'bilinear'): RgbImage {
  const out = resizeF32(img.data, img.height, img.width, 3, height, width, kernel);
  for (let i = 0; i < out.length; i++) out[i] = Math.min(1, Math.max(0, out[i]));
  return { data: out, height, width };
}

/**
 * Nearest-neighbour resize of a single-channel label/mask array with Pillow's rule (source index =
 * floor((dst + 0.5) · in / out)), so label values are never mixed or invented.
 */
export function resizeMaskNearest(mask: Uint8Array, height: number, width: number, outHeight: number, outWidth: number): Uint8Array {
  return resizeU8(mask, height, width, 1, outHeight, outWidth, 'nearest');
}

/** A single-channel label image: palette indices for palette PNGs, the grey value otherwise. */
export interface LabelImage {
  data: Uint8Array;
  height: number;
  width: number;
  /** The PNG's palette (RGB[A] per index), when it is a palette image. */
  palette?: number[][];
}

/**
 * Reads a PNG label mask WITHOUT colour conversion: palette images give their palette INDICES
 * (VOC: 0 = background, 1..20 = classes, 255 = void); 8-bit greyscale images (with or without
 * alpha) give their grey value. RGB masks are rejected (INPUT_INVALID), since their colours would
 * need a palette to become labels.
 */
export async function readLabelPng(path: string): Promise<LabelImage> {
  const bytes = await readImageFile(path);
  let png: ReturnType<typeof decodePng>;
  try {
    png = decodePng(bytes);
  } catch (err) {
    throw new IceError('IMAGE_CORRUPT', `cannot decode PNG mask ${path}: ${errMessage(err)}`, { path });
  }
  const { width, height, depth, channels } = png;
  const n = width * height;
  if (png.palette) {
    const out = depth === 8 ? new Uint8Array(png.data.buffer, png.data.byteOffset, n).slice() : unpackBits(png.data, width, height, depth);
    return { data: out, height, width, palette: png.palette };
  }
  if ((channels === 1 || channels === 2) && depth === 8) {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = png.data[i * channels];
    return { data: out, height, width };
  }
  if ((channels === 1 || channels === 2) && depth < 8) {
    if (channels === 2) throw new IceError('INPUT_INVALID', `label mask ${path}: grey+alpha below 8 bits is not a valid PNG`, { path });
    return { data: unpackBits(png.data, width, height, depth), height, width };
  }
  throw new IceError(
    'INPUT_INVALID',
    `label mask ${path} is a ${channels}-channel ${depth}-bit PNG; expected a palette or 8-bit greyscale PNG`,
    { path },
  );
}

/** Unpacks 1/2/4-bit samples (rows padded to whole bytes, most significant bits first). */
function unpackBits(data: ArrayLike<number>, width: number, height: number, depth: number): Uint8Array {
  const out = new Uint8Array(width * height);
  const rowBytes = Math.ceil((width * depth) / 8);
  const perByte = 8 / depth;
  const maskBits = (1 << depth) - 1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const byte = data[y * rowBytes + Math.floor(x / perByte)];
      const shift = 8 - depth * ((x % perByte) + 1);
      out[y * width + x] = (byte >> shift) & maskBits;
    }
  }
  return out;
}

/**
 * An image file read but not decoded: its bytes and its displayed size (after EXIF orientation when
 * `autoOrient`), from the header only. What the training pipeline's native (sharp) path starts from.
 */
export interface EncodedImage {
  bytes: Uint8Array;
  /** Size after auto-orientation (when `autoOrient`), i.e. the size {@link decodeImage} would give. */
  height: number;
  width: number;
  autoOrient: boolean;
  /** For error messages (the path, usually). */
  label: string;
}

/** Reads an image's header (no pixel decoding): IMAGE_CORRUPT when it is not a readable image. */
export async function probeImage(
  source: string | Uint8Array,
  autoOrient = true,
  label = typeof source === 'string' ? source : '<buffer>',
): Promise<EncodedImage> {
  const bytes = typeof source === 'string' ? await readImageFile(source) : source;
  try {
    const meta = await sharp(bytes, { failOn: 'warning' }).metadata();
    const { height, width } = autoOrient ? meta.autoOrient : meta;
    return { bytes, height, width, autoOrient, label };
  } catch (err) {
    throw new IceError('IMAGE_CORRUPT', `cannot decode image ${label}: ${errMessage(err)}`, { path: label });
  }
}

/**
 * sharp's kernel for each interpolation: 'cubic' is libvips' Catmull-Rom cubic (a = −0.5, the same
 * kernel as Pillow's BICUBIC; lanczos3 would be sharper than what the reference trains on), widened
 * when downscaling (antialiased) as Pillow does.
 */
const SHARP_KERNEL = { nearest: 'nearest', bilinear: 'linear', bicubic: 'cubic' } as const satisfies Record<ResizeKernel, keyof KernelEnum>;

/** A crop box in the (oriented) image: rows [top, top+height) × cols [left, left+width). */
export interface RegionSpec {
  top: number;
  left: number;
  height: number;
  width: number;
}

/**
 * One native sharp pipeline: decode → (EXIF orient) → extract `region` (must lie inside the image;
 * default: whole image) → resize to exactly `resize` with sharp's kernel → 8-bit RGB → float [0, 1].
 * Fast, but NOT Pillow-exact (libvips' sampling grid differs from Pillow's at the edges by up to
 * half a pixel, and the result is quantised to 8 bits): for training augmentation, not evaluation.
 */
export async function decodeRegionResized(img: EncodedImage, resize: ResizeSpec, region?: RegionSpec): Promise<RgbImage> {
  checkSize(`resize of ${img.label}`, resize.height, resize.width);
  if (region) {
    const { top, left, height, width } = region;
    if (!(
      Number.isInteger(top) &&
      Number.isInteger(left) &&
      top >= 0 &&
      left >= 0 &&
      height >= 1 &&
      width >= 1 &&
      top + height <= img.height &&
      left + width <= img.width
    )) {
      throw new IceError(
        'INPUT_INVALID',
        `region ${JSON.stringify(region)} is not inside the ${img.height}×${img.width} image ${img.label}`,
        { path: img.label },
      );
    }
  }
  try {
    let p = sharp(img.bytes, { failOn: 'warning' });
    if (img.autoOrient) p = p.autoOrient();
    if (region) p = p.extract({ top: region.top, left: region.left, height: region.height, width: region.width });
    const { data, info } = await p
      .resize(resize.width, resize.height, { fit: 'fill', kernel: SHARP_KERNEL[resize.kernel ?? 'bilinear'], fastShrinkOnLoad: false })
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.width !== resize.width || info.height !== resize.height) throw new Error(`sharp gave ${info.height}×${info.width}`);
    const rgb = toRgb(new Uint8Array(data.buffer, data.byteOffset, data.length), info.width, info.height, info.channels);
    return { data: u8ToFloat(rgb), height: info.height, width: info.width };
  } catch (err) {
    if (err instanceof IceError) throw err;
    throw new IceError('IMAGE_CORRUPT', `cannot decode image ${img.label}: ${errMessage(err)}`, { path: img.label });
  }
}
