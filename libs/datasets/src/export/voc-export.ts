/**
 * Writes the built-in `digits` benchmark to disk in PASCAL VOC layout, so the VOC code paths (and
 * any VOC tool) run on it:
 *
 *   <out>/JPEGImages/<id>.jpg               the RGB canvas (JPEG, 4:4:4)
 *   <out>/SegmentationClass/<id>.png        palette PNG: 0 background, digit + 1 on the digit pixels
 *   <out>/Annotations/<id>.xml              one <object> per digit instance, bndbox 1-based inclusive
 *   <out>/ImageSets/Segmentation/<split>.txt and ImageSets/Main/<split>.txt   the ids of each split
 *   <out>/ImageSets/Main/<class>_<split>.txt  per-class presence lists (id ±1), as VOC has them
 *   <out>/classes.txt                       the custom class list ('0' … '9', mask index k ↔ line k)
 *
 * Ids are `<split>_<index, 6 digits>`; with train and val both written, `trainval` lists are added.
 * Files of an earlier export in the same folder are overwritten, other files are left alone.
 * Library: sharp writes the JPEGs (as the decoders read them), fast-png the palette PNGs (sharp
 * cannot write palette indices exactly).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { IceError } from '@ice/core';
import { encode as encodePng } from 'fast-png';
import sharp from 'sharp';
import type { Box } from '../dataset.types';
import { DIGIT_CLASSES, DigitsDataset, type DigitsSample } from '../digits/digits.dataset';
import { DIGIT_SPLITS, type DigitSplit, type MnistSource } from '../digits/mnist-source';

export interface DigitsVocExportOptions {
  outDir: string;
  /** Default: train, val and test. */
  splits?: readonly DigitSplit[];
  /** At most this many samples per split (default: the whole split). */
  limit?: number;
  /** Canvas side (default 64, the digits default). */
  canvasSize?: number;
  /** Digits seed (default 0). */
  seed?: number;
  /** JPEG quality 1–100 (default 95). */
  jpegQuality?: number;
  /** Samples generated and written at once (default 4). */
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
  /** The MNIST digits (default: the `mnist` package's). */
  source?: MnistSource;
}

export interface DigitsVocExportResult {
  outDir: string;
  classes: string[];
  /** Split → number of images written (trainval included when written). */
  splits: Record<string, number>;
  images: number;
}

