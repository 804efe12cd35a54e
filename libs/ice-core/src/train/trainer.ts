/**
 * The ICE training loop's step, split in two so that data-parallel ranks can meet in between:
 * `computeGradients` (forward, loss, backward on one micro-batch) and `applyGradients`
 * (learning rate, AdamW). `trainStep` is both, with gradient accumulation.
 */
import * as tf from '@tensorflow/tfjs-core';
import { IceError } from '../errors';
import { ICE_LOSS_PRESETS, iceLoss, IceLossConfig, iceLossConfigIssues, validateIceLossConfig } from '../loss/ice-loss';
import { IceVit } from '../model/vit.model';
import { ADAMW_PRESETS, AdamW, AdamWConfig, GradAccumulator } from './adamw';
import { CosineLrSchedule, CosineStepConfig } from './lr-schedule';
import { Rng } from './rng';
import { Mixup, MixupConfig, MIXUP_PRESETS } from './targets';

export const TRAIN_MODES = ['ice', 'classify'] as const;
export type TrainMode = (typeof TRAIN_MODES)[number];

export interface TrainConfig {
  /** 'ice': adversarial normalization on the ICE head; 'classify': CLS head + cross-entropy (pre-training). */
  mode: TrainMode;
  loss: IceLossConfig;
  optimizer: AdamWConfig;
  /** Cosine schedule in optimizer updates. */
  schedule: Omit<CosineStepConfig, 'unit'>;
  mixup: Omit<MixupConfig, 'numClasses'>;
  /** Micro-batches per optimizer update. */
  accumSteps: number;
  /** ICE-f: only the ICE head learns. */
  frozenBackbone: boolean;
  seed: number;
  /** A warm-up of the background term (see LambdaWarmup); absent or null: the loss's λ_class from the first update. */
  lambdaWarmup?: LambdaWarmup | null;
}

/**
 * λ_class moves linearly from `from` to the loss's λ_class over the first `steps` optimizer
 * updates, then stays there: a stronger background term while the ICE head is young. From a random
 * head almost every patch is foreground, and with every patch foreground both terms of the loss see
 * only the image's mean patch, so nothing separates one patch from another; at the released λ the
 * background term is too weak to pull any patch across, and the maps stay all-foreground
 * (docs/collapse.md has the evidence). The released code has no warm-up (null).
 */
export interface LambdaWarmup {
  from: number;
  steps: number;
}

/** The loss in force at optimizer update `step` (0-based): the configured one, λ_class warmed up. */
export function lossConfigAt(c: Pick<TrainConfig, 'loss' | 'lambdaWarmup'>, step: number): IceLossConfig {
  const w = c.lambdaWarmup;
  if (!w || w.steps === 0 || step >= w.steps) return c.loss;
  const t = Math.max(0, step) / w.steps;
  return { ...c.loss, lambdaClass: w.from + t * (c.loss.lambdaClass - w.from) };
}

export const TRAIN_PRESETS = {
  /** The released ICE recipe, scaled to steps (lr 1e-4, wd 0.05, mixup/cutmix + smoothing 0.1). */
  iceReleased: {
    mode: 'ice',
    loss: ICE_LOSS_PRESETS.official,
    optimizer: ADAMW_PRESETS.ice,
    schedule: { baseLr: 1e-4, warmupLr: 1e-5, minLr: 1e-5, totalSteps: 1000, warmupSteps: 100 },
    mixup: MIXUP_PRESETS.deit,
    accumSteps: 1,
    frozenBackbone: false,
    seed: 0,
  },
  /** Plain classification pre-training of a small backbone (the built-in benchmark). */
  classify: {
    mode: 'classify',
    loss: ICE_LOSS_PRESETS.official,
    optimizer: { ...ADAMW_PRESETS.ice, lr: 1e-3 },
    schedule: { baseLr: 1e-3, warmupLr: 1e-5, minLr: 1e-5, totalSteps: 1000, warmupSteps: 50 },
    mixup: MIXUP_PRESETS.smoothingOnly,
    accumSteps: 1,
    frozenBackbone: false,
    seed: 0,
  },
} as const satisfies Record<string, TrainConfig>;

