import * as tf from '@tensorflow/tfjs-core';
import { nativeKernelsActive, setNativeKernelsEnabled, enableNativeKernels } from './native-kernels';
import { availableLibraries, NATIVE_SPECS_OFF, on, randomValues, relDiff } from './testing/native-testing';

/**
 * The native BatchMatMul and _FusedMatMul against the cpu backend (tfjs-backend-cpu) on every
 * case they claim: transpose flags, batch broadcasting, bias shapes, activations, odd and 0-size
 * shapes; gradients through them; no leaked tensors. Run for each BLAS library found here.
 */

const TOL = 2e-6; // float32 sums of ≤ 200 products in another order

type Shape = number[];

/** The same product on wasm (native) and on cpu. */
async function compare(f: () => tf.Tensor): Promise<number> {
  const got = await on('wasm', f);
  const want = await on('cpu', f);
  expect(got.shape).toEqual(want.shape);
  return relDiff(got.values, want.values);
}

function t(shape: Shape, seed: number): tf.Tensor {
  return tf.tensor(
    randomValues(
      shape.reduce((a, b) => a * b, 1),
      seed,
    ),
    shape,
  );
}

/** Operand shapes for [.., M, K]·[.., K, N] under the transpose flags. */
function shapes(outerA: Shape, outerB: Shape, M: number, K: number, N: number, tA: boolean, tB: boolean): [Shape, Shape] {
  return [
    [...outerA, ...(tA ? [K, M] : [M, K])],
    [...outerB, ...(tB ? [N, K] : [K, N])],
  ];
}

const FLAGS: [boolean, boolean][] = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];

const maybe = NATIVE_SPECS_OFF ? describe.skip : describe;

