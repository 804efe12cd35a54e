import * as tf from '@tensorflow/tfjs-core';
import { setNativeKernelsEnabled } from '@ice/native-kernels';
import { initBackend } from '../backend/tf-backend.service';
import { attentionCore, bmm, gelu, layerNorm, linear } from './fast-ops';

/**
 * The custom gradients of fast-ops against tfjs autodiff of plain reference formulations
 * (written out below, as the model had them before), on random inputs; and no leaked tensors.
 * Both formulations are checked: with the native kernels (the default where they load) and the
 * stock one (native kernels switched off); ICE_NATIVE_KERNELS=off runs the stock one only.
 */

const MODES = process.env.ICE_NATIVE_KERNELS === 'off' ? (['stock'] as const) : (['native', 'stock'] as const);

/** initBackend('wasm') with the native kernels on or off for this block. */
function useMode(mode: (typeof MODES)[number]): void {
  beforeAll(async () => {
    await initBackend('wasm');
    expect(setNativeKernelsEnabled(mode === 'native')).toBe(mode === 'native');
  });
  afterAll(() => {
    if (MODES.includes('native' as never)) setNativeKernelsEnabled(true);
  });
}

const TOL = 1e-5;

// ---------------------------------------------------------------- plain references (autodiff)

function linearRef(x: tf.Tensor2D, w: tf.Tensor2D, b?: tf.Tensor1D): tf.Tensor2D {
  const y: tf.Tensor2D = tf.matMul(x, w);
  return b ? tf.add(y, b) : y;
}

function layerNormRef(x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): tf.Tensor2D {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), gamma), beta);
}

function geluRef(x: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
}

/** Rank-5 transpose + unstack, matMul with transposeB, autodiff softmax. */
function attentionRef(
  qkv: tf.Tensor2D,
  B: number,
  T: number,
  H: number,
  hook?: (a: tf.Tensor4D) => tf.Tensor4D,
): { out: tf.Tensor2D; attn: tf.Tensor4D; clsAttn: tf.Tensor3D } {
  const D = qkv.shape[1] / 3;
  const hd = D / H;
  const [q, k, v] = tf.unstack(tf.transpose(tf.reshape(qkv, [B, T, 3, H, hd]), [2, 0, 3, 1, 4])); // each [B, H, T, hd]
  let attn: tf.Tensor4D = tf.softmax(tf.mul(tf.matMul(q, k, false, true), hd ** -0.5));
  if (hook) attn = hook(attn);
  const out: tf.Tensor2D = tf.reshape(tf.transpose(tf.matMul(attn, v), [0, 2, 1, 3]), [B * T, D]);
  return { out, attn, clsAttn: tf.reshape(tf.slice(attn, [0, 0, 0, 0], [B, H, 1, T]), [B, H, T]) };
}

// ---------------------------------------------------------------- helpers

/** max |a − b| / max(1, max |b|). */
function relDiff(a: tf.Tensor, b: tf.Tensor): number {
  expect(a.shape).toEqual(b.shape);
  const x = a.dataSync();
  const y = b.dataSync();
  let d = 0;
  let m = 0;
  for (let i = 0; i < y.length; i++) {
    d = Math.max(d, Math.abs(x[i] - y[i]));
    m = Math.max(m, Math.abs(y[i]));
  }
  return d / Math.max(1, m);
}

/** Values and gradients (for a random upstream dy) of f under both formulations agree. */
function expectSameGrads(
  fast: (...xs: tf.Tensor[]) => tf.Tensor,
  ref: (...xs: tf.Tensor[]) => tf.Tensor,
  inputs: tf.Tensor[],
  seed: number,
): void {
  tf.tidy(() => {
    const yRef = ref(...inputs);
    expect(relDiff(fast(...inputs), yRef)).toBeLessThan(TOL);
    const dy = tf.randomNormal(yRef.shape, 0, 1, 'float32', seed);
    const gFast = tf.grads(fast)(inputs, dy);
    const gRef = tf.grads(ref)(inputs, dy);
    expect(gFast).toHaveLength(inputs.length);
    gFast.forEach((g, i) => expect(relDiff(g, gRef[i])).toBeLessThan(TOL));
  });
}

/**
 * tf.grads of `f` leaves no tensor behind (the saved tensors of the custom gradients are all
 * released), and neither does the forward pass under a tidy nor outside the tape.
 */