export function validateTrainConfig(c: TrainConfig): void {
  if (c.mode !== 'ice' && c.mode !== 'classify')
    throw new IceError('CONFIG_INVALID', `train mode must be ice or classify, got ${String(c.mode)}`);
  validateIceLossConfig(c.loss);
  if (!Number.isInteger(c.accumSteps) || c.accumSteps < 1)
    throw new IceError('CONFIG_INVALID', `accumSteps must be a positive integer, got ${c.accumSteps}`);
  if (!Number.isInteger(c.seed)) throw new IceError('CONFIG_INVALID', `seed must be an integer, got ${c.seed}`);
  const w = c.lambdaWarmup;
  if (w) {
    if (!Number.isInteger(w.steps) || w.steps < 0)
      throw new IceError('CONFIG_INVALID', `lambdaWarmup.steps must be an integer ≥ 0, got ${w.steps}`);
    const bad = iceLossConfigIssues({ ...c.loss, lambdaClass: w.from }).find((i) => i.field === 'lambdaClass');
    if (bad) throw new IceError('CONFIG_INVALID', `lambdaWarmup.from must be ${bad.rule}, got ${String(w.from)}`);
  }
}

/** The loss of one micro-batch and, in ICE mode, its terms and the foreground fraction (see iceLoss). */
export interface LossStats {
  loss: number;
  lIce?: number;
  lBg?: number;
  clsPer?: number;
}

export interface StepStats extends LossStats {
  /** Optimizer updates done after this call. */
  step: number;
  lr: number;
  /** True when this call completed an optimizer update (false while accumulating). */
  updated: boolean;
}

export interface GradientResult extends LossStats {
  /** Gradients by parameter name (timm names, internal layout). Caller owns them. */
  grads: Map<string, tf.Tensor>;
}

/** Everything besides the weights that a bit-exact resume needs. */
export interface TrainerState {
  step: number;
  microStep: number;
  rng: number[];
}

export class IceTrainer {
  readonly optimizer: AdamW;
  readonly schedule: CosineLrSchedule;
  readonly rng: Rng;
  private readonly mixup: Mixup;
  private readonly accumulator = new GradAccumulator();
  private readonly varToName = new Map<string, string>();
  private readonly trainable: tf.Variable[];
  private microStep = 0;

  constructor(
    readonly model: IceVit,
    readonly config: TrainConfig,
  ) {
    validateTrainConfig(config);
    if (config.mode === 'ice' && model.config.iceHead === 'none')
      throw new IceError('CONFIG_INVALID', 'ICE training needs a model with an ICE head');
    const backbone = new Set(model.specs.filter((s) => s.backbone).map((s) => s.name));
    this.optimizer = new AdamW(model.params, config.optimizer, { frozen: (n) => config.frozenBackbone && backbone.has(n) });
    this.schedule = new CosineLrSchedule({ unit: 'step', ...config.schedule });
    this.rng = new Rng(config.seed);
    this.mixup = new Mixup({ ...config.mixup, numClasses: model.config.numClasses }, this.rng);
    for (const [name, v] of model.params) this.varToName.set(v.name, name);
    this.trainable = this.optimizer.trainableVariables();
  }

  get step(): number {
    return this.optimizer.stepCount;
  }

  lr(): number {
    return this.schedule.valueAt(this.step);
  }

