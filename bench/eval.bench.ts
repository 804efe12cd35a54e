/**
 * Explainer speed on the digits benchmark: images/s per method as `ice eval` measures it (time in
 * the explainer only, one untimed warm-up call per method and batch shape), at batch size 1 (each
 * image on its own, as the reference code) and at the evaluation's default batch size, measured
 * side by side in one run (interleaved repeats, best of each), printed as JSON.
 *
 *   npm run bench:eval -- [--preset digits-micro] [--images 64] [--weights file] [--repeat 3] [--batch N]
 *                         [--voc-images 300] [--voc-size 96] [--skip-voc]
 *
 * Without --weights the preset's random initialisation is used: speed does not depend on the values.
 *
 * The VOC protocols (jaccard, corloc) are timed end to end on a VOC-layout set that the digits
 * export writes (`--voc-images` test images at `--voc-size`², every explainer): wall seconds per
 * hundred images including reading, resizing and scoring, and the process's peak RSS.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EXPLAINER_NAMES, IceVit, initBackend, vitConfig, writeSafetensors } from '@ice/core';
import { exportDigitsToVoc } from '@ice/datasets';
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
  const voc = process.argv.includes('--skip-voc') ? undefined : await vocProtocols(preset, weights);
  console.log(
    JSON.stringify({ bench: 'eval', preset, images, repeat, backend: backend.name, ...report, ...(voc ? { voc } : {}) }, null, 2),
  );
}

/** jaccard and corloc over an exported VOC-layout set, every method, timed end to end. */
async function vocProtocols(preset: string, weights: string): Promise<Record<string, unknown>> {
  const n = Number(arg('voc-images', '300'));
  const size = Number(arg('voc-size', '96'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-bench-voc-'));
  const model = weights ? undefined : IceVit.create(vitConfig(preset, { iceHead: 'official' }), 0);
  try {
    const file = model ? path.join(dir, 'random.safetensors') : weights;
    if (model) writeSafetensors(file, await model.stateDict());
    const t0 = performance.now();
    await exportDigitsToVoc({ outDir: dir, splits: ['test'], limit: n, canvasSize: size });
    const exportSeconds = (performance.now() - t0) / 1000;
    const out: Record<string, unknown> = { images: n, image_size: size, export_seconds: round(exportSeconds) };
    for (const protocol of ['jaccard', 'corloc'] as const) {
      const t = performance.now();
      const result = await runEvaluation({
        protocol,
        format: 'voc',
        root: dir,
        split: 'test',
        // The weights file (or a random model) at the protocol's size: jaccard asks for its own.
        weights: file,
        modelSpec: preset,
        methods: [...EXPLAINER_NAMES],
      });
      const seconds = (performance.now() - t) / 1000;
      out[protocol] = {
        input_size: result.model.imgSize,
        methods: result.rows.length,
        wall_seconds: round(seconds),
        seconds_per_100_images_all_methods: round((seconds * 100) / n),
        peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
      };
    }
    return out;
  } finally {
    model?.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
