import * as tf from '@tensorflow/tfjs-core';
import { IceError } from '../errors';
import { fusedIceMargin, nativeKernelsActive } from '@ice/native-kernels';
import { gelu, linear } from './fast-ops';
import type { VitConfig } from './vit.config';
import type { IceVit } from './vit.model';

/**
 * Token pruning as an inference mode of the ViT (the paper's Table 5: ICE against EViT). At each
 * pruning block the block's attention runs over all tokens and its residual is added; then only
 * k = ⌈ρ·(N−1)⌉ of the N−1 non-CLS tokens go on to the block's MLP and the later blocks (N−1
 * counts a fused token of an earlier pruning block, as EViT's evit.py:207-209).
 *
 * - 'evit' (Liang et al., ICLR 2022; ../shared/notes §4): score = mean over heads of the CLS row
 *   of the block's attention; the dropped tokens are fused into one appended token, the sum of the
 *   tokens weighted by their CLS attention (not renormalised), as EViT's `--fuse_token` runs.
 * - 'ice': score = max over classes of the ICE logit minus the background logit, the ICE head
 *   applied to the block's current non-CLS tokens. The paper gives no details (the released ICE code
 *   has no pruning), so this is our choice: the margin is what ICE's own foreground mask thresholds
 *   (foreground ⇔ margin > 0), so the kept tokens are those ICE most confidently calls foreground,
 *   and it needs no softmax. The dropped tokens are discarded, not fused: ICE calls them background,
 *   i.e. carrying nothing the class needs, and a fused token would feed exactly that back to the
 *   CLS token. `fuse: true` fuses them as EViT does (CLS-attention weights) for an ablation.
 *
 * Only the ranking differs between the modes: same blocks, same k, same point in the block, so the
 * speed difference is the ICE head's cost (the D×(c+1) head on every remaining token at each
 * pruning block). No training with pruning is implemented: these are inference modes of a model
 * trained without it (EViT fine-tunes with its keep rate; that is not done here).
 */

export const PRUNE_MODES = ['ice', 'evit'] as const;
export type PruneMode = (typeof PRUNE_MODES)[number];

export interface PruneOptions {
  mode: PruneMode;
  /** ρ in (0, 1]: a pruning block keeps ⌈ρ·(N−1)⌉ of its N−1 non-CLS tokens; ρ = 1 prunes nothing. */
  keepRate: number;
  /** 0-based blocks that prune, after their attention. Default: defaultPruneLocations(depth) ([3, 6, 9] at depth 12). */
  locations?: readonly number[];
  /** Append the dropped tokens' CLS-attention-weighted sum as one token. Default: true for 'evit', false for 'ice'. */
  fuse?: boolean;
  /**
   * Order of the kept tokens: 'index' (their original order, default) or 'score' (highest first, as
   * EViT's torch.topk(sorted=True)). Attention is permutation-equivariant, so the logits do not depend on it.
   */
  order?: 'index' | 'score';
}

export type ResolvedPruneOptions = Required<PruneOptions> & { locations: number[] };

/**
 * Default pruning blocks for a depth L: ⌊jL/4⌋ for j = 1, 2, 3, kept where 1 ≤ l ≤ L − 2 (duplicates
 * dropped); at L = 12 these are EViT's blocks 4, 7 and 10 (indices 3, 6, 9), at L = 4 (digits-tiny)
 * 1 and 2, at L = 3 block 1; at L = 2 (digits-micro), where no such block exists, block 0.
 * - Not the last block: the CLS token reads the other tokens only through attention, and the last
 *   block prunes after its attention, so pruning there changes no logit (it only skips MLP rows).
 * - Not block 0 where avoidable: EViT's first pruning block is the 4th, since block 0's tokens are
 *   barely more than patch embeddings; ICE's head, trained on the last block's output, is also
 *   furthest from its input there.
 */
export function defaultPruneLocations(depth: number): number[] {
  const out = new Set<number>();
  for (let j = 1; j <= 3; j++) {
    const l = Math.floor((j * depth) / 4);
    if (l >= 1 && l <= depth - 2) out.add(l);
  }
  if (out.size === 0 && depth >= 2) out.add(depth - 2);
  return [...out].sort((a, b) => a - b);
}

