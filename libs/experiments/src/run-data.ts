import { availableParallelism } from 'node:os';
import {
  BatchLoader,
  type DatasetSpec,
  DigitsDataset,
  type Batch,
  epochBatches,
  epochOrder,
  loadMnistSource,
  type VisionDataset,
  type VisionSample,
} from '@ice/datasets';
import { IceError } from '@ice/core';
import type { RunConfig } from './run.contract';

/** Canvases per training digit: a fixed set of 8,006 images is too small for a ViT trained from scratch, and fresh canvases cost nothing. */
export const TRAIN_CANVASES_PER_DIGIT = 20;

/**
 * The run's training split as a serialisable spec, so that the input pipeline's worker threads
 * open the very same dataset: digits 'train' at the model's input size, seeded by the run, with
 * TRAIN_CANVASES_PER_DIGIT canvases per training digit.
 */
export function trainDatasetSpec(config: RunConfig, imgSize: number): DatasetSpec {
  switch (config.data.format) {
    case 'digits':
      return {
        format: 'digits',
        split: 'train',
        options: { canvasSize: imgSize, seed: config.seed, length: TRAIN_CANVASES_PER_DIGIT * loadMnistSource().refs('train').length },
      };
    case 'imagenet':
    case 'voc':
    case 'cub':
      throw new IceError(
        'CONFIG_INVALID',
        `training on ${config.data.format} needs the file-backed input pipeline, which is not wired into runs yet; use data.format "digits"`,
      );
  }
}

export interface RunData {
  train: VisionDataset;
  evaluation: VisionDataset;
  /** Batches of the training stream per epoch and rank (see batchesPerEpoch): what an epoch is for this run. */
  batchesPerEpoch: number;
}

/** The run's training and evaluation splits at the model's input size. */
export function openRunData(config: RunConfig, imgSize: number): RunData {
  const spec = trainDatasetSpec(config, imgSize);
  if (spec.format !== 'digits') throw new IceError('CONFIG_INVALID', `unexpected training data format ${spec.format}`);
  const train = new DigitsDataset({ ...spec.options, split: spec.split });
  return {
    train,
    // Evaluation images do not depend on the run's seed: every cell of a sweep is scored on the same images.
    evaluation: new DigitsDataset({ split: 'test', canvasSize: imgSize, seed: 0 }),
    batchesPerEpoch: batchesPerEpoch(train.length, config.data.batchSize, config.worldSize),
  };
}

/**
 * Epochs of the training split a run has seen after `step` optimizer updates (fractional): the
 * update's last micro-batch is position step·accumSteps of the batch stream, and an epoch is
 * `perEpoch` positions (the same for every rank: each takes its shard of every batch).
 */
export function epochsSeen(step: number, accumSteps: number, perEpoch: number): number {
  return (step * accumSteps) / perEpoch;
}

/**
 * The batch stream of a run. Position p of the stream (micro-batch m of update s is position
 * s·accumSteps + m) is batch p mod E of epoch ⌊p / E⌋, where E = batchesPerEpoch: each epoch is a
 * permutation of the split seeded by (seed, epoch), rank r of w takes every w-th sample of it (the
 * ranks see disjoint slices), cut into full batches (the epoch's last, partial batch is left out
 * so every step sees `batchSize` samples). It is a pure function of (seed, position), so a resumed
 * run, or a job redelivered to another worker, sees exactly the batches it would have seen.
 * This is the order `BatchLoader` yields with `dropLast`, which `TrainBatchStream` feeds from.
 */
export function batchesPerEpoch(length: number, batchSize: number, worldSize = 1): number {
  const n = Math.floor(Math.floor(length / worldSize) / batchSize);
  if (n < 1)
    throw new IceError(
      'CONFIG_INVALID',
      `data.batchSize ${batchSize} exceeds the ${Math.floor(length / worldSize)} training samples per epoch and rank`,
    );
  return n;
}

/** Where position `position` of the stream lies: epoch and batch within the epoch. */
export function streamPosition(position: number, perEpoch: number): { epoch: number; batch: number } {
  if (!Number.isSafeInteger(position) || position < 0)
    throw new IceError('INPUT_INVALID', `stream position must be a non-negative integer, got ${position}`);
  return { epoch: Math.floor(position / perEpoch), batch: position % perEpoch };
}

/** Dataset indices of the stream's batch at `position` (see batchesPerEpoch). */
export function batchIndices(length: number, seed: number, position: number, batchSize: number, rank = 0, worldSize = 1): number[] {
  const { epoch, batch } = streamPosition(position, batchesPerEpoch(length, batchSize, worldSize));
  return epochBatches(epochOrder(length, seed, epoch, rank, worldSize), batchSize, true)[batch];
}

/**
 * Worker threads of the training input pipeline for a RunConfig data.loaderThreads setting.
 * 'auto': one core is the training step's (the CPU backends use one), the rest up to 2 build batches,
 * at least 1 — so 1 on a 2-core machine. 0 builds batches on the training thread, between steps.
 */
export function resolveLoaderThreads(setting: RunConfig['data']['loaderThreads']): number {
  if (setting === 'auto') return Math.max(1, Math.min(2, availableParallelism() - 1));
  return setting;
}

export interface TrainBatch {
  /** Position in the run's batch stream. */
  position: number;
  epoch: number;
  /** Batch of the epoch. */
  step: number;
  /** N×3×H×W, normalised with the model's mean and std. */
  x: Float32Array;
  shape: [number, number, number, number];
  labels: number[];
  indices: number[];
}

