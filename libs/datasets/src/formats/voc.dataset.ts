/**
 * PASCAL VOC 2007/2012 (or any data set in VOC layout) from `<root>` = the VOC20xx folder:
 * `JPEGImages/<id>.jpg`, `Annotations/<id>.xml`, `SegmentationClass/<id>.png`,
 * `ImageSets/{Main,Segmentation}/<split>.txt`.
 *
 * - `task` picks the image list: 'detection' → ImageSets/Main/<split>.txt (default),
 *   'segmentation' → ImageSets/Segmentation/<split>.txt (the mask must then exist). Either way a
 *   sample carries whatever the files have: objects/boxes if its XML exists, masks if its PNG exists.
 * - Masks are palette PNGs read as palette INDICES (image-io readLabelPng; sharp would expand them
 *   to RGB): `segmentation` keeps the labels (0 = background, k = classes[k-1], 255 = void);
 *   `mask` is the binary foreground (label ∉ {0, 255}; void counts as background, as in the
 *   reference Jaccard where G_k = (gt == k)).
 * - Objects keep the XML's values: `bndbox` 1-based [xmin, ymin, xmax, ymax] as in the files, and
 *   the difficult/truncated flags. `boxes` follow the VisionSample contract (0-based pixel indices,
 *   inclusive): bndbox − 1. (LOST's CorLoc uses [xmin−1, ymin−1, xmax, ymax] continuous; rebuild it
 *   from `objects` if needed.) Difficult objects are included unless `includeDifficult: false`.
 * - `label` (one class per sample is all VisionSample allows) is the class of the first
 *   non-difficult object in the XML (first object if all are difficult), -1 with no objects;
 *   `labels` lists every class present.
 * - Classes: the 20 VOC classes, or `<root>/classes.txt` (one name a line, object classes only,
 *   in mask-index order 1..K; a leading 'background'/'__background__' line is dropped), or
 *   `opts.classes`.
 *
 * XML library: `fast-xml-parser` (pure JS, no native build, widely used and maintained).
 */
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { IceError } from '@ice/core';
import { XMLParser } from 'fast-xml-parser';
import type { Box, VisionSample } from '../dataset.types';
import { decodeImage, probeImage, readLabelPng } from '../image/image-io';
import type { EncodedVisionSample } from '../dataset.types';
import { type FileDataset, checkIndex, isDir, isFile, readIndexLines, requireDir } from './dataset-files.util';

export const VOC_CLASSES: readonly string[] = [
  'aeroplane',
  'bicycle',
  'bird',
  'boat',
  'bottle',
  'bus',
  'car',
  'cat',
  'chair',
  'cow',
  'diningtable',
  'dog',
  'horse',
  'motorbike',
  'person',
  'pottedplant',
  'sheep',
  'sofa',
  'train',
  'tvmonitor',
];
export const VOC_VOID = 255;
export type VocTask = 'detection' | 'segmentation';

export interface VocOptions {
  /** Which ImageSets list to read (default 'detection' = ImageSets/Main). */
  task?: VocTask;
  /** Overrides the default/ classes.txt class list. */
  classes?: string[];
  /** Keep difficult objects in `boxes` (default true; they stay in `objects` regardless). */
  includeDifficult?: boolean;
  /** Apply EXIF orientation when decoding (default true). */
  autoOrient?: boolean;
}

export interface VocObject {
  name: string;
  classIndex: number;
  /** [xmin, ymin, xmax, ymax], 1-based, as written in the XML. */
  bndbox: Box;
  difficult: boolean;
  truncated: boolean;
}

export interface VocSample extends VisionSample {
  /** Image id (file stem), e.g. '2007_000032'. */
  imageId: string;
  objects: VocObject[];
  /** Every class index present among the objects, ascending. */
  labels: number[];
  boxes: Box[];
  /** Label map (0 background, k ↔ classes[k-1], 255 void), when the mask PNG exists. */
  segmentation?: Uint8Array;
}

