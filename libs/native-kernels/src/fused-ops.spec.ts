import * as tf from '@tensorflow/tfjs-core';
import {
  fusedAdamW,
  fusedAttention,
  fusedAttentionGrad,
  fusedColSum,
  fusedGelu,
  fusedGeluGrad,
  fusedIceMargin,
  fusedLayerNorm,
  fusedLayerNormGrad,
} from './fused-ops';
import { enableNativeKernels, nativeKernelsActive, setNativeKernelsEnabled } from './native-kernels';
import { copyTensorData, WasmBackendLike } from './wasm-heap';
import { availableLibraries, NATIVE_SPECS_OFF, on, randomValues, relDiff } from './testing/native-testing';

/**
 * The fused native kernels against the cpu backend running the plain formulations (and their
 * autodiff gradients for the backward kernels): GELU, LayerNorm, column sums, the attention core
 * (with each BLAS library found), plus input checks, 0-size inputs and leaks.
 */

const TOL = 2e-6;

const t = (shape: number[], seed: number, scale = 1): tf.Tensor =>
  tf.mul(
    tf.tensor(
      randomValues(
        shape.reduce((a, b) => a * b, 1),
        seed,
      ),
      shape,
    ),
    scale,
  );

/** Φ(x)·x with tf.erf (the cpu backend's erf is A&S 7.1.26 as well, |error| ≤ 1.5e-7). */
const geluRef = (x: tf.Tensor): tf.Tensor => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));

const layerNormRef = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, eps: number): tf.Tensor => {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), g), b);
};

/** timm's attention on qkv [B·T, 3·H·hd] → [B·T, H·hd], with the probabilities [B·H, T, T]. */
const attentionRef = (qkv: tf.Tensor, B: number, T: number, H: number): { out: tf.Tensor; p: tf.Tensor } => {
  const hd = qkv.shape[1]! / (3 * H);
  const [q, k, v] = tf.unstack(tf.transpose(tf.reshape(qkv, [B, T, 3, H, hd]), [2, 0, 3, 1, 4])); // each [B, H, T, hd]
  const p = tf.softmax(tf.mul(tf.matMul(q, k, false, true), hd ** -0.5)); // [B, H, T, T]
  const out = tf.reshape(tf.transpose(tf.matMul(p, v), [0, 2, 1, 3]), [B * T, H * hd]);
  return { out, p: tf.reshape(p, [B * H, T, T]) };
};

async function expectClose(native: () => tf.Tensor, ref: () => tf.Tensor, tol = TOL): Promise<void> {
  const got = await on('wasm', native);
  const want = await on('cpu', ref);
  expect(got.shape).toEqual(want.shape);
  expect(relDiff(got.values, want.values)).toBeLessThan(tol);
}

const maybe = NATIVE_SPECS_OFF ? describe.skip : describe;

