/** Opening a dataset from its serialisable spec (done once per thread), and the epoch's sample order. */
import { IceError, type IceErrorCode, Rng } from '@ice/core';
import type { VisionDataset } from '../dataset.types';
import { DigitsDataset } from '../digits/digits.dataset';
import { DATASET_FORMATS } from '../formats/dataset-files.util';
import { openDataset } from '../formats/open-dataset';
import type { DatasetSpec, SerializedError } from './pipeline.types';

export interface OpenedDataset {
  dataset: VisionDataset;
  close(): Promise<void>;
}

export const PIPELINE_FORMATS: readonly DatasetSpec['format'][] = [...DATASET_FORMATS, 'digits'];

/** CONFIG_INVALID unless the spec names a known format, a split, and (file formats) a root. */
export function validateDatasetSpec(spec: DatasetSpec): void {
  if (!spec || typeof spec !== 'object') throw new IceError('CONFIG_INVALID', 'dataset spec must be an object');
  if (!PIPELINE_FORMATS.includes(spec.format)) {
    throw new IceError('CONFIG_INVALID', `unknown dataset format '${String(spec.format)}'; expected one of ${PIPELINE_FORMATS.join(', ')}`);
  }
  if (typeof spec.split !== 'string' || spec.split.length === 0)
    throw new IceError('CONFIG_INVALID', `dataset spec for ${spec.format} needs a split`);
  if (spec.format !== 'digits' && (typeof spec.root !== 'string' || spec.root.length === 0)) {
    throw new IceError('CONFIG_INVALID', `dataset spec for ${spec.format} needs a root directory`);
  }
}

export async function openDatasetSpec(spec: DatasetSpec): Promise<OpenedDataset> {
  validateDatasetSpec(spec);
  if (spec.format === 'digits') {
    return { dataset: new DigitsDataset({ ...spec.options, split: spec.split }), close: () => Promise.resolve() };
  }
  const ds = await openDataset(spec.format, spec.root, spec.split, spec.options ?? {});
  return { dataset: ds, close: () => ds.close() };
}

/** A stable key for caching opened datasets by spec. */
export function datasetSpecKey(spec: DatasetSpec): string {
  return JSON.stringify(spec, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

/**
 * The samples rank `rank` of `worldSize` sees in epoch `epoch`: the epoch's permutation seeded by
 * (seed, epoch) — the same as `batchIndices` in @ice/experiments — and every worldSize-th position
 * from `rank`. Each rank gets floor(length / worldSize) samples, so the ranks see disjoint slices of
 * equal size (at most worldSize − 1 samples of the epoch are left out). Without shuffling the order
 * is 0, 1, 2, … sharded the same way.
 */
export function epochOrder(length: number, seed: number, epoch: number, rank = 0, worldSize = 1, shuffle = true): number[] {
  checkShard(length, rank, worldSize);
  if (!Number.isInteger(epoch) || epoch < 0) throw new IceError('INPUT_INVALID', `epoch must be a non-negative integer, got ${epoch}`);
  const perm = shuffle ? new Rng(seed * 100_003 + epoch).permutation(length) : Array.from({ length }, (_, i) => i);
  const per = Math.floor(length / worldSize);
  return Array.from({ length: per }, (_, k) => perm[k * worldSize + rank]);
}

function checkShard(length: number, rank: number, worldSize: number): void {
  if (!Number.isInteger(length) || length < 1)
    throw new IceError('INPUT_INVALID', `dataset length must be a positive integer, got ${length}`);
  if (!Number.isInteger(worldSize) || worldSize < 1)
    throw new IceError('CONFIG_INVALID', `worldSize must be a positive integer, got ${worldSize}`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize)
    throw new IceError('CONFIG_INVALID', `rank must be an integer in [0, ${worldSize}), got ${rank}`);
  if (worldSize > length) throw new IceError('CONFIG_INVALID', `worldSize ${worldSize} exceeds the dataset's ${length} samples`);
}

/** The epoch order cut into batches (the last one smaller unless dropLast). */
export function epochBatches(order: readonly number[], batchSize: number, dropLast: boolean): number[][] {
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new IceError('CONFIG_INVALID', `batchSize must be a positive integer, got ${batchSize}`);
  const out: number[][] = [];
  for (let b = 0; b < order.length; b += batchSize) {
    const chunk = order.slice(b, b + batchSize);
    if (chunk.length < batchSize && dropLast) break;
    out.push(chunk);
  }
  return out;
}

/** Seed of one sample's augmentation Rng: a hash of (seed, epoch, dataset index), so it does not depend on batching or threads. */
export function sampleSeed(seed: number, epoch: number, index: number): number {
  let h = 0x3c6ef372;
  for (const v of [seed >>> 0, Math.floor(seed / 0x100000000) >>> 0, epoch >>> 0, index >>> 0]) {
    h = Math.imul(h ^ v, 0x9e3779b1);
    h ^= h >>> 15;
    h = Math.imul(h, 0x85ebca77);
    h ^= h >>> 13;
  }
  return h >>> 0;
}

const ICE_CODES: readonly IceErrorCode[] = [
  'WEIGHTS_FORMAT',
  'WEIGHTS_MISMATCH',
  'CONFIG_INVALID',
  'FILE_NOT_FOUND',
  'INPUT_INVALID',
  'NON_FINITE_LOSS',
  'BACKEND_UNAVAILABLE',
  'CHECKPOINT_INVALID',
  'CANCELLED',
  'IMAGE_CORRUPT',
];

function isIceErrorCode(code: unknown): code is IceErrorCode {
  return typeof code === 'string' && (ICE_CODES as readonly string[]).includes(code);
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof IceError)
    return { name: err.name, code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) };
  if (err instanceof Error) return { name: err.name, message: err.message };
  return { name: 'Error', message: String(err) };
}

/** The error again on this side of the thread boundary (IceErrors keep their code and details). */
export function deserializeError(e: SerializedError): Error {
  if (isIceErrorCode(e.code)) return new IceError(e.code, e.message, e.details);
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}

/** The file a failure names (IceError details.path), if any. */
export function errorPath(err: unknown): string | undefined {
  if (err instanceof IceError && err.details && typeof err.details.path === 'string') return err.details.path;
  return undefined;
}
