/**
 * `npm run bench:data [-- --threads 1,2] [--train-img-per-s 224:3.1,64:230 | --run-train] [--keep]`
 *
 * Images/s of the input pipeline (BatchLoader: decode + augment in worker threads, NCHW batches
 * handed to this thread) for
 * - ImageNet-style JPEGs at 224²: ~200 photo-like JPEGs of 500×375 / 375×500 generated into a
 *   temporary folder in ImageNet layout, with RandomResizedCrop(224, bicubic) + flip + ImageNet
 *   normalisation (timm's train transform);
 * - the built-in `digits` at 64² (generated on the fly, normalised 0.5/0.5: what training feeds today);
 * each with 1 and 2 worker threads, after a warm-up epoch (thread start, dataset open, JIT).
 * With the training throughput for the same image size — given as `--train-img-per-s` (one number
 * for every size, or size:n pairs), or measured by running bench/train.bench.ts (`--run-train`:
 * its yardstick config is 64², DeiT-Tiny is 224²) — it prints pipeline / training (the target is
 * ≥ 5×). Prints one JSON document.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import sharp from 'sharp';
import { BatchLoader, type BatchLoaderOptions, type TransformSpec, trainTransformSpec } from '@ice/datasets';

interface CaseResult {
  name: string;
  size: number;
  threads: number;
  batch: number;
  images: number;
  seconds: number;
  img_per_s: number;
  skipped: number;
}

/** A photo-like RGB image: smooth colour fields, edges, texture and sensor noise (so JPEG sizes are realistic). */
function photoLike(h: number, w: number, seed: number): Uint8Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  const rand = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
  const waves = Array.from({ length: 6 }, () => ({
    fx: (rand() - 0.5) * 0.08,
    fy: (rand() - 0.5) * 0.08,
    ph: rand() * 6.28,
    amp: [rand(), rand(), rand()].map((v) => (v - 0.5) * 90),
  }));
  const base = [rand() * 255, rand() * 255, rand() * 255];
  const blobs = Array.from({ length: 5 }, () => ({
    cx: rand() * w,
    cy: rand() * h,
    r: 20 + rand() * 120,
    col: [rand() * 255, rand() * 255, rand() * 255],
  }));
  const out = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = (y * w + x) * 3;
      const tex = Math.sin(x * 0.9 + y * 0.35) * Math.sin(y * 0.7 - x * 0.2) * 18;
      for (let c = 0; c < 3; c++) {
        let v = base[c] + tex;
        for (const wv of waves) v += wv.amp[c] * Math.sin(wv.fx * x + wv.fy * y + wv.ph);
        for (const b of blobs) if ((x - b.cx) ** 2 + (y - b.cy) ** 2 < b.r * b.r) v = 0.6 * v + 0.4 * b.col[c];
        v += (rand() - 0.5) * 24;
        out[p + c] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  }
  return out;
}

async function makeImageNet(root: string, count: number): Promise<{ images: number; meanKB: number }> {
  const classes = 10;
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const wnid = `n${String(1440764 + (i % classes)).padStart(8, '0')}`;
    const dir = join(root, 'train', wnid);
    mkdirSync(dir, { recursive: true });
    const [h, w] = i % 4 === 3 ? [500, 375] : [375, 500];
    const file = join(dir, `${wnid}_${i}.JPEG`);
    await sharp(Buffer.from(photoLike(h, w, i + 1)), { raw: { width: w, height: h, channels: 3 } })
      .jpeg({ quality: 90 })
      .toFile(file);
    bytes += statSync(file).size;
  }
  return { images: count, meanKB: Math.round(bytes / count / 102.4) / 10 };
}

