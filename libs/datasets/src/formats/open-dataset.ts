/**
 * One entry point for the file-backed formats: `openDataset` builds a loader, `inspectDataset`
 * summarises a data set on disk as JSON (splits and their sizes, classes, and for segmentation sets
 * the mean foreground fraction of the masks).
 */
import { join } from 'node:path';
import { IceError } from '@ice/core';
import { readLabelPng } from '../image/image-io';
import { CUB_SPLITS, type CubOptions, CubDataset, readCubIndex } from './cub.dataset';
import { DATASET_FORMATS, type DatasetFormat, type FileDataset, isDir, readIndexLines, requireDir } from './dataset-files.util';
import { type ImageNetFolderOptions, ImageNetFolderDataset, listClassFolders } from './imagenet-folder.dataset';
import { ImageNetSegDataset } from './imagenet-seg.dataset';
import { VOC_VOID, type VocOptions, VocDataset, vocClasses, vocSplits } from './voc.dataset';

export type OpenDatasetOptions = ImageNetFolderOptions & VocOptions & CubOptions;

function checkFormat(format: string): asserts format is DatasetFormat {
  if (!(DATASET_FORMATS as readonly string[]).includes(format)) {
    throw new IceError('CONFIG_INVALID', `unknown dataset format '${format}'; expected one of ${DATASET_FORMATS.join(', ')}`);
  }
}

/** Opens a data set in one of the supported on-disk formats. Close it when done (ImageNet-Seg holds a worker). */
export async function openDataset(format: DatasetFormat, root: string, split: string, opts: OpenDatasetOptions = {}): Promise<FileDataset> {
  checkFormat(format);
  switch (format) {
    case 'imagenet':
      return new ImageNetFolderDataset(root, split, opts);
    case 'imagenet-seg':
      return ImageNetSegDataset.open(root, split);
    case 'voc':
      return new VocDataset(root, split, opts);
    case 'cub':
      return new CubDataset(root, split, opts);
  }
}

export interface InspectOptions {
  /** At most this many masks are read for the foreground fraction, evenly spaced over the split (default 500; 0 = all). */
  foregroundSampleCap?: number;
}

export interface ForegroundStats {
  /** The split the masks come from. */
  split: string;
  /** Mean over images of (foreground pixels / all pixels); VOC: label ∉ {0, 255}, void counted as background. */
  meanForegroundFraction: number;
  imagesMeasured: number;
  /** Sampled masks that were missing or unreadable (left out of the mean). */
  imagesSkipped: number;
  imagesInSplit: number;
  /** The cap in force (null = every image measured). */
  cap: number | null;
}

export interface DatasetInspection {
  format: DatasetFormat;
  root: string;
  /** Split name → number of images. */
  splits: Record<string, number>;
  classes: { count: number; first: string[] };
  /** VOC only: the ImageSets/Segmentation lists (open with `task: 'segmentation'`). */
  segmentationSplits?: Record<string, number>;
  /** Segmentation sets only. */
  meanForegroundFraction?: number;
  foreground?: ForegroundStats;
  notes: string[];
}

const FIRST_CLASSES = 5;
const DEFAULT_FG_CAP = 500;

/** Evenly spaced indices (all of them when n ≤ cap or cap is 0). */
export function evenlySpaced(n: number, cap: number): number[] {
  const m = cap > 0 ? Math.min(n, cap) : n;
  return Array.from({ length: m }, (_, k) => Math.floor((k * n) / m));
}

async function foregroundStats(
  split: string,
  n: number,
  cap: number,
  readMask: (i: number) => Promise<{ data: Uint8Array }>,
  isForeground: (v: number) => boolean,
): Promise<ForegroundStats> {
  const idx = evenlySpaced(n, cap);
  let sum = 0;
  let measured = 0;
  let skipped = 0;
  for (const i of idx) {
    let data: Uint8Array;
    try {
      ({ data } = await readMask(i));
    } catch (err) {
      if (err instanceof IceError && (err.code === 'FILE_NOT_FOUND' || err.code === 'IMAGE_CORRUPT')) {
        skipped++;
        continue;
      }
      throw err;
    }
    let fg = 0;
    for (const v of data) if (isForeground(v)) fg++;
    sum += data.length > 0 ? fg / data.length : 0;
    measured++;
  }
  return {
    split,
    // null in JSON when nothing could be measured
    meanForegroundFraction: measured > 0 ? sum / measured : Number.NaN,
    imagesMeasured: measured,
    imagesSkipped: skipped,
    imagesInSplit: n,
    cap: cap > 0 && n > cap ? cap : null,
  };
}

