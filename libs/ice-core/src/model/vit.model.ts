import * as tf from '@tensorflow/tfjs-core';
import { IceError } from '../errors';
import { numel, StateDict, TensorRecord } from '../weights/state-dict';
import { gelu, layerNorm, linear, attentionCore } from './fast-ops';
import { resamplePosEmbed } from './pos-embed';
import { iceMargin, type PruneOptions, type PruneTrace, resolvePruneOptions, TokenPruner } from './token-pruning';
import { gridSize, iceHidden, VitConfig } from './vit.config';

/**
 * A timm/DeiT VisionTransformer with the ICE heads, read top to bottom:
 * parameter table → initialisation → forward → checkpoint conversion.
 *
 * Parameters are tf.Variables keyed by timm's names. Linear weights are kept as [in, out]
 * (PyTorch stores [out, in]) and the patch-embedding conv as a [C·P·P, D] matrix, so that the
 * hot path multiplies without transposes; conversion happens only when loading or saving.
 */

/** How a parameter's internal layout relates to PyTorch's. */
type Layout = 'plain' | 'linear' | 'patch';

export interface ParamSpec {
  name: string;
  /** Shape in the PyTorch checkpoint. */
  torchShape: number[];
  /** Shape of the tf.Variable. */
  shape: number[];
  layout: Layout;
  init: 'zeros' | 'ones' | 'trunc02' | 'cls' | 'patch';
  /** Part of the backbone (frozen in ICE-f) as opposed to an ICE head. */
  backbone: boolean;
}

export function paramSpecs(c: VitConfig): ParamSpec[] {
  const D = c.embedDim;
  const hidden = Math.round(D * c.mlpRatio);
  const pp = c.inChans * c.patchSize * c.patchSize;
  const T = gridSize(c) ** 2 + 1;
  const specs: ParamSpec[] = [];
  const add = (name: string, torchShape: number[], layout: Layout, init: ParamSpec['init'], backbone = true): void => {
    const shape = layout === 'linear' ? [torchShape[1], torchShape[0]] : layout === 'patch' ? [pp, torchShape[0]] : torchShape;
    specs.push({ name, torchShape, shape, layout, init, backbone });
  };
  const lin = (name: string, out: number, inp: number, bias: boolean, backbone = true): void => {
    add(`${name}.weight`, [out, inp], 'linear', 'trunc02', backbone);
    if (bias) add(`${name}.bias`, [out], 'plain', 'zeros', backbone);
  };
  const norm = (name: string): void => {
    add(`${name}.weight`, [D], 'plain', 'ones');
    add(`${name}.bias`, [D], 'plain', 'zeros');
  };
  add('cls_token', [1, 1, D], 'plain', 'cls');
  add('pos_embed', [1, T, D], 'plain', 'trunc02');
  add('patch_embed.proj.weight', [D, c.inChans, c.patchSize, c.patchSize], 'patch', 'patch');
  add('patch_embed.proj.bias', [D], 'plain', 'zeros');
  for (let i = 0; i < c.depth; i++) {
    norm(`blocks.${i}.norm1`);
    lin(`blocks.${i}.attn.qkv`, 3 * D, D, c.qkvBias);
    lin(`blocks.${i}.attn.proj`, D, D, true);
    norm(`blocks.${i}.norm2`);
    lin(`blocks.${i}.mlp.fc1`, hidden, D, true);
    lin(`blocks.${i}.mlp.fc2`, D, hidden, true);
  }
  norm('norm');
  lin('head', c.numClasses, D, true);
  const k = c.numClasses + 1;
  switch (c.iceHead) {
    case 'none':
      break;
    case 'official':
      lin('mlp_head', k, D, false, false);
      break;
    case 'icef':
      lin('mlp_head_1', iceHidden(c), D, true, false);
      lin('mlp_head', k, iceHidden(c), false, false);
      break;
    case 'paper':
      lin('ice_head.fc1', iceHidden(c), D, true, false);
      lin('ice_head.fc2', k, iceHidden(c), true, false);
      break;
  }
  return specs;
}

