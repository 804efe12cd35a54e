/**
 * What crosses the thread boundary of the input pipeline: plain, structured-cloneable data only
 * (datasets themselves cannot be sent to a worker thread, so each thread opens its own from a spec).
 */
import type { Box } from '../dataset.types';
import type { DigitsOptions } from '../digits/digits.dataset';
import type { DatasetFormat } from '../formats/dataset-files.util';
import type { OpenDatasetOptions } from '../formats/open-dataset';
import type { TransformSpec } from '../transforms/augment.transform';

/** How to open a dataset, in any thread: the built-in digits, or a file-backed format under `root`. */
export type DatasetSpec =
  | { format: 'digits'; split: DigitsOptions['split']; options?: Omit<DigitsOptions, 'split'> }
  | { format: DatasetFormat; root: string; split: string; options?: OpenDatasetOptions };

export type PipelineFormat = DatasetSpec['format'];

/**
 * What to do with a batch that lost samples to bad data: 'repeat' fills the batch back to its size
 * with the batch's good samples (in order), so shapes stay fixed (mixup needs an even batch);
 * 'shrink' yields the smaller batch.
 */
export type BadSamplePolicy = 'repeat' | 'shrink';

/** A sample left out because it could not be read, decoded or transformed. */
export interface SkippedSample {
  /** Index in the dataset. */
  index: number;
  /** File the problem is in, when known. */
  path?: string;
  /** IceError code (IMAGE_CORRUPT, FILE_NOT_FOUND, …) or 'UNKNOWN'. */
  code: string;
  message: string;
}

export interface DescribeTask {
  kind: 'describe';
  dataset: DatasetSpec;
}

export interface BatchTask {
  kind: 'batch';
  dataset: DatasetSpec;
  transform: TransformSpec;
  /** Dataset indices of the batch, in order. */
  indices: number[];
  seed: number;
  epoch: number;
  withMasks: boolean;
  withBoxes: boolean;
  onBadSample: BadSamplePolicy;
  /** Samples of the batch read and transformed concurrently (I/O overlap inside one thread). */
  sampleConcurrency: number;
}

export type WorkerTask = DescribeTask | BatchTask;

export interface DatasetDescription {
  name: string;
  split: string;
  length: number;
  classes: string[];
}

/** One batch as built by a worker: NCHW images normalised, labels, and what was asked for. */
export interface BuiltBatch {
  /** N×3×H×W, normalised. Empty (N = 0) when every sample of the batch was bad. */
  x: Float32Array;
  shape: [number, number, number, number];
  labels: Int32Array;
  /** Dataset index of each row (a repeated row repeats its index). */
  indices: number[];
  ids: string[];
  /** N×H×W {0,1} when masks were asked for. */
  masks?: Uint8Array;
  /** Per row, when boxes were asked for. */
  boxes?: Box[][];
  skipped: SkippedSample[];
  /** Rows that repeat a good sample in place of a skipped one (policy 'repeat'). */
  repeated: number;
  /** When the batch was finished (Date.now(), a clock all threads share) and how long it took to build. */
  timing: { finishedAt: number; buildMs: number };
}

export interface SerializedError {
  name: string;
  code?: string;
  message: string;
  details?: Record<string, unknown>;
}

export type WorkerReply<T = unknown> = { ok: true; value: T } | { ok: false; error: SerializedError };