function expectNoLeak(f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[]): void {
  tf.dispose(tf.grads(f)(inputs)); // warm-up
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) {
    tf.dispose(tf.grads(f)(inputs));
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose(tf.tidy(() => f(...inputs)));
    expect(tf.memory().numTensors).toBe(before);
  }
}

const rand = (shape: number[], seed: number, scale = 1): tf.Tensor => tf.randomNormal(shape, 0, scale, 'float32', seed);

describe.each(MODES)('bmm: batched products, per slice when large (%s kernels)', (mode) => {
  useMode(mode);

  it.each([
    [3, 5, 4, 6], // one batched call
    [2, 48, 40, 32], // per-slice 2-D products
  ])('n=%i r=%i k=%i c=%i, every transpose combination, equals tf.matMul without leaking', (n, r, k, c) => {
    for (const tA of [false, true]) {
      for (const tB of [false, true]) {
        const a = rand(tA ? [n, k, r] : [n, r, k], 61) as tf.Tensor3D;
        const b = rand(tB ? [n, c, k] : [n, k, c], 62) as tf.Tensor3D;
        const before = tf.memory().numTensors;
        const y = bmm(a, b, tA, tB);
        expect(tf.memory().numTensors).toBe(before + 1);
        const ref = tf.matMul(a, b, tA, tB);
        expect(y.shape).toEqual([n, r, c]);
        expect(relDiff(y, ref)).toBeLessThan(1e-6);
        tf.dispose([a, b, y, ref]);
      }
    }
  });
});

