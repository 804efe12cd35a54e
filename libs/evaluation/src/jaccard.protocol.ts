/**
 * PASCAL VOC12 Jaccard as Intriguing Properties of ViTs' evaluate_segmentation.py scores it (and
 * ICE's evaluate_segmentation_ICE.py with its single mask): per object class v present in the
 * target, J_v = |pred ∧ gt=v| / |pred ∨ gt=v| (max over heads for per-head attention masks), mean
 * over classes, then over images. Attention-like maps become masks with the attention-mass
 * threshold at each τ; ICE's foreground mask is used as it is.
 */
import { type ExplainerName, IceError, JaccardAccumulator } from '@ice/core';
import type { MetricValue } from './evaluation.types';
import type { MethodMap } from './explain.runner';
import { isMaskMethod, mapMask, MASS_VALUES_RULE } from './map-masks.util';
import { fmt, type MethodScorer, missingField, type ProtocolDefinition, type ProtocolSettings, top1Text } from './protocol.types';
import { blockUpsample, type PreparedSample } from './sample-prep.util';

export function jaccardColumns(taus: readonly number[]): string[] {
  return ['jaccard', ...taus.map((t) => `jaccard@${fmt(t)}`), 'skipped'];
}

/** The label map scored against: the sample's segmentation, else its binary mask as one object class. */
export function jaccardTarget(p: PreparedSample): Uint8Array {
  return p.segmentation ?? p.mask!;
}

function safeResult(acc: JaccardAccumulator): number | null {
  try {
    return acc.result().jaccard;
  } catch (e) {
    if (e instanceof IceError) return null; // no image had an object class
    throw e;
  }
}

class JaccardScorer implements MethodScorer {
  private readonly maskAcc: JaccardAccumulator;
  private readonly tauAcc: JaccardAccumulator[];
  private skipped = 0;

  constructor(
    private readonly method: ExplainerName,
    private readonly s: ProtocolSettings,
  ) {
    this.maskAcc = new JaccardAccumulator({ excludeVoid: s.excludeVoid });
    this.tauAcc = s.taus.map(() => new JaccardAccumulator({ excludeVoid: s.excludeVoid }));
  }

  add(p: PreparedSample, m: MethodMap): void {
    const target = jaccardTarget(p);
    const { patch } = this.s;
    if (isMaskMethod(this.method)) {
      const r = this.maskAcc.add([blockUpsample(mapMask(this.method, m.grid, 'mass', 1), m.g, patch)], target);
      if (r.score === null) this.skipped++;
      return;
    }
    const sources = m.heads ?? [m.grid];
    this.s.taus.forEach((tau, k) => {
      const masks = sources.map((v) => blockUpsample(mapMask(this.method, v, 'mass', tau), m.g, patch));
      const r = this.tauAcc[k].add(masks, target);
      if (k === 0 && r.score === null) this.skipped++;
    });
  }

  result(): Record<string, MetricValue> {
    const out: Record<string, MetricValue> = { jaccard: isMaskMethod(this.method) ? safeResult(this.maskAcc) : null };
    this.s.taus.forEach((t, k) => (out[`jaccard@${fmt(t)}`] = isMaskMethod(this.method) ? null : safeResult(this.tauAcc[k])));
    out.skipped = this.skipped;
    return out;
  }
}

export function jaccardProtocol(s: ProtocolSettings): ProtocolDefinition {
  s.taus.forEach((t) => {
    if (!(t > 0 && t <= 1)) throw new IceError('CONFIG_INVALID', `attention-mass threshold τ = ${t} is outside (0, 1]`);
  });
  return {
    protocol: 'jaccard',
    columns: jaccardColumns(s.taus),
    needsTop1: false,
    check(p: PreparedSample): void {
      if (!p.segmentation && !p.mask)
        throw missingField('jaccard', p, 'a segmentation or foreground mask', 'use VOC with task segmentation, imagenet-seg or digits');
    },
    target: () => undefined,
    perHead: (method) => method === 'raw-attention' && s.jaccardHeads === 'max',
    conventions: () => [
      `VOC Jaccard protocol (Intriguing Properties of ViTs, evaluate_segmentation.py; ICE's ` +
        `evaluate_segmentation_ICE.py): image resized to ${s.size}×${s.size} Pillow bilinear, label map nearest`,
      'J_v = |pred ∧ gt=v| / |pred ∨ gt=v| for each object label v ∉ {0, 255} present; image score = mean over v; ' +
        'data-set score = mean over images with an object label (others counted in `skipped`); a binary mask counts as ' +
        'one object class',
      s.excludeVoid
        ? "void (255) pixels excluded from the unions (the paper's reading; option excludeVoid)"
        : 'void (255) pixels count in the unions (the released code: its != 255 test is a no-op)',
      `ICE: its foreground mask as is, nearest ×${s.patch} (column "jaccard"); other maps: attention-mass threshold at ` +
        `τ ∈ {${s.taus.map(fmt).join(', ')}} (keep the highest patches holding ≥ τ of the mass), then nearest ×${s.patch} ` +
        '(columns "jaccard@τ")',
      s.jaccardHeads === 'max'
        ? "raw attention: one mask per head of the last block's CLS attention, J_v = max over heads (Intriguing's code); other maps: one mask"
        : 'raw attention: the head-mean map, one mask (option jaccardHeads=mean; Intriguing takes the best head)',
      MASS_VALUES_RULE,
      `target class (gradient methods): ${top1Text(s.targetSource)}; rollout and transformer attribution start at block ${s.rolloutStartLayer}`,
    ],
    scorer: (method) => new JaccardScorer(method, s),
  };
}