export interface ForwardOptions {
  /** Enables stochastic depth (needs `random`). */
  training?: boolean;
  /** Uniform [0,1) source for stochastic depth, so that a seeded run repeats exactly. */
  random?: () => number;
  /** Keep each block's post-softmax attention [B, heads, T, T] in the output. */
  returnAttention?: boolean;
  /**
   * Called with each block's post-softmax attention; its result replaces it. Explainers multiply
   * a ones-gate here to obtain ∂y/∂A (and ∇A ⊙ A) from one backward pass.
   */
  attentionHook?: (block: number, attn: tf.Tensor4D) => tf.Tensor4D;
  /** Skip the ICE head even if the model has one (plain classification pre-training). */
  skipIceHead?: boolean;
  /**
   * Token pruning, an inference mode (ICE or EViT ranking; token-pruning.ts): after the attention of
   * the pruning blocks only the top ⌈ρ·(N−1)⌉ non-CLS tokens go on. Not with `training`.
   */
  prune?: PruneOptions;
}

export interface ForwardOutput {
  /** [B, numClasses] from head(norm(t)[:, 0]). */
  clsLogits: tf.Tensor2D;
  /** [B, N, D]: the last block's patch tokens before the final norm (the ICE heads' input). */
  prenormPatchTokens: tf.Tensor3D;
  /** [B, N, numClasses + 1], background last; present when the model has an ICE head. */
  zIce?: tf.Tensor3D;
  /** Per block, [B, heads, T, T]; with `returnAttention` (T shrinks after a pruning block). */
  attention?: tf.Tensor4D[];
  /**
   * With `prune`: token counts after each block and each image's surviving tokens (original patch
   * index, −1 for a fused token), the order of `prenormPatchTokens` and `zIce`, which then cover
   * only the surviving tokens.
   */
  pruning?: PruneTrace;
}

export interface LoadOptions {
  /**
   * Names (or prefixes ending in '*') that may be absent from the checkpoint and keep their
   * initialisation, e.g. ['mlp_head*'] when starting ICE from a plain DeiT checkpoint. Anything
   * else missing is an error: the released code's strict=False silently leaves a random head.
   */
  allowMissing?: string[];
  /** Names (or prefixes ending in '*') in the checkpoint to ignore, e.g. ['head_dist*', 'dist_token']. */
  ignore?: string[];
}

export interface LoadReport {
  loaded: string[];
  keptInitialised: string[];
  ignored: string[];
  /** Set when pos_embed was resampled from another grid. */
  posEmbedResampled?: { from: number; to: number };
}

function matches(name: string, patterns: readonly string[] | undefined): boolean {
  return (patterns ?? []).some((p) => (p.endsWith('*') ? name.startsWith(p.slice(0, -1)) : name === p));
}

export class IceVit {
  readonly specs: ParamSpec[];
  readonly params = new Map<string, tf.Variable>();
  private readonly specByName: Map<string, ParamSpec>;

  private constructor(readonly config: VitConfig) {
    this.specs = paramSpecs(config);
    this.specByName = new Map(this.specs.map((s) => [s.name, s]));
  }

  /** A model with timm-style random initialisation, deterministic from `seed`. */
  static create(config: VitConfig, seed = 0): IceVit {
    const m = new IceVit(config);
    m.specs.forEach((s, i) => {
      const value = tf.tidy(() => {
        // One stream per parameter (adding a head does not shift the others); +1 because tfjs reads seed 0 as "unseeded".
        const sd = seed * 1000 + i + 1;
        switch (s.init) {
          case 'zeros':
            return tf.zeros(s.shape);
          case 'ones':
            return tf.ones(s.shape);
          case 'trunc02':
            return tf.truncatedNormal(s.shape, 0, 0.02, 'float32', sd);
          case 'cls':
            return tf.randomNormal(s.shape, 0, 1e-6, 'float32', sd);
          case 'patch': {
            // PyTorch's Conv2d default (kaiming_uniform a=√5): U(−1/√fan_in, 1/√fan_in).
            const bound = 1 / Math.sqrt(s.shape[0]);
            return tf.randomUniform(s.shape, -bound, bound, 'float32', sd);
          }
        }
      });
      m.params.set(s.name, tf.variable(value, true)); // unnamed: tfjs variable names are process-global
      value.dispose();
    });
    return m;
  }

  private p(name: string): tf.Variable {
    const v = this.params.get(name);
    if (!v) throw new IceError('WEIGHTS_MISMATCH', `model has no parameter ${name}`);
    return v;
  }

  private p2(name: string): tf.Tensor2D {
    return this.p(name) as unknown as tf.Tensor2D;
  }

  private p1(name: string): tf.Tensor1D {
    return this.p(name) as unknown as tf.Tensor1D;
  }

  /** Trainable variables: all, or only the ICE head's (`frozenBackbone`, ICE-f). */
  trainableVariables(frozenBackbone = false): tf.Variable[] {
    return this.specs.filter((s) => !frozenBackbone || !s.backbone).map((s) => this.p(s.name));
  }

