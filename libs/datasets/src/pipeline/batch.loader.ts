/**
 * The input pipeline: ready-to-train NCHW batches, decoded and augmented in worker threads (a
 * `piscina` pool) while the training thread trains, prefetched into a bounded queue and yielded in
 * order.
 *
 *   const loader = await BatchLoader.open({ dataset: { format: 'imagenet', root, split: 'train' },
 *     transform: trainTransformSpec(224), batchSize: 64, seed, rank, worldSize, threads: 2 });
 *   for (let e = 0; ; e++) {
 *     const run = loader.epoch(e);
 *     for await (const batch of run) trainStep(batch.x, batch.shape, batch.labels);
 *     console.log(run.summary);
 *   }
 *   await loader.close();
 *
 * - Deterministic: the epoch order is a permutation seeded by (seed, epoch), sharded so rank r of w
 *   takes every w-th sample (disjoint, equal slices); each sample's augmentation has its own Rng
 *   seeded by (seed, epoch, dataset index). Batches are therefore the same whatever the thread count
 *   (0 = inline on the calling thread, for debugging) and the prefetch depth.
 * - Bounded: at most `prefetch` batches are being built or waiting; the next is requested when one
 *   is taken. They are all handed to the workers at once (each builds its share in arrival order),
 *   so the workers keep going while the training thread is blocked in a synchronous step.
 * - Bad data never stops an epoch: an unreadable sample is skipped, logged with its path, and counted
 *   in the epoch's summary; the batch is topped up with its own good samples ('repeat', default) or
 *   yielded smaller ('shrink'); a batch with no good sample is dropped (and counted). Problems of the
 *   configuration (missing root or index file, no fixed output size) are errors.
 * - Datasets cannot cross threads: every worker opens its own from the serialisable DatasetSpec.
 */
import { availableParallelism } from 'node:os';
import { types } from 'node:util';
import { IceError, moduleBeside, THREAD_BOOTSTRAP, threadWorkerData } from '@ice/core';
import { Piscina } from 'piscina';
import { type TransformSpec, validateTransformSpec } from '../transforms/augment.transform';
import { BatchBuilder } from './batch.builder';
import { deserializeError, epochBatches, epochOrder, serializeError, validateDatasetSpec } from './dataset-spec.util';
import type {
  BadSamplePolicy,
  BatchTask,
  BuiltBatch,
  DatasetDescription,
  DatasetSpec,
  SkippedSample,
  WorkerReply,
  WorkerTask,
} from './pipeline.types';

export interface BatchLoaderOptions {
  dataset: DatasetSpec;
  transform: TransformSpec;
  batchSize: number;
  /** Order and augmentation seed (default 0). */
  seed?: number;
  rank?: number;
  worldSize?: number;
  /** Permute each epoch (default true); false reads 0, 1, 2, … (sharded the same way). */
  shuffle?: boolean;
  /** Leave out the last, smaller batch of each epoch (default false). */
  dropLast?: boolean;
  /** Worker threads (default: cores − 1, at least 1, at most 4); 0 runs everything on this thread. */
  threads?: number;
  /** Batches being built or waiting at once (default 2 per thread, at least 2). */
  prefetch?: number;
  /** Samples of a batch read concurrently inside one thread (default 4). */
  sampleConcurrency?: number;
  withMasks?: boolean;
  withBoxes?: boolean;
  onBadSample?: BadSamplePolicy;
  /** Where skipped samples are reported (default: console.warn). */
  log?: (message: string) => void;
}

export interface EpochOptions {
  /** Position in the epoch to start at (default 0): the batches before it are neither built nor yielded. */
  startBatch?: number;
}

export interface Batch extends BuiltBatch {
  epoch: number;
  /** Position of the batch in the epoch (a dropped batch leaves its step out). */
  step: number;
}

