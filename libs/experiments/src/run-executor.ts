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
  readWeights,
  saveCheckpoint,
  StepStats,
  TrainConfig,
  vitConfig,
  VitConfig,
} from '@ice/core';
import type { RunConfig } from './run-config';
import { openRunData, TrainBatchStream } from './run-data';
import { evaluateRun } from './run-evaluation';

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
 * own runDir), so a group restarted after a failure meets again at the common checkpoint. Only
 * rank 0 writes the final weights and scores the run; the other ranks return empty metrics.
 */
export interface RunProgress {
  step: number;
  totalSteps: number;
  loss: number;
  lIce?: number;
  lBg?: number;
  clsPer?: number;
  lr: number;
  imgPerSec: number;
  etaSeconds: number;
}

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

export interface RunResult {
  metrics: Record<string, number>;
  checkpoint: string;
  steps: number;
  resumedFromStep: number | null;
  backend: string;
  durationMs: number;
}

export const LAST_CHECKPOINT = 'last.safetensors';
export const FINAL_CHECKPOINT = 'final.safetensors';

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
  const gate = config.loss.gateThreshold ?? (config.loss.variant === 'official' ? 0.1 : 0);
  return {
    mode: config.mode,
    loss: { variant: config.loss.variant, alpha: config.loss.alpha, lambdaClass: config.loss.lambdaClass, gateThreshold: gate },
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
    log(
      `loaded ${report.loaded.length} tensors from ${config.model.weights}${report.keptInitialised.length ? `; initialised ${report.keptInitialised.join(', ')}` : ''}`,
    );
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

export async function executeRun(config: RunConfig, ctx: RunContext): Promise<RunResult> {
  const log = ctx.log ?? (() => undefined);
  const started = Date.now();
  const backend = await initBackend(undefined, log);
  fs.mkdirSync(ctx.runDir, { recursive: true });
  const lastPath = path.join(ctx.runDir, LAST_CHECKPOINT);
  const runJson = runIdentityJson(config);
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
  // The rank goes into data-parallel checkpoints only, so single-rank checkpoints keep their bytes.
  const identity: Record<string, string> = W > 1 ? { run_config: runJson, rank: String(rank) } : { run_config: runJson };
  // The config names the starting weights by path; their content is what the run continues from.
  const initWeights = config.model.weights ? weightsFingerprint(config.model.weights) : undefined;
  if (initWeights) identity.init_weights_sha256 = initWeights;

  let model: IceVit;
  let trainer: IceTrainer;
  let resumedFromStep: number | null = null;
  if (fs.existsSync(lastPath)) {
    const ck = loadCheckpoint(lastPath);
    const extra = ck.info.extra;
    const refuse = (why: string): never => {
      ck.trainer.dispose();
      ck.model.dispose();
      throw new IceError('CHECKPOINT_INVALID', `${lastPath} ${why}; refusing to resume from it`);
    };
    if (extra.run_config !== undefined && extra.run_config !== runJson) refuse('belongs to a run with another configuration');
    if (extra.init_weights_sha256 !== undefined && extra.init_weights_sha256 !== initWeights) {
      refuse(
        `was started from other weights than ${config.model.weights} holds now (SHA-256 ${extra.init_weights_sha256.slice(0, 12)}… vs ${initWeights?.slice(0, 12) ?? 'none'}…)`,
      );
    }
    if (W > 1 && extra.rank !== undefined && extra.rank !== String(rank)) refuse(`is rank ${extra.rank}'s checkpoint, not rank ${rank}'s`);
    ({ model, trainer } = ck);
    resumedFromStep = ck.info.step;
    log(`resuming from ${lastPath} at step ${resumedFromStep}`);
  } else {
    const numClasses = openRunData(config, vitConfig(config.model.preset).imgSize).train.classes.length;
    model = buildModel(config, numClasses, log);
    trainer = new IceTrainer(model, trainConfigFor(config));
  }

  const { imgSize, mean, std } = model.config;
  const { evaluation } = openRunData(config, imgSize);
  const B = config.data.batchSize;
  const k = config.optimizer.accumSteps;
  const checkpoint = async (file: string): Promise<void> => saveCheckpoint(file, trainer, identity);
  const cancelled = (): IceError => new IceError('CANCELLED', `run cancelled at step ${trainer.step}`);
  /** One optimizer update with the mean over the ranks of each rank's (accumulated) gradient; disposes `update`. */
  const reduceAndApply = async (update: Map<string, tf.Tensor>): Promise<{ step: number; lr: number; updated: true }> => {
    let mean: Map<string, tf.Tensor>;
    try {
      mean = await reducer!.allReduceMean(trainer.step, update, ctx.signal);
    } finally {
      tf.dispose([...update.values()]);
    }
    try {
      const lr = trainer.applyGradients(mean);
      return { step: trainer.step, lr, updated: true };
    } finally {
      tf.dispose([...mean.values()]);
    }
  };
  let stream: TrainBatchStream | undefined;
  const closeStream = async (): Promise<void> => {
    const s = stream;
    stream = undefined;
    await s?.close();
  };
  try {
    let lastReport = 0;
    let windowStart = performance.now();
    let windowSteps = 0;
    let trainMs = 0;
    const startStep = trainer.step;
    let loopStart = performance.now();
    if (trainer.step < config.steps) {
      if (ctx.signal?.aborted) throw cancelled();
      // Micro-batch m of update `step` is position step·k + m of the deterministic batch stream.
      stream = await TrainBatchStream.open({ config, imgSize, mean, std, startPosition: trainer.step * k, rank, log });
      log(`training data: ${stream.threads > 0 ? `${stream.threads} loader thread(s), prefetched` : 'built on the training thread'}`);
      loopStart = performance.now();
    }
    while (trainer.step < config.steps) {
      if (ctx.signal?.aborted) throw cancelled();
      let stats: StepStats | undefined;
      for (let m = 0; m < k; m++) {
        if (!stream) throw new IceError('INPUT_INVALID', 'no training batch stream');
        const batch = await stream.next(ctx.signal).catch((e: unknown) => {
          throw ctx.signal?.aborted ? cancelled() : e;
        });
        const t0 = performance.now();
        const x = tf.tensor4d(batch.x, batch.shape);
        try {
          if (!reducer) stats = trainer.trainStep(x, batch.labels);
          else {
            const { stats: s, update } = trainer.accumulateGradients(x, batch.labels);
            stats = { ...s, step: trainer.step, lr: trainer.lr(), updated: false };
            if (update) stats = { ...stats, ...(await reduceAndApply(update)) };
          }
        } finally {
          x.dispose();
          trainMs += performance.now() - t0;
        }
      }
      if (!stats) throw new IceError('CONFIG_INVALID', 'optimizer.accumSteps must be at least 1');
      windowSteps++;
      const done = trainer.step;
      if (done % config.checkpointEvery === 0 && done < config.steps) await checkpoint(lastPath);
      const now = performance.now();
      if (ctx.onProgress && (now - lastReport >= (ctx.progressIntervalMs ?? 2000) || done === config.steps)) {
        const secPerStep = (now - windowStart) / 1000 / windowSteps;
        await ctx.onProgress({
          step: done,
          totalSteps: config.steps,
          loss: stats.loss,
          lIce: stats.lIce,
          lBg: stats.lBg,
          clsPer: stats.clsPer,
          lr: stats.lr,
          // Every rank trains at the group's pace: the group's images per second.
          imgPerSec: (B * config.optimizer.accumSteps * W) / secPerStep,
          etaSeconds: secPerStep * (config.steps - done),
        });
        lastReport = now;
        windowStart = now;
        windowSteps = 0;
      }
      // Let timers, abort events and messages run between steps.
      await new Promise<void>((r) => setImmediate(r));
    }
    if (stream) {
      const steps = trainer.step - startStep;
      log(
        `training data: ${stream.threads} loader thread(s); per step over ${steps} steps: training ${(trainMs / steps).toFixed(1)} ms, ` +
          `waiting for batches ${((stream.waitMs - stream.firstWaitMs) / steps).toFixed(1)} ms (and ${stream.firstWaitMs.toFixed(0)} ms for the first), ` +
          `other ${((performance.now() - loopStart - trainMs - stream.waitMs) / steps).toFixed(1)} ms (in-thread batch building, checkpoints, progress)`,
      );
      await closeStream();
    }
    if (rank > 0) {
      // Same weights as rank 0's: only rank 0 writes the final weights and scores them. The last
      // checkpoint lets a redelivered job of this rank end at once.
      await checkpoint(lastPath);
      return {
        metrics: {},
        checkpoint: lastPath,
        steps: trainer.step,
        resumedFromStep,
        backend: backend.name,
        durationMs: Date.now() - started,
      };
    }
    const finalPath = path.join(ctx.runDir, FINAL_CHECKPOINT);
    await checkpoint(finalPath);
    await checkpoint(lastPath);
    const metrics = await evaluateRun(model, evaluation, config, log);
    return {
      metrics,
      checkpoint: finalPath,
      steps: trainer.step,
      resumedFromStep,
      backend: backend.name,
      durationMs: Date.now() - started,
    };
  } finally {
    // Stops the loader's threads whatever ended the loop; a failure to do so must not hide the run's own error.
    await closeStream().catch((e: unknown) =>
      log(`training data: closing the batch loader failed: ${e instanceof Error ? e.message : String(e)}`),
    );
    trainer.dispose();
    model.dispose();
  }
}
