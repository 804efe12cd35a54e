import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@ice/core';
import { fusedAdamW, fusedColSum, fusedGelu, fusedGeluGrad, fusedLayerNorm, fusedLayerNormGrad } from '@ice/native-kernels';
function time(name: string, f: () => void, reps = 20) {
  for (let i = 0; i < 3; i++) f();
  const ts: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    f();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  console.log(name.padEnd(40), 'min', ts[0].toFixed(3), 'med', ts[reps >> 1].toFixed(3), 'ms');
}
async function main() {
  await initBackend('wasm');
  const x = tf.randomNormal([1576, 768]) as tf.Tensor2D,
    dy = tf.randomNormal([1576, 768]) as tf.Tensor2D;
  const x2 = tf.randomNormal([1576, 192]) as tf.Tensor2D,
    dy2 = tf.randomNormal([1576, 192]) as tf.Tensor2D;
  const g = tf.ones([192]) as tf.Tensor1D,
    b = tf.zeros([192]) as tf.Tensor1D;
  time('colsum [1576,768]', () => fusedColSum(dy).dispose());
  time('tf.sum axis0 [1576,768]', () => tf.sum(dy, 0).dispose());
  time('gelu [1576,768]', () => fusedGelu(x).dispose());
  time('geluGrad [1576,768]', () => fusedGeluGrad(dy, x).dispose());
  time('layerNorm [1576,192]', () => tf.dispose(fusedLayerNorm(x2, g, b, 1e-6)));
  const [, mu, rs] = fusedLayerNorm(x2, g, b, 1e-6);
  time('layerNormGrad [1576,192]', () => tf.dispose(fusedLayerNormGrad(dy2, x2, g, mu, rs)));
  time('add [1576,768]', () => tf.add(x, dy).dispose());
  // DeiT-like AdamW: 153 tensors, 5.7M
  const shapes: number[][] = [];
  for (let i = 0; i < 12; i++)
    shapes.push([192], [192], [192, 576], [576], [192, 192], [192], [192], [192], [192, 768], [768], [768, 192], [192]);
  shapes.push([768, 192], [192], [1, 197, 192], [1, 1, 192], [192], [192], [192, 1000], [1000], [192, 11]);
  const ps = shapes.map(
    (s) => [tf.variable(tf.randomNormal(s)), tf.randomNormal(s), tf.variable(tf.zeros(s)), tf.variable(tf.zeros(s))] as const,
  );
  console.log(
    'params',
    ps.reduce((a, [p]) => a + p.size, 0),
  );
  const s = { beta1: 0.9, oneMinusBeta1: 0.1, beta2: 0.999, oneMinusBeta2: 0.001, eps: 1e-8, step: 1e-4, keep: 0.99, decay: true };
  time(
    'adamw step (fused, assign)',
    () => {
      for (const [p, gg, m, v] of ps)
        tf.tidy(() => {
          const [a, bb, c] = fusedAdamW(p, gg, m, v, null, s);
          m.assign(bb);
          v.assign(c);
          p.assign(a);
        });
    },
    10,
  );
}
void main();
