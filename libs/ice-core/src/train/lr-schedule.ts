/**
 * Cosine learning rate with linear warm-up, with the semantics of timm's CosineLRScheduler
 * (`_get_lr`): t_initial = total, warmup_t = warmup, warmup_lr_init = warmupLr, lr_min = minLr.
 *
 *   t < warmup:  lr = warmupLr + t·(baseLr − warmupLr)/warmup
 *   otherwise:   lr = minLr + ½(baseLr − minLr)(1 + cos(π·t/total))       (t − warmup with warmupPrefix)
 *   after cycleLimit cycles: minLr
 *
 * Note that without `warmupPrefix` the cosine is measured from t = 0, so the warm-up eats into it
 * (timm's default). `unit: 'step'` is timm's t_in_epochs=False (t = optimizer updates, stepped by
 * step_update); `unit: 'epoch'` is t_in_epochs=True (lr constant within an epoch).
 */
import { IceError } from '../errors';

interface CosineCommon {
  baseLr: number;
  /** warmup_lr_init: the lr at t = 0 when there is a warm-up. */
  warmupLr: number;
  /** lr_min: the floor of the cosine and the lr after the last cycle. */
  minLr: number;
  /** Start the cosine after the warm-up instead of at t = 0 (timm warmup_prefix). Default false. */
  warmupPrefix?: boolean;
  /** Cycles before the lr stays at minLr; 0 = restart forever (timm 0.4.12 semantics). Default 1, what create_scheduler passes. */
  cycleLimit?: number;
  /** t_mul: each cycle is this much longer than the previous. Default 1. */
  cycleMul?: number;
  /** decay_rate: each cycle's peak and floor are multiplied by this. Default 1. */
  decayRate?: number;
  /** k_decay (timm ≥ 0.5): cos(π·t^k/T^k). Default 1. */
  kDecay?: number;
}

export interface CosineStepConfig extends CosineCommon {
  unit: 'step';
  /** t_initial in optimizer updates. */
  totalSteps: number;
  /** warmup_t in optimizer updates (0 = none). */
  warmupSteps: number;
}

export interface CosineEpochConfig extends CosineCommon {
  unit: 'epoch';
  /** t_initial in epochs. */
  totalEpochs: number;
  /** warmup_t in epochs (0 = none). */
  warmupEpochs: number;
  /**
   * DeiT's (and the released ICE code's) loop calls `lr_scheduler.step(epoch)` after epoch e rather
   * than `step(e + 1)`, so epoch e trains at lr(max(0, e − 1)): epochs 0 and 1 both use lr(0).
   * Default false (timm's train.py semantics: epoch e at lr(e)).
   */
  deitEpochLag?: boolean;
}

export type CosineLrConfig = CosineStepConfig | CosineEpochConfig;

export const LR_SCHEDULE_PRESETS = {
  /**
   * The released ICE run: `--lr 1e-4`, 5 warm-up epochs from 1e-5, min 1e-5, 3 epochs, stepped per
   * epoch with DeiT's lag. The warm-up never ends: epochs 0, 1, 2 train at 1e-5, 1e-5, 2.8e-5.
   */
  iceReleased: {
    unit: 'epoch',
    baseLr: 1e-4,
    warmupLr: 1e-5,
    minLr: 1e-5,
    totalEpochs: 3,
    warmupEpochs: 5,
    deitEpochLag: true,
  },
} as const satisfies Record<string, CosineLrConfig>;

export class CosineLrSchedule {
  readonly config: CosineLrConfig;
  private readonly total: number;
  private readonly warmup: number;
  private readonly warmupSlope: number;

  constructor(config: CosineLrConfig) {
    this.config = config;
    this.total = config.unit === 'step' ? config.totalSteps : config.totalEpochs;
    this.warmup = config.unit === 'step' ? config.warmupSteps : config.warmupEpochs;
    validate(config, this.total, this.warmup);
    // timm precomputes the per-t warm-up increment; same expression, same rounding.
    this.warmupSlope = this.warmup > 0 ? (config.baseLr - config.warmupLr) / this.warmup : 1;
  }