  // ---------------------------------------------------------------- forward

  /** x: NCHW float32 [B, inChans, imgSize, imgSize], already normalised. */
  forward(x: tf.Tensor4D, opts: ForwardOptions = {}): ForwardOutput {
    const c = this.config;
    const [B, C, H, W] = x.shape;
    if (C !== c.inChans || H !== c.imgSize || W !== c.imgSize) {
      throw new IceError('INPUT_INVALID', `input must be NCHW [B, ${c.inChans}, ${c.imgSize}, ${c.imgSize}], got [${x.shape.join(', ')}]`);
    }
    const D = c.embedDim;
    const dropRates = Array.from({ length: c.depth }, (_, i) => (c.depth > 1 ? (c.dropPathRate * i) / (c.depth - 1) : c.dropPathRate));
    const attention: tf.Tensor4D[] = [];
    if (opts.prune && opts.training) throw new IceError('CONFIG_INVALID', 'token pruning is an inference mode: not with training');
    const pruner = opts.prune
      ? new TokenPruner(resolvePruneOptions(opts.prune, c), B, gridSize(c) ** 2, (tokens) => iceMargin(this, tokens))
      : undefined;

    let t = this.embed(x); // [B,T,D]
    for (let i = 0; i < c.depth; i++) {
      const pre = `blocks.${i}`;
      const T = t.shape[1]; // N + 1, fewer after a pruning block
      const prunes = pruner?.prunesAt(i, T) ?? false;
      // Attention branch. Rows of all images are stacked: [B·T, D].
      const h = layerNorm(tf.reshape(t, [B * T, D]), this.p1(`${pre}.norm1.weight`), this.p1(`${pre}.norm1.bias`), c.layerNormEps);
      const qkv = linear(h, this.p2(`${pre}.attn.qkv.weight`), c.qkvBias ? this.p1(`${pre}.attn.qkv.bias`) : undefined); // [B·T, 3D]
      // Without a hook the core is one fused op whose attn is recomputed if read: when the
      // attention is wanted, an identity hook makes the core keep it instead. Pruning reads only
      // the CLS row (clsAttn), which the fused core computes on its own.
      const hook = opts.attentionHook
        ? (a: tf.Tensor4D) => opts.attentionHook!(i, a)
        : opts.returnAttention
          ? (a: tf.Tensor4D) => a
          : undefined;
      const core = attentionCore(qkv, B, T, c.numHeads, hook); // out [B·T, D], attn [B,H,T,T]
      if (opts.returnAttention) attention.push(core.attn);
      const a = linear(core.out, this.p2(`${pre}.attn.proj.weight`), this.p1(`${pre}.attn.proj.bias`));
      t = tf.add(t, this.dropPath(tf.reshape(a, [B, T, D]), dropRates[i], opts));
      // EViT's reorganisation point: after the attention residual, before the MLP ([B,T,D] → [B,T',D]).
      if (prunes) t = pruner!.prune(t, pruner!.needsAttention() ? core.clsAttn : undefined);
      const Tm = t.shape[1];
      // MLP branch.
      const h2 = layerNorm(tf.reshape(t, [B * Tm, D]), this.p1(`${pre}.norm2.weight`), this.p1(`${pre}.norm2.bias`), c.layerNormEps);
      const m = linear(
        gelu(linear(h2, this.p2(`${pre}.mlp.fc1.weight`), this.p1(`${pre}.mlp.fc1.bias`))),
        this.p2(`${pre}.mlp.fc2.weight`),
        this.p1(`${pre}.mlp.fc2.bias`),
      );
      t = tf.add(t, this.dropPath(tf.reshape(m, [B, Tm, D]), dropRates[i], opts));
      pruner?.record(t);
    }

    const N = t.shape[1] - 1;
    const prenormPatchTokens = tf.slice(t, [0, 1, 0], [B, N, D]); // [B,N,D]
    // Only the CLS row goes through the final norm and the head: the patch rows' normed features are unused.
    const clsFeat = layerNorm(
      tf.reshape(tf.slice(t, [0, 0, 0], [B, 1, D]), [B, D]),
      this.p1('norm.weight'),
      this.p1('norm.bias'),
      c.layerNormEps,
    );
    const clsLogits = linear(clsFeat, this.p2('head.weight'), this.p1('head.bias'));

    const out: ForwardOutput = { clsLogits, prenormPatchTokens };
    if (c.iceHead !== 'none' && !opts.skipIceHead) out.zIce = this.iceHead(prenormPatchTokens);
    if (opts.returnAttention) out.attention = attention;
    if (pruner) out.pruning = pruner.trace();
    return out;
  }

