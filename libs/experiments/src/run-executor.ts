/**
 * Executes one run: builds (or resumes) the model and trainer, trains for `steps` optimizer
 * updates on deterministic batches, checkpoints every `checkpointEvery` steps into `runDir`,
 * reports progress, and scores the result. The same function runs in a worker job and in the CLI.
 *
 * Training batches come from a TrainBatchStream: built in `data.loaderThreads` worker threads and
 * prefetched while the training thread runs its (synchronous) steps, so that a step does not wait
 * for data; the batches, and so the weights, are bit-identical whatever the thread count. The
 * threads are stopped when the training loop ends, however it ends (completion, error, NaN loss,
 * cancel).
 *
 * Data-parallel runs (worldSize W > 1) execute once per rank, each with a GradientReducer: rank r
 * trains on its shard of every batch (batchSize samples per rank, so W × batchSize per update),
 * averages its gradient of each update with the other ranks' between compute and apply, and so
 * keeps weights identical to every other rank's. All ranks checkpoint at the same steps (into their
 * own runDir), keeping the one before as well, so a group restarted after a failure meets again at
 * the latest checkpoint every rank holds (a rank ahead of it steps back: RANKS_APART). Only
 * rank 0 writes the final weights and scores the run; the other ranks return empty metrics.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  type GradientReducer,
  IceError,
  IceTrainer,
  IceVit,
  initBackend,
  loadCheckpoint,
  MIXUP_PRESETS,
  readCheckpointStep,
  readWeights,
  saveCheckpoint,
  type StepStats,
  type TrainConfig,
  vitConfig,
  type VitConfig,
} from '@ice/core';
import { runLambdaWarmup, runLossConfig, type RunConfig, type RunProgress, type RunResult } from './run.contract';
import { epochsSeen, openRunData, type RunData, type TrainBatch, TrainBatchStream } from './run-data';
import { evaluateRun } from './run-evaluation';

export interface RunContext {
  /** Where this run's checkpoints live; a `last.safetensors` there is resumed from. */
  runDir: string;
  /** Aborting stops the run before its next step with IceError('CANCELLED'). */
  signal?: AbortSignal;
  onProgress?: (p: RunProgress) => void | Promise<void>;
  /** Minimum time between progress reports (the final step is always reported). */
  progressIntervalMs?: number;
  log?: (msg: string) => void;
  /** This process's rank of config.worldSize (default 0). */
  rank?: number;
  /** Averages gradients across the ranks; required when config.worldSize > 1, unused otherwise. */
  reducer?: GradientReducer;
}

export const LAST_CHECKPOINT = 'last.safetensors';
export const FINAL_CHECKPOINT = 'final.safetensors';
/**
 * Data-parallel ranks keep the checkpoint before `last` too: a rank that stops between an update
 * and its checkpoint is one checkpoint behind the others, and the group meets at the one they all hold.
 */
export const PREV_CHECKPOINT = 'prev.safetensors';

/**
 * The configuration a checkpoint belongs to, as stored in it (`run_config`) and compared on resume:
 * the RunConfig without the settings that do not change the results (data.loaderThreads), so a run
 * may be resumed with another thread count and its checkpoints are the same bytes whatever the count.
 */
export function runIdentityJson(config: RunConfig): string {
  const { loaderThreads: _threads, ...data } = config.data;
  return JSON.stringify({ ...config, data });
}

function modelConfigFor(config: RunConfig, numClasses: number): VitConfig {
  return vitConfig(config.model.preset, {
    numClasses,
    iceHead: config.mode === 'classify' ? 'none' : config.model.head,
    dropPathRate: config.model.dropPathRate,
  });
}

export function trainConfigFor(config: RunConfig): TrainConfig {
  const o = config.optimizer;
  return {
    mode: config.mode,
    loss: runLossConfig(config.loss),
    optimizer: {
      lr: o.lr,
      betas: [0.9, 0.999],
      eps: 1e-8,
      weightDecay: o.weightDecay,
      clipGradNorm: null,
      noDecayNames: ['pos_embed', 'cls_token'],
    },
    schedule: {
      baseLr: o.lr,
      warmupLr: Math.min(o.lr, 1e-5),
      minLr: Math.min(o.minLr, o.lr),
      totalSteps: config.steps,
      warmupSteps: Math.min(o.warmupSteps, config.steps - 1),
    },
    mixup: o.mixup
      ? { ...MIXUP_PRESETS.deit, labelSmoothing: o.labelSmoothing }
      : { ...MIXUP_PRESETS.smoothingOnly, labelSmoothing: o.labelSmoothing },
    accumSteps: o.accumSteps,
    frozenBackbone: config.model.head === 'icef' && config.mode === 'ice',
    seed: config.seed,
    lambdaWarmup: runLambdaWarmup(config),
  };
}

