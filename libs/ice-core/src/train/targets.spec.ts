import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../backend/tf-backend.service';
import { IceError } from '../errors';
import { expectAllClose, flat, goldenPath } from '../testing/golden.testing';
import { Rng } from './rng';
import { cutmixBboxAndLam, MixPlan, Mixup, MixupConfig, MIXUP_PRESETS, mixupTarget, randBbox } from './targets';

/** An Rng whose integer draws are scripted, to pin the cutmix box. */
class ScriptedRng extends Rng {
  constructor(private readonly ints: number[]) {
    super(0);
  }
  override int(n: number): number {
    const v = this.ints.shift();
    if (v === undefined || v >= n) throw new Error(`scripted int: ${v} for n = ${n}`);
    return v;
  }
}

const deit = (numClasses = 10): MixupConfig => ({ ...MIXUP_PRESETS.deit, numClasses });

function images(B: number, C: number, H: number, W: number, seed = 1): tf.Tensor4D {
  const r = new Rng(seed);
  return tf.tensor4d(
    Float32Array.from({ length: B * C * H * W }, () => r.normal()),
    [B, C, H, W],
  );
}

beforeAll(async () => {
  await initBackend('wasm');
});

describe('mixupTarget (timm mixup_target)', () => {
  it('smooths 0.1 over 10 classes to 0.01 / 0.91', () => {
    const t = mixupTarget([3, 0], 10, 1, 0.1);
    const expected = [
      0.01, 0.01, 0.01, 0.91, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.91, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01,
    ];
    expectAllClose(t.dataSync(), expected, 1e-7, 0);
    t.dispose();
  });

  it('mixes with the reversed batch: 0.7·smooth(y1) + 0.3·smooth(y2) (golden random_soft targets)', () => {
    const golden = JSON.parse(fs.readFileSync(goldenPath('golden-loss.json'), 'utf8')) as {
      cases: { name: string; targets: number[][] }[];
    };
    const ref = golden.cases.find((c) => c.name === 'random_soft')!.targets;
    const t = mixupTarget(tf.tensor1d([7, 0, 6, 2], 'int32'), 10, 0.7, 0.1);
    expect(t.shape).toEqual([4, 10]);
    expectAllClose(t.dataSync(), flat(ref), 1e-7, 0, 'targets');
    t.dispose();
  });

  it('rejects labels outside [0, c)', () => {
    expect(() => mixupTarget([10], 10)).toThrow(IceError);
    expect(() => mixupTarget([1.5], 10)).toThrow(IceError);
  });
});

describe('cutmix box (timm rand_bbox + cutmix_bbox_and_lam)', () => {
  it('cuts ⌊H·√(1−λ)⌋ around the centre, clips, and corrects λ by the clipped area', () => {
    // λ 0.75 on 32×32: side 16, half 8; centre (4, 20) → rows [0, 12) clipped, columns [12, 28).
    const r = cutmixBboxAndLam(32, 32, 0.75, new ScriptedRng([4, 20]));
    expect(r.box).toEqual({ yl: 0, yh: 12, xl: 12, xh: 28 });
    expect(r.lam).toBe(1 - (12 * 16) / 1024);
    const uncorrected = cutmixBboxAndLam(32, 32, 0.75, new ScriptedRng([4, 20]), { correctLam: false });
    expect(uncorrected.lam).toBe(0.75);
    // Odd side: ⌊10·0.7⌋ = 7, half 3, so the box is 6 high even unclipped.
    expect(randBbox(10, 10, 0.51, new ScriptedRng([5, 5]))).toEqual({ yl: 2, yh: 8, xl: 2, xh: 8 });
  });

  it('draws boxes inside the image whose area matches the corrected λ', () => {
    const rng = new Rng(21);
    for (let i = 0; i < 200; i++) {
      const lam = rng.beta(1, 1);
      const { box, lam: corrected } = cutmixBboxAndLam(24, 40, lam, rng);
      expect(box.yl).toBeGreaterThanOrEqual(0);
      expect(box.yh).toBeLessThanOrEqual(24);
      expect(box.xl).toBeGreaterThanOrEqual(0);
      expect(box.xh).toBeLessThanOrEqual(40);
      const area = (box.yh - box.yl) * (box.xh - box.xl);
      expect(area).toBeLessThanOrEqual(Math.trunc(24 * Math.sqrt(1 - lam)) * Math.trunc(40 * Math.sqrt(1 - lam)));
      expect(corrected).toBe(1 - area / (24 * 40));
    }
    const mm = cutmixBboxAndLam(20, 20, 0.5, new Rng(3), { minmax: [0.2, 0.5] });
    expect(mm.box.yh - mm.box.yl).toBeGreaterThanOrEqual(4);
    expect(mm.box.yh - mm.box.yl).toBeLessThan(10);
    expect(mm.lam).toBe(1 - ((mm.box.yh - mm.box.yl) * (mm.box.xh - mm.box.xl)) / 400);
  });
});

