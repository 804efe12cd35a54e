import * as tf from '@tensorflow/tfjs-core';
import { fusedAdamW, nativeKernelsActive } from '@ice/native-kernels';
import { IceError } from '../errors';

/**
 * AdamW with decoupled weight decay, step for step what torch.optim.AdamW does (the optimizer timm's
 * `create_optimizer` builds for `--opt adamw`, used by the released ICE code):
 *
 *   p ← p·(1 − lr·wd)
 *   m ← β1·m + (1 − β1)·g ;  v ← β2·v + (1 − β2)·g²
 *   p ← p − lr/(1 − β1^t) · m / (√v/√(1 − β2^t) + eps)
 *
 * Parameter groups follow timm's `add_weight_decay`: no decay for 1-D tensors, names ending in
 * `.bias`, and the model's `no_weight_decay()` set (`pos_embed`, `cls_token`); `mlp_head.weight`
 * is decayed. Frozen parameters (ICE-f's backbone) get no update and no state, like
 * `requires_grad=False` parameters that timm leaves out of the optimizer.
 */

export interface AdamWConfig {
  /** Learning rate used when `step` is not given one (a schedule normally supplies it). */
  lr: number;
  betas: readonly [number, number];
  eps: number;
  weightDecay: number;
  /** Clip the gradients' global L2 norm to this before the update (torch clip_grad_norm_); null = off. */
  clipGradNorm: number | null;
  /** Names exempt from decay besides 1-D tensors and `*.bias` (timm: the model's no_weight_decay()). */
  noDecayNames: readonly string[];
}

export const ADAMW_PRESETS = {
  /** The released ICE run (README: `--lr 1e-4`, timm defaults otherwise; no clipping). */
  ice: { lr: 1e-4, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.05, clipGradNorm: null, noDecayNames: ['pos_embed', 'cls_token'] },
  /** torch.optim.AdamW's own defaults (weight decay 0.01), same decay groups. */
  torchDefaults: {
    lr: 1e-3,
    betas: [0.9, 0.999],
    eps: 1e-8,
    weightDecay: 0.01,
    clipGradNorm: null,
    noDecayNames: ['pos_embed', 'cls_token'],
  },
} as const satisfies Record<string, AdamWConfig>;

export interface AdamWOptions {
  /** Parameters that must not move (ICE-f: the backbone). Default: none. */
  frozen?: (name: string) => boolean;
}

/** Optimizer state by parameter name, for checkpoints. Tensors are float32, shaped like the parameter. */
export interface AdamWState {
  /** Number of updates taken (torch's `state['step']`, the same for every parameter here). */
  step: number;
  m: Map<string, tf.Tensor>;
  v: Map<string, tf.Tensor>;
}

/** Gradients by timm name (or by tf.Variable name, as `tf.variableGrads` returns them). */
export type Grads = Map<string, tf.Tensor> | tf.NamedTensorMap;

/** timm's `add_weight_decay` rule: true when the parameter is exempt from weight decay. */
export function isNoDecay(
  name: string,
  shape: readonly number[],
  noDecayNames: readonly string[] = ADAMW_PRESETS.ice.noDecayNames,
): boolean {
  return shape.length === 1 || name.endsWith('.bias') || noDecayNames.includes(name);
}

function entries(grads: Grads): [string, tf.Tensor][] {
  return grads instanceof Map ? [...grads.entries()] : Object.entries(grads);
}

/** √(Σ‖g‖²) over all tensors, as a scalar tensor (caller disposes). */
export function globalNorm(tensors: readonly tf.Tensor[]): tf.Scalar {
  return tf.tidy(() => {
    if (tensors.length === 0) return tf.scalar(0);
    return tf.sqrt(tf.addN(tensors.map((t) => tf.sum<tf.Scalar>(tf.square(t)))));
  });
}

interface Slot {
  name: string;
  param: tf.Variable;
  decay: boolean;
  m: tf.Variable;
  v: tf.Variable;
}

