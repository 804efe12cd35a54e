/**
 * Kernel-time breakdown of one full ICE training step (bench-small, batch 8) on the default backend:
 *   node bin/run-ts.js bench/micro/profile-step.ts [--preset bench-small] [--batch 8] [--steps 5] [--profile-steps 3]
 * Prints wall ms per step (unprofiled, median and min) and, from tf.profile of --profile-steps
 * steps, the kernels by time per step (ms, the least over the steps; calls per step). Also the
 * forward/backward/AdamW split. ICE_NATIVE_KERNELS=off profiles the stock wasm kernels.
 */
import { Command } from 'commander';
import * as tf from '@tensorflow/tfjs-core';
import { IceTrainer, IceVit, initBackend, MIXUP_PRESETS, TRAIN_PRESETS, vitConfig } from '@ice/core';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function main(): Promise<void> {
  const opts = new Command()
    .option('--preset <name>', 'model preset', 'bench-small')
    .option('--batch <n>', 'batch size', '8')
    .option('--steps <n>', 'timed steps', '5')
    .option('--profile-steps <n>', 'profiled steps (averaged)', '3')
    .parse(process.argv)
    .opts<{ preset: string; batch: string; steps: string; profileSteps: string }>();
  await initBackend(undefined, (m) => console.log(m));
  const batch = Number(opts.batch);
  const config = vitConfig(opts.preset, { numClasses: 10, iceHead: 'official' });
  const model = IceVit.create(config, 0);
  const trainer = new IceTrainer(model, { ...TRAIN_PRESETS.iceReleased, mixup: { ...MIXUP_PRESETS.smoothingOnly, labelSmoothing: 0 } });
  const x: tf.Tensor4D = tf.randomUniform([batch, 3, config.imgSize, config.imgSize], 0, 1, 'float32', 1);
  const labels = Array.from({ length: batch }, (_, i) => i % 10);
  trainer.trainStep(x, labels); // warm-up
  const wall: number[] = [];
  const split = { grads: [] as number[], update: [] as number[] };
  for (let i = 0; i < Number(opts.steps); i++) {
    const t0 = performance.now();
    const r = trainer.computeGradients(x, labels);
    const t1 = performance.now();
    trainer.applyGradients(r.grads);
    tf.dispose([...r.grads.values()]);
    const t2 = performance.now();
    wall.push(t2 - t0);
    split.grads.push(t1 - t0);
    split.update.push(t2 - t1);
  }
  console.log(
    `step ${median(wall).toFixed(1)} ms, min ${Math.min(...wall).toFixed(1)} (forward+backward ${median(split.grads).toFixed(1)}, AdamW ${median(split.update).toFixed(1)}); tensors ${tf.memory().numTensors}`,
  );
  // Each step is profiled on its own; per kernel, the least time over the steps is kept (a shared
  // machine preempts some steps, which inflates whichever kernels were running then).
  const reps = Number(opts.profileSteps);
  const perStep: Map<string, { ms: number; n: number }>[] = [];
  for (let i = 0; i < reps; i++) {
    const info = await tf.profile(() => {
      trainer.trainStep(x, labels);
    });
    const byName = new Map<string, { ms: number; n: number }>();
    for (const k of info.kernels) {
      const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
      const key = `${k.name} ${k.name === 'Transpose' || k.name === 'BatchMatMul' || k.name === '_FusedMatMul' ? `[${k.inputShapes.map((s) => (s ? s.join('x') : '-')).join(' ')}]` : ''}`;
      const e = byName.get(key) ?? { ms: 0, n: 0 };
      e.ms += ms;
      e.n++;
      byName.set(key, e);
    }
    perStep.push(byName);
  }
  const best = new Map<string, { ms: number; n: number }>();
  for (const [key, e] of perStep[0]) best.set(key, { ms: Math.min(...perStep.map((m) => m.get(key)?.ms ?? Infinity)), n: e.n });
  // customGrad forwards appear as kernels named 'forward' whose time includes the kernels inside them.
  let total = 0;
  let calls = 0;
  for (const [key, e] of best) {
    calls += e.n;
    if (key !== 'forward ') total += e.ms;
  }
  console.log(
    `profiled (per step, least over ${reps} steps per kernel): ${calls} kernel calls (${best.get('forward ')?.n ?? 0} of them customGrad 'forward' wrappers), ${total.toFixed(1)} ms kernel time without the wrappers`,
  );
  for (const [k, e] of [...best.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 40)) {
    console.log(`${e.ms.toFixed(2).padStart(9)} ms ${String(e.n).padStart(5)}×  ${k}`);
  }
  const byKernel = new Map<string, { ms: number; n: number }>();
  for (const [key, e] of best) {
    const name = key.split(' ')[0];
    const a = byKernel.get(name) ?? { ms: 0, n: 0 };
    a.ms += e.ms;
    a.n += e.n;
    byKernel.set(name, a);
  }
  console.log('by kernel (all shapes):');
  for (const [k, e] of [...byKernel.entries()].sort((a, b) => b[1].ms - a[1].ms)) {
    console.log(`${e.ms.toFixed(2).padStart(9)} ms ${String(e.n).padStart(5)}×  ${k}`);
  }
  x.dispose();
  trainer.dispose();
  model.dispose();
}

void main();