describe('Mixup (timm Mixup, mode batch, NCHW)', () => {
  it('forced λ = 0.7 mixup: x = 0.7·x + 0.3·flip(x), targets from the reversed labels', () => {
    const x = images(4, 3, 8, 8);
    const mix = new Mixup(deit(), new Rng(1));
    const before = mix['rng'].getState();
    const plan: MixPlan = { lam: 0.7, useCutmix: false, box: null };
    const out = mix.apply(x, [7, 0, 6, 2], plan);
    expect(mix['rng'].getState()).toEqual(before); // a forced plan draws nothing
    const xs = x.arraySync();
    const expected = xs.map((img, b) => img.map((ch, c) => ch.map((row, i) => row.map((v, j) => 0.7 * v + 0.3 * xs[3 - b][c][i][j]))));
    expectAllClose(out.x.dataSync(), flat(expected), 1e-6, 1e-6, 'mixed x');
    // Partner labels are the batch reversed: [2, 6, 0, 7].
    const row = (a: number, b: number): number[] => Array.from({ length: 10 }, (_, k) => (k === a ? 0.64 : k === b ? 0.28 : 0.01));
    expectAllClose(out.targets.dataSync(), flat([row(7, 2), row(0, 6), row(6, 0), row(2, 7)]), 1e-7, 0, 'targets');
    tf.dispose([x, out.x, out.targets]);
  });

  it('cutmix pastes the partner inside the box only, with λ from the box area', () => {
    const x = images(2, 3, 16, 16, 2);
    const mix = new Mixup({ ...deit(5), mixupAlpha: 0 }, new Rng(5));
    let out = mix.apply(x, [1, 4]);
    while (out.plan.lam === 1) {
      tf.dispose([out.x, out.targets]);
      out = mix.apply(x, [1, 4]);
    }
    const { box, lam, useCutmix } = out.plan;
    expect(useCutmix).toBe(true);
    expect(lam).toBe(1 - ((box!.yh - box!.yl) * (box!.xh - box!.xl)) / 256);
    const xs = x.arraySync();
    const got = out.x.arraySync();
    for (let b = 0; b < 2; b++) {
      for (let c = 0; c < 3; c++) {
        for (let i = 0; i < 16; i++) {
          for (let j = 0; j < 16; j++) {
            const inside = i >= box!.yl && i < box!.yh && j >= box!.xl && j < box!.xh;
            expect(got[b][c][i][j]).toBe(inside ? xs[1 - b][c][i][j] : xs[b][c][i][j]);
          }
        }
      }
    }
    const off = 0.1 / 5;
    const on = 1 - 0.1 + off;
    const t = out.targets.arraySync();
    expect(t[0][1]).toBeCloseTo(lam * on + (1 - lam) * off, 6);
    expect(t[0][4]).toBeCloseTo(lam * off + (1 - lam) * on, 6);
    tf.dispose([x, out.x, out.targets]);
  });

  it('follows the configured probabilities (switch 0.5, prob) and Beta(α, α) for λ', () => {
    const mix = new Mixup(deit(), new Rng(8));
    const plans = Array.from({ length: 4000 }, () => mix.plan(32, 32));
    const cut = plans.filter((p) => p.useCutmix);
    expect(Math.abs(cut.length / plans.length - 0.5)).toBeLessThan(0.03);
    const lamMix = plans.filter((p) => !p.useCutmix).map((p) => p.lam);
    expect(Math.abs(lamMix.reduce((a, b) => a + b, 0) / lamMix.length - 0.5)).toBeLessThan(0.02);
    expect(cut.every((p) => p.box !== null && p.lam === 1 - ((p.box.yh - p.box.yl) * (p.box.xh - p.box.xl)) / 1024)).toBe(true);
    const never = new Mixup({ ...deit(), prob: 0 }, new Rng(8));
    expect(never.plan(32, 32)).toEqual({ lam: 1, useCutmix: false, box: null });
  });

  it('is deterministic from the seed and resumable from the rng state', () => {
    const x = images(4, 3, 16, 16, 3);
    const labels = [0, 1, 2, 3];
    const run = (rng: Rng, n: number): { plans: MixPlan[]; xs: Float32Array[] } => {
      const mix = new Mixup(deit(4), rng);
      const plans: MixPlan[] = [];
      const xs: Float32Array[] = [];
      for (let i = 0; i < n; i++) {
        const out = mix.apply(x, labels);
        plans.push(out.plan);
        xs.push(out.x.dataSync() as Float32Array);
        tf.dispose([out.x, out.targets]);
      }
      return { plans, xs };
    };
    const a = run(new Rng(42), 6);
    expect(run(new Rng(42), 6)).toEqual(a);
    expect(run(new Rng(43), 6).plans).not.toEqual(a.plans);
    const rng = new Rng(42);
    run(rng, 3);
    const rest = run(Rng.fromState(rng.getState()), 3);
    expect(rest).toEqual({ plans: a.plans.slice(3), xs: a.xs.slice(3) });
    x.dispose();
  });

  it('leaks no tensors and leaves the input alone', () => {
    const x = images(4, 3, 8, 8, 4);
    const copy = x.dataSync().slice();
    const mix = new Mixup(deit(), new Rng(9));
    const start = tf.memory().numTensors;
    for (let i = 0; i < 10; i++) {
      const out = mix.apply(x, [0, 1, 2, 3]);
      expect(tf.memory().numTensors).toBe(start + 2);
      tf.dispose([out.x, out.targets]);
    }
    const plain = mix.apply(x, [0, 1, 2, 3], { lam: 1, useCutmix: false, box: null });
    tf.dispose([plain.x, plain.targets]);
    expect(tf.memory().numTensors).toBe(start);
    expect(x.dataSync()).toEqual(copy);
    x.dispose();
  });

  it('rejects odd batches, label count mismatches and bad configurations', () => {
    const mix = new Mixup(deit(), new Rng(1));
    const odd = images(3, 1, 4, 4);
    expect(() => mix.apply(odd, [0, 1, 2])).toThrow(IceError);
    const even = images(2, 1, 4, 4);
    expect(() => mix.apply(even, [0, 1, 2])).toThrow(IceError);
    tf.dispose([odd, even]);
    expect(() => new Mixup({ ...deit(), prob: 2 }, new Rng(1))).toThrow(IceError);
    expect(() => new Mixup({ ...deit(), labelSmoothing: 1 }, new Rng(1))).toThrow(IceError);
    expect(() => new Mixup({ ...deit(), cutmixMinmax: [0.6, 0.4] }, new Rng(1))).toThrow(IceError);
  });
});