export interface EpochSummary {
  epoch: number;
  rank: number;
  worldSize: number;
  /** Position the pass started at (EpochOptions.startBatch). */
  startBatch: number;
  /** Batches planned for the pass (from startBatch on) / yielded / dropped because none of their samples could be read. */
  plannedBatches: number;
  batches: number;
  droppedBatches: number;
  /** Rows yielded (repeats included). */
  samples: number;
  skipped: number;
  repeated: number;
  /** The first MAX_SKIPPED_LISTED skipped samples. */
  skippedSamples: SkippedSample[];
  /** True once the whole epoch has been yielded. */
  complete: boolean;
  /** Wall time from the start of iteration to the last batch (or the stop). */
  seconds: number;
  /** Of that, time the consumer spent waiting for a batch (the first one included): a fed trainer keeps it near the first batch's build time. */
  waitSeconds: number;
  imagesPerSecond: number;
}

export const MAX_SKIPPED_LISTED = 100;

interface Executor {
  run(task: WorkerTask): Promise<WorkerReply>;
  close(): Promise<void>;
}

class InlineExecutor implements Executor {
  private readonly builder = new BatchBuilder();

  async run(task: WorkerTask): Promise<WorkerReply> {
    try {
      switch (task.kind) {
        case 'describe':
          return { ok: true, value: await this.builder.describe(task.dataset) };
        case 'batch':
          return { ok: true, value: await this.builder.build(task) };
      }
    } catch (err) {
      return { ok: false, error: serializeError(err) };
    }
  }

  close(): Promise<void> {
    return this.builder.close();
  }
}

/** The pool's task module, started through @ice/core's thread bootstrap like every other thread. */
const BATCH_WORKER = moduleBeside(__filename, 'batch.worker');

class PoolExecutor implements Executor {
  private readonly pool: Piscina<WorkerTask, WorkerReply>;
  private closing = false;

  constructor(threads: number, tasksPerWorker: number, log: (message: string) => void) {
    this.pool = new Piscina<WorkerTask, WorkerReply>({
      filename: THREAD_BOOTSTRAP,
      workerData: threadWorkerData(BATCH_WORKER),
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: 60_000,
      // Handlers await native work (sharp); let each worker's event loop run between tasks too.
      atomics: 'async',
      // Hand every prefetched batch to a worker at once: tasks queued in the pool would wait for this
      // thread's event loop, which a synchronous training step blocks for its whole duration.
      concurrentTasksPerWorker: tasksPerWorker,
    });
    // The pool reports some events as 'error' events, which would crash the process unheard: a
    // worker's reply that arrives after destroy() dropped its task (closing mid-batch, e.g. a run
    // that stops on a NaN loss), or a worker that died with no task (the pool replaces it; a task it
    // had fails on its own).
    this.pool.on('error', (err: unknown) => {
      if (!this.closing) log(`ice data: pipeline worker pool: ${err instanceof Error ? err.message : String(err)}`);
    });
  }

  run(task: WorkerTask): Promise<WorkerReply> {
    return this.pool.run(task);
  }

  close(): Promise<void> {
    this.closing = true;
    return this.pool.destroy();
  }
}

function isDescription(v: unknown): v is DatasetDescription {
  return typeof v === 'object' && v !== null && 'length' in v && typeof v.length === 'number' && 'classes' in v && Array.isArray(v.classes);
}

/** (Typed arrays from another thread belong to another realm under jest: no instanceof.) */
function isBuiltBatch(v: unknown): v is BuiltBatch {
  return typeof v === 'object' && v !== null && 'x' in v && types.isFloat32Array(v.x) && 'shape' in v && Array.isArray(v.shape);
}

export class BatchLoader {
  readonly name: string;
  readonly split: string;
  /** Samples in the dataset (all ranks). */
  readonly length: number;
  readonly classes: string[];
  private closed = false;
  private readonly opts: Required<Omit<BatchLoaderOptions, 'log'>> & { log: (message: string) => void };