export interface TrainBatchStreamOptions {
  config: RunConfig;
  imgSize: number;
  mean: number | readonly [number, number, number];
  std: number | readonly [number, number, number];
  /** First position to yield (a resumed run: its step × accumSteps). */
  startPosition: number;
  /** This rank's shard of every batch (of config.worldSize; default 0). */
  rank?: number;
  /** Worker threads (default: resolveLoaderThreads(config.data.loaderThreads)). */
  threads?: number;
  log?: (message: string) => void;
}

function triple(v: number | readonly [number, number, number]): [number, number, number] {
  return typeof v === 'number' ? [v, v, v] : [v[0], v[1], v[2]];
}

/**
 * The run's batch stream from `startPosition` on, built by a BatchLoader: in worker threads (decoded
 * and normalised there, prefetched, so that a training step does not wait for its data) or, with 0
 * threads, on this thread. The batches are bit-identical whatever the thread count. Epochs follow
 * one another; `close()` stops the threads (always call it: completion, error or cancel).
 */
export class TrainBatchStream {
  /** Milliseconds the consumer spent waiting in next() (of which for the first batch: the pipeline's start), and batches handed out. */
  waitMs = 0;
  firstWaitMs = 0;
  batches = 0;
  private iter: AsyncIterator<Batch> | undefined;
  private epoch = -1;
  private pendingNext = false;
  private closed = false;

  private constructor(
    private readonly loader: BatchLoader,
    readonly perEpoch: number,
    private position: number,
    private readonly log: (message: string) => void,
  ) {}

  static async open(o: TrainBatchStreamOptions): Promise<TrainBatchStream> {
    const B = o.config.data.batchSize;
    const threads = o.threads ?? resolveLoaderThreads(o.config.data.loaderThreads);
    const log = o.log ?? (() => undefined);
    const loader = await BatchLoader.open({
      dataset: trainDatasetSpec(o.config, o.imgSize),
      // Digits canvases are drawn at the model's input size: no resizing, only normalisation.
      transform: { steps: [], normalize: { mean: triple(o.mean), std: triple(o.std) } },
      batchSize: B,
      seed: o.config.seed,
      rank: o.rank ?? 0,
      worldSize: o.config.worldSize,
      shuffle: true,
      dropLast: true,
      threads,
      // In-thread (0 threads) build one batch at a time, when it is asked for.
      ...(threads === 0 ? { prefetch: 1, sampleConcurrency: 1 } : {}),
      log,
    });
    try {
      const perEpoch = batchesPerEpoch(loader.length, B, o.config.worldSize);
      if (loader.batchesPerEpoch !== perEpoch)
        throw new IceError('INPUT_INVALID', `batch loader plans ${loader.batchesPerEpoch} batches per epoch, the run's stream ${perEpoch}`);
      streamPosition(o.startPosition, perEpoch);
      return new TrainBatchStream(loader, perEpoch, o.startPosition, log);
    } catch (e) {
      await loader.close();
      throw e;
    }
  }

  get threads(): number {
    return this.loader.threads;
  }

  /** Position of the batch the next call returns (unless the pipeline drops a batch of unreadable samples). */
  get nextPosition(): number {
    return this.position;
  }

  /** The next batch of the stream; rejects with CANCELLED as soon as `signal` aborts (the stream must then be closed). */
  async next(signal?: AbortSignal): Promise<TrainBatch> {
    if (this.closed) throw new IceError('CANCELLED', 'the training batch stream is closed');
    const t0 = performance.now();
    try {
      for (;;) {
        if (!this.iter) {
          const { epoch, batch } = streamPosition(this.position, this.perEpoch);
          this.epoch = epoch;
          this.iter = this.loader.epoch(epoch, { startBatch: batch })[Symbol.asyncIterator]();
        }
        const r = await this.withAbort(this.iter.next(), signal);
        if (r.done) {
          this.iter = undefined;
          this.position = (this.epoch + 1) * this.perEpoch;
          continue;
        }
        const b = r.value;
        const position = b.epoch * this.perEpoch + b.step;
        if (position !== this.position)
          this.log(`training data: batches ${this.position}–${position - 1} of the stream were dropped (no readable sample)`);
        this.position = position + 1;
        this.batches++;
        return { position, epoch: b.epoch, step: b.step, x: b.x, shape: b.shape, labels: Array.from(b.labels), indices: b.indices };
      }
    } finally {
      const waited = performance.now() - t0;
      this.waitMs += waited;
      if (this.batches <= 1) this.firstWaitMs += waited;
    }
  }

  private withAbort<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    this.pendingNext = true;
    const settled = p.finally(() => {
      this.pendingNext = false;
    });
    settled.catch(() => undefined);
    if (!signal) return settled;
    if (signal.aborted) return Promise.reject(new IceError('CANCELLED', 'cancelled while waiting for training data'));
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => reject(new IceError('CANCELLED', 'cancelled while waiting for training data'));
      signal.addEventListener('abort', onAbort, { once: true });
      settled.then(
        (v) => {
          signal.removeEventListener('abort', onAbort);
          resolve(v);
        },
        (e: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
  }

  /** Stops the worker threads and waits for them to exit; batches in flight are abandoned. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const iter = this.iter;
    this.iter = undefined;
    await this.loader.close();
    if (iter?.return) {
      // A next() still waiting ends with CANCELLED now that the loader is closed; the epoch's
      // generator is closed after it (not awaited if it is still waiting: nothing is left to free).
      const done = iter.return(undefined).catch(() => undefined);
      if (!this.pendingNext) await done;
    }
  }
}

export async function loadSamples(ds: VisionDataset, indices: readonly number[]): Promise<VisionSample[]> {
  return Promise.all(indices.map(async (i) => ds.get(i)));
}
