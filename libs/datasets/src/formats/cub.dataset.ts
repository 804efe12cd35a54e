/**
 * CUB-200-2011 from `<root>` = the CUB_200_2011 folder: `images.txt` (`<id> <relative path>`),
 * `image_class_labels.txt` (`<id> <class id>`, 1-based), `classes.txt` (`<class id> <name>`),
 * `bounding_boxes.txt` (`<id> <x> <y> <w> <h>`, floats), `train_test_split.txt` (`<id> <1 = train>`),
 * `images/`. Splits: 'train' and 'test' (the set has no val split), in images.txt order.
 *
 * - `label` = class id − 1; `classes` = names from classes.txt (e.g. '001.Black_footed_Albatross').
 * - `bboxXywh` keeps the file's [x, y, w, h]; `boxes` follow the VisionSample contract (pixel
 *   indices, inclusive): [x, y, x + w − 1, y + h − 1]. TS-CAM and wsolevaluation instead build
 *   [x, y, x + w, y + h] and then treat it as inclusive (+1 in their IoU) — rebuild that from
 *   `bboxXywh` to reproduce them.
 */
import { join } from 'node:path';
import { IceError } from '@ice/core';
import type { Box, VisionSample } from '../dataset.types';
import { decodeImage, probeImage } from '../image/image-io';
import type { EncodedVisionSample } from '../dataset.types';
import { type FileDataset, badLine, checkIndex, readIndexLines, requireDir } from './dataset-files.util';

export const CUB_SPLITS: readonly string[] = ['train', 'test'];
export const CUB_INDEX_FILES = [
  'images.txt',
  'image_class_labels.txt',
  'classes.txt',
  'bounding_boxes.txt',
  'train_test_split.txt',
] as const;

export interface CubOptions {
  /** Apply EXIF orientation when decoding (default true). */
  autoOrient?: boolean;
}

export interface CubSample extends VisionSample {
  /** CUB's 1-based image id. */
  imageId: number;
  path: string;
  /** [x, y, w, h] as in bounding_boxes.txt. */
  bboxXywh: [number, number, number, number];
  boxes: Box[];
}

interface CubEntry {
  imageId: number;
  relPath: string;
  label: number;
  bbox: [number, number, number, number];
  isTrain: boolean;
}

/** `<int id> <rest>` lines → Map(id → fields after the id). */
function readIdTable(path: string, what: string, nFields: number | 'rest'): Map<number, string[]> {
  const out = new Map<number, string[]>();
  readIndexLines(path, what).forEach((line, k) => {
    const m = /^(\d+)\s+(.+)$/.exec(line);
    if (!m) throw badLine(path, k + 1, `expected "<id> …", got "${line}"`);
    const id = Number(m[1]);
    const fields = nFields === 'rest' ? [m[2]] : m[2].split(/\s+/);
    if (nFields !== 'rest' && fields.length !== nFields)
      throw badLine(path, k + 1, `expected ${nFields} value(s) after the id, got "${m[2]}"`);
    if (out.has(id)) throw badLine(path, k + 1, `duplicate id ${id}`);
    out.set(id, fields);
  });
  return out;
}