maybe('native GEMM kernels', () => {
  let libs: string[] = [];

  beforeAll(async () => {
    libs = await availableLibraries();
  });

  it('finds the addon and at least one BLAS library (ICE_NATIVE_KERNELS=off skips these specs)', () => {
    expect(libs.length).toBeGreaterThan(0);
  });

  for (const lib of ['dnnl', 'openblas'] as const) {
    describe(lib, () => {
      beforeEach(async () => {
        if (!libs.includes(lib)) return;
        await tf.setBackend('wasm');
        enableNativeKernels(lib, 1);
        expect(nativeKernelsActive()).toBe(true);
      });

      const run = (name: string, fn: () => Promise<void>): void => {
        it(name, async () => {
          if (!libs.includes(lib)) {
            console.warn(`${lib} is not installed here: skipped "${name}"`);
            return;
          }
          await fn();
        });
      };

      run('2-D products with every transpose flag, odd and larger shapes', async () => {
        for (const [M, K, N] of [
          [1, 1, 1],
          [7, 13, 5],
          [136, 192, 97],
          [3, 200, 1],
        ]) {
          for (const [tA, tB] of FLAGS) {
            const [sa, sb] = shapes([], [], M, K, N, tA, tB);
            expect(await compare(() => tf.matMul(t(sa, 1), t(sb, 2), tA, tB))).toBeLessThan(TOL);
          }
        }
      });

      run('batched products with broadcasting of the batch dimensions', async () => {
        const cases: [Shape, Shape][] = [
          [[4], [4]], // one product each
          [[3], []], // b shared: one tall product
          [[], [3]], // a shared
          [
            [2, 3],
            [2, 3],
          ],
          [
            [2, 3],
            [1, 3],
          ],
          [[2, 1], [1]],
        ];
        for (const [oa, ob] of cases) {
          for (const [tA, tB] of FLAGS) {
            const [sa, sb] = shapes(oa, ob, 5, 6, 7, tA, tB);
            expect(await compare(() => tf.matMul(t(sa, 3), t(sb, 4), tA, tB))).toBeLessThan(TOL);
          }
        }
      });

      run('partial broadcasting ([2,1]·[1,3]) against explicitly tiled operands', async () => {
        // The cpu backend indexes batches modulo their count, which is wrong for this case; the
        // reference tiles both operands to [2,3] first.
        for (const [tA, tB] of FLAGS) {
          const [sa, sb] = shapes([2, 1], [1, 3], 4, 5, 6, tA, tB);
          const got = await on('wasm', () => tf.matMul(t(sa, 5), t(sb, 6), tA, tB));
          const want = await on('cpu', () => tf.matMul(tf.tile(t(sa, 5), [1, 3, 1, 1]), tf.tile(t(sb, 6), [2, 1, 1, 1]), tA, tB));
          expect(got.shape).toEqual([2, 3, 4, 6]);
          expect(relDiff(got.values, want.values)).toBeLessThan(TOL);
        }
      });

      run('0-size dimensions: empty outputs, and K = 0 gives zeros (plus the bias)', async () => {
        for (const [oa, M, K, N] of [
          [[0], 3, 4, 5],
          [[2], 0, 4, 5],
          [[2], 3, 4, 0],
          [[2], 3, 0, 5],
        ] as [Shape, number, number, number][]) {
          for (const [tA, tB] of FLAGS) {
            const [sa, sb] = shapes(oa, oa, M, K, N, tA, tB);
            expect(await compare(() => tf.matMul(t(sa, 7), t(sb, 8), tA, tB))).toBe(0);
          }
        }
        const got = await on('wasm', () =>
          tf.fused.matMul({ a: tf.zeros([2, 0]), b: tf.zeros([0, 3]), bias: tf.tensor1d([1, -2, 3]), activation: 'relu' }),
        );
        expect(Array.from(got.values)).toEqual([1, 0, 3, 1, 0, 3]);
      });

      run('fused: bias shapes × activations × transposes (tf.fused.matMul, 2-D and batched)', async () => {
        const acts: { activation: tf.fused.Activation; leakyreluAlpha?: number; prelu?: boolean }[] = [
          { activation: 'linear' },
          { activation: 'relu' },
          { activation: 'relu6' },
          { activation: 'leakyrelu', leakyreluAlpha: 0.1 },
          { activation: 'sigmoid' },
          { activation: 'elu' },
          { activation: 'prelu', prelu: true },
        ];
        const M = 6;
        const K = 9;
        const N = 5;
        for (const outer of [[], [3]] as Shape[]) {
          const biasShapes: (Shape | null)[] = [null, [N], [1, N], [M, 1], [M, N], ...(outer.length ? [[3, 1, N]] : [])];
          for (const [tA, tB] of FLAGS) {
            const [sa, sb] = shapes(outer, outer, M, K, N, tA, tB);
            for (const bs of biasShapes) {
              for (const act of acts) {
                const d = await compare(() =>
                  tf.fused.matMul({
                    a: tf.mul(t(sa, 9), 4), // values up to ±4, so the activations' both sides are hit
                    b: t(sb, 10),
                    transposeA: tA,
                    transposeB: tB,
                    bias: bs ? t(bs, 11) : undefined,
                    activation: act.activation,
                    leakyreluAlpha: act.leakyreluAlpha,
                    preluActivationWeights: act.prelu ? t([N], 12) : undefined,
                  }),
                );
                expect({ outer, tA, tB, bs, act: act.activation, d: d < TOL }).toEqual({ outer, tA, tB, bs, act: act.activation, d: true });
              }
            }
          }
        }
      });

      run('_FusedMatMul called directly on 2-D operands (as fast-ops does)', async () => {
        for (const [tA, tB] of FLAGS) {
          const [sa, sb] = shapes([], [], 17, 33, 12, tA, tB);
          const d = await compare(() =>
            tf.engine().runKernel<tf.Tensor>(
              '_FusedMatMul',
              { a: t(sa, 13), b: t(sb, 14), bias: t([12], 15) },
              {
                transposeA: tA,
                transposeB: tB,
                activation: 'linear',
                leakyreluAlpha: 0,
              },
            ),
          );
          expect(d).toBeLessThan(TOL);
        }
      });

      run('gradients through matMul and fused matMul (relu, bias) match the cpu backend', async () => {
        for (const [tA, tB] of FLAGS) {
          const [sa, sb] = shapes([2], [2], 5, 7, 4, tA, tB);
          const grads = (): tf.Tensor => {
            const a = t(sa, 16);
            const b = t(sb, 17);
            const bias = t([4], 18);
            const g = tf.grads((x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
              tf.sum(
                tf.mul(
                  tf.fused.matMul({ a: x, b: y, bias: z, activation: 'relu', transposeA: tA, transposeB: tB }),
                  tf.matMul(x, y, tA, tB),
                ),
              ),
            )([a, b, bias]);
            return tf.concat(g.map((x) => tf.reshape(x, [-1])));
          };
          expect(await compare(grads)).toBeLessThan(TOL);
        }
      });

      run('growing the wasm memory inside the kernel (64 MB output) still writes the right place', async () => {
        const d = await compare(() => tf.slice(tf.matMul(t([4096, 1], 19), t([1, 4096], 20)), [4000, 4000], [96, 96]));
        expect(d).toBeLessThan(TOL);
        const d2 = await compare(() => tf.matMul(t([33, 20], 21), t([20, 9], 22)));
        expect(d2).toBeLessThan(TOL);
      });

      run('errors: mismatched inner dimensions give tfjs’s message', async () => {
        await tf.setBackend('wasm');
        expect(() => tf.matMul(tf.zeros([2, 3]), tf.zeros([4, 5]))).toThrow(/inner shapes \(3\) and \(4\)/);
        expect(() =>
          tf
            .engine()
            .runKernel(
              '_FusedMatMul',
              { a: tf.zeros([2, 3]), b: tf.zeros([3, 5]), bias: tf.zeros([4]) },
              { transposeA: false, transposeB: false, activation: 'linear' },
            ),
        ).toThrow(/bias of shape \[4\] does not broadcast/);
      });

      run('the comparison can fail: the stock wasm _FusedMatMul is wrong with a bias and transposeB', async () => {
        const f = (): tf.Tensor => tf.fused.matMul({ a: t([6, 9], 25), b: t([5, 9], 26), transposeB: true, bias: t([5], 27) });
        expect(await compare(f)).toBeLessThan(TOL);
        setNativeKernelsEnabled(false);
        try {
          expect(await compare(f)).toBeGreaterThan(0.1);
        } finally {
          setNativeKernelsEnabled(true);
        }
      });

      run('no leaked tensors; native on, off and on again', async () => {
        await tf.setBackend('wasm');
        const a = t([3, 8, 6], 23);
        const b = t([6, 4], 24);
        const step = (): void =>
          tf.tidy(
            () => void tf.fused.matMul({ a: tf.matMul(a, b, false, false), b: tf.ones([4, 2]), bias: tf.ones([2]), activation: 'relu' }),
          );
        step();
        const before = tf.memory().numTensors;
        for (let i = 0; i < 5; i++) step();
        expect(tf.memory().numTensors).toBe(before);
        const nativeOut = tf.matMul(a, b);
        expect(setNativeKernelsEnabled(false)).toBe(false);
        expect(nativeKernelsActive()).toBe(false);
        const stockOut = tf.matMul(a, b); // the stock wasm kernel
        expect(relDiff(nativeOut.dataSync() as Float32Array, stockOut.dataSync() as Float32Array)).toBeLessThan(TOL);
        expect(setNativeKernelsEnabled(true)).toBe(true);
        tf.dispose([a, b, nativeOut, stockOut]);
      });
    });
  }
});