/** Checks the options against a model; every default filled in. */
export function resolvePruneOptions(p: PruneOptions, config: VitConfig): ResolvedPruneOptions {
  if (typeof p !== 'object' || p === null) throw new IceError('CONFIG_INVALID', 'prune options must be an object');
  if (!PRUNE_MODES.includes(p.mode))
    throw new IceError('CONFIG_INVALID', `prune mode must be one of ${PRUNE_MODES.join(', ')}, got ${JSON.stringify(p.mode)}`);
  if (!(typeof p.keepRate === 'number' && p.keepRate > 0 && p.keepRate <= 1))
    throw new IceError('CONFIG_INVALID', `prune keepRate must be in (0, 1], got ${JSON.stringify(p.keepRate)}`);
  if (p.mode === 'ice' && config.iceHead === 'none')
    throw new IceError('CONFIG_INVALID', "prune mode 'ice' ranks tokens with the ICE head; this model has none (iceHead: none)");
  const locations = [...(p.locations ?? defaultPruneLocations(config.depth))];
  if (locations.length === 0)
    throw new IceError('CONFIG_INVALID', `no pruning block: depth ${config.depth} has no default location; give locations`);
  for (const l of locations) {
    if (!Number.isInteger(l) || l < 0 || l >= config.depth)
      throw new IceError('CONFIG_INVALID', `prune location ${l} is not a block index 0..${config.depth - 1}`);
  }
  if (new Set(locations).size !== locations.length)
    throw new IceError('CONFIG_INVALID', `a prune location is named twice: ${locations.join(', ')}`);
  const order = p.order ?? 'index';
  if (order !== 'index' && order !== 'score')
    throw new IceError('CONFIG_INVALID', `prune order must be 'index' or 'score', got ${JSON.stringify(order)}`);
  return { mode: p.mode, keepRate: p.keepRate, locations: locations.sort((a, b) => a - b), fuse: p.fuse ?? p.mode === 'evit', order };
}

/** k = ⌈ρ·n⌉ in double precision, exactly as Python's math.ceil(keep_rate * (N - 1)) rounds it (0.07·100 keeps 8 in both). */
export function keptTokenCount(n: number, keepRate: number): number {
  return Math.ceil(keepRate * n);
}

/** Non-CLS tokens after each block for `patches` patch tokens, as the pruned forward leaves them. */
export function prunedTokenCounts(
  patches: number,
  depth: number,
  p: Pick<ResolvedPruneOptions, 'keepRate' | 'locations' | 'fuse'>,
): number[] {
  const counts: number[] = [];
  let n = patches;
  for (let i = 0; i < depth; i++) {
    const k = keptTokenCount(n, p.keepRate);
    if (p.locations.includes(i) && k < n) n = k + (p.fuse ? 1 : 0);
    counts.push(n);
  }
  return counts;
}

/**
 * ICE's ranking score of tokens [B, n, D] → [B, n]: max over the classes of the ICE logits minus
 * the background logit (> 0 exactly where ICE's mask says foreground). For the linear last layers
 * (official, ICE-f) the native kernels make and reduce the logits block by block (fusedIceMargin:
 * the [B·n, c+1] logits never go through memory, and no weight slice is copied); the stock path
 * runs the class and background columns as two products (XNNPACK runs D×1000 plus D×1 faster than
 * D×1001). The paper head's instance normalisation needs every logit, so it goes through iceHead.
 */
export function iceMargin(model: IceVit, tokens: tf.Tensor3D): tf.Tensor2D {
  const [B, n, D] = tokens.shape;
  const c = model.config.numClasses;
  const param = (name: string): tf.Tensor2D => model.params.get(name) as unknown as tf.Tensor2D;
  const param1 = (name: string): tf.Tensor1D => model.params.get(name) as unknown as tf.Tensor1D;
  let x: tf.Tensor2D = tf.reshape(tokens, [B * n, D]); // [B·n, D]
  switch (model.config.iceHead) {
    case 'paper': {
      const z = model.iceHead(tokens); // [B, n, c+1]
      return tf.sub(tf.max(tf.slice(z, [0, 0, 0], [B, n, c]), 2), tf.reshape(tf.slice(z, [0, 0, c], [B, n, 1]), [B, n]));
    }
    case 'icef':
      x = gelu(linear(x, param('mlp_head_1.weight'), param1('mlp_head_1.bias'))); // [B·n, 4D]
      break;
    case 'official':
      break;
    case 'none':
      throw new IceError('CONFIG_INVALID', 'this model has no ICE head (iceHead: none)');
  }
  const w = param('mlp_head.weight'); // [in, c+1], background last
  if (nativeKernelsActive()) return tf.reshape(fusedIceMargin(x, w), [B, n]); // [B·n] → [B, n]
  const fg = tf.max(tf.matMul(x, tf.slice(w, [0, 0], [w.shape[0], c])), 1); // [B·n]
  const bg = tf.matMul(x, tf.slice(w, [0, c], [w.shape[0], 1])); // [B·n, 1]
  return tf.reshape(tf.sub(fg, tf.reshape(bg, [B * n])), [B, n]);
}

