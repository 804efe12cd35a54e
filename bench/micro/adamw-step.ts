/**
 * AdamW.step over the bench-small model's parameters (1.93 M, 57 tensors) with random gradients:
 *   node bin/run-ts.js bench/micro/adamw-step.ts [--rounds 9]
 * Prints the median ms per step and a kernel breakdown of one step.
 */
import { Command } from 'commander';
import * as tf from '@tensorflow/tfjs-core';
import { AdamW, IceVit, initBackend, vitConfig } from '@ice/core';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function main(): Promise<void> {
  const opts = new Command().option('--rounds <n>', 'timed rounds of 5 steps', '9').parse(process.argv).opts<{ rounds: string }>();
  await initBackend(undefined, () => undefined);
  const model = IceVit.create(vitConfig('bench-small', { numClasses: 10, iceHead: 'official' }), 0);
  const opt = new AdamW(model.params);
  const grads = new Map<string, tf.Tensor>();
  let i = 0;
  for (const [name, p] of model.params) grads.set(name, tf.randomNormal(p.shape, 0, 1e-3, 'float32', i++));
  for (let k = 0; k < 3; k++) opt.step(grads, 1e-4);
  const per: number[] = [];
  for (let r = 0; r < Number(opts.rounds); r++) {
    const t0 = performance.now();
    for (let k = 0; k < 5; k++) opt.step(grads, 1e-4);
    await model.params.get('head.bias')!.data(); // the update is synchronous on wasm; read to be sure
    per.push((performance.now() - t0) / 5);
  }
  console.log(
    `AdamW.step: ${median(per).toFixed(2)} ms (min ${Math.min(...per).toFixed(2)}) over ${model.parameterCount()} parameters in ${model.params.size} tensors`,
  );
  const info = await tf.profile(() => opt.step(grads, 1e-4));
  const byName = new Map<string, { ms: number; n: number }>();
  for (const k of info.kernels) {
    const e = byName.get(k.name) ?? { ms: 0, n: 0 };
    e.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    e.n++;
    byName.set(k.name, e);
  }
  for (const [k, e] of [...byName.entries()].sort((a, b) => b[1].ms - a[1].ms))
    console.log(`${e.ms.toFixed(2).padStart(8)} ms ${String(e.n).padStart(4)}×  ${k}`);
  tf.dispose([...grads.values()]);
  opt.dispose();
  model.dispose();
}

void main();
