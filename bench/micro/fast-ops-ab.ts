/**
 * A/B of libs/ice-core/src/model/fast-ops.ts against alternatives, fwd+bwd, round-robin timing:
 *   node bin/run-ts.js bench/micro/fast-ops-ab.ts [--rounds 9]
 * - attention: fast-ops without a hook (one fused custom gradient, FINDINGS V7) vs with an identity
 *   hook (the two-half custom gradients the explainers' hook needs);
 * - GELU: fast-ops (exp(−x²/2) from the XNNPACK sigmoid: e^w = σ(w)/(1 − σ(w))) vs tf.exp.
 */
import { Command } from 'commander';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@ice/core';
// eslint-disable-next-line no-restricted-imports -- a micro-benchmark of an internal module
import { attentionCore, gelu } from '../../libs/ice-core/src/model/fast-ops';

const B = 8;
const T = 17;
const H = 3;
const hd = 64;
const D = H * hd;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function bench(variants: Record<string, () => void>, rounds: number, iters: number): void {
  const names = Object.keys(variants);
  const per = new Map(names.map((n) => [n, [] as number[]]));
  for (const n of names) for (let i = 0; i < 3; i++) variants[n]();
  for (let r = 0; r < rounds; r++) {
    for (const n of names) {
      const t0 = performance.now();
      for (let i = 0; i < iters; i++) variants[n]();
      per.get(n)!.push((performance.now() - t0) / iters);
    }
  }
  for (const n of names)
    console.log(`${n.padEnd(52)} ${median(per.get(n)!).toFixed(3).padStart(8)} ms  [min ${Math.min(...per.get(n)!).toFixed(3)}]`);
}

function maxDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

const ERF_P = 0.3275911 * Math.SQRT1_2;
const ERF_A = [0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429].map((a) => a / 2);
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
/** GELU with exp(−x²/2) from tf.exp (the previous formulation). */
const geluExp = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
  const ax = tf.abs(x);
  const t = tf.div(1, tf.add(tf.mul(ax, ERF_P), 1));
  let poly = tf.mul(t, ERF_A[4]);
  for (let i = 3; i >= 0; i--) poly = tf.mul(tf.add(poly, ERF_A[i]), t);
  const e = tf.exp(tf.mul(tf.square(x), -0.5));
  const cdf = tf.add(tf.mul(tf.div(x, tf.add(ax, 1e-30)), tf.sub(0.5, tf.mul(poly, e))), 0.5);
  save([x, cdf, e]);
  return {
    value: tf.mul(x, cdf),
    gradFunc: (dy: tf.Tensor, [xs, c, es]: tf.Tensor[]) => tf.mul(dy, tf.add(c, tf.mul(tf.mul(xs, es), INV_SQRT_2PI))),
  };
});

async function main(): Promise<void> {
  const opts = new Command().option('--rounds <n>', 'rounds', '9').parse(process.argv).opts<{ rounds: string }>();
  await initBackend('wasm', () => undefined);
  const rounds = Number(opts.rounds);
  const qkv = tf.randomNormal([B * T, 3 * D], 0, 1, 'float32', 1);
  const dy = tf.randomNormal([B * T, D], 0, 1, 'float32', 2);
  const composed = (q: tf.Tensor): tf.Tensor => attentionCore(q as tf.Tensor2D, B, T, H, (a) => a).out;
  const fused = (q: tf.Tensor): tf.Tensor => attentionCore(q as tf.Tensor2D, B, T, H).out;
  const gC = tf.grads(composed);
  const gF = tf.grads(fused);
  tf.tidy(() =>
    console.log(
      `attention: max |Δ| forward ${maxDiff(composed(qkv), fused(qkv)).toExponential(2)}, d/dqkv ${maxDiff(gC([qkv], dy)[0], gF([qkv], dy)[0]).toExponential(2)}`,
    ),
  );
  console.log('## attention core fwd+bwd, qkv [136,576]');
  bench(
    {
      'no hook: fused (V7)': () => tf.dispose(gF([qkv], dy)),
      'identity hook: two halves': () => tf.dispose(gC([qkv], dy)),
      'no hook: fused (V7), again': () => tf.dispose(gF([qkv], dy)),
    },
    rounds,
    10,
  );

  const x = tf.randomNormal([136, 768], 0, 1.5, 'float32', 3);
  const dx = tf.randomNormal([136, 768], 0, 1, 'float32', 4);
  const g1 = tf.grads((z: tf.Tensor) => gelu(z));
  const g2 = tf.grads((z: tf.Tensor) => geluExp(z));
  tf.tidy(() =>
    console.log(
      `gelu: max |Δ| forward ${maxDiff(gelu(x), geluExp(x)).toExponential(2)}, grad ${maxDiff(g1([x], dx)[0], g2([x], dx)[0]).toExponential(2)}`,
    ),
  );
  console.log('## GELU fwd+bwd [136,768]');
  bench(
    {
      'sigmoid ratio (fast-ops)': () => tf.dispose(g1([x], dx)),
      'tf.exp': () => tf.dispose(g2([x], dx)),
      'sigmoid ratio (fast-ops), again': () => tf.dispose(g1([x], dx)),
      'tf.exp, again': () => tf.dispose(g2([x], dx)),
    },
    rounds,
    10,
  );
  tf.dispose([qkv, dy, x, dx]);
}

void main();
