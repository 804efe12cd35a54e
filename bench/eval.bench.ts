/**
 * Explainer speed on the digits benchmark: images/s per method as `ice eval` measures it (one
 * image at a time, time in the explainer only, one untimed warm-up call per method), printed as JSON.
 *
 *   npm run bench:eval -- [--preset digits-micro] [--images 64] [--weights file] [--repeat 3]
 *
 * Without --weights the preset's random initialisation is used: speed does not depend on the values.
 */
import { EXPLAINER_NAMES, IceVit, initBackend, vitConfig } from '@ice/core';
import { runEvaluation } from '@ice/evaluation';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

async function main(): Promise<void> {
  const preset = arg('preset', 'digits-micro');
  const images = Number(arg('images', '64'));
  const repeat = Number(arg('repeat', '3'));
  const weights = arg('weights', '');
  const backend = await initBackend();
  const model = weights ? undefined : IceVit.create(vitConfig(preset), 0);
  const best = new Map<string, number>();
  try {
    for (let r = 0; r < repeat; r++) {
      const result = await runEvaluation({
        protocol: 'segmentation',
        format: 'digits',
        ...(model ? { model } : { weights, modelSpec: preset }),
        methods: [...EXPLAINER_NAMES],
        limit: images,
      });
      for (const row of result.rows) best.set(row.method, Math.max(best.get(row.method) ?? 0, row.imagesPerSecond));
    }
  } finally {
    model?.dispose();
  }
  const ice = best.get('ice') ?? NaN;
  const methods = Object.fromEntries(
    [...best].map(([method, ips]) => [method, { img_per_s: Math.round(ips * 10) / 10, ice_speedup: Math.round((ice / ips) * 100) / 100 }]),
  );
  const gradient = [...best].filter(([m]) => m === 'gradcam' || m === 'generic-attention').map(([, ips]) => ice / ips);
  console.log(JSON.stringify({ bench: 'eval', preset, images, repeat, backend: backend.name, methods, min_ice_speedup_vs_gradient_methods: Math.round(Math.min(...gradient) * 100) / 100 }, null, 2));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