function classSummary(classes: readonly string[]): { count: number; first: string[] } {
  return { count: classes.length, first: classes.slice(0, FIRST_CLASSES) };
}

/** Summarises a data set on disk (JSON-able). Errors as the loaders: FILE_NOT_FOUND for a missing root or index file. */
export async function inspectDataset(format: DatasetFormat, root: string, opts: InspectOptions = {}): Promise<DatasetInspection> {
  checkFormat(format);
  const cap = opts.foregroundSampleCap ?? DEFAULT_FG_CAP;
  const notes: string[] = [];
  switch (format) {
    case 'imagenet': {
      requireDir(root, 'ImageNet root');
      const splits: Record<string, number> = {};
      const classLists = new Map<string, string[]>();
      for (const name of listClassFolders(root)) {
        if (listClassFolders(join(root, name)).length === 0) continue; // not a split folder
        const ds = new ImageNetFolderDataset(root, name);
        splits[name] = ds.length;
        classLists.set(name, ds.classNames);
      }
      if (classLists.size === 0) throw new IceError('INPUT_INVALID', `no split folders with class sub-folders in ${root}`, { path: root });
      const ref = classLists.get('train') ?? [...classLists.values()][0];
      for (const [name, list] of classLists) {
        if (list.length !== ref.length || list.some((c, k) => c !== ref[k])) {
          notes.push(
            `split '${name}' has ${list.length} classes that differ from the reference list (${ref.length}); its label indices differ`,
          );
        }
      }
      return { format, root, splits, classes: classSummary(ref), notes };
    }
    case 'imagenet-seg': {
      const ds = await ImageNetSegDataset.open(root, 'test');
      try {
        const fg = await foregroundStats(
          'test',
          ds.length,
          cap,
          (i) => ds.getMask(i),
          (v) => v !== 0,
        );
        notes.push('no class labels in this set (label = -1)');
        return {
          format,
          root,
          splits: { test: ds.length },
          classes: classSummary([]),
          meanForegroundFraction: fg.meanForegroundFraction,
          foreground: fg,
          notes,
        };
      } finally {
        await ds.close();
      }
    }
    case 'voc': {
      requireDir(root, 'VOC root (the VOC20xx folder holding JPEGImages/)');
      const classes = vocClasses(root);
      const count = (task: 'detection' | 'segmentation'): Record<string, number> => {
        const out: Record<string, number> = {};
        const dir = join(root, 'ImageSets', task === 'detection' ? 'Main' : 'Segmentation');
        for (const s of vocSplits(root, task, classes)) out[s] = readIndexLines(join(dir, `${s}.txt`), 'VOC split list').length;
        return out;
      };
      const splits = count('detection');
      const segmentationSplits = count('segmentation');
      const result: DatasetInspection = { format, root, splits, classes: classSummary(classes), segmentationSplits, notes };
      const segNames = Object.keys(segmentationSplits);
      if (segNames.length > 0 && isDir(join(root, 'SegmentationClass'))) {
        const split = segNames.includes('val') ? 'val' : segNames[0];
        const ds = new VocDataset(root, split, { task: 'segmentation' });
        const fg = await foregroundStats(
          split,
          ds.length,
          cap,
          (i) => readLabelPng(ds.maskPath(ds.ids[i])),
          (v) => v !== 0 && v !== VOC_VOID,
        );
        result.meanForegroundFraction = fg.meanForegroundFraction;
        result.foreground = fg;
        if (fg.imagesSkipped > 0)
          notes.push(`${fg.imagesSkipped} mask(s) of '${split}' missing or unreadable, left out of meanForegroundFraction`);
      }
      if (Object.keys(splits).length === 0) notes.push('no ImageSets/Main split lists');
      return result;
    }
    case 'cub': {
      const { classes, entries } = readCubIndex(root);
      const splits: Record<string, number> = {};
      for (const s of CUB_SPLITS) splits[s] = entries.filter((e) => e.isTrain === (s === 'train')).length;
      notes.push('boxes only (no masks in the base CUB-200-2011 archive)');
      return { format, root, splits, classes: classSummary(classes), notes };
    }
  }
}
