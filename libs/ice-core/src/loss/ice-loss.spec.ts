import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../backend/tf-backend.service';
import { IceError } from '../errors';
import { ICE_LOSS_PRESETS, IceLossConfig, iceLoss, iceLossTermWeights, readIceLossStats, validateIceLossConfig } from './ice-loss';

// The repo and shared/ are siblings (here /work/main and /work/shared; likewise in CI).
const GOLDEN_DIR = path.resolve(__dirname, '../../../../../shared/golden');

type Nested = number | Nested[];

interface OfficialRef {
  mask: number[][];
  F_count: number[];
  Yhat: number[][];
  Bhat: number[][];
  cls_per: number;
  gate: number;
  L_ICE: number;
  L_bg: number;
  L_total: number;
  grad_L_total_wrt_z: number[][][];
}

interface PaperRef extends Omit<OfficialRef, 'cls_per' | 'gate'> {
  alpha: number;
  lambda: number;
}

interface LossCase {
  name: string;
  c: number;
  B: number;
  N: number;
  argmax_min_margin: number;
  z: number[][][];
  targets: number[][];
  official: OfficialRef;
  paper: PaperRef[];
}

const golden = JSON.parse(fs.readFileSync(path.join(GOLDEN_DIR, 'golden-loss.json'), 'utf8')) as { cases: LossCase[] };

const LOSS_TOL = { atol: 1e-5, rtol: 1e-5 };
const GRAD_TOL = { atol: 1e-5, rtol: 1e-4 };

function flat(x: Nested): number[] {
  return Array.isArray(x) ? x.flatMap(flat) : [x];
}