describe.each(MODES)('fast-ops: custom gradients match autodiff of the plain formulations (%s kernels)', (mode) => {
  useMode(mode);

  it('linear with and without bias', () => {
    const x = rand([7, 5], 1);
    const w = rand([5, 6], 2);
    const b = rand([6], 3);
    expectSameGrads(
      (x, w, b) => linear(x as tf.Tensor2D, w as tf.Tensor2D, b as tf.Tensor1D),
      (x, w, b) => linearRef(x as tf.Tensor2D, w as tf.Tensor2D, b as tf.Tensor1D),
      [x, w, b],
      4,
    );
    expectSameGrads(
      (x, w) => linear(x as tf.Tensor2D, w as tf.Tensor2D),
      (x, w) => linearRef(x as tf.Tensor2D, w as tf.Tensor2D),
      [x, w],
      5,
    );
    expectNoLeak((x, w, b) => linear(x as tf.Tensor2D, w as tf.Tensor2D, b as tf.Tensor1D), [x, w, b]);
    expectNoLeak((x, w) => linear(x as tf.Tensor2D, w as tf.Tensor2D), [x, w]);
    tf.dispose([x, w, b]);
  });

  it.each([1e-6, 1e-5])('layerNorm (eps %s)', (eps) => {
    const x = tf.add(rand([9, 16], 11, 3), 2); // offset rows: the centring matters
    const g = rand([16], 12);
    const b = rand([16], 13);
    const fast = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Tensor =>
      layerNorm(x as tf.Tensor2D, g as tf.Tensor1D, b as tf.Tensor1D, eps);
    const ref = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Tensor =>
      layerNormRef(x as tf.Tensor2D, g as tf.Tensor1D, b as tf.Tensor1D, eps);
    expectSameGrads(fast, ref, [x, g, b], 14);
    expectNoLeak(fast, [x, g, b]);
    tf.dispose([x, g, b]);
  });

  it('gelu, over [-8, 8] and beyond', () => {
    const grid = tf.linspace(-8, 8, 1601); // includes 0 exactly
    const x = tf.concat([tf.reshape(grid, [1601]), tf.tensor1d([-30, -1e-30, 1e-30, 30]), tf.reshape(rand([6, 50], 21, 2), [300])]);
    expectSameGrads(
      (x) => gelu(x),
      (x) => geluRef(x),
      [x],
      22,
    );
    const x2 = rand([4, 3, 5], 23, 2); // keeps the rank
    const y2 = gelu(x2);
    expect(y2.shape).toEqual([4, 3, 5]);
    expectNoLeak((x) => gelu(x), [x2]);
    tf.dispose([grid, x, x2, y2]);
  });

  describe('attentionCore', () => {
    const cases = [
      [2, 5, 3, 4],
      [1, 17, 3, 8],
      [3, 4, 1, 6],
      [2, 40, 2, 24], // slices of ≥ 32 k multiply-adds: bmm's per-slice 2-D path on wasm
    ] as const;

    it.each(cases)('B=%i T=%i H=%i hd=%i: out, attn and its CLS row (computed alone) values and d/dqkv', (B, T, H, hd) => {
      const qkv = rand([B * T, 3 * H * hd], 31);
      for (const which of ['out', 'attn', 'clsAttn'] as const) {
        expectSameGrads(
          (q) => attentionCore(q as tf.Tensor2D, B, T, H)[which],
          (q) => attentionRef(q as tf.Tensor2D, B, T, H)[which],
          [qkv],
          32,
        );
      }
      // Both outputs in one loss (the fused op's gradient plus the recomputed attention's).
      const r = rand([B, H, T, T], 33);
      const both =
        (core: typeof attentionCore) =>
        (q: tf.Tensor): tf.Tensor => {
          const o = core(q as tf.Tensor2D, B, T, H);
          return tf.add(tf.sum(o.out), tf.sum(tf.mul(o.attn, r)));
        };
      expectSameGrads(both(attentionCore), both(attentionRef), [qkv], 34);
      r.dispose();
      expectNoLeak((q) => attentionCore(q as tf.Tensor2D, B, T, H).out, [qkv]);
      qkv.dispose();
    });

    it.each(cases)('B=%i T=%i H=%i hd=%i: hook multiplying a gate, gradients w.r.t. qkv and the gate', (B, T, H, hd) => {
      const qkv = rand([B * T, 3 * H * hd], 41);
      const gate = tf.add(rand([B, H, T, T], 42, 0.1), 1); // a ones-gate, perturbed so that it is not neutral
      const f =
        (core: typeof attentionCore) =>
        (q: tf.Tensor, g: tf.Tensor): tf.Tensor =>
          core(q as tf.Tensor2D, B, T, H, (a) => tf.mul(a, g)).out;
      expectSameGrads(f(attentionCore), f(attentionRef), [qkv, gate], 43);
      expectNoLeak(f(attentionCore), [qkv, gate]);
      // The returned attention is the gated one.
      const fast = attentionCore(qkv as tf.Tensor2D, B, T, H, (a) => tf.mul(a, gate));
      const ref = attentionRef(qkv as tf.Tensor2D, B, T, H, (a) => tf.mul(a, gate));
      expect(relDiff(fast.attn, ref.attn)).toBeLessThan(TOL);
      tf.dispose([qkv, gate, fast.out, fast.attn, ref.out, ref.attn]);
    });

    it("∂y/∂A through an additive zero probe (the explainers' trace) and through a gate variable", () => {
      const [B, T, H, hd] = [1, 6, 2, 4];
      const qkv = rand([B * T, 3 * H * hd], 51);
      const probe = tf.zeros([B, H, T, T]);
      const r = rand([B * T, H * hd], 52);
      const f =
        (core: typeof attentionCore) =>
        (p: tf.Tensor): tf.Scalar =>
          tf.sum(tf.mul(core(qkv as tf.Tensor2D, B, T, H, (a) => tf.add(a, p)).out, r));
      const [gFast] = tf.grads(f(attentionCore))([probe]);
      const [gRef] = tf.grads(f(attentionRef))([probe]);
      expect(relDiff(gFast, gRef)).toBeLessThan(TOL);
      expect(tf.max(tf.abs(gFast)).dataSync()[0]).toBeGreaterThan(1e-3);

      const gate = tf.variable(tf.ones([B, H, T, T]), true);
      const loss = (core: typeof attentionCore) => (): tf.Scalar =>
        tf.sum(tf.mul(core(qkv as tf.Tensor2D, B, T, H, (a) => tf.mul(a, gate)).out, r));
      const vf = tf.variableGrads(loss(attentionCore), [gate]);
      const vr = tf.variableGrads(loss(attentionRef), [gate]);
      expect(relDiff(vf.grads[gate.name], vr.grads[gate.name])).toBeLessThan(TOL);
      tf.dispose([qkv, probe, r, gFast, gRef, gate, vf.value, vr.value, ...Object.values(vf.grads), ...Object.values(vr.grads)]);
    });
  });
});
