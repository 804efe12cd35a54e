/**
 * Kernel-time breakdown of one pruned inference pass (DeiT-Tiny, batch 64) per mode:
 *   node bin/run-ts.js bench/micro/profile-prune.ts [--preset deit_tiny_patch16_224] [--batch 64] [--reps 3]
 * Prints, per mode, the wall ms of the pass and the kernels by time (the least over reps).
 */
import { Command } from 'commander';
import * as tf from '@tensorflow/tfjs-core';
import { IceVit, initBackend, type PruneOptions, vitConfig } from '@ice/core';

async function main(): Promise<void> {
  const opts = new Command()
    .option('--preset <name>', 'model preset', 'deit_tiny_patch16_224')
    .option('--batch <n>', 'batch size', '64')
    .option('--reps <n>', 'profiled passes per mode', '3')
    .parse(process.argv)
    .opts<{ preset: string; batch: string; reps: string }>();
  await initBackend(undefined, () => undefined);
  const config = vitConfig(opts.preset, { iceHead: 'official' });
  const model = IceVit.create(config, 0);
  const x = tf.randomUniform<tf.Rank.R4>([Number(opts.batch), 3, config.imgSize, config.imgSize], -1, 1, 'float32', 1);
  const modes: [string, PruneOptions | undefined][] = [
    ['unpruned', undefined],
    ['ice@0.5', { mode: 'ice', keepRate: 0.5 }],
    ['evit@0.5', { mode: 'evit', keepRate: 0.5 }],
  ];
  const pass = (p: PruneOptions | undefined): void =>
    tf.tidy(() => {
      model.forward(x, { skipIceHead: true, ...(p ? { prune: p } : {}) }).clsLogits.dataSync();
    });
  for (const [, p] of modes) pass(p);
  for (const [name, p] of modes) {
    const walls: number[] = [];
    const best = new Map<string, { ms: number; n: number }>();
    for (let r = 0; r < Number(opts.reps); r++) {
      const t0 = performance.now();
      pass(p);
      walls.push(performance.now() - t0);
      const info = await tf.profile(() => pass(p));
      const by = new Map<string, { ms: number; n: number }>();
      for (const k of info.kernels) {
        const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
        const e = by.get(k.name) ?? { ms: 0, n: 0 };
        e.ms += ms;
        e.n += 1;
        by.set(k.name, e);
      }
      for (const [k, v] of by) {
        const b = best.get(k);
        if (!b || v.ms < b.ms) best.set(k, v);
      }
    }
    const rows = [...best].sort((a, b) => b[1].ms - a[1].ms);
    const total = rows.reduce((s, [, v]) => s + v.ms, 0);
    console.log(`${name}: wall min ${Math.min(...walls).toFixed(1)} ms, kernels ${total.toFixed(1)} ms`);
    for (const [k, v] of rows.slice(0, 14)) console.log(`  ${k.padEnd(22)} ${v.ms.toFixed(1).padStart(7)} ms  ×${v.n}`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
