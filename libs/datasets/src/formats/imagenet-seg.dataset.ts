/**
 * ImageNet-Segmentation (Guillaumin et al.; the 4,276-image set of Chefer et al.'s evaluation):
 * `gtsegs_ijcv.mat`, a MATLAB v7.3 (HDF5) file, read exactly as the reference code does with h5py
 * (data/Imagenet.py:54-65):
 * - N = len(`/value/img`) (its first h5py dimension);
 * - image i = deref(`/value/img`[i, 0]), stored (3, W, H) uint8 → transposed (2, 1, 0) to H×W×3;
 * - mask i  = deref(deref(`/value/gt`[i, 0])[0, 0]) — `gt` is a cell of cells — stored (W, H) →
 *   transposed to H×W, values {0, 1} (any non-zero value is taken as foreground).
 * The set has no class labels: every sample has `label = -1` and `classes` is empty (the reference
 * evaluation explains the model's predicted class). It has a single split, named 'test'.
 * The file is read through h5wasm in a worker thread (see hdf5.reader.ts); call `close()`.
 */
import { join } from 'node:path';
import { IceError } from '@ice/core';
import type { VisionSample } from '../dataset.types';
import { type FileDataset, checkIndex, isDir, requireFile } from './dataset-files.util';
import { type Hdf5Data, Hdf5Reader } from './hdf5.reader';

export const IMAGENET_SEG_FILE = 'gtsegs_ijcv.mat';
export const IMAGENET_SEG_SPLITS: readonly string[] = ['test'];

export interface ImageNetSegSample extends VisionSample {
  mask: Uint8Array;
  /** Index in the .mat file. */
  index: number;
}

/** `root` may be the .mat file itself or a directory holding gtsegs_ijcv.mat. */
export function resolveImageNetSegFile(root: string): string {
  const file = isDir(root) ? join(root, IMAGENET_SEG_FILE) : root;
  requireFile(file, 'ImageNet-Segmentation file');
  return file;
}

/** (3, W, H) or (W, H) row-major uint8 → H×W×3 float in [0, 1]. */
export function matImageToHwc(img: Hdf5Data, label: string): { data: Float32Array; height: number; width: number } {
  if (!(img.data instanceof Uint8Array)) {
    throw new IceError('INPUT_INVALID', `${label}: expected a uint8 image, got ${img.data.constructor.name}`);
  }
  let c: number, w: number, h: number;
  if (img.shape.length === 3 && (img.shape[0] === 3 || img.shape[0] === 1)) [c, w, h] = img.shape;
  else if (img.shape.length === 2) [c, w, h] = [1, img.shape[0], img.shape[1]];
  else throw new IceError('INPUT_INVALID', `${label}: expected an image stored (3, W, H) or (W, H), got (${img.shape.join(', ')})`);
  const src = img.data;
  const out = new Float32Array(h * w * 3);
  const plane = w * h;
  for (let x = 0; x < w; x++) {
    for (let y = 0; y < h; y++) {
      const s = x * h + y;
      const d = (y * w + x) * 3;
      for (let k = 0; k < 3; k++) out[d + k] = src[(c === 1 ? 0 : k) * plane + s] / 255;
    }
  }
  return { data: out, height: h, width: w };
}

/** (W, H) row-major → H×W, non-zero → 1. */
export function matMaskToHw(mask: Hdf5Data, label: string): { data: Uint8Array; height: number; width: number } {
  if (mask.shape.length !== 2)
    throw new IceError('INPUT_INVALID', `${label}: expected a mask stored (W, H), got (${mask.shape.join(', ')})`);
  const [w, h] = mask.shape;
  const out = new Uint8Array(h * w);
  for (let x = 0; x < w; x++) for (let y = 0; y < h; y++) out[y * w + x] = mask.data[x * h + y] !== 0 ? 1 : 0;
  return { data: out, height: h, width: w };
}

export class ImageNetSegDataset implements FileDataset<ImageNetSegSample> {
  readonly format = 'imagenet-seg' as const;
  readonly name = 'imagenet-seg';
  /** No class labels in this set. */
  readonly classes: string[] = [];

  private constructor(
    readonly root: string,
    readonly split: string,
    /** The .mat file. */
    readonly file: string,
    readonly length: number,
    private readonly imgCols: number,
    private readonly gtCols: number,
    private readonly reader: Hdf5Reader,
  ) {}

  static async open(root: string, split = 'test'): Promise<ImageNetSegDataset> {
    if (!IMAGENET_SEG_SPLITS.includes(split)) {
      throw new IceError('CONFIG_INVALID', `ImageNet-Segmentation has a single split, 'test'; got '${split}'`);
    }
    const file = resolveImageNetSegFile(root);
    const reader = await Hdf5Reader.open(file);
    try {
      const img = await reader.info('/value/img');
      const gt = await reader.info('/value/gt');
      for (const [name, info] of [
        ['/value/img', img],
        ['/value/gt', gt],
      ] as const) {
        if (!info.isReference || info.shape.length !== 2) {
          throw new IceError(
            'INPUT_INVALID',
            `${file}: ${name} should be a 2-D array of object references (a MATLAB cell), got shape (${info.shape.join(', ')})`,
            {
              path: file,
            },
          );
        }
      }
      if (img.shape[0] !== gt.shape[0]) {
        throw new IceError('INPUT_INVALID', `${file}: /value/img has ${img.shape[0]} entries but /value/gt has ${gt.shape[0]}`, {
          path: file,
        });
      }
      return new ImageNetSegDataset(root, split, file, img.shape[0], img.shape[1], gt.shape[1], reader);
    } catch (err) {
      await reader.close();
      if (err instanceof IceError && err.message.includes('no dataset at')) {
        throw new IceError('INPUT_INVALID', `${file} is not an ImageNet-Segmentation file: ${err.message}`, { path: file });
      }
      throw err;
    }
  }

  async get(i: number): Promise<ImageNetSegSample> {
    checkIndex(i, this.length, 'imagenet-seg');
    const rawImg = await this.reader.deref('/value/img', [i * this.imgCols]);
    const rawMask = await this.reader.deref('/value/gt', [i * this.gtCols, 0]);
    const img = matImageToHwc(rawImg, `${this.file} image ${i}`);
    const mask = matMaskToHw(rawMask, `${this.file} mask ${i}`);
    if (mask.height !== img.height || mask.width !== img.width) {
      throw new IceError(
        'INPUT_INVALID',
        `${this.file}: sample ${i} has a ${img.height}×${img.width} image but a ${mask.height}×${mask.width} mask`,
        {
          path: this.file,
        },
      );
    }
    return { id: `imagenet-seg/${i}`, image: img.data, height: img.height, width: img.width, label: -1, mask: mask.data, index: i };
  }

  /** Only the mask of sample i (cheaper than `get` when the image is not needed). */
  async getMask(i: number): Promise<{ data: Uint8Array; height: number; width: number }> {
    checkIndex(i, this.length, 'imagenet-seg');
    return matMaskToHw(await this.reader.deref('/value/gt', [i * this.gtCols, 0]), `${this.file} mask ${i}`);
  }

  close(): Promise<void> {
    return this.reader.close();
  }
}