/** Reads and cross-checks the CUB index files (all of them, whatever the split). */
export function readCubIndex(root: string): { classes: string[]; entries: CubEntry[] } {
  requireDir(root, 'CUB-200-2011 root');
  const f = (name: (typeof CUB_INDEX_FILES)[number]): string => join(root, name);
  const images = readIdTable(f('images.txt'), 'CUB images list', 'rest');
  const labels = readIdTable(f('image_class_labels.txt'), 'CUB image class labels', 1);
  const classTable = readIdTable(f('classes.txt'), 'CUB class list', 'rest');
  const boxes = readIdTable(f('bounding_boxes.txt'), 'CUB bounding boxes', 4);
  const splits = readIdTable(f('train_test_split.txt'), 'CUB train/test split', 1);

  const nClasses = classTable.size;
  const classes: string[] = [];
  for (let c = 1; c <= nClasses; c++) {
    const row = classTable.get(c);
    if (!row)
      throw new IceError('INPUT_INVALID', `${f('classes.txt')}: class ids must be 1..${nClasses}, ${c} is missing`, {
        path: f('classes.txt'),
      });
    classes.push(row[0].trim());
  }
  const need = (table: Map<number, string[]>, name: string, id: number): string[] => {
    const row = table.get(id);
    if (!row) throw new IceError('INPUT_INVALID', `${join(root, name)}: no entry for image id ${id}`, { path: join(root, name) });
    return row;
  };
  const entries: CubEntry[] = [];
  for (const [imageId, [relPath]] of images) {
    const classId = Number(need(labels, 'image_class_labels.txt', imageId)[0]);
    if (!Number.isInteger(classId) || classId < 1 || classId > nClasses) {
      throw new IceError(
        'INPUT_INVALID',
        `${f('image_class_labels.txt')}: image ${imageId} has class ${classId}, expected 1..${nClasses}`,
        {
          path: f('image_class_labels.txt'),
        },
      );
    }
    const bbox = need(boxes, 'bounding_boxes.txt', imageId).map(Number) as [number, number, number, number];
    if (bbox.some((v) => !Number.isFinite(v))) {
      throw new IceError('INPUT_INVALID', `${f('bounding_boxes.txt')}: image ${imageId} has a non-numeric box`, {
        path: f('bounding_boxes.txt'),
      });
    }
    const flag = need(splits, 'train_test_split.txt', imageId)[0];
    if (flag !== '0' && flag !== '1') {
      throw new IceError('INPUT_INVALID', `${f('train_test_split.txt')}: image ${imageId} has split flag "${flag}", expected 0 or 1`, {
        path: f('train_test_split.txt'),
      });
    }
    entries.push({ imageId, relPath: relPath.trim(), label: classId - 1, bbox, isTrain: flag === '1' });
  }
  return { classes, entries };
}

export class CubDataset implements FileDataset<CubSample> {
  readonly format = 'cub' as const;
  readonly name = 'cub';
  readonly classes: string[];
  readonly length: number;
  private readonly entries: CubEntry[];
  private readonly autoOrient: boolean;

  constructor(
    readonly root: string,
    readonly split: string,
    opts: CubOptions = {},
  ) {
    if (!CUB_SPLITS.includes(split))
      throw new IceError('CONFIG_INVALID', `CUB-200-2011 has only 'train' and 'test' splits; got '${split}'`);
    const index = readCubIndex(root);
    requireDir(join(root, 'images'), 'CUB images folder');
    this.classes = index.classes;
    this.entries = index.entries.filter((e) => e.isTrain === (split === 'train'));
    this.length = this.entries.length;
    this.autoOrient = opts.autoOrient ?? true;
  }

  async get(i: number): Promise<CubSample> {
    checkIndex(i, this.length, `cub/${this.split}`);
    const e = this.entries[i];
    const path = join(this.root, 'images', e.relPath);
    const img = await decodeImage(path, { autoOrient: this.autoOrient });
    const [x, y, w, h] = e.bbox;
    return {
      id: `cub/${e.relPath}`,
      imageId: e.imageId,
      path,
      image: img.data,
      height: img.height,
      width: img.width,
      label: e.label,
      bboxXywh: [x, y, w, h],
      boxes: [[x, y, x + w - 1, y + h - 1]],
    };
  }

  /** Sample i with its image read but not decoded (header only: size after orientation). */
  async getEncoded(i: number): Promise<EncodedVisionSample & Omit<CubSample, 'image'>> {
    checkIndex(i, this.length, `cub/${this.split}`);
    const e = this.entries[i];
    const path = join(this.root, 'images', e.relPath);
    const encoded = await probeImage(path, this.autoOrient);
    const [x, y, w, h] = e.bbox;
    return {
      id: `cub/${e.relPath}`,
      imageId: e.imageId,
      path,
      encoded,
      height: encoded.height,
      width: encoded.width,
      label: e.label,
      bboxXywh: [x, y, w, h],
      boxes: [[x, y, x + w - 1, y + h - 1]],
    };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