/** What a pruned forward pass reports beside its outputs. */
export interface PruneTrace {
  /** Non-CLS tokens after each block (the same for every image). */
  counts: number[];
  /** Per image: the original patch index of each surviving non-CLS token, in token order; −1 = a fused token. */
  tokenIndex: Int32Array[];
}

/**
 * The pruning state of one forward pass over a batch of B images. The model calls `prunesAt` after
 * each block's attention and, where it says so, `prune` with the tokens; indices are read back to
 * sort and track them (B·k integers), which is cheap next to a block.
 */
export class TokenPruner {
  private readonly index: Int32Array[];
  readonly counts: number[] = [];

  constructor(
    readonly options: ResolvedPruneOptions,
    private readonly B: number,
    patches: number,
    /** ICE's score of [B, T, D] tokens → [B, T] (iceMargin; the CLS token is scored too and ignored). */
    private readonly iceScore: (tokens: tf.Tensor3D) => tf.Tensor2D,
  ) {
    this.index = Array.from({ length: B }, () => Int32Array.from({ length: patches }, (_, j) => j));
  }

  /** Whether block i reduces its T tokens (a location, and k < T − 1; ρ = 1 never does). */
  prunesAt(i: number, T: number): boolean {
    return this.options.locations.includes(i) && keptTokenCount(T - 1, this.options.keepRate) < T - 1;
  }

  /** Whether `prune` at this block needs the block's attention (EViT's score, or a fused token's weights). */
  needsAttention(): boolean {
    return this.options.mode === 'evit' || this.options.fuse;
  }

  /** Records the token count after block i (called for every block). */
  record(t: tf.Tensor3D): void {
    this.counts.push(t.shape[1] - 1);
  }

  /**
   * t [B, T, D] after the block's attention residual (CLS first); clsAttn [B, H, T] the CLS row of
   * the block's post-softmax attention when needsAttention(). Returns [B, 1 + k (+1 fused), D].
   */
  prune(t: tf.Tensor3D, clsRow: tf.Tensor3D | undefined): tf.Tensor3D {
    const [B, T, D] = t.shape;
    const n = T - 1;
    const k = keptTokenCount(n, this.options.keepRate);
    // Mean over heads of the CLS row, patch columns: [B, H, T] → [B, H, n] → [B, n].
    const clsAttn: tf.Tensor2D | undefined = clsRow ? tf.mean(tf.slice(clsRow, [0, 0, 1], [B, -1, n]), 1) : undefined;
    // ICE scores all T tokens and drops the CLS column, [B, T] → [B, n]: cheaper than copying out the n patch tokens.
    const score = this.options.mode === 'evit' ? clsAttn! : tf.slice(this.iceScore(t), [0, 1], [B, n]); // [B, n]
    const top = tf.topk(score, k, true).indices; // [B, k], highest first
    const picked = top.dataSync<'int32'>();
    const rows = new Int32Array(B * (1 + k)); // rows of t as [B·T, D]: each image's CLS, then its kept tokens
    const keptMask = new Float32Array(B * n);
    const nextIndex: Int32Array[] = [];
    for (let b = 0; b < B; b++) {
      const sel = Array.from(picked.subarray(b * k, (b + 1) * k));
      if (this.options.order === 'index') sel.sort((u, v) => u - v);
      rows[b * (1 + k)] = b * T;
      sel.forEach((j, r) => {
        rows[b * (1 + k) + 1 + r] = b * T + 1 + j;
        keptMask[b * n + j] = 1;
      });
      const idx = sel.map((j) => this.index[b][j]);
      if (this.options.fuse) idx.push(-1);
      nextIndex.push(Int32Array.from(idx));
    }
    // [B·T, D] → gather → [B·(1+k), D] → [B, 1+k, D]
    let out: tf.Tensor3D = tf.reshape(tf.gather(tf.reshape(t, [B * T, D]), tf.tensor1d(rows, 'int32')), [B, 1 + k, D]);
    if (this.options.fuse) {
      // Σ_{j dropped} a_j x_j as one token: weights [B, 1, n] · tokens [B, n, D] → [B, 1, D]
      const w = tf.reshape(tf.mul(clsAttn!, tf.sub(1, tf.tensor2d(keptMask, [B, n]))), [B, 1, n]);
      const patches: tf.Tensor3D = tf.slice(t, [0, 1, 0], [B, n, D]); // [B, n, D]
      out = tf.concat([out, tf.matMul(w, patches)], 1);
    }
    this.index.splice(0, this.index.length, ...nextIndex);
    return out;
  }

  trace(): PruneTrace {
    return { counts: [...this.counts], tokenIndex: this.index.map((r) => r.slice()) };
  }
}