export class AdamW {
  readonly config: AdamWConfig;
  private readonly slots = new Map<string, Slot>();
  private readonly frozenNames: string[] = [];
  /** tf.Variable name → timm name, so grads from tf.variableGrads can be passed as they come. */
  private readonly byVarName = new Map<string, string>();
  private steps = 0;
  private disposed = false;

  constructor(params: Map<string, tf.Variable>, config: Partial<AdamWConfig> = {}, options: AdamWOptions = {}) {
    this.config = { ...ADAMW_PRESETS.ice, ...config };
    validate(this.config);
    const frozen = options.frozen ?? (() => false);
    for (const [name, param] of params) {
      if (frozen(name)) {
        this.frozenNames.push(name);
        continue;
      }
      if (param.dtype !== 'float32') throw new IceError('INPUT_INVALID', `AdamW: parameter ${name} is ${param.dtype}, not float32`);
      // Moments are non-trainable variables so that the update can assign them in place.
      const zeros = tf.zerosLike(param);
      this.slots.set(name, {
        name,
        param,
        decay: !isNoDecay(name, param.shape, this.config.noDecayNames),
        m: tf.variable(zeros, false),
        v: tf.variable(zeros, false),
      });
      zeros.dispose(); // the variables hold their own references
      this.byVarName.set(param.name, name);
    }
  }

  /** Updates taken so far. */
  get stepCount(): number {
    return this.steps;
  }

  /** The parameter groups, by name (for logs and tests). */
  groups(): { decay: string[]; noDecay: string[]; frozen: string[] } {
    const decay: string[] = [];
    const noDecay: string[] = [];
    for (const s of this.slots.values()) (s.decay ? decay : noDecay).push(s.name);
    return { decay, noDecay, frozen: [...this.frozenNames] };
  }

  /** The variables that get updates: pass these as `varList` to tf.variableGrads to skip frozen ones. */
  trainableVariables(): tf.Variable[] {
    return [...this.slots.values()].map((s) => s.param);
  }

  /**
   * One update from the gradients of every trainable parameter (keys: timm names or tf.Variable
   * names). Gradients of frozen parameters are ignored; a missing one is an error, because torch
   * would then keep a separate step count for that parameter. Does not dispose `grads`.
   */
  step(grads: Grads, lr: number = this.config.lr): void {
    this.assertLive();
    if (!(lr >= 0) || !Number.isFinite(lr)) throw new IceError('INPUT_INVALID', `AdamW: learning rate must be finite and ≥ 0, got ${lr}`);
    const byName = this.matchGrads(grads);
    const {
      betas: [b1, b2],
      eps,
      weightDecay: wd,
      clipGradNorm,
    } = this.config;
    const t = this.steps + 1;
    const bc1 = 1 - Math.pow(b1, t);
    const sqrtBc2 = Math.sqrt(1 - Math.pow(b2, t));
    // With the native kernels, one fused loop per parameter does the chain below with the same
    // float32 operations in the same order (bit-identical results, adamw.spec checks it).
    const native = nativeKernelsActive();
    tf.tidy(() => {
      // Scalars are built once per step and shared by every parameter's update.
      const sB1 = tf.scalar(b1);
      const s1mB1 = tf.scalar(1 - b1);
      const sB2 = tf.scalar(b2);
      const s1mB2 = tf.scalar(1 - b2);
      // m/(√v/√bc2 + eps)·lr/bc1 = m/(√v + eps·√bc2)·(lr·√bc2/bc1): one scalar add instead of a divide.
      const sEps = tf.scalar(eps * sqrtBc2);
      const sStep = tf.scalar((lr * sqrtBc2) / bc1);
      const sKeep = tf.scalar(1 - lr * wd);
      let coef: tf.Scalar | null = null;
      if (clipGradNorm !== null) {
        // torch.nn.utils.clip_grad_norm_: g·min(1, max/(‖g‖ + 1e-6)), computed on the device (no sync).
        const norm = globalNorm([...byName.values()]);
        coef = tf.minimum(tf.scalar(1), tf.div(tf.scalar(clipGradNorm), tf.add(norm, tf.scalar(1e-6))));
      }
      for (const [name, g0] of byName) {
        const s = this.slots.get(name) as Slot;
        if (native) {
          tf.tidy(() => {
            const [p, m, v] = fusedAdamW(s.param, g0, s.m, s.v, coef, {
              beta1: b1,
              oneMinusBeta1: 1 - b1,
              beta2: b2,
              oneMinusBeta2: 1 - b2,
              eps: eps * sqrtBc2,
              step: (lr * sqrtBc2) / bc1,
              keep: 1 - lr * wd,
              decay: s.decay && wd !== 0,
            });
            s.m.assign(m);
            s.v.assign(v);
            s.param.assign(p);
          });
          continue;
        }
        // One tidy per parameter: its ~10 temporaries are freed before the next parameter's are
        // allocated, so the allocator hands back cache-warm buffers and peak memory stays at one
        // parameter's worth (the update is memory-bound: 13 passes over 4 tensors).
        tf.tidy(() => {
          const g = coef ? tf.mul(g0, coef) : g0;
          const m = tf.add(tf.mul(s.m, sB1), tf.mul(g, s1mB1));
          const v = tf.add(tf.mul(s.v, sB2), tf.mul(tf.square(g), s1mB2));
          const upd = tf.mul(tf.div(m, tf.add(tf.sqrt(v), sEps)), sStep);
          const p = s.decay && wd !== 0 ? tf.mul(s.param, sKeep) : s.param;
          s.m.assign(m);
          s.v.assign(v);
          s.param.assign(tf.sub(p, upd));
        });
      }
    });
    this.steps = t;
  }