/** Fresh model from the preset, optionally initialised from a weights file (its ICE head may be absent). */
function buildModel(config: RunConfig, numClasses: number, log: (m: string) => void): IceVit {
  const model = IceVit.create(modelConfigFor(config, numClasses), config.seed);
  if (!config.model.weights) return model;
  try {
    const w = readWeights(config.model.weights);
    const report = model.loadStateDict(w.tensors, {
      allowMissing: ['mlp_head*', 'ice_head*'],
      ignore: ['optimizer.*', 'dist_token', 'head_dist*', 'mlp_head*', 'ice_head*'],
    });
    const initialised = report.keptInitialised.length ? `; initialised ${report.keptInitialised.join(', ')}` : '';
    log(`loaded ${report.loaded.length} tensors from ${config.model.weights}${initialised}`);
    return model;
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** SHA-256 (hex) of a weights file: what a run started from, beyond its path. */
export function weightsFingerprint(file: string): string {
  try {
    return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
  } catch (e) {
    throw new IceError('INPUT_INVALID', `cannot read the starting weights ${file}: ${(e as Error).message}`);
  }
}

/** The rank this process trains and the reducer it averages with, checked against the config. */
function rankOf(config: RunConfig, ctx: RunContext): { rank: number; reducer: GradientReducer | undefined } {
  const rank = ctx.rank ?? 0;
  const W = config.worldSize;
  if (!Number.isInteger(rank) || rank < 0 || rank >= W)
    throw new IceError('CONFIG_INVALID', `rank must be an integer in [0, ${W}), got ${rank}`);
  // One rank alone never averages: it trains exactly as it did before data parallelism existed.
  const reducer = W > 1 ? ctx.reducer : undefined;
  if (W > 1 && !reducer) {
    throw new IceError(
      'CONFIG_INVALID',
      `worldSize ${W} needs ${W} ranks exchanging gradients: submit the run through the API with at least ${W} workers (the CLI trains one rank)`,
    );
  }
  if (reducer && (reducer.worldSize !== W || reducer.rank !== rank)) {
    throw new IceError(
      'CONFIG_INVALID',
      `the gradient reducer is rank ${reducer.rank} of ${reducer.worldSize}, the run rank ${rank} of ${W}`,
    );
  }
  return { rank, reducer };
}

/** What every checkpoint of this run records about it, and what a checkpoint must match to be resumed. */
interface RunIdentity {
  runJson: string;
  rank: number;
  /** Data-parallel runs only (single-rank checkpoints keep their bytes). */
  dataParallel: boolean;
  /** SHA-256 of the starting weights: the config names them by path, their content is what the run continues from. */
  initWeights: string | undefined;
}

function runIdentity(config: RunConfig, rank: number): RunIdentity {
  return {
    runJson: runIdentityJson(config),
    rank,
    dataParallel: config.worldSize > 1,
    initWeights: config.model.weights ? weightsFingerprint(config.model.weights) : undefined,
  };
}

/** The `extra` metadata saved in each checkpoint. */
function identityMetadata(id: RunIdentity): Record<string, string> {
  const extra: Record<string, string> = id.dataParallel ? { run_config: id.runJson, rank: String(id.rank) } : { run_config: id.runJson };
  if (id.initWeights) extra.init_weights_sha256 = id.initWeights;
  return extra;
}

interface OpenedTrainer {
  model: IceVit;
  trainer: IceTrainer;
  resumedFromStep: number | null;
}

/** Resumes from `lastPath` when it exists (and is this run's checkpoint), else builds a fresh model and trainer. */
function openTrainer(
  config: RunConfig,
  lastPath: string,
  id: RunIdentity,
  data: { classes: number; imgSize: number },
  log: (m: string) => void,
): OpenedTrainer {
  const { imgSize } = data;
  const prevPath = path.join(path.dirname(lastPath), PREV_CHECKPOINT);
  // A data-parallel rank stopped between keeping its previous checkpoint and writing the new one.
  if (id.dataParallel && !fs.existsSync(lastPath) && fs.existsSync(prevPath)) fs.renameSync(prevPath, lastPath);
  if (!fs.existsSync(lastPath)) {
    const model = buildModel(config, data.classes, log);
    return { model, trainer: new IceTrainer(model, trainConfigFor(config)), resumedFromStep: null };
  }
  const ck = loadCheckpoint(lastPath);
  const extra = ck.info.extra;
  const refuse = (why: string): never => {
    ck.trainer.dispose();
    ck.model.dispose();
    throw new IceError('CHECKPOINT_INVALID', `${lastPath} ${why}; refusing to resume from it`);
  };
  if (extra.run_config !== undefined && extra.run_config !== id.runJson) refuse('belongs to a run with another configuration');
  if (extra.init_weights_sha256 !== undefined && extra.init_weights_sha256 !== id.initWeights) {
    const [was, now] = [extra.init_weights_sha256.slice(0, 12), id.initWeights?.slice(0, 12) ?? 'none'];
    refuse(`was started from other weights than ${config.model.weights} holds now (SHA-256 ${was}… vs ${now}…)`);
  }
  if (id.dataParallel && extra.rank !== undefined && extra.rank !== String(id.rank))
    refuse(`is rank ${extra.rank}'s checkpoint, not rank ${id.rank}'s`);
  if (ck.model.config.imgSize !== imgSize) refuse(`holds a ${ck.model.config.imgSize}² model, the run's data is ${imgSize}²`);
  log(`resuming from ${lastPath} at step ${ck.info.step}`);
  return { model: ck.model, trainer: ck.trainer, resumedFromStep: ck.info.step };
}

/** Throttled progress reports, each with the group's throughput over the steps since the previous one. */
class ProgressMeter {
  private lastReport = 0;
  private windowStart = performance.now();
  private windowSteps = 0;
  private reports = 0;

  constructor(
    private readonly config: RunConfig,
    private readonly perEpoch: number,
    private readonly ctx: RunContext,
  ) {}

  async step(stats: StepStats, done: number): Promise<void> {
    this.windowSteps++;
    const now = performance.now();
    const due = now - this.lastReport >= (this.ctx.progressIntervalMs ?? 2000) || done === this.config.steps;
    if (!this.ctx.onProgress || !due) return;
    const { batchSize } = this.config.data;
    const { accumSteps } = this.config.optimizer;
    const secPerStep = (now - this.windowStart) / 1000 / this.windowSteps;
    await this.ctx.onProgress({
      step: done,
      totalSteps: this.config.steps,
      epoch: epochsSeen(done, accumSteps, this.perEpoch),
      loss: stats.loss,
      lIce: stats.lIce,
      lBg: stats.lBg,
      clsPer: stats.clsPer,
      lr: stats.lr,
      // Every rank trains at the group's pace: the group's images per second.
      imgPerSec: (batchSize * accumSteps * this.config.worldSize) / secPerStep,
      etaSeconds: this.reports === 0 ? null : secPerStep * (this.config.steps - done),
    });
    this.reports++;
    this.lastReport = now;
    this.windowStart = now;
    this.windowSteps = 0;
  }
}

/** One run's training from the trainer's step to config.steps, and its end (final checkpoint, scores). */
class RunSession {
  private readonly log: (m: string) => void;
  private readonly lastPath: string;
  private readonly k: number;
  private stream: TrainBatchStream | undefined;
  /** Milliseconds in training steps (the loop's other time is batch waiting, checkpoints and progress). */
  private trainMs = 0;

  constructor(
    private readonly config: RunConfig,
    private readonly ctx: RunContext,
    private readonly opened: OpenedTrainer,
    private readonly id: RunIdentity,
    private readonly data: RunData,
    private readonly reducer: GradientReducer | undefined,
  ) {
    this.log = ctx.log ?? (() => undefined);
    this.lastPath = path.join(ctx.runDir, LAST_CHECKPOINT);
    this.k = config.optimizer.accumSteps;
  }

  private get trainer(): IceTrainer {
    return this.opened.trainer;
  }

  private cancelled(): IceError {
    return new IceError('CANCELLED', `run cancelled at step ${this.trainer.step}`);
  }

  private checkpoint(file: string): Promise<void> {
    return saveCheckpoint(file, this.trainer, identityMetadata(this.id));
  }

  /** A periodic checkpoint; a data-parallel rank first keeps the one it replaces as PREV_CHECKPOINT (a hard link: no copy). */
  private async periodicCheckpoint(): Promise<void> {
    if (this.id.dataParallel && fs.existsSync(this.lastPath)) {
      const prev = path.join(this.ctx.runDir, PREV_CHECKPOINT);
      const tmp = `${prev}.${process.pid}.tmp`;
      fs.rmSync(tmp, { force: true });
      try {
        fs.linkSync(this.lastPath, tmp);
      } catch {
        fs.copyFileSync(this.lastPath, tmp);
      }
      fs.renameSync(tmp, prev);
    }
    await this.checkpoint(this.lastPath);
  }

  /** Trains until config.steps; the batch stream's threads are stopped however the loop ends. */
  async train(): Promise<void> {
    if (this.trainer.step >= this.config.steps) return;
    try {
      if (this.ctx.signal?.aborted) throw this.cancelled();
      const { imgSize, mean, std } = this.opened.model.config;
      // Micro-batch m of update `step` is position step·k + m of the deterministic batch stream.
      const startPosition = this.trainer.step * this.k;
      this.stream = await TrainBatchStream.open({
        config: this.config,
        imgSize,
        mean,
        std,
        startPosition,
        rank: this.id.rank,
        log: this.log,
      });
      const mode = this.stream.threads > 0 ? `${this.stream.threads} loader thread(s), prefetched` : 'built on the training thread';
      this.log(`training data: ${mode}`);
      const startStep = this.trainer.step;
      const loopStart = performance.now();
      const meter = new ProgressMeter(this.config, this.data.batchesPerEpoch, this.ctx);
      while (this.trainer.step < this.config.steps) {
        if (this.ctx.signal?.aborted) throw this.cancelled();
        const stats = await this.update(this.stream);
        const done = this.trainer.step;
        if (done % this.config.checkpointEvery === 0 && done < this.config.steps) await this.periodicCheckpoint();
        await meter.step(stats, done);
        // Let timers, abort events and messages run between steps.
        await new Promise<void>((r) => setImmediate(r));
      }
      this.logPipeline(this.stream, this.trainer.step - startStep, performance.now() - loopStart);
      await this.closeStream();
    } finally {
      // A failure to stop the loader's threads must not hide the run's own error.
      await this.closeStream().catch((e: unknown) =>
        this.log(`training data: closing the batch loader failed: ${e instanceof Error ? e.message : String(e)}`),
      );
    }
  }

  /** One optimizer update: accumSteps micro-batches, averaged across the ranks when data-parallel. */
  private async update(stream: TrainBatchStream): Promise<StepStats> {
    let stats: StepStats | undefined;
    for (let m = 0; m < this.k; m++) {
      const batch = await stream.next(this.ctx.signal).catch((e: unknown) => {
        throw this.ctx.signal?.aborted ? this.cancelled() : e;
      });
      stats = await this.microBatch(batch);
    }
    if (!stats) throw new IceError('CONFIG_INVALID', 'optimizer.accumSteps must be at least 1');
    return stats;
  }

  private async microBatch(batch: TrainBatch): Promise<StepStats> {
    const t0 = performance.now();
    const x = tf.tensor4d(batch.x, batch.shape);
    try {
      if (!this.reducer) return this.trainer.trainStep(x, batch.labels);
      const { stats, update } = this.trainer.accumulateGradients(x, batch.labels);
      const accumulated: StepStats = { ...stats, step: this.trainer.step, lr: this.trainer.lr(), updated: false };
      return update ? { ...accumulated, ...(await this.reduceAndApply(this.reducer, update)) } : accumulated;
    } finally {
      x.dispose();
      this.trainMs += performance.now() - t0;
    }
  }

  /** One optimizer update with the mean over the ranks of each rank's (accumulated) gradient; disposes `update`. */
  private async reduceAndApply(
    reducer: GradientReducer,
    update: Map<string, tf.Tensor>,
  ): Promise<{ step: number; lr: number; updated: true }> {
    let mean: Map<string, tf.Tensor>;
    try {
      mean = await reducer.allReduceMean(this.trainer.step, update, this.ctx.signal);
    } finally {
      tf.dispose([...update.values()]);
    }
    try {
      const lr = this.trainer.applyGradients(mean);
      return { step: this.trainer.step, lr, updated: true };
    } finally {
      tf.dispose([...mean.values()]);
    }
  }

  private logPipeline(stream: TrainBatchStream, steps: number, loopMs: number): void {
    const perStep = (ms: number): string => (ms / steps).toFixed(1);
    this.log(
      `training data: ${stream.threads} loader thread(s); per step over ${steps} steps: training ${perStep(this.trainMs)} ms, ` +
        `waiting for batches ${perStep(stream.waitMs - stream.firstWaitMs)} ms (and ${stream.firstWaitMs.toFixed(0)} ms for the first), ` +
        `other ${perStep(loopMs - this.trainMs - stream.waitMs)} ms (in-thread batch building, checkpoints, progress)`,
    );
  }

  private async closeStream(): Promise<void> {
    const s = this.stream;
    this.stream = undefined;
    await s?.close();
  }

  /**
   * Rank 0 writes the final weights (and a last checkpoint, so a redelivered job ends at once) and
   * scores them; the other ranks hold the same weights and only checkpoint.
   */
  async finish(): Promise<Pick<RunResult, 'metrics' | 'checkpoint' | 'steps'>> {
    if (this.id.rank > 0) {
      await this.checkpoint(this.lastPath);
      return { metrics: {}, checkpoint: this.lastPath, steps: this.trainer.step };
    }
    const finalPath = path.join(this.ctx.runDir, FINAL_CHECKPOINT);
    await this.checkpoint(finalPath);
    await this.checkpoint(this.lastPath);
    const metrics = await evaluateRun(this.opened.model, this.data.evaluation, this.config, this.log);
    return { metrics, checkpoint: finalPath, steps: this.trainer.step };
  }
}

export async function executeRun(config: RunConfig, ctx: RunContext): Promise<RunResult> {
  const log = ctx.log ?? (() => undefined);
  const started = Date.now();
  const backend = await initBackend(undefined, log);
  const { rank, reducer } = rankOf(config, ctx);
  fs.mkdirSync(ctx.runDir, { recursive: true });
  const id = runIdentity(config, rank);
  // The run's data at the preset's input size, opened once (a resumed checkpoint of this run has that size too).
  const imgSize = vitConfig(config.model.preset).imgSize;
  const data = openRunData(config, imgSize);
  const lastPath = path.join(ctx.runDir, LAST_CHECKPOINT);
  const open = (): OpenedTrainer => {
    const o = openTrainer(config, lastPath, id, { classes: data.train.classes.length, imgSize }, log);
    reducer?.setResumableSteps?.(earlierCheckpointSteps(ctx.runDir, o.trainer.step, id, log));
    return o;
  };
  let opened = open();
  try {
    for (;;) {
      const session = new RunSession(config, ctx, opened, id, data, reducer);
      try {
        await session.train();
      } catch (e) {
        if (!(e instanceof IceError && e.code === 'RANKS_APART')) throw e;
        // The group meets at an earlier checkpoint this rank holds: step back to it and train on from there.
        stepBack(ctx.runDir, e, log);
        opened.trainer.dispose();
        opened.model.dispose();
        opened = open();
        continue;
      }
      const end = await session.finish();
      return { ...end, resumedFromStep: opened.resumedFromStep, backend: backend.name, durationMs: Date.now() - started };
    }
  } finally {
    opened.trainer.dispose();
    opened.model.dispose();
  }
}

/** The step of the previous checkpoint a data-parallel rank keeps, when it is before `step` (else none). */
function earlierCheckpointSteps(runDir: string, step: number, id: RunIdentity, log: (m: string) => void): number[] {
  const prev = path.join(runDir, PREV_CHECKPOINT);
  if (!id.dataParallel || !fs.existsSync(prev)) return [];
  try {
    const s = readCheckpointStep(prev);
    return s < step ? [s] : [];
  } catch (e) {
    log(`ignoring ${PREV_CHECKPOINT}: ${(e as Error).message}`);
    return [];
  }
}

/** Makes the previous checkpoint the last one, after checking it is at the step the group meets at. */
function stepBack(runDir: string, e: IceError, log: (m: string) => void): void {
  const meet = e.details?.resumeStep;
  const prev = path.join(runDir, PREV_CHECKPOINT);
  const held = fs.existsSync(prev) ? readCheckpointStep(prev) : undefined;
  if (typeof meet !== 'number' || held !== meet)
    throw new IceError(
      'CHECKPOINT_INVALID',
      `the data-parallel group meets at step ${String(meet)}, but this rank's ${PREV_CHECKPOINT} is ${held === undefined ? 'missing' : `at step ${held}`}`,
      e.details,
    );
  log(`${e.message}; stepping back to step ${meet}`);
  fs.renameSync(prev, path.join(runDir, LAST_CHECKPOINT));
}