  /** Patch embedding, CLS token and position embedding: x NCHW [B, C, S, S] → block 0's input [B, N + 1, D]. */
  embed(x: tf.Tensor4D): tf.Tensor3D {
    const c = this.config;
    const [B, C] = x.shape;
    const D = c.embedDim;
    const P = c.patchSize;
    const g = gridSize(c);
    const N = g * g;

    // Patch embedding as one matmul: a stride-P conv is a linear map of each P×P patch.
    // Rows are patches (index = row·g + col), columns (c, i, j). Two rank-4 transposes instead of
    // one rank-6: wasm's Transpose has fast paths only up to rank 4 (rank 5+ is ≈180× slower).
    // [B,C,H,W] → [B·C·g, P, g, P] → [B·C·g, g, P, P]  (rows (b,c,gridRow); then gridCol, i, j)
    const byCol = tf.transpose(tf.reshape(x, [B * C * g, P, g, P]), [0, 2, 1, 3]);
    // → [B, C, N, P·P] → [B, N, C, P·P] → [B·N, C·P·P]
    const patches: tf.Tensor2D = tf.reshape(tf.transpose(tf.reshape(byCol, [B, C, N, P * P]), [0, 2, 1, 3]), [B * N, C * P * P]);
    const emb = tf.reshape(linear(patches, this.p2('patch_embed.proj.weight'), this.p1('patch_embed.proj.bias')), [B, N, D]);
    const cls = tf.tile(this.p('cls_token'), [B, 1, 1]); // [B,1,D]
    return tf.add(tf.concat([cls, emb], 1), this.p('pos_embed')); // [B,T,D]
  }

  /** The ICE head on [B, N, D] patch tokens → [B, N, numClasses + 1]. */
  iceHead(tokens: tf.Tensor3D): tf.Tensor3D {
    const [B, N, D] = tokens.shape;
    const k = this.config.numClasses + 1;
    const x: tf.Tensor2D = tf.reshape(tokens, [B * N, D]); // [B·N, D]
    let z: tf.Tensor2D;
    switch (this.config.iceHead) {
      case 'official':
        z = linear(x, this.p2('mlp_head.weight'));
        break;
      case 'icef':
        z = linear(gelu(linear(x, this.p2('mlp_head_1.weight'), this.p1('mlp_head_1.bias'))), this.p2('mlp_head.weight'));
        break;
      case 'paper': {
        const pre = linear(
          gelu(linear(x, this.p2('ice_head.fc1.weight'), this.p1('ice_head.fc1.bias'))),
          this.p2('ice_head.fc2.weight'),
          this.p1('ice_head.fc2.bias'),
        );
        // InstanceNorm1d over the class axis: each patch's c+1 logits standardised, no affine, eps 1e-5.
        const { mean, variance } = tf.moments(pre, -1, true);
        z = tf.div(tf.sub(pre, mean), tf.sqrt(tf.add(variance, 1e-5)));
        break;
      }
      case 'none':
        throw new IceError('CONFIG_INVALID', 'this model has no ICE head (iceHead: none)');
    }
    return tf.reshape(z, [B, N, k]);
  }

  private dropPath(branch: tf.Tensor3D, rate: number, opts: ForwardOptions): tf.Tensor3D {
    if (!opts.training || rate === 0) return branch;
    if (!opts.random) throw new IceError('CONFIG_INVALID', 'stochastic depth needs a seeded random source (ForwardOptions.random)');
    const B = branch.shape[0];
    const keep = 1 - rate;
    // Per-sample mask scaled by 1/keep, as timm's drop_path.
    const mask = Array.from({ length: B }, () => (opts.random!() < keep ? 1 / keep : 0));
    return tf.mul(branch, tf.tensor3d(mask, [B, 1, 1]));
  }

  // ---------------------------------------------------------------- checkpoints