  /** Copies of the state (the caller owns and disposes the tensors). Frozen parameters have none. */
  getState(): AdamWState {
    this.assertLive();
    const m = new Map<string, tf.Tensor>();
    const v = new Map<string, tf.Tensor>();
    for (const s of this.slots.values()) {
      m.set(s.name, tf.clone(s.m));
      v.set(s.name, tf.clone(s.v));
    }
    return { step: this.steps, m, v };
  }

  /** Restores a state from `getState` or a checkpoint; copies the tensors (the caller keeps ownership). */
  setState(state: AdamWState): void {
    this.assertLive();
    if (!Number.isInteger(state.step) || state.step < 0)
      throw new IceError('CHECKPOINT_INVALID', `AdamW state: step ${state.step} is not a count`);
    for (const [which, map] of [
      ['m', state.m],
      ['v', state.v],
    ] as const) {
      for (const name of map.keys()) {
        if (!this.slots.has(name))
          throw new IceError('CHECKPOINT_INVALID', `AdamW state: ${which} has ${name}, which is not a trainable parameter`);
      }
      for (const s of this.slots.values()) {
        const t = map.get(s.name);
        if (!t) throw new IceError('CHECKPOINT_INVALID', `AdamW state: ${which} lacks ${s.name}`);
        if (!tf.util.arraysEqual(t.shape, s.param.shape)) {
          throw new IceError(
            'CHECKPOINT_INVALID',
            `AdamW state: ${which}[${s.name}] is [${t.shape.join(',')}], parameter is [${s.param.shape.join(',')}]`,
          );
        }
      }
    }
    for (const s of this.slots.values()) {
      tf.tidy(() => {
        s.m.assign(tf.cast(state.m.get(s.name) as tf.Tensor, 'float32'));
        s.v.assign(tf.cast(state.v.get(s.name) as tf.Tensor, 'float32'));
      });
    }
    this.steps = state.step;
  }

  /** Frees the moment variables (not the parameters, which belong to the model). */
  dispose(): void {
    if (this.disposed) return;
    for (const s of this.slots.values()) {
      s.m.dispose();
      s.v.dispose();
    }
    this.disposed = true;
  }

  private assertLive(): void {
    if (this.disposed) throw new IceError('INPUT_INVALID', 'AdamW: used after dispose()');
  }