  /** Forward, loss and backward on one micro-batch (x: NCHW normalised, labels: class indices). */
  computeGradients(x: tf.Tensor4D, labels: readonly number[]): GradientResult {
    const mixed = this.mixup.apply(x, labels);
    const diag: tf.Tensor[] = [];
    try {
      const { value, grads } = tf.variableGrads(() => {
        const out = this.model.forward(mixed.x, {
          training: true,
          random: () => this.rng.uniform(),
          skipIceHead: this.config.mode === 'classify',
        });
        if (this.config.mode === 'classify') {
          // Soft cross-entropy on the CLS head (mixup/smoothing targets).
          const ce: tf.Scalar = tf.neg(tf.mean(tf.sum(tf.mul(mixed.targets, tf.logSoftmax(out.clsLogits)), -1)));
          return ce;
        }
        const l = iceLoss(out.zIce!, mixed.targets, lossConfigAt(this.config, this.step));
        diag.push(tf.keep(l.lIce), tf.keep(l.lBg), tf.keep(l.clsPer));
        return l.total;
      }, this.trainable);
      const named = new Map<string, tf.Tensor>();
      for (const [vname, g] of Object.entries(grads)) named.set(this.varToName.get(vname) ?? vname, g);
      // The released code adds 0·CE(CLS logits) so that `norm` and `head` get a zero gradient (and
      // so AdamW's decoupled decay still shrinks them); zeros for unreached parameters do the same.
      for (const v of this.trainable) {
        const name = this.varToName.get(v.name)!;
        if (!named.has(name)) named.set(name, tf.zerosLike(v));
      }
      const [loss, lIce, lBg, clsPer] = [value, ...diag].map((t) => t.dataSync()[0]);
      value.dispose();
      if (!Number.isFinite(loss)) {
        tf.dispose([...named.values()]);
        throw new IceError(
          'NON_FINITE_LOSS',
          `loss is ${loss} at step ${this.step} (lr ${this.lr()}); the update was not applied and saved checkpoints are untouched`,
          { step: this.step, loss },
        );
      }
      return this.config.mode === 'ice' ? { grads: named, loss, lIce, lBg, clsPer } : { grads: named, loss };
    } finally {
      tf.dispose([mixed.x, mixed.targets, ...diag]);
    }
  }

  /** One optimizer update with the schedule's learning rate. Disposes nothing it is given. */
  applyGradients(grads: Map<string, tf.Tensor>): number {
    const lr = this.lr();
    this.optimizer.step(grads, lr);
    return lr;
  }

  /**
   * A micro-batch's gradients, accumulated: every accumSteps-th call returns the mean gradient of
   * the update (the caller owns and disposes it, and applies it — after averaging it across
   * data-parallel ranks), the others return null.
   */
  accumulateGradients(x: tf.Tensor4D, labels: readonly number[]): { stats: LossStats; update: Map<string, tf.Tensor> | null } {
    const { grads, ...stats } = this.computeGradients(x, labels);
    if (this.config.accumSteps === 1) return { stats, update: grads };
    this.accumulator.add(grads);
    tf.dispose([...grads.values()]);
    this.microStep++;
    if (this.microStep < this.config.accumSteps) return { stats, update: null };
    this.microStep = 0;
    return { stats, update: this.accumulator.takeMean() };
  }

  /** A micro-batch; every accumSteps-th call updates the weights with the mean gradient. */
  trainStep(x: tf.Tensor4D, labels: readonly number[]): StepStats {
    const { stats, update } = this.accumulateGradients(x, labels);
    if (!update) return { ...stats, step: this.step, lr: this.lr(), updated: false };
    try {
      const lr = this.applyGradients(update);
      return { ...stats, step: this.step, lr, updated: true };
    } finally {
      tf.dispose([...update.values()]);
    }
  }

  getState(): TrainerState {
    if (this.microStep !== 0) throw new IceError('CHECKPOINT_INVALID', 'checkpoint requested in the middle of gradient accumulation');
    return { step: this.step, microStep: this.microStep, rng: this.rng.getState() };
  }

  setState(s: TrainerState): void {
    this.rng.setState(s.rng);
    this.microStep = s.microStep;
  }

  dispose(): void {
    this.accumulator.dispose();
    this.optimizer.dispose();
  }
}
