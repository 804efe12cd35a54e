/**
 * The native kernels one by one (ms per call, min and median over repeats), against the stock
 * wasm kernel where there is one, and the GEMM on each BLAS library found:
 *   node bin/run-ts.js bench/micro/native-kernels.ts
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@ice/core';
import {
  enableNativeKernels,
  fusedAdamW,
  fusedColSum,
  fusedGelu,
  fusedGeluGrad,
  fusedLayerNorm,
  fusedLayerNormGrad,
  setNativeKernelsEnabled,
} from '@ice/native-kernels';

function time(name: string, f: () => void, reps = 20): void {
  for (let i = 0; i < 3; i++) f();
  const ts: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    f();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  console.log(`${name.padEnd(46)} min ${ts[0].toFixed(3).padStart(8)}  median ${ts[reps >> 1].toFixed(3).padStart(8)} ms`);
}

async function main(): Promise<void> {
  const info = await initBackend('wasm', (m) => console.log(m));
  if (info.native.kernels === 'off') throw new Error(`native kernels are off: ${info.native.reason}`);

  // GEMM: the training step's shapes (bench-small), each library, and stock wasm.
  const shapes: [number[], number[], boolean, boolean][] = [
    [[136, 192], [192, 576], false, false],
    [[136, 576], [192, 576], false, true],
    [[136, 192], [136, 576], true, false],
    [[136, 768], [768, 192], false, false],
    [[24, 17, 17], [24, 17, 64], false, false],
  ];
  for (const lib of ['dnnl', 'openblas', 'stock'] as const) {
    if (lib === 'stock') setNativeKernelsEnabled(false);
    else {
      try {
        enableNativeKernels(lib, 1);
      } catch (e) {
        console.log(`${lib}: ${(e as Error).message}`);
        continue;
      }
    }
    for (const [sa, sb, tA, tB] of shapes) {
      const a = tf.randomNormal(sa);
      const b = tf.randomNormal(sb);
      time(`${lib} matMul [${sa.join(',')}]·[${sb.join(',')}]${tA ? ' tA' : ''}${tB ? ' tB' : ''}`, () =>
        tf.matMul(a, b, tA, tB).dispose(),
      );
      tf.dispose([a, b]);
    }
  }
  enableNativeKernels(info.native.kernels, 1);

  // Fused elementwise kernels at DeiT-Tiny's sizes (B·T = 1576 rows), against the stock ops they replace.
  const x = tf.randomNormal<tf.Rank.R2>([1576, 768]);
  const dy = tf.randomNormal<tf.Rank.R2>([1576, 768]);
  const x2 = tf.randomNormal<tf.Rank.R2>([1576, 192]);
  const dy2 = tf.randomNormal<tf.Rank.R2>([1576, 192]);
  const g = tf.ones<tf.Rank.R1>([192]);
  const b = tf.zeros<tf.Rank.R1>([192]);
  time('colSum [1576,768]', () => fusedColSum(dy).dispose());
  time('stock sum(x, 0) [1576,768]', () => tf.sum(dy, 0).dispose());
  time('gelu [1576,768]', () => fusedGelu(x).dispose());
  time('geluGrad [1576,768]', () => fusedGeluGrad(dy, x).dispose());
  time('layerNorm [1576,192]', () => tf.dispose(fusedLayerNorm(x2, g, b, 1e-6)));
  const [, mu, rs] = fusedLayerNorm(x2, g, b, 1e-6);
  time('layerNormGrad [1576,192]', () => tf.dispose(fusedLayerNormGrad(dy2, x2, g, mu, rs)));
  time('stock add [1576,768] (one memory-bound pass)', () => tf.add(x, dy).dispose());

  // AdamW over bench-small's 1.93 M parameters in one tensor, fused vs the stock 13-op chain.
  const n = 1_934_986;
  const p = tf.randomNormal([n]);
  const gr = tf.randomNormal([n]);
  const m = tf.randomNormal([n]);
  const v = tf.abs(tf.randomNormal([n]));
  const s = { beta1: 0.9, oneMinusBeta1: 0.1, beta2: 0.999, oneMinusBeta2: 0.001, eps: 1e-8, step: 1e-4, keep: 0.99, decay: true };
  time('fused AdamW, 1.93 M parameters', () => tf.dispose(fusedAdamW(p, gr, m, v, null, s)));
  time('stock AdamW chain, 1.93 M parameters', () =>
    tf
      .tidy(() => {
        const m2 = tf.add(tf.mul(m, 0.9), tf.mul(gr, 0.1));
        const v2 = tf.add(tf.mul(v, 0.999), tf.mul(tf.square(gr), 0.001));
        return tf.sub(tf.mul(p, 0.99), tf.mul(tf.div(m2, tf.add(tf.sqrt(v2), 1e-8)), 1e-4));
      })
      .dispose(),
  );
}

void main();