  private matchGrads(grads: Grads): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    for (const [key, g] of entries(grads)) {
      const name = this.slots.has(key) ? key : this.byVarName.get(key);
      if (name === undefined) {
        if (this.frozenNames.includes(key)) continue;
        throw new IceError('INPUT_INVALID', `AdamW: gradient for unknown parameter ${key}`);
      }
      const p = (this.slots.get(name) as Slot).param;
      if (!tf.util.arraysEqual(g.shape, p.shape)) {
        throw new IceError('INPUT_INVALID', `AdamW: gradient of ${name} is [${g.shape.join(',')}], parameter is [${p.shape.join(',')}]`);
      }
      if (g.dtype !== 'float32') throw new IceError('INPUT_INVALID', `AdamW: gradient of ${name} is ${g.dtype}, not float32`);
      out.set(name, g);
    }
    const missing = [...this.slots.keys()].filter((n) => !out.has(n));
    if (missing.length) {
      throw new IceError(
        'INPUT_INVALID',
        `AdamW: no gradient for ${missing.length} trainable parameter(s): ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`,
      );
    }
    return out;
  }
}

function validate(c: AdamWConfig): void {
  const [b1, b2] = c.betas;
  const bad = (msg: string): never => {
    throw new IceError('CONFIG_INVALID', `AdamW: ${msg}`);
  };
  if (!(c.lr >= 0) || !Number.isFinite(c.lr)) bad(`lr must be finite and ≥ 0, got ${c.lr}`);
  if (!(b1 >= 0 && b1 < 1) || !(b2 >= 0 && b2 < 1)) bad(`betas must be in [0, 1), got (${b1}, ${b2})`);
  if (!(c.eps > 0)) bad(`eps must be > 0, got ${c.eps}`);
  if (!(c.weightDecay >= 0) || !Number.isFinite(c.weightDecay)) bad(`weightDecay must be finite and ≥ 0, got ${c.weightDecay}`);
  if (c.clipGradNorm !== null && !(c.clipGradNorm > 0)) bad(`clipGradNorm must be > 0 or null, got ${c.clipGradNorm}`);
}

/**
 * Sums gradients over k micro-batches and hands back their mean, so that k micro-batches of b
 * samples under a mean loss give the gradient of one batch of k·b. Copies what it is given.
 */
export class GradAccumulator {
  private sums = new Map<string, tf.Tensor>();
  private n = 0;

  /** Micro-batches added since the last reset. */
  get count(): number {
    return this.n;
  }

  /** Adds one micro-batch's gradients (not disposed: the caller keeps ownership). */
  add(grads: Grads): void {
    const list = entries(grads);
    if (this.n > 0) {
      const extra = list.filter(([k]) => !this.sums.has(k)).map(([k]) => k);
      if (extra.length || list.length !== this.sums.size) {
        throw new IceError(
          'INPUT_INVALID',
          `GradAccumulator: micro-batch gradients name different parameters${extra.length ? ` (new: ${extra.slice(0, 5).join(', ')})` : ''}`,
        );
      }
    }
    for (const [name, g] of list) {
      const prev = this.sums.get(name);
      if (prev && !tf.util.arraysEqual(prev.shape, g.shape)) {
        throw new IceError(
          'INPUT_INVALID',
          `GradAccumulator: ${name} changed shape from [${prev.shape.join(',')}] to [${g.shape.join(',')}]`,
        );
      }
      // clone shares the buffer (no copy); it only keeps the data alive after the caller disposes g.
      this.sums.set(name, prev ? tf.add(prev, g) : tf.clone(g));
      prev?.dispose();
    }
    this.n++;
  }

  /** Mean over the micro-batches added (new tensors, the caller disposes), and resets. */
  takeMean(): Map<string, tf.Tensor> {
    if (this.n === 0) throw new IceError('INPUT_INVALID', 'GradAccumulator: no micro-batch added');
    const out = new Map<string, tf.Tensor>();
    const k = this.n;
    for (const [name, s] of this.sums) {
      out.set(name, k === 1 ? s : tf.tidy(() => tf.div(s, tf.scalar(k))));
      if (k !== 1) s.dispose();
    }
    this.sums = new Map();
    this.n = 0;
    return out;
  }

  /** Drops what was accumulated. */
  reset(): void {
    for (const s of this.sums.values()) s.dispose();
    this.sums = new Map();
    this.n = 0;
  }

  dispose(): void {
    this.reset();
  }
}