/** Class list of a VOC-layout root: opts.classes, else `<root>/classes.txt`, else the 20 VOC classes. */
export function vocClasses(root: string, override?: string[]): string[] {
  if (override) return [...override];
  const file = join(root, 'classes.txt');
  if (!isFile(file)) return [...VOC_CLASSES];
  const lines = readIndexLines(file, 'class list');
  if (lines.length > 0 && /^_*background_*$/i.test(lines[0])) lines.shift();
  if (lines.length === 0) throw new IceError('INPUT_INVALID', `class list ${file} names no classes`, { path: file });
  if (lines.length > 254)
    throw new IceError('INPUT_INVALID', `class list ${file} has ${lines.length} classes; VOC masks hold at most 254`, { path: file });
  return lines;
}

/** Splits listed in ImageSets/<Main|Segmentation> (per-class lists `<class>_<split>.txt` excluded). */
export function vocSplits(root: string, task: VocTask, classes: readonly string[]): string[] {
  const dir = join(root, 'ImageSets', task === 'detection' ? 'Main' : 'Segmentation');
  if (!isDir(dir)) return [];
  return readdirSync(dir)
    .filter((n) => n.endsWith('.txt') && !classes.some((c) => n.startsWith(`${c}_`)))
    .map((n) => n.slice(0, -4))
    .sort();
}

const xmlParser = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false,
  trimValues: true,
  isArray: (_name, jpath) => jpath === 'annotation.object',
});

interface RawObject {
  name?: unknown;
  difficult?: unknown;
  truncated?: unknown;
  bndbox?: Record<string, unknown>;
}

/** Parses a VOC annotation XML into objects (class names checked against `classes`). */
export function parseVocAnnotation(xml: string, path: string, classes: readonly string[]): VocObject[] {
  let doc: unknown;
  try {
    doc = xmlParser.parse(xml, true);
  } catch (err) {
    throw new IceError('INPUT_INVALID', `cannot parse annotation ${path}: ${err instanceof Error ? err.message : String(err)}`, { path });
  }
  const ann = (doc as { annotation?: { object?: RawObject[] } }).annotation;
  if (!ann || typeof ann !== 'object') throw new IceError('INPUT_INVALID', `annotation ${path} has no <annotation> element`, { path });
  return (ann.object ?? []).map((o, k) => {
    const where = `annotation ${path}, object ${k + 1}`;
    const name = typeof o.name === 'string' ? o.name.trim() : '';
    const classIndex = classes.indexOf(name);
    if (classIndex < 0) throw new IceError('INPUT_INVALID', `${where}: class "${name}" is not in the class list`, { path });
    const bb = o.bndbox;
    if (!bb) throw new IceError('INPUT_INVALID', `${where}: no <bndbox>`, { path });
    const bndbox = (['xmin', 'ymin', 'xmax', 'ymax'] as const).map((key) => {
      const v = Number(bb[key]);
      if (bb[key] === undefined || bb[key] === '' || !Number.isFinite(v)) {
        throw new IceError('INPUT_INVALID', `${where}: bndbox ${key} is not a number (${String(bb[key])})`, { path });
      }
      return v;
    }) as Box;
    return { name, classIndex, bndbox, difficult: Number(o.difficult ?? 0) === 1, truncated: Number(o.truncated ?? 0) === 1 };
  });
}

export class VocDataset implements FileDataset<VocSample> {
  readonly format = 'voc' as const;
  readonly name = 'voc';
  readonly classes: string[];
  readonly length: number;
  readonly task: VocTask;
  /** Image ids of the split, in list order. */
  readonly ids: string[];
  private readonly includeDifficult: boolean;
  private readonly autoOrient: boolean;

