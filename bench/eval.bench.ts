/**
 * Explainer speed on the digits benchmark: images/s per method as `ice eval` measures it (time in
 * the explainer only, one untimed warm-up call per method and batch shape), at batch size 1 (each
 * image on its own, as the reference code) and at the evaluation's default batch size, measured
 * side by side in one run (interleaved repeats, best of each), printed as JSON.
 *
 *   npm run bench:eval -- [--preset digits-micro] [--images 64] [--weights file] [--repeat 3] [--batch N]
 *
 * Without --weights the preset's random initialisation is used: speed does not depend on the values.
 */
import { EXPLAINER_NAMES, IceVit, initBackend, vitConfig } from '@ice/core';
import { defaultEvalBatch, runEvaluation } from '@ice/evaluation';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

const round = (v: number, d = 2): number => Math.round(v * 10 ** d) / 10 ** d;

async function main(): Promise<void> {
  const preset = arg('preset', 'digits-micro');
  const images = Number(arg('images', '64'));
  const repeat = Number(arg('repeat', '3'));
  const weights = arg('weights', '');
  const backend = await initBackend();
  const model = weights ? undefined : IceVit.create(vitConfig(preset), 0);
  const batch = Number(arg('batch', String(defaultEvalBatch(vitConfig(preset)))));
  const sizes = [...new Set([1, batch])];
  const best = new Map<number, Map<string, number>>(sizes.map((b) => [b, new Map()]));
  try {
    for (let r = 0; r < repeat; r++) {
      for (const b of sizes) {
        const result = await runEvaluation({
          protocol: 'segmentation',
          format: 'digits',
          ...(model ? { model } : { weights, modelSpec: preset }),
          methods: [...EXPLAINER_NAMES],
          limit: images,
          batchSize: b,
        });
        const m = best.get(b)!;
        for (const row of result.rows) m.set(row.method, Math.max(m.get(row.method) ?? 0, row.imagesPerSecond));
      }
    }
  } finally {
    model?.dispose();
  }
  const report = Object.fromEntries(
    sizes.map((b) => {
      const m = best.get(b)!;
      const ice = m.get('ice')!;
      const methods = Object.fromEntries(
        [...m].map(([method, ips]) => [method, { img_per_s: round(ips, 1), ice_speedup: round(ice / ips) }]),
      );
      const gradient = [...m].filter(([name]) => name === 'gradcam' || name === 'generic-attention').map(([, ips]) => ice / ips);
      return [`batch_${b}`, { methods, min_ice_speedup_vs_gradient_methods: round(Math.min(...gradient)) }];
    }),
  );
  console.log(JSON.stringify({ bench: 'eval', preset, images, repeat, backend: backend.name, ...report }, null, 2));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