maybe('fused native kernels', () => {
  let libs: string[] = [];

  beforeAll(async () => {
    libs = await availableLibraries();
    expect(libs.length).toBeGreaterThan(0);
    enableNativeKernels(libs[0] as 'dnnl' | 'openblas', 1);
  });

  beforeEach(async () => {
    await tf.setBackend('wasm');
    expect(nativeKernelsActive()).toBe(true);
  });

  it('GELU and its gradient over [-12, 12], the extremes and random rows; any rank', async () => {
    const xs = (): tf.Tensor =>
      tf.concat([
        tf.linspace(-12, 12, 2401),
        tf.tensor1d([0, -0, 1e-30, -1e-30, -30, 30, -100, 100, 1e-3]),
        tf.reshape(t([9, 50], 1, 3), [450]),
      ]);
    await expectClose(
      () => fusedGelu(xs()),
      () => geluRef(xs()),
    );
    const dy = (): tf.Tensor => t([2860], 2);
    await expectClose(
      () => fusedGeluGrad(dy(), xs()),
      () => tf.grad(geluRef)(xs(), dy()),
    );
    const r3 = await on('wasm', () => fusedGelu(t([4, 3, 5], 3)));
    expect(r3.shape).toEqual([4, 3, 5]);
    const empty = await on('wasm', () => fusedGeluGrad(tf.zeros([0, 3]), tf.zeros([0, 3])));
    expect(empty.shape).toEqual([0, 3]);
  });

  it.each([
    [9, 16, 1e-6],
    [136, 192, 1e-6],
    [5, 1, 1e-5], // one feature: x̂ = 0
    [3, 1000, 1e-5],
  ])('LayerNorm [%i, %i] eps %s: y, and dx, dγ, dβ as autodiff gives them', async (M, D, eps) => {
    const x = (): tf.Tensor => tf.add(t([M, D], 4, 3), 2); // offset rows: the centring matters
    const g = (): tf.Tensor => t([D], 5);
    const b = (): tf.Tensor => t([D], 6);
    const dy = (): tf.Tensor => t([M, D], 7);
    await expectClose(
      () => fusedLayerNorm(x() as tf.Tensor2D, g() as tf.Tensor1D, b() as tf.Tensor1D, eps)[0],
      () => layerNormRef(x(), g(), b(), eps),
    );
    const grads = (): tf.Tensor => {
      const [, mean, rstd] = fusedLayerNorm(x() as tf.Tensor2D, g() as tf.Tensor1D, b() as tf.Tensor1D, eps);
      const gs = fusedLayerNormGrad(dy() as tf.Tensor2D, x() as tf.Tensor2D, g() as tf.Tensor1D, mean, rstd);
      return tf.concat(gs.map((z) => tf.reshape(z, [-1])));
    };
    const refGrads = (): tf.Tensor => {
      const gs = tf.grads((a: tf.Tensor, c: tf.Tensor, d: tf.Tensor) => layerNormRef(a, c, d, eps))([x(), g(), b()], dy());
      return tf.concat(gs.map((z) => tf.reshape(z, [-1])));
    };
    await expectClose(grads, refGrads, 1e-5); // sums of ≤ 1000 float32 terms in another order
  });

  it('LayerNorm on 0 rows, and the mean of 0 features is NaN as tf.mean gives it', () => {
    const [y, mean] = fusedLayerNorm(tf.zeros([0, 4]), tf.ones([4]), tf.zeros([4]), 1e-6);
    expect(y.shape).toEqual([0, 4]);
    expect(mean.shape).toEqual([0]);
    const [y2, mean2] = fusedLayerNorm(tf.zeros([2, 0]), tf.ones([0]), tf.zeros([0]), 1e-6);
    expect(y2.shape).toEqual([2, 0]);
    expect(Array.from(mean2.dataSync())).toEqual([NaN, NaN]);
    tf.dispose([y, mean, y2, mean2]);
  });

  it('column sums, including 0 rows and 0 columns', async () => {
    for (const [M, N] of [
      [1, 1],
      [136, 768],
      [7, 3],
      [0, 5],
      [5, 0],
    ]) {
      await expectClose(
        () => fusedColSum(t([M, N], 8) as tf.Tensor2D),
        () => tf.sum(t([M, N], 8), 0),
        1e-5,
      );
    }
  });

  for (const lib of ['dnnl', 'openblas'] as const) {
    it.each([
      [2, 5, 3, 4],
      [8, 17, 3, 64],
      [1, 1, 2, 3], // one token: p = 1
      [3, 4, 1, 1],
      [1, 40, 2, 24],
    ])(`attention core with ${lib}: B=%i T=%i H=%i hd=%i, out, p and d/dqkv`, async (B, T, H, hd) => {
      if (!libs.includes(lib)) {
        console.warn(`${lib} is not installed here: attention not tested with it`);
        return;
      }
      enableNativeKernels(lib, 1);
      const qkv = (): tf.Tensor => t([B * T, 3 * H * hd], 9, 2);
      const dy = (): tf.Tensor => t([B * T, H * hd], 10);
      await expectClose(
        () => fusedAttention(qkv() as tf.Tensor2D, B, T, H)[0],
        () => attentionRef(qkv(), B, T, H).out,
      );
      await expectClose(
        () => fusedAttention(qkv() as tf.Tensor2D, B, T, H)[1],
        () => attentionRef(qkv(), B, T, H).p,
      );
      await expectClose(
        () => {
          const [, p] = fusedAttention(qkv() as tf.Tensor2D, B, T, H);
          return fusedAttentionGrad(dy() as tf.Tensor2D, qkv() as tf.Tensor2D, p, B, T, H);
        },
        () => tf.grad((q: tf.Tensor) => attentionRef(q, B, T, H).out)(qkv(), dy()),
        1e-5,
      );
    });
  }

  for (const lib of ['dnnl', 'openblas'] as const) {
    it.each([
      [5, 8, 4], // fewer rows than a block
      [600, 24, 11], // three blocks, the last one partial
      [3, 1, 2], // one class: the margin is z_0 − z_bg
      [4, 0, 3], // K = 0: every logit 0
    ])(`ICE margin with ${lib}: M=%i K=%i c+1=%i, as max over the class logits minus the background one`, async (M, K, C1) => {
      if (!libs.includes(lib)) {
        console.warn(`${lib} is not installed here: the ICE margin not tested with it`);
        return;
      }
      enableNativeKernels(lib, 1);
      const x = (): tf.Tensor2D => t([M, K], 19, 2) as tf.Tensor2D;
      const w = (): tf.Tensor2D => t([K, C1], 20) as tf.Tensor2D;
      await expectClose(
        () => fusedIceMargin(x(), w()),
        () => {
          const z = tf.matMul(x(), w());
          return tf.sub(tf.max(tf.slice(z, [0, 0], [M, C1 - 1]), 1), tf.reshape(tf.slice(z, [0, C1 - 1], [M, 1]), [M]));
        },
        1e-5, // K-term dot products, summed in the library's order
      );
    });
  }

  it('ICE margin refuses a weight without a class column, or of the wrong depth', () => {
    expect(() => fusedIceMargin(tf.zeros([3, 4]), tf.zeros([4, 1]))).toThrow(/IceMargin: x \[3,4\] and w \[4,1\] are not/);
    expect(() => fusedIceMargin(tf.zeros([3, 4]), tf.zeros([5, 3]))).toThrow(/IceMargin: x \[3,4\] and w \[5,3\] are not/);
  });

  it('GatherV2 copies whole rows at any axis, for float32 and int32, as the stock kernel does', async () => {
    const cases: [number[], number[], number, 'float32' | 'int32'][] = [
      [[7, 5], [6, 0, 6, 3], 0, 'float32'],
      [[3, 7, 4], [2, 5], 1, 'float32'],
      [[2, 3, 6], [5, 0, 1], 2, 'float32'], // last axis: single elements
      [[4, 3], [3, 1], -2, 'int32'],
      [[6, 2], [], 0, 'float32'], // no index
    ];
    for (const [shape, idx, axis, dtype] of cases) {
      const x = (): tf.Tensor => tf.cast(tf.mul(t(shape, 21), 100), dtype);
      const run = (): tf.Tensor => tf.gather(x(), tf.tensor1d(idx, 'int32'), axis);
      const got = await on('wasm', run);
      setNativeKernelsEnabled(false);
      const want = await on('wasm', run);
      setNativeKernelsEnabled(true);
      expect(got.shape).toEqual(want.shape);
      expect(Array.from(got.values)).toEqual(Array.from(want.values));
    }
    const r = tf.gather(tf.reshape(tf.range(0, 12), [3, 4]), tf.tensor2d([2, 0, 1, 1], [2, 2], 'int32'));
    expect(r.shape).toEqual([2, 2, 4]); // indices of rank 2
    expect(Array.from(r.dataSync())).toEqual([8, 9, 10, 11, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7]);
    r.dispose();
  });

  it('GatherV2 names an index out of range and leaks nothing', () => {
    const x = tf.zeros([4, 3]);
    const before = tf.memory().numTensors;
    const bytes = tf.memory().numBytes;
    expect(() => tf.gather(x, tf.tensor1d([1, 4], 'int32'))).toThrow(/GatherV2: the index value 4 is not in \[0, 3\]/);
    expect(() => tf.gather(x, tf.tensor1d([-1], 'int32'))).toThrow(/the index value -1 is not in \[0, 3\]/);
    expect(tf.memory().numBytes - bytes).toBeLessThanOrEqual(2 * 4 * 2); // only the two index tensors
    expect(tf.memory().numTensors - before).toBeLessThanOrEqual(2);
    x.dispose();
  });

  it('Slice and SplitV copy heap to heap at any rank, as the stock kernels do, and never read the input back', async () => {
    const slices: [number[], number[], number[], 'float32' | 'int32'][] = [
      [[10], [3], [4], 'float32'],
      [[6, 5], [1, 0], [4, 5], 'float32'], // whole rows: one run
      [[6, 5], [2, 1], [3, 3], 'int32'], // cut in both dimensions
      [[4, 9, 8], [0, 0, 0], [4, 1, 8], 'float32'], // the CLS token of [B, T, D]
      [[4, 9, 8], [1, 2, 3], [2, 5, 4], 'float32'],
      [[3, 4, 5, 6], [1, 0, 2, 1], [2, 4, 2, 5], 'float32'],
      [[2, 3, 4, 5, 3], [0, 1, 1, 2, 0], [2, 2, 3, 3, 3], 'int32'], // rank 5
      [[5, 4], [0, 0], [5, 4], 'float32'], // all of it
      [[5, 4], [2, 1], [0, 3], 'float32'], // empty
    ];
    const splits: [number[], number[] | number, number][] = [
      [[6, 10], [3, 2, 5], 1],
      [[2, 9, 4], 3, 1],
      [[4, 6], [1, -1], 0],
    ];
    const same = async (run: () => tf.Tensor | tf.Tensor[]): Promise<void> => {
      const stack = (): tf.Tensor => {
        const r = run();
        return Array.isArray(r) ? tf.concat(r.map((z) => z.flatten())) : r;
      };
      const reads = readSync.mock.calls.length;
      const got = await on('wasm', stack);
      expect(readSync.mock.calls.length - reads).toBe(1); // `on` reading the result; the stock kernels read every input too
      setNativeKernelsEnabled(false);
      const want = await on('wasm', stack);
      setNativeKernelsEnabled(true);
      expect(got.shape).toEqual(want.shape);
      expect(Array.from(got.values)).toEqual(Array.from(want.values));
    };
    await tf.setBackend('wasm');
    const readSync = jest.spyOn(tf.backend() as unknown as { readSync: (...a: unknown[]) => unknown }, 'readSync');
    for (const [shape, begin, size, dtype] of slices) {
      await same(() => tf.slice(tf.cast(tf.mul(t(shape, 31), 100), dtype), begin, size));
    }
    for (const [shape, sizes, axis] of splits) await same(() => tf.split(tf.mul(t(shape, 32), 100), sizes, axis));
    readSync.mockRestore();
    const x = tf.zeros([8, 8]);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) tf.dispose([tf.slice(x, [1, 2], [3, 4]), ...tf.split(x, 4, 1)]);
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });

  it('copyTensorData copies a tensor into a buffer at an offset, from the wasm heap or through dataSync on cpu', async () => {
    for (const backend of ['wasm', 'cpu'] as const) {
      await tf.setBackend(backend);
      const x = t([3, 5], 22);
      const dst = new Float32Array(new SharedArrayBuffer(4 * 20)).fill(-7);
      copyTensorData(x, dst, 4);
      expect(Array.from(dst.subarray(4, 19))).toEqual(Array.from(x.dataSync()));
      expect([dst[3], dst[19]]).toEqual([-7, -7]);
      expect(() => copyTensorData(x, dst, 6)).toThrow(/15 values at 6 do not fit in 20/);
      expect(() => copyTensorData(tf.zeros([2], 'int32'), dst, 0)).toThrow(/int32 tensor, expected float32/);
      x.dispose();
    }
    await tf.setBackend('wasm');
  });

  it('attention with no images is empty', () => {
    const [out, p] = fusedAttention(tf.zeros<tf.Rank.R2>([0, 12]), 0, 5, 2);
    expect(out.shape).toEqual([0, 4]); // hd = 12 / (3·2) = 2
    expect(p.shape).toEqual([0, 5, 5]);
    tf.dispose([out, p]);
  });

  it('AdamW leaves its inputs unchanged and returns new p, m, v', () => {
    const p = t([50], 11);
    const g = t([50], 12);
    const m = t([50], 13);
    const v = tf.abs(t([50], 14));
    const before = [p, g, m, v].map((x) => Array.from(x.dataSync()));
    const outs = fusedAdamW(p, g, m, v, null, {
      beta1: 0.9,
      oneMinusBeta1: 0.1,
      beta2: 0.999,
      oneMinusBeta2: 0.001,
      eps: 1e-8,
      step: 1e-2,
      keep: 0.999,
      decay: true,
    });
    expect([p, g, m, v].map((x) => Array.from(x.dataSync()))).toEqual(before);
    expect(outs.map((o) => o.shape)).toEqual([[50], [50], [50]]);
    expect(Array.from(outs[0].dataSync())).not.toEqual(before[0]);
    tf.dispose([p, g, m, v, ...outs]);
  });

  it('refuses inputs of the wrong shape or dtype with the input named', () => {
    const x = tf.zeros<tf.Rank.R2>([4, 6]);
    expect(() => fusedLayerNorm(x, tf.ones([5]), tf.zeros([6]), 1e-6)).toThrow(/IceLayerNorm: gamma is \[5\], expected \[6\]/);
    expect(() => fusedGeluGrad(tf.zeros([4, 5]), x)).toThrow(/IceGeluGrad: dy is \[4,5\], expected \[4,6\]/);
    expect(() => fusedGelu(tf.zeros([3], 'int32'))).toThrow(/input x is int32, not float32/);
    expect(() => fusedAttention(tf.zeros<tf.Rank.R2>([10, 12]), 2, 4, 2)).toThrow(
      /IceAttention: qkv is \[10,12\], expected \[B·T, 3·H·hd\] = \[8, 3·2·hd\]/,
    );
    const s = { beta1: 0.9, oneMinusBeta1: 0.1, beta2: 0.999, oneMinusBeta2: 0.001, eps: 1e-8, step: 1, keep: 1, decay: false };
    expect(() => fusedAdamW(tf.zeros([3]), tf.zeros([4]), tf.zeros([3]), tf.zeros([3]), null, s)).toThrow(
      /IceAdamW: g has 4 elements, p has 3/,
    );
    x.dispose();
  });

  it("Identity (the engine's clone of every saved tensor) shares the buffer instead of copying it", () => {
    const offset = (x: tf.Tensor): number => (tf.backend() as unknown as WasmBackendLike).dataIdMap.get(x.dataId)!.memoryOffset;
    const x = t([1000], 18);
    const values = Array.from(x.dataSync());
    const y = tf.clone(x);
    expect(offset(y)).toBe(offset(x));
    x.dispose();
    expect(Array.from(y.dataSync())).toEqual(values); // still alive: the clone holds a reference
    setNativeKernelsEnabled(false);
    try {
      const z = tf.clone(y);
      expect(offset(z)).not.toBe(offset(y)); // the stock kernel copies
      z.dispose();
    } finally {
      setNativeKernelsEnabled(true);
    }
    y.dispose();
  });

  it('leaks no tensors over repeated forward and backward calls', () => {
    const x = t([12, 8], 15) as tf.Tensor2D;
    const g = t([8], 16) as tf.Tensor1D;
    const qkv = t([2 * 6, 3 * 2 * 4], 17) as tf.Tensor2D;
    const step = (): void =>
      tf.tidy(() => {
        const [y, mean, rstd] = fusedLayerNorm(x, g, g, 1e-6);
        fusedLayerNormGrad(y, x, g, mean, rstd);
        fusedGeluGrad(fusedGelu(y), y);
        fusedColSum(y);
        const [o, p] = fusedAttention(qkv, 2, 6, 2);
        fusedAttentionGrad(o, qkv, p, 2, 6, 2);
        fusedIceMargin(y, tf.tile(tf.reshape<tf.Rank.R2>(g, [8, 1]), [1, 3]));
        tf.gather(y, tf.tensor1d([3, 0, 3], 'int32'));
      });
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) step();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, g, qkv]);
  });
});
