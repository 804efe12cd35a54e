/**
 * Explainer speed on the digits benchmark: images/s per method as `ice eval` measures it (one
 * image at a time, time in the explainer only, one untimed warm-up call per method).
 *
 *   node bin/run-ts.js bench/eval.bench.ts [--preset digits-micro] [--images 64] [--weights file] [--repeat 3]
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
  console.log(`${preset}, ${images} images, best of ${repeat}, tfjs backend ${backend.name}`);
  for (const [method, ips] of best) console.log(`${method.padEnd(18)} ${ips.toFixed(1).padStart(8)} img/s   ICE speed-up ×${(ice / ips).toFixed(2)}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