  private constructor(
    options: BatchLoaderOptions,
    private readonly exec: Executor,
    info: DatasetDescription,
  ) {
    this.name = info.name;
    this.split = info.split;
    this.length = info.length;
    this.classes = info.classes;
    const threads = options.threads ?? defaultThreads();
    this.opts = {
      dataset: options.dataset,
      transform: options.transform,
      batchSize: options.batchSize,
      seed: options.seed ?? 0,
      rank: options.rank ?? 0,
      worldSize: options.worldSize ?? 1,
      shuffle: options.shuffle ?? true,
      dropLast: options.dropLast ?? false,
      threads,
      prefetch: options.prefetch ?? defaultPrefetch(threads),
      sampleConcurrency: options.sampleConcurrency ?? 4,
      withMasks: options.withMasks ?? false,
      withBoxes: options.withBoxes ?? false,
      onBadSample: options.onBadSample ?? 'repeat',
      log: options.log ?? ((m) => console.warn(m)),
    };
  }

  /** Starts the worker threads and opens the dataset in one of them (errors such as a missing root surface here). */
  static async open(options: BatchLoaderOptions): Promise<BatchLoader> {
    validateDatasetSpec(options.dataset);
    validateTransformSpec(options.transform);
    const threads = options.threads ?? defaultThreads();
    if (!Number.isInteger(threads) || threads < 0 || threads > 64)
      throw new IceError('CONFIG_INVALID', `threads must be an integer in [0, 64], got ${threads}`);
    checkPositive('batchSize', options.batchSize);
    if (options.prefetch !== undefined) checkPositive('prefetch', options.prefetch);
    if (options.sampleConcurrency !== undefined) checkPositive('sampleConcurrency', options.sampleConcurrency);
    const seed = options.seed ?? 0;
    if (!Number.isSafeInteger(seed)) throw new IceError('CONFIG_INVALID', `seed must be a safe integer, got ${seed}`);
    const prefetch = options.prefetch ?? defaultPrefetch(threads);
    const exec: Executor =
      threads === 0
        ? new InlineExecutor()
        : new PoolExecutor(threads, Math.ceil(prefetch / threads), options.log ?? ((m) => console.warn(m)));
    try {
      const reply = await exec.run({ kind: 'describe', dataset: options.dataset });
      if (!reply.ok) throw deserializeError(reply.error);
      if (!isDescription(reply.value)) throw new IceError('INPUT_INVALID', 'pipeline worker sent a malformed dataset description');
      const loader = new BatchLoader(options, exec, reply.value);
      // Sharding problems (worldSize > length, bad rank) are configuration errors: report them now.
      epochOrder(loader.length, seed, 0, loader.opts.rank, loader.opts.worldSize, false);
      return loader;
    } catch (err) {
      await exec.close();
      throw err;
    }
  }

  get threads(): number {
    return this.opts.threads;
  }

  /** Samples this rank sees per epoch. */
  get samplesPerEpoch(): number {
    return Math.floor(this.length / this.opts.worldSize);
  }

  get batchesPerEpoch(): number {
    const n = this.samplesPerEpoch / this.opts.batchSize;
    return this.opts.dropLast ? Math.floor(n) : Math.ceil(n);
  }

  /** Dataset indices of this rank's batches in `epoch`. */
  plan(epoch: number): number[][] {
    const o = this.opts;
    return epochBatches(epochOrder(this.length, o.seed, epoch, o.rank, o.worldSize, o.shuffle), o.batchSize, o.dropLast);
  }

  /**
   * One pass over this rank's share of the dataset; iterate it once. `startBatch` skips the epoch's
   * first batches (a resumed run continues mid-epoch): the batches yielded are exactly those a
   * full pass yields from that position on, with the same `step` numbers.
   */
  epoch(epoch: number, options: EpochOptions = {}): EpochRun {
    if (this.closed) throw new IceError('CANCELLED', 'the batch loader is closed');
    const plan = this.plan(epoch);
    const start = options.startBatch ?? 0;
    if (!Number.isInteger(start) || start < 0 || start > plan.length) {
      throw new IceError('INPUT_INVALID', `startBatch must be an integer in [0, ${plan.length}] for epoch ${epoch}, got ${start}`);
    }
    return new EpochRun(
      epoch,
      plan,
      this.opts,
      (task) => this.run(task),
      () => this.closed,
      start,
    );
  }

  private run(task: BatchTask): Promise<WorkerReply> {
    if (this.closed) return Promise.reject(new IceError('CANCELLED', 'the batch loader is closed'));
    return this.exec.run(task).catch((err: unknown) => {
      if (this.closed) throw new IceError('CANCELLED', 'the batch loader was closed while a batch was being built');
      throw err;
    });
  }