/** |got − ref| ≤ atol + rtol·|ref| element-wise; the failure names the worst element. */
function expectClose(got: Nested | Float32Array, ref: Nested, tol: { atol: number; rtol: number }, label: string): void {
  const g = got instanceof Float32Array ? Array.from(got) : flat(got);
  const r = flat(ref);
  expect(g.length).toBe(r.length);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < r.length; i++) {
    const excess = Math.abs(g[i] - r[i]) - (tol.atol + tol.rtol * Math.abs(r[i]));
    if (!(excess <= worstExcess) || Number.isNaN(g[i])) {
      worst = i;
      worstExcess = Number.isNaN(g[i]) ? Infinity : excess;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${label}: element ${worst} of ${r.length}: got ${g[worst]}, ref ${r[worst]} (|diff| ` +
        `${Math.abs(g[worst] - r[worst])} exceeds atol ${tol.atol} + rtol ${tol.rtol}·|ref|)`,
    );
  }
}

function paperConfig(p: PaperRef): IceLossConfig {
  return { variant: 'paper', alpha: p.alpha, lambdaClass: p.lambda, gateThreshold: 0 };
}

function inputs(k: LossCase): { z: tf.Tensor3D; t: tf.Tensor2D } {
  return { z: tf.tensor3d(k.z), t: tf.tensor2d(k.targets) };
}

function gradOfTotal(z: tf.Tensor3D, t: tf.Tensor2D, cfg: IceLossConfig): tf.Tensor3D {
  return tf.grad((zz) => iceLoss(zz as tf.Tensor3D, t, cfg).total)(z) as tf.Tensor3D;
}

beforeAll(async () => {
  await initBackend('wasm');
});

describe('ICE loss presets and config', () => {
  it('official λ = 1/1.025 gives the released 0.025 background weight; paper keeps λ·L_ICE + (1−λ)·L_bg', () => {
    expect(iceLossTermWeights(ICE_LOSS_PRESETS.official).ice).toBe(1);
    expect(iceLossTermWeights(ICE_LOSS_PRESETS.official).bg).toBeCloseTo(0.025, 15);
    expect(iceLossTermWeights(ICE_LOSS_PRESETS.paper)).toEqual({ ice: 0.975, bg: 1 - 0.975 });
    expect(ICE_LOSS_PRESETS.official).toEqual({ variant: 'official', alpha: 0.5, lambdaClass: 1 / 1.025, gateThreshold: 0.1 });
    expect(ICE_LOSS_PRESETS.paper).toEqual({ variant: 'paper', alpha: 0.5, lambdaClass: 0.975, gateThreshold: 0 });
    expect(Object.isFrozen(ICE_LOSS_PRESETS.official)).toBe(true);
  });

  const bad: [Partial<IceLossConfig>, keyof IceLossConfig][] = [
    [{ alpha: 0 }, 'alpha'],
    [{ alpha: 1.5 }, 'alpha'],
    [{ alpha: NaN }, 'alpha'],
    [{ lambdaClass: -0.1 }, 'lambdaClass'],
    [{ lambdaClass: 1.01 }, 'lambdaClass'],
    [{ lambdaClass: 0 }, 'lambdaClass'], // official divides by λ
    [{ gateThreshold: -0.01 }, 'gateThreshold'],
    [{ gateThreshold: 2 }, 'gateThreshold'],
    [{ variant: 'pytorch' as IceLossConfig['variant'] }, 'variant'],
  ];
  it.each(bad)('rejects %p naming %s', (patch, field) => {
    const cfg = { ...ICE_LOSS_PRESETS.official, ...patch };
    let err: unknown;
    try {
      validateIceLossConfig(cfg);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(IceError);
    expect((err as IceError).code).toBe('CONFIG_INVALID');
    expect((err as IceError).message).toContain(field);
    expect((err as IceError).details?.field).toBe(field);
  });

  it('accepts the boundaries α = 1, paper λ ∈ {0, 1}, official λ = 1, threshold 0 and 1', () => {
    for (const cfg of [
      { ...ICE_LOSS_PRESETS.official, alpha: 1, lambdaClass: 1, gateThreshold: 1 },
      { ...ICE_LOSS_PRESETS.paper, lambdaClass: 0 },
      { ...ICE_LOSS_PRESETS.paper, lambdaClass: 1 },
    ]) {
      expect(() => validateIceLossConfig(cfg)).not.toThrow();
    }
  });

  it('iceLoss validates its config before touching tensors', () => {
    const z = tf.zeros<tf.Rank.R3>([1, 2, 3]);
    const t = tf.zeros<tf.Rank.R2>([1, 2]);
    const before = tf.memory().numTensors;
    expect(() => iceLoss(z, t, { ...ICE_LOSS_PRESETS.paper, alpha: 0 })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }) as Error,
    );
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([z, t]);
  });

  it('rejects mismatched shapes and dtypes with INPUT_INVALID', () => {
    tf.tidy(() => {
      const z = tf.zeros<tf.Rank.R3>([2, 4, 3]);
      const rank2: tf.Tensor = tf.zeros([2, 4]); // a JS caller can pass anything
      const cases: [tf.Tensor3D, tf.Tensor2D][] = [
        [z, tf.zeros<tf.Rank.R2>([2, 3])],
        [z, tf.zeros<tf.Rank.R2>([1, 2])],
        [rank2 as tf.Tensor3D, tf.zeros<tf.Rank.R2>([2, 2])],
        [z, tf.zeros<tf.Rank.R2>([2, 2], 'int32')],
        [tf.zeros<tf.Rank.R3>([2, 4, 1]), tf.zeros<tf.Rank.R2>([2, 0])],
      ];
      for (const [zz, tt] of cases) {
        expect(() => iceLoss(zz, tt)).toThrow(expect.objectContaining({ code: 'INPUT_INVALID' }) as Error);
      }
    });
  });
});

describe.each(golden.cases.map((k) => [k.name, k] as const))('golden-loss case %s', (_name, k) => {
  it('official: mask, F_count, Ŷ, B̂, cls_per, gate, losses', async () => {
    const { z, t } = inputs(k);
    const out = iceLoss(z, t, ICE_LOSS_PRESETS.official);
    const ref = k.official;
    expect(await out.mask.array()).toEqual(ref.mask);
    expect(Array.from(await out.fCount.data())).toEqual(ref.F_count);
    expect((await out.gate.data())[0]).toBe(ref.gate);
    expectClose((await out.yHat.data()) as Float32Array, ref.Yhat, LOSS_TOL, 'Yhat');
    expectClose((await out.bHat.data()) as Float32Array, ref.Bhat, LOSS_TOL, 'Bhat');
    expectClose((await out.clsPer.data()) as Float32Array, ref.cls_per, LOSS_TOL, 'cls_per');
    expectClose((await out.lIce.data()) as Float32Array, ref.L_ICE, LOSS_TOL, 'L_ICE');
    expectClose((await out.lBg.data()) as Float32Array, ref.L_bg, LOSS_TOL, 'L_bg');
    expectClose((await out.total.data()) as Float32Array, ref.L_total, LOSS_TOL, 'L_total');
    const stats = await readIceLossStats(out);
    expect(stats.gate).toBe(ref.gate === 1);
    expect(stats.fCount).toEqual(ref.F_count);
    tf.dispose([z, t, ...Object.values(out)]);
  });

  it('official: dL_total/dz', async () => {
    const { z, t } = inputs(k);
    const g = gradOfTotal(z, t, ICE_LOSS_PRESETS.official);
    expectClose((await g.data()) as Float32Array, k.official.grad_L_total_wrt_z, GRAD_TOL, 'grad_L_total_wrt_z');
    tf.dispose([z, t, g]);
  });

  it.each(k.paper.map((p) => [p.alpha, p.lambda, p] as const))(
    'paper α=%p λ=%p: mask, F_count, Ŷ, B̂, losses, dL_total/dz',
    async (_a, _l, p) => {
      const { z, t } = inputs(k);
      const cfg = paperConfig(p);
      const out = iceLoss(z, t, cfg);
      expect(await out.mask.array()).toEqual(p.mask);
      expect(Array.from(await out.fCount.data())).toEqual(p.F_count);
      expect((await out.gate.data())[0]).toBe(1); // no gate in the paper
      expectClose((await out.yHat.data()) as Float32Array, p.Yhat, LOSS_TOL, 'Yhat');
      expectClose((await out.bHat.data()) as Float32Array, p.Bhat, LOSS_TOL, 'Bhat');
      expectClose((await out.lIce.data()) as Float32Array, p.L_ICE, LOSS_TOL, 'L_ICE');
      expectClose((await out.lBg.data()) as Float32Array, p.L_bg, LOSS_TOL, 'L_bg');
      expectClose((await out.total.data()) as Float32Array, p.L_total, LOSS_TOL, 'L_total');
      const g = gradOfTotal(z, t, cfg);
      expectClose((await g.data()) as Float32Array, p.grad_L_total_wrt_z, GRAD_TOL, 'grad_L_total_wrt_z');
      tf.dispose([z, t, g, ...Object.values(out)]);
    },
  );
});

/** Float64 reference of both variants with dL_total/dz worked out by hand (mask held constant). */
function reference(z: number[][][], t: number[][], cfg: IceLossConfig) {
  const B = z.length;
  const N = z[0].length;
  const K = z[0][0].length;
  const c = K - 1;
  const logSoftmax = (v: number[]) => {
    const m = Math.max(...v);
    const lse = m + Math.log(v.reduce((a, x) => a + Math.exp(x - m), 0));
    return v.map((x) => x - lse);
  };
  const mask: number[][] = z.map((img) => img.map((row) => (row.indexOf(Math.max(...row)) !== c ? 1 : 0)));
  const fCount = mask.map((r) => r.reduce((a, x) => a + x, 0));
  const den = fCount.map((f) => (cfg.variant === 'official' ? f + 1 : Math.max(f, 1)));
  const yHat = z.map((img, b) => Array.from({ length: K }, (_, k) => img.reduce((a, row, p) => a + mask[b][p] * row[k], 0) / den[b]));
  const bHat = z.map((img) => Array.from({ length: K }, (_, k) => (cfg.alpha * img.reduce((a, row) => a + row[k], 0)) / N));
  const tExt = t.map((r) => [...r, 0]);
  const lsmY = yHat.map(logSoftmax);
  const lsmB = bHat.map(logSoftmax);
  const lIce = tExt.reduce((a, r, b) => a - r.reduce((s, tk, k) => s + tk * lsmY[b][k], 0), 0) / B;
  const lBg = lsmB.reduce((a, r) => a - r[c], 0) / B;
  const clsPer = fCount.reduce((a, x) => a + x, 0) / (B * N);
  const gate = cfg.gateThreshold > 0 ? (clsPer >= cfg.gateThreshold ? 1 : 0) : 1;
  const l = cfg.lambdaClass;
  const [wIce, wBg] = cfg.variant === 'official' ? [1, (1 - l) / l] : [l, 1 - l];
  const total = wIce * lIce + wBg * gate * lBg;
  const grad = z.map((img, b) => {
    const tSum = tExt[b].reduce((a, x) => a + x, 0);
    const dY = lsmY[b].map((x, k) => (wIce / B) * (Math.exp(x) * tSum - tExt[b][k]));
    const dB = lsmB[b].map((x, k) => ((wBg * gate) / B) * (Math.exp(x) - (k === c ? 1 : 0)));
    return img.map((_, p) => dY.map((d, k) => (mask[b][p] / den[b]) * d + (cfg.alpha / N) * dB[k]));
  });
  return { mask, fCount, lIce, lBg, clsPer, gate, total, grad };
}

/** Deterministic uniform numbers in [lo, hi) (mulberry32). */
function rng(seed: number) {
  let a = seed >>> 0;
  return (lo: number, hi: number) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return lo + (hi - lo) * (((x ^ (x >>> 14)) >>> 0) / 4294967296);
  };
}

async function checkAgainstReference(zArr: number[][][], tArr: number[][], cfg: IceLossConfig, label: string): Promise<void> {
  const ref = reference(zArr, tArr, cfg);
  const z = tf.tensor3d(zArr);
  const t = tf.tensor2d(tArr);
  const out = iceLoss(z, t, cfg);
  const g = gradOfTotal(z, t, cfg);
  expect(await out.mask.array()).toEqual(ref.mask);
  expect((await out.gate.data())[0]).toBe(ref.gate);
  expectClose((await out.lIce.data()) as Float32Array, ref.lIce, LOSS_TOL, `${label} L_ICE`);
  expectClose((await out.lBg.data()) as Float32Array, ref.lBg, LOSS_TOL, `${label} L_bg`);
  expectClose((await out.total.data()) as Float32Array, ref.total, LOSS_TOL, `${label} L_total`);
  expectClose((await g.data()) as Float32Array, ref.grad, GRAD_TOL, `${label} grad`);
  tf.dispose([z, t, g, ...Object.values(out)]);
}

describe('ICE loss gradient and memory properties', () => {
  const byName = (n: string) => golden.cases.find((k) => k.name === n)!;

  it('matches a float64 reference on random inputs for non-preset configs (gate in paper, λ ∈ {0, 1}, α = 1)', async () => {
    const configs: IceLossConfig[] = [
      { variant: 'official', alpha: 1, lambdaClass: 0.9, gateThreshold: 0.5 },
      { variant: 'official', alpha: 0.25, lambdaClass: 1, gateThreshold: 0 },
      { variant: 'paper', alpha: 0.7, lambdaClass: 0.8, gateThreshold: 0.3 },
      { variant: 'paper', alpha: 1, lambdaClass: 0, gateThreshold: 0 },
      { variant: 'paper', alpha: 0.5, lambdaClass: 1, gateThreshold: 0 },
    ];
    const rand = rng(7);
    for (let trial = 0; trial < 6; trial++) {
      const [B, N, c] = [1 + (trial % 3), 3 + trial, 2 + (trial % 4)];
      // a background bias of varying strength gives every regime of foreground counts
      const bias = rand(-1, 3);
      const z = Array.from({ length: B }, () =>
        Array.from({ length: N }, () => Array.from({ length: c + 1 }, (_, k) => rand(-2, 2) + (k === c ? bias : 0))),
      );
      z[0][0] = z[0][0].map((_, k) => (k === c ? 10 : 0)); // one sure background patch
      const t = Array.from({ length: B }, () => {
        const r = Array.from({ length: c }, () => rand(0, 1));
        const s = r.reduce((a, x) => a + x, 0);
        return r.map((x) => x / s);
      });
      for (const cfg of configs) await checkAgainstReference(z, t, cfg, `trial ${trial} ${JSON.stringify(cfg)}`);
    }
  });

  it('no gradient flows through the mask: flipping a patch by a tiny value change only swaps the fixed-mask gradient', async () => {
    // toy patch 3 is [1, 0, 2]: background. Raising its class-0 logit across 2 flips it to foreground.
    const base = byName('toy');
    const grads: number[][][][] = [];
    for (const delta of [-1e-3, 1e-3]) {
      const z = base.z.map((img) => img.map((row) => row.slice()));
      z[0][3][0] = 2 + delta;
      for (const cfg of [ICE_LOSS_PRESETS.official, ICE_LOSS_PRESETS.paper]) {
        await checkAgainstReference(z, base.targets, cfg, `delta ${delta} ${cfg.variant}`);
      }
      const zt = tf.tensor3d(z);
      const tt = tf.tensor2d(base.targets);
      const g = gradOfTotal(zt, tt, ICE_LOSS_PRESETS.official);
      grads.push(await g.array());
      tf.dispose([zt, tt, g]);
    }
    // Bounded on both sides of the flip (a gradient through the argmax would blow up as 1/δ),
    // and the flipped patch gains the foreground share 1/(|F|+1) of dL/dŶ.
    for (const g of grads) expect(Math.max(...flat(g).map(Math.abs))).toBeLessThan(1);
    expect(grads[0][0][3]).not.toEqual(grads[1][0][3]);
  });

  it('background patches of an image share one gradient row (they reach the loss only through B̂)', async () => {
    const k = byName('toy'); // patches 2 and 3 are background
    const { z, t } = inputs(k);
    const grad = gradOfTotal(z, t, ICE_LOSS_PRESETS.official);
    const g = (await grad.array())[0];
    expect(g[2]).toEqual(g[3]);
    expect(g[0]).toEqual(g[1]);
    tf.dispose([z, t, grad]);
  });

  it('central differences agree with the gradient where small steps keep the mask', async () => {
    const k = byName('model_z_official'); // argmax margin 0.44 ≫ the step
    const eps = 0.03;
    expect(2 * eps).toBeLessThan(k.argmax_min_margin);
    const { z, t } = inputs(k);
    const grad = gradOfTotal(z, t, ICE_LOSS_PRESETS.official);
    const g = await grad.data();
    const zFlat = flat(k.z);
    const lossAt = (v: number[]) => tf.tidy(() => iceLoss(tf.tensor3d(v, z.shape), t).total.dataSync()[0]);
    for (const i of [0, 5, 10, 37, 120, 175, 351]) {
      const plus = zFlat.slice();
      const minus = zFlat.slice();
      plus[i] += eps;
      minus[i] -= eps;
      const fd = (lossAt(plus) - lossAt(minus)) / (2 * eps);
      expect(Math.abs(fd - g[i])).toBeLessThan(2e-4);
    }
    tf.dispose([z, t, grad]);
  });

  it('works under tf.variableGrads and tf.valueAndGrad', async () => {
    const k = byName('random_soft');
    const v = tf.variable(tf.tensor3d(k.z));
    const t = tf.tensor2d(k.targets);
    const { value, grads } = tf.variableGrads(() => iceLoss(v, t).total, [v]);
    expectClose((await value.data()) as Float32Array, k.official.L_total, LOSS_TOL, 'L_total');
    expectClose((await grads[v.name].data()) as Float32Array, k.official.grad_L_total_wrt_z, GRAD_TOL, 'dL/dz');
    const [p] = k.paper;
    const vg = tf.valueAndGrad((zz) => iceLoss(zz as tf.Tensor3D, t, paperConfig(p)).total)(v);
    expectClose((await vg.value.data()) as Float32Array, p.L_total, LOSS_TOL, 'paper L_total');
    expectClose((await vg.grad.data()) as Float32Array, p.grad_L_total_wrt_z, GRAD_TOL, 'paper dL/dz');
    tf.dispose([t, value, vg.value, vg.grad, ...Object.values(grads)]);
    v.dispose();
  });

  it('leaks no tensors over repeated loss + gradient computations', () => {
    const k = byName('random_soft');
    const { z, t } = inputs(k);
    const configs = [ICE_LOSS_PRESETS.official, ICE_LOSS_PRESETS.paper, { ...ICE_LOSS_PRESETS.paper, gateThreshold: 0.5 }];
    const run = () => {
      for (const cfg of configs) {
        tf.tidy(() => {
          iceLoss(z, t, cfg);
          tf.grads((zz) => iceLoss(zz as tf.Tensor3D, t, cfg).total)([z]);
          tf.valueAndGrad((zz) => iceLoss(zz as tf.Tensor3D, t, cfg).total)(z);
        });
        const out = iceLoss(z, t, cfg); // outside tidy: disposing the outputs frees everything
        tf.dispose(Object.values(out));
      }
    };
    run(); // warm-up
    const before = tf.memory().numTensors;
    const bytes = tf.memory().numBytes;
    for (let i = 0; i < 5; i++) run();
    expect(tf.memory().numTensors).toBe(before);
    expect(tf.memory().numBytes).toBe(bytes);
    tf.dispose([z, t]);
  });
});