  /**
   * Copy a timm/DeiT/ICE state dict (PyTorch layout) into the model. Names and shapes are
   * checked strictly; every problem is listed in one WEIGHTS_MISMATCH error.
   */
  loadStateDict(sd: StateDict, opts: LoadOptions = {}): LoadReport {
    const report: LoadReport = { loaded: [], keptInitialised: [], ignored: [] };
    const missing: string[] = [];
    const misShaped: string[] = [];
    const unexpected: string[] = [];
    const pending: [ParamSpec, TensorRecord][] = [];
    for (const s of this.specs) {
      const rec = sd.get(s.name);
      if (!rec) {
        if (matches(s.name, opts.allowMissing)) report.keptInitialised.push(s.name);
        else missing.push(s.name);
        continue;
      }
      if (!sameShape(rec.shape, s.torchShape) && !(s.name === 'pos_embed' && resamplable(rec.shape, s.torchShape))) {
        misShaped.push(`${s.name}: checkpoint [${rec.shape.join(',')}] vs model [${s.torchShape.join(',')}]`);
        continue;
      }
      pending.push([s, rec]);
    }
    for (const name of sd.keys()) {
      if (this.specByName.has(name)) continue;
      if (matches(name, opts.ignore)) report.ignored.push(name);
      else unexpected.push(name);
    }
    if (missing.length || misShaped.length || unexpected.length) {
      const parts = [
        missing.length ? `missing keys (${missing.length}): ${missing.join(', ')}` : '',
        unexpected.length ? `unexpected keys (${unexpected.length}): ${unexpected.join(', ')}` : '',
        misShaped.length ? `mis-shaped keys (${misShaped.length}): ${misShaped.join('; ')}` : '',
      ].filter(Boolean);
      throw new IceError('WEIGHTS_MISMATCH', `checkpoint does not match the model: ${parts.join(' | ')}`, {
        missing,
        unexpected,
        misShaped,
      });
    }
    for (const [s, rec] of pending) {
      let data = toFloat32(rec, s.name);
      if (s.name === 'pos_embed' && !sameShape(rec.shape, s.torchShape)) {
        const from = Math.round(Math.sqrt(rec.shape[1] - 1));
        data = resamplePosEmbed(data, rec.shape[1], gridSize(this.config), rec.shape[2]);
        report.posEmbedResampled = { from, to: gridSize(this.config) };
      }
      const internal = tf.tidy(() => fromTorchLayout(tf.tensor(data, s.torchShape, 'float32'), s, this.config));
      this.p(s.name).assign(internal);
      internal.dispose();
      report.loaded.push(s.name);
    }
    return report;
  }

  /** The weights as a state dict in PyTorch layout with timm names (loadable by timm). */
  async stateDict(): Promise<StateDict> {
    const sd: StateDict = new Map();
    for (const s of this.specs) {
      const t = tf.tidy(() => toTorchLayout(this.p(s.name), s));
      sd.set(s.name, { dtype: 'F32', shape: s.torchShape, data: await t.data<'float32'>() });
      t.dispose();
    }
    return sd;
  }

  parameterCount(): number {
    return this.specs.reduce((n, s) => n + numel(s.shape), 0);
  }

  dispose(): void {
    this.params.forEach((v) => v.dispose());
    this.params.clear();
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** pos_embed [1, 1+g'², D] can be resampled to [1, 1+g², D] (same D, square grids). */
function resamplable(from: readonly number[], to: readonly number[]): boolean {
  if (from.length !== 3 || from[0] !== 1 || from[2] !== to[2]) return false;
  const g = Math.sqrt(from[1] - 1);
  return Number.isInteger(g) && g > 0;
}

function toFloat32(rec: TensorRecord, name: string): Float32Array {
  if (rec.data instanceof Float32Array) return rec.data;
  if (rec.data instanceof BigInt64Array)
    throw new IceError('WEIGHTS_MISMATCH', `${name}: integer tensor (${rec.dtype}) where a float weight is expected`);
  if (rec.dtype !== 'F64' && rec.dtype !== 'F16' && rec.dtype !== 'BF16') {
    throw new IceError('WEIGHTS_MISMATCH', `${name}: ${rec.dtype} tensor where a float weight is expected`);
  }
  return Float32Array.from(rec.data as ArrayLike<number>);
}

function fromTorchLayout(t: tf.Tensor, s: ParamSpec, c: VitConfig): tf.Tensor {
  switch (s.layout) {
    case 'plain':
      return t.clone();
    case 'linear':
      return tf.transpose(t); // [out,in] → [in,out]
    case 'patch':
      // OIHW [D,C,P,P] → [D, C·P·P] → [C·P·P, D]; rows ordered (c, i, j) like the patchified input.
      return tf.transpose(tf.reshape(t, [c.embedDim, c.inChans * c.patchSize * c.patchSize]));
  }
}

function toTorchLayout(v: tf.Tensor, s: ParamSpec): tf.Tensor {
  switch (s.layout) {
    case 'plain':
      return v.clone();
    case 'linear':
      return tf.transpose(v);
    case 'patch':
      return tf.reshape(tf.transpose(v), s.torchShape);
  }
}