  /** Stops the worker threads (batches in flight are abandoned; an epoch being iterated ends with CANCELLED). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.exec.close();
  }
}

export class EpochRun implements AsyncIterable<Batch> {
  readonly summary: EpochSummary;
  private started = false;

  constructor(
    readonly epoch: number,
    private readonly batches: number[][],
    private readonly opts: Required<Omit<BatchLoaderOptions, 'log'>> & { log: (message: string) => void },
    private readonly run: (task: BatchTask) => Promise<WorkerReply>,
    private readonly isClosed: () => boolean = () => false,
    private readonly startBatch = 0,
  ) {
    this.summary = {
      epoch,
      rank: opts.rank,
      worldSize: opts.worldSize,
      startBatch,
      plannedBatches: batches.length - startBatch,
      batches: 0,
      droppedBatches: 0,
      samples: 0,
      skipped: 0,
      repeated: 0,
      skippedSamples: [],
      complete: false,
      seconds: 0,
      waitSeconds: 0,
      imagesPerSecond: 0,
    };
  }

  private task(indices: number[]): BatchTask {
    const o = this.opts;
    return {
      kind: 'batch',
      dataset: o.dataset,
      transform: o.transform,
      indices,
      seed: o.seed,
      epoch: this.epoch,
      withMasks: o.withMasks,
      withBoxes: o.withBoxes,
      onBadSample: o.onBadSample,
      sampleConcurrency: o.sampleConcurrency,
    };
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Batch, void, undefined> {
    if (this.started)
      throw new IceError('INPUT_INVALID', `epoch ${this.epoch} is already being iterated; call loader.epoch() again for another pass`);
    this.started = true;
    const s = this.summary;
    const t0 = performance.now();
    const pending: Promise<WorkerReply>[] = [];
    let submitted = this.startBatch;
    const fill = (): void => {
      while (submitted < this.batches.length && pending.length < this.opts.prefetch) {
        const p = this.run(this.task(this.batches[submitted++]));
        p.catch(() => undefined); // abandoned when the consumer stops early; awaited (and rethrown) otherwise
        pending.push(p);
      }
    };
    const finish = (): void => {
      s.seconds = (performance.now() - t0) / 1000;
      s.imagesPerSecond = s.seconds > 0 ? s.samples / s.seconds : 0;
    };
    try {
      fill();
      for (let step = this.startBatch; step < this.batches.length; step++) {
        const next = pending.shift();
        if (!next) throw new IceError('INPUT_INVALID', 'pipeline queue underrun'); // cannot happen: fill() keeps one in flight
        const tw = performance.now();
        const reply = await next;
        s.waitSeconds += (performance.now() - tw) / 1000;
        if (this.isClosed()) throw new IceError('CANCELLED', `the batch loader was closed during epoch ${this.epoch}`);
        fill();
        if (!reply.ok) throw deserializeError(reply.error);
        if (!isBuiltBatch(reply.value)) throw new IceError('INPUT_INVALID', 'pipeline worker sent a malformed batch');
        const b = reply.value;
        for (const k of b.skipped) {
          s.skipped++;
          if (s.skippedSamples.length < MAX_SKIPPED_LISTED) s.skippedSamples.push(k);
          this.opts.log(`ice data: skipped sample ${k.index} of epoch ${this.epoch} (${k.path ?? 'no path'}): ${k.code}: ${k.message}`);
        }
        s.repeated += b.repeated;
        if (b.shape[0] === 0) {
          s.droppedBatches++;
          continue;
        }
        s.batches++;
        s.samples += b.shape[0];
        finish();
        yield { ...b, epoch: this.epoch, step };
      }
      s.complete = true;
    } finally {
      finish();
    }
  }
}

function checkPositive(what: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new IceError('CONFIG_INVALID', `${what} must be a positive integer, got ${v}`);
}

function defaultPrefetch(threads: number): number {
  return Math.max(2, 2 * threads);
}

function defaultThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism() - 1));
}