  constructor(
    readonly root: string,
    readonly split: string,
    opts: VocOptions = {},
  ) {
    requireDir(root, 'VOC root (the VOC20xx folder holding JPEGImages/)');
    requireDir(join(root, 'JPEGImages'), 'VOC JPEGImages folder');
    this.task = opts.task ?? 'detection';
    const list = join(root, 'ImageSets', this.task === 'detection' ? 'Main' : 'Segmentation', `${split}.txt`);
    // Main/<split>.txt has one id a line; a per-class list adds a ±1 column — only the id is taken.
    this.ids = readIndexLines(list, `VOC ${this.task} split "${split}" list`).map((l) => l.split(/\s+/)[0]);
    if (this.task === 'segmentation') requireDir(join(root, 'SegmentationClass'), 'VOC SegmentationClass folder');
    this.classes = vocClasses(root, opts.classes);
    this.length = this.ids.length;
    this.includeDifficult = opts.includeDifficult ?? true;
    this.autoOrient = opts.autoOrient ?? true;
  }

  imagePath(id: string): string {
    return join(this.root, 'JPEGImages', `${id}.jpg`);
  }

  maskPath(id: string): string {
    return join(this.root, 'SegmentationClass', `${id}.png`);
  }

  annotationPath(id: string): string {
    return join(this.root, 'Annotations', `${id}.xml`);
  }

  async get(i: number): Promise<VocSample> {
    checkIndex(i, this.length, `voc/${this.split}`);
    const id = this.ids[i];
    const img = await decodeImage(this.imagePath(id), { autoOrient: this.autoOrient });
    return { ...(await this.annotations(id, img.height, img.width)), image: img.data };
  }

  /** Sample i with its image read but not decoded (header only: size after orientation); annotations as `get`. */
  async getEncoded(i: number): Promise<EncodedVisionSample & Omit<VocSample, 'image'>> {
    checkIndex(i, this.length, `voc/${this.split}`);
    const id = this.ids[i];
    const encoded = await probeImage(this.imagePath(id), this.autoOrient);
    return { ...(await this.annotations(id, encoded.height, encoded.width)), encoded };
  }

  /** Everything of sample `id` but its pixels, for an image of height × width. */
  private async annotations(id: string, height: number, width: number): Promise<Omit<VocSample, 'image'>> {
    const objects = await this.readObjects(id);
    const sample: Omit<VocSample, 'image'> = {
      id: `voc/${id}`,
      imageId: id,
      height,
      width,
      label: (objects.find((o) => !o.difficult) ?? objects[0])?.classIndex ?? -1,
      labels: [...new Set(objects.map((o) => o.classIndex))].sort((a, b) => a - b),
      objects,
      boxes: objects
        .filter((o) => this.includeDifficult || !o.difficult)
        .map((o) => [o.bndbox[0] - 1, o.bndbox[1] - 1, o.bndbox[2] - 1, o.bndbox[3] - 1] as Box),
    };
    const maskPath = this.maskPath(id);
    if (this.task === 'segmentation' || isFile(maskPath)) {
      const seg = await this.readSegmentation(maskPath, height, width);
      sample.segmentation = seg;
      sample.mask = seg.map((v) => (v !== 0 && v !== VOC_VOID ? 1 : 0));
    }
    return sample;
  }

  private async readObjects(id: string): Promise<VocObject[]> {
    const path = this.annotationPath(id);
    if (!isFile(path)) return [];
    return parseVocAnnotation(await readFile(path, 'utf8'), path, this.classes);
  }

  private async readSegmentation(path: string, height: number, width: number): Promise<Uint8Array> {
    const m = await readLabelPng(path);
    if (m.height !== height || m.width !== width) {
      throw new IceError('INPUT_INVALID', `mask ${path} is ${m.height}×${m.width} but its image is ${height}×${width}`, { path });
    }
    const k = this.classes.length;
    for (const v of m.data) {
      if (v > k && v !== VOC_VOID)
        throw new IceError('INPUT_INVALID', `mask ${path} has label ${v}, but there are only ${k} classes (and 255 = void)`, { path });
    }
    return m.data;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