  /** timm `_get_lr(t)`, t in the schedule's unit (updates or epochs). */
  valueAt(t: number): number {
    const c = this.config;
    if (!(t >= 0)) throw new IceError('INPUT_INVALID', `lr schedule: t must be ≥ 0, got ${t}`);
    if (t < this.warmup) return c.warmupLr + t * this.warmupSlope;
    if (c.warmupPrefix) t = t - this.warmup;
    const tMul = c.cycleMul ?? 1;
    const T = this.total;
    let i: number;
    let tI: number;
    let tCurr: number;
    if (tMul !== 1) {
      i = Math.floor(Math.log(1 - (t / T) * (1 - tMul)) / Math.log(tMul));
      tI = Math.pow(tMul, i) * T;
      tCurr = t - ((1 - Math.pow(tMul, i)) / (1 - tMul)) * T;
    } else {
      i = Math.floor(t / T);
      tI = T;
      tCurr = t - T * i;
    }
    const limit = c.cycleLimit ?? 1;
    if (limit !== 0 && i >= limit) return c.minLr;
    const gamma = Math.pow(c.decayRate ?? 1, i);
    const lrMin = c.minLr * gamma;
    const lrMax = c.baseLr * gamma;
    const k = c.kDecay ?? 1;
    const frac = k === 1 ? tCurr / tI : Math.pow(tCurr, k) / Math.pow(tI, k);
    return lrMin + 0.5 * (lrMax - lrMin) * (1 + Math.cos(Math.PI * frac));
  }

  /**
   * The lr for optimizer update `update` (0-based). Step unit: `valueAt(update)` (timm sets it
   * with step_update after each update and starts at valueAt(0)). Epoch unit: the lr of the epoch
   * the update falls in, which needs `stepsPerEpoch`.
   */
  lrForUpdate(update: number, stepsPerEpoch?: number): number {
    if (!Number.isInteger(update) || update < 0)
      throw new IceError('INPUT_INVALID', `lr schedule: update index must be an integer ≥ 0, got ${update}`);
    if (this.config.unit === 'step') return this.valueAt(update);
    if (stepsPerEpoch === undefined || !Number.isInteger(stepsPerEpoch) || stepsPerEpoch < 1) {
      throw new IceError(
        'INPUT_INVALID',
        `lr schedule: an epoch schedule needs stepsPerEpoch ≥ 1 to map updates to epochs, got ${stepsPerEpoch}`,
      );
    }
    return this.lrForEpoch(Math.floor(update / stepsPerEpoch));
  }

  /** The lr an epoch-unit schedule trains epoch `epoch` (0-based) at, with DeiT's lag if configured. */
  lrForEpoch(epoch: number): number {
    if (this.config.unit !== 'epoch')
      throw new IceError('INPUT_INVALID', 'lr schedule: lrForEpoch needs an epoch-unit schedule; use lrForUpdate');
    if (!Number.isInteger(epoch) || epoch < 0)
      throw new IceError('INPUT_INVALID', `lr schedule: epoch must be an integer ≥ 0, got ${epoch}`);
    return this.valueAt(this.config.deitEpochLag ? Math.max(0, epoch - 1) : epoch);
  }
}

function validate(c: CosineLrConfig, total: number, warmup: number): void {
  const bad = (msg: string): never => {
    throw new IceError('CONFIG_INVALID', `cosine lr schedule: ${msg}`);
  };
  for (const [k, v] of [
    ['baseLr', c.baseLr],
    ['warmupLr', c.warmupLr],
    ['minLr', c.minLr],
  ] as const) {
    if (!(v >= 0) || !Number.isFinite(v)) bad(`${k} must be finite and ≥ 0, got ${v}`);
  }
  if (!(total > 0) || !Number.isFinite(total)) bad(`the total length must be > 0, got ${total}`);
  if (!(warmup >= 0) || !Number.isFinite(warmup)) bad(`the warm-up length must be ≥ 0, got ${warmup}`);
  const tMul = c.cycleMul ?? 1;
  if (!(tMul > 0)) bad(`cycleMul must be > 0, got ${tMul}`);
  const limit = c.cycleLimit ?? 1;
  if (!Number.isInteger(limit) || limit < 0) bad(`cycleLimit must be an integer ≥ 0, got ${limit}`);
  if (!((c.kDecay ?? 1) > 0)) bad(`kDecay must be > 0, got ${c.kDecay}`);
}