async function measure(name: string, size: number, opts: BatchLoaderOptions, minImages: number): Promise<CaseResult> {
  const loader = await BatchLoader.open({ ...opts, log: (m) => console.error(m) });
  try {
    for await (const _ of loader.epoch(0)) {
      // warm-up: threads started, dataset opened, code compiled
    }
    let images = 0;
    let seconds = 0;
    let skipped = 0;
    for (let e = 1; images < minImages; e++) {
      const run = loader.epoch(e);
      for await (const _ of run) {
        // the trainer would take the batch here
      }
      images += run.summary.samples;
      seconds += run.summary.seconds;
      skipped += run.summary.skipped;
    }
    return {
      name,
      size,
      threads: loader.threads,
      batch: opts.batchSize,
      images,
      seconds: round(seconds, 3),
      img_per_s: round(images / seconds, 1),
      skipped,
    };
  } finally {
    await loader.close();
  }
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** "3.1" → every size; "224:3.1,64:230" → per size. */
function parseTrainRates(spec: string): { all?: number; bySize: Map<number, number> } {
  const bySize = new Map<number, number>();
  if (!spec.includes(':')) {
    const all = Number(spec);
    if (!(all > 0)) throw new Error(`--train-img-per-s: expected a positive number or size:n pairs, got '${spec}'`);
    return { all, bySize };
  }
  for (const part of spec.split(',')) {
    const [k, v] = part.split(':').map(Number);
    if (!(k > 0 && v > 0)) throw new Error(`--train-img-per-s: bad pair '${part}'`);
    bySize.set(k, v);
  }
  return { bySize };
}

/** Runs bench/train.bench.ts and returns img/s by image size (yardstick 64², DeiT-Tiny 224²). */
function runTrainBench(): { bySize: Map<number, number>; report: unknown } {
  const repo = resolve(__dirname, '..');
  const out = execFileSync(process.execPath, [join(repo, 'bin', 'run-ts.js'), join(repo, 'bench', 'train.bench.ts')], {
    cwd: repo,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 16 * 1024 * 1024,
  });
  const report = JSON.parse(out.slice(out.indexOf('{'))) as { results: { img: number; img_per_s: number }[] };
  const bySize = new Map<number, number>();
  for (const r of report.results) bySize.set(r.img, Math.max(bySize.get(r.img) ?? 0, r.img_per_s));
  return { bySize, report };
}

async function main(): Promise<void> {
  const opts = new Command()
    .option('--threads <list>', 'worker thread counts to measure (0 = inline)', '1,2')
    .option('--images <n>', 'JPEGs to generate', '200')
    .option('--batch <n>', 'batch size', '32')
    .option('--min-images <n>', 'images timed per case (after the warm-up epoch)', '400')
    .option('--train-img-per-s <spec>', 'training img/s: one number, or size:n pairs (e.g. 224:3.1,64:230)')
    .option('--run-train', 'measure training with bench/train.bench.ts for the ratio')
    .option('--keep', 'keep the generated JPEG folder')
    .parse(process.argv)
    .opts<{
      threads: string;
      images: string;
      batch: string;
      minImages: string;
      trainImgPerS?: string;
      runTrain?: boolean;
      keep?: boolean;
    }>();
  const threadCounts = opts.threads.split(',').map(Number);
  const batchSize = Number(opts.batch);
  const minImages = Number(opts.minImages);
  const load = loadavg().map((v) => round(v, 2));

  const dir = mkdtempSync(join(tmpdir(), 'ice-bench-data-'));
  const results: CaseResult[] = [];
  let jpegs: { images: number; meanKB: number };
  try {
    jpegs = await makeImageNet(join(dir, 'imagenet'), Number(opts.images));
    const imagenet: TransformSpec = trainTransformSpec(224, 'imagenet');
    const digits: TransformSpec = { steps: [], normalize: 'inception' };
    for (const threads of threadCounts) {
      results.push(
        await measure(
          'imagenet-jpeg-224-rrc-flip',
          224,
          { dataset: { format: 'imagenet', root: join(dir, 'imagenet'), split: 'train' }, transform: imagenet, batchSize, threads },
          minImages,
        ),
      );
    }
    for (const threads of threadCounts) {
      results.push(
        await measure(
          'digits-64',
          64,
          {
            dataset: { format: 'digits', split: 'train', options: { canvasSize: 64, length: 2048 } },
            transform: digits,
            batchSize,
            threads,
          },
          Math.max(minImages, 2048),
        ),
      );
    }
  } finally {
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
  }

  const report: Record<string, unknown> = {
    bench: 'data',
    node: process.version,
    cpus: availableParallelism(),
    loadavg_at_start: load,
    jpegs: { ...jpegs, sizes: '500x375 and 375x500', quality: 90, ...(opts.keep ? { folder: dir } : {}) },
    results,
  };

  let train: { all?: number; bySize: Map<number, number> } | undefined;
  if (opts.trainImgPerS) train = parseTrainRates(opts.trainImgPerS);
  else if (opts.runTrain) {
    const t = runTrainBench();
    train = { bySize: t.bySize };
    report.train_bench = t.report;
  }
  if (train) {
    const ratios: Record<string, unknown>[] = [];
    for (const size of [...new Set(results.map((r) => r.size))]) {
      const trainRate = train.bySize.get(size) ?? train.all;
      if (trainRate === undefined) continue;
      // Inline (threads 0) runs on the training thread: it does not count when worker threads were measured.
      const same = results.filter((r) => r.size === size);
      const off = same.filter((r) => r.threads > 0);
      const best = (off.length > 0 ? off : same).reduce((a, b) => (b.img_per_s > a.img_per_s ? b : a));
      const ratio = round(best.img_per_s / trainRate, 2);
      ratios.push({
        case: best.name,
        size,
        threads: best.threads,
        pipeline_img_per_s: best.img_per_s,
        train_img_per_s: trainRate,
        ratio,
        target: 5,
        meets_target: ratio >= 5,
      });
    }
    report.pipeline_vs_training = ratios;
  }
  console.log(JSON.stringify(report, null, 2));
}

void main();