/** The PASCAL VOC colour map (index → RGB), as the VOC devkit's labelcolormap(256). */
export function vocColormap(): number[][] {
  return Array.from({ length: 256 }, (_, i) => {
    let [r, g, b, c] = [0, 0, 0, i];
    for (let j = 0; j < 8; j++) {
      r |= (c & 1) << (7 - j);
      g |= ((c >> 1) & 1) << (7 - j);
      b |= ((c >> 2) & 1) << (7 - j);
      c >>= 3;
    }
    return [r, g, b];
  });
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** A VOC annotation for one image; `boxes` are 0-based inclusive (written 1-based, as VOC). */
export function vocAnnotationXml(
  id: string,
  width: number,
  height: number,
  objects: { name: string; box: Box }[],
  database = 'ICE digits',
): string {
  const objs = objects
    .map(({ name, box }) => {
      const truncated = box[0] <= 0 || box[1] <= 0 || box[2] >= width - 1 || box[3] >= height - 1 ? 1 : 0;
      return [
        '  <object>',
        `    <name>${escapeXml(name)}</name>`,
        '    <pose>Unspecified</pose>',
        `    <truncated>${truncated}</truncated>`,
        '    <difficult>0</difficult>',
        '    <bndbox>',
        `      <xmin>${box[0] + 1}</xmin>`,
        `      <ymin>${box[1] + 1}</ymin>`,
        `      <xmax>${box[2] + 1}</xmax>`,
        `      <ymax>${box[3] + 1}</ymax>`,
        '    </bndbox>',
        '  </object>',
      ].join('\n');
    })
    .join('\n');
  return [
    '<annotation>',
    '  <folder>VOC</folder>',
    `  <filename>${escapeXml(id)}.jpg</filename>`,
    `  <source><database>${escapeXml(database)}</database></source>`,
    `  <size><width>${width}</width><height>${height}</height><depth>3</depth></size>`,
    '  <segmented>1</segmented>',
    ...(objs ? [objs] : []),
    '</annotation>',
    '',
  ].join('\n');
}

function toU8(image: Float32Array): Uint8Array {
  const out = new Uint8Array(image.length);
  for (let i = 0; i < image.length; i++) out[i] = Math.round(Math.min(1, Math.max(0, image[i])) * 255);
  return out;
}

/** The VOC label map of a digits sample: digit + 1 where the mask is set, 0 elsewhere. */
export function digitsLabelMap(sample: DigitsSample): Uint8Array {
  const out = new Uint8Array(sample.mask.length);
  const v = sample.label + 1;
  for (let i = 0; i < out.length; i++) out[i] = sample.mask[i] ? v : 0;
  return out;
}

export function digitsVocId(split: DigitSplit, index: number): string {
  return `${split}_${String(index).padStart(6, '0')}`;
}

async function writeSample(outDir: string, id: string, s: DigitsSample, quality: number, palette: number[][]): Promise<void> {
  await sharp(Buffer.from(toU8(s.image)), { raw: { width: s.width, height: s.height, channels: 3 } })
    .jpeg({ quality, chromaSubsampling: '4:4:4' })
    .toFile(join(outDir, 'JPEGImages', `${id}.jpg`));
  const png = encodePng({ width: s.width, height: s.height, data: digitsLabelMap(s), depth: 8, channels: 1, palette });
  await writeFile(join(outDir, 'SegmentationClass', `${id}.png`), png);
  const xml = vocAnnotationXml(
    id,
    s.width,
    s.height,
    s.boxes.map((box) => ({ name: DIGIT_CLASSES[s.label], box })),
  );
  await writeFile(join(outDir, 'Annotations', `${id}.xml`), xml);
}

export async function exportDigitsToVoc(opts: DigitsVocExportOptions): Promise<DigitsVocExportResult> {
  const splits = [...new Set(opts.splits ?? DIGIT_SPLITS)];
  for (const s of splits) {
    if (!DIGIT_SPLITS.includes(s))
      throw new IceError('CONFIG_INVALID', `digits split must be one of ${DIGIT_SPLITS.join(', ')}, got '${String(s)}'`);
  }
  if (splits.length === 0) throw new IceError('CONFIG_INVALID', 'no split to export');
  const limit = opts.limit;
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1))
    throw new IceError('CONFIG_INVALID', `limit must be a positive integer, got ${limit}`);
  const quality = opts.jpegQuality ?? 95;
  if (!Number.isInteger(quality) || quality < 1 || quality > 100)
    throw new IceError('CONFIG_INVALID', `JPEG quality must be an integer in [1, 100], got ${quality}`);
  const concurrency = Math.max(1, opts.concurrency ?? 4);

  const datasets = splits.map((split) => {
    const base = { split, canvasSize: opts.canvasSize, seed: opts.seed };
    const full = opts.source ? new DigitsDataset(base, opts.source) : new DigitsDataset(base);
    const n = limit !== undefined ? Math.min(limit, full.length) : full.length;
    return { split, ds: full, n };
  });
  const total = datasets.reduce((a, d) => a + d.n, 0);

  const { outDir } = opts;
  try {
    for (const dir of ['JPEGImages', 'SegmentationClass', 'Annotations', join('ImageSets', 'Segmentation'), join('ImageSets', 'Main')]) {
      await mkdir(join(outDir, dir), { recursive: true });
    }
  } catch (err) {
    throw new IceError('FILE_NOT_FOUND', `cannot create the export folder ${outDir}: ${err instanceof Error ? err.message : String(err)}`, {
      path: outDir,
    });
  }

  const palette = vocColormap();
  const ids: Record<string, string[]> = {};
  const labelsOf = new Map<string, number>();
  let done = 0;
  opts.onProgress?.(0, total);
  for (const { split, ds, n } of datasets) {
    const list: string[] = [];
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < n) {
        const i = next++;
        const s = ds.get(i);
        const id = digitsVocId(split, i);
        await writeSample(outDir, id, s, quality, palette);
        labelsOf.set(id, s.label);
        done++;
        opts.onProgress?.(done, total);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, n) }, lane));
    for (let i = 0; i < n; i++) list.push(digitsVocId(split, i));
    ids[split] = list;
  }
  if (ids.train && ids.val) ids.trainval = [...ids.train, ...ids.val];

  const classes = [...DIGIT_CLASSES];
  const counts: Record<string, number> = {};
  for (const [split, list] of Object.entries(ids)) {
    const text = list.map((id) => `${id}\n`).join('');
    await writeFile(join(outDir, 'ImageSets', 'Segmentation', `${split}.txt`), text);
    await writeFile(join(outDir, 'ImageSets', 'Main', `${split}.txt`), text);
    for (let c = 0; c < classes.length; c++) {
      const lines = list.map((id) => `${id} ${labelsOf.get(id) === c ? ' 1' : '-1'}\n`).join('');
      await writeFile(join(outDir, 'ImageSets', 'Main', `${classes[c]}_${split}.txt`), lines);
    }
    counts[split] = list.length;
  }
  await writeFile(join(outDir, 'classes.txt'), classes.map((c) => `${c}\n`).join(''));
  return { outDir, classes, splits: counts, images: total };
}
