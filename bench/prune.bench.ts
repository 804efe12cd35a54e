/**
 * Token pruning speed and accuracy, the paper's Table 5 on this machine: images/s of the plain
 * forward pass, ICE pruning at ρ 0.7 / 0.5 and EViT pruning at ρ 0.7 / 0.5, measured side by side in
 * one run (interleaved rounds, the order rotating; each mode's speed-up is the median over rounds of
 * its img/s ÷ the unpruned img/s of the same round, which the targets are checked on; the ratio of
 * the best rounds is given beside it, as an estimate for an unloaded machine; and the same from the
 * process's CPU time, which other processes on a shared machine disturb far less), then top-1 on the
 * digits test split for the same five modes. Prints one JSON document.
 *
 *   npm run bench:prune -- [--preset deit_tiny_patch16_224] [--batch 64] [--iters 1] [--rounds 10]
 *                          [--digits-weights FILE] [--digits-model digits-tiny] [--digits-limit 997] [--skip-accuracy]
 *
 * Speed uses random weights (speed does not depend on the values) and random input, inference only,
 * fp32, logits read back after every pass; like EViT's speed_test (helpers.py:21-40) the ICE head's
 * own output is not computed (skipIceHead), only what classification needs. Accuracy needs a model
 * with a trained ICE head for the ICE rows: by default the ICE-f model of `npm run results:digits`
 * (artifacts/results/ice-f) if it exists, else the committed backbone (no ICE head: ICE rows null).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import {
  IceVit,
  initBackend,
  loadModel,
  type PruneOptions,
  prunedTokenCounts,
  resolvePruneOptions,
  vitConfig,
  type VitConfig,
} from '@ice/core';
import { runAccuracy } from '@ice/evaluation';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

const round = (v: number, d = 3): number => Math.round(v * 10 ** d) / 10 ** d;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

interface Mode {
  name: string;
  prune?: PruneOptions;
}

const MODES: Mode[] = [
  { name: 'unpruned' },
  { name: 'ice@0.7', prune: { mode: 'ice', keepRate: 0.7 } },
  { name: 'ice@0.5', prune: { mode: 'ice', keepRate: 0.5 } },
  { name: 'evit@0.7', prune: { mode: 'evit', keepRate: 0.7 } },
  { name: 'evit@0.5', prune: { mode: 'evit', keepRate: 0.5 } },
];

/** Multiply-adds of one image's forward pass (matrix products only), as the token counts leave it. */
function gmacs(c: VitConfig, prune: PruneOptions | undefined): number {
  const D = c.embedDim;
  const hidden = Math.round(D * c.mlpRatio);
  const N = (c.imgSize / c.patchSize) ** 2;
  const p = prune ? resolvePruneOptions(prune, c) : undefined;
  const after = p ? prunedTokenCounts(N, c.depth, p) : new Array<number>(c.depth).fill(N);
  let macs = N * c.inChans * c.patchSize ** 2 * D + D * c.numClasses; // patch embedding, CLS head
  let n = N; // non-CLS tokens entering the block
  for (let i = 0; i < c.depth; i++) {
    const T = n + 1;
    macs += T * D * 3 * D + 2 * T * T * D + T * D * D; // qkv, q·kᵀ and A·v, proj: over all tokens
    const Tm = after[i] + 1;
    if (p && Tm < T && p.mode === 'ice') macs += n * D * (c.numClasses + 1); // the ICE head on the block's tokens
    macs += 2 * Tm * D * hidden; // MLP on the kept tokens
    n = after[i];
  }
  return macs / 1e9;
}

function speed(preset: string, batch: number, iters: number, rounds: number): Record<string, unknown> {
  const config = vitConfig(preset, { iceHead: 'official' });
  const model = IceVit.create(config, 0);
  const x = tf.randomUniform<tf.Rank.R4>([batch, 3, config.imgSize, config.imgSize], -1, 1, 'float32', 1);
  const pass = (m: Mode): void => {
    tf.tidy(() => {
      model.forward(x, { skipIceHead: true, ...(m.prune ? { prune: m.prune } : {}) }).clsLogits.dataSync();
    });
  };
  const ips = new Map<string, number[]>(MODES.map((m) => [m.name, []]));
  const ratios = new Map<string, number[]>(MODES.map((m) => [m.name, []]));
  const cpuIps = new Map<string, number[]>(MODES.map((m) => [m.name, []]));
  const cpuRatios = new Map<string, number[]>(MODES.map((m) => [m.name, []]));
  try {
    for (const m of MODES) pass(m); // warm-up: kernels and buffers of every shape
    for (let r = 0; r < rounds; r++) {
      const order = [...MODES.slice(r % MODES.length), ...MODES.slice(0, r % MODES.length)];
      const thisRound = new Map<string, number>();
      const thisCpu = new Map<string, number>();
      for (const m of order) {
        const t0 = performance.now();
        const c0 = process.cpuUsage();
        for (let i = 0; i < iters; i++) pass(m);
        const c = process.cpuUsage(c0);
        thisRound.set(m.name, (batch * iters) / ((performance.now() - t0) / 1000));
        thisCpu.set(m.name, (batch * iters) / ((c.user + c.system) / 1e6));
      }
      for (const m of MODES) {
        ips.get(m.name)!.push(thisRound.get(m.name)!);
        ratios.get(m.name)!.push(thisRound.get(m.name)! / thisRound.get('unpruned')!);
        cpuIps.get(m.name)!.push(thisCpu.get(m.name)!);
        cpuRatios.get(m.name)!.push(thisCpu.get(m.name)! / thisCpu.get('unpruned')!);
      }
    }
  } finally {
    x.dispose();
    model.dispose();
  }
  const N = (config.imgSize / config.patchSize) ** 2;
  const modes = Object.fromEntries(
    MODES.map((m) => {
      const p = m.prune ? resolvePruneOptions(m.prune, config) : undefined;
      return [
        m.name,
        {
          img_per_s: round(median(ips.get(m.name)!), 2),
          best_img_per_s: round(Math.max(...ips.get(m.name)!), 2),
          speedup: round(median(ratios.get(m.name)!)),
          speedup_of_best: round(Math.max(...ips.get(m.name)!) / Math.max(...ips.get('unpruned')!)),
          speedup_range: [round(Math.min(...ratios.get(m.name)!)), round(Math.max(...ratios.get(m.name)!))],
          cpu_img_per_s: round(median(cpuIps.get(m.name)!), 2),
          cpu_speedup: round(median(cpuRatios.get(m.name)!)),
          gmacs: round(gmacs(config, m.prune)),
          tokens_after_blocks: p ? prunedTokenCounts(N, config.depth, p) : new Array<number>(config.depth).fill(N),
          ...(p ? { locations_1based: p.locations.map((l) => l + 1), fuse: p.fuse } : {}),
        },
      ];
    }),
  );
  const s = (name: string): number => (modes[name] as { speedup: number }).speedup;
  const cpu = (name: string): number => (modes[name] as { cpu_speedup: number }).cpu_speedup;
  return {
    preset,
    weights: 'random (timm init, seed 0); ICE head official, 1000 classes',
    batch,
    iters_per_round: iters,
    rounds,
    modes,
    targets: {
      'ice@0.5 >= 1.8x unpruned': s('ice@0.5') >= 1.8,
      'ice@0.5 within 10% of evit@0.5 speed-up': s('ice@0.5') >= 0.9 * s('evit@0.5'),
      'ice@0.5 / evit@0.5 speed-up': round(s('ice@0.5') / s('evit@0.5')),
      'cpu time: ice@0.5 >= 1.8x unpruned': cpu('ice@0.5') >= 1.8,
      'cpu time: ice@0.5 within 10% of evit@0.5 speed-up': cpu('ice@0.5') >= 0.9 * cpu('evit@0.5'),
      'cpu time: ice@0.5 / evit@0.5 speed-up': round(cpu('ice@0.5') / cpu('evit@0.5')),
    },
  };
}

/**
 * The ICE-f model of `npm run results:digits`: the committed backbone frozen, an ICE-f head trained on
 * it, so its CLS head is the backbone's trained one (top-1 ≈ 0.6) and its ICE head can rank tokens.
 * (The Table 1 ICE model fine-tunes the whole network with a loss that leaves the CLS head stale:
 * its CLS top-1 is near chance whatever the pruning, which would make the comparison empty.)
 */
const ICE_F = 'artifacts/results/ice-f/final.safetensors';

async function accuracy(weights: string, modelSpec: string, limit: number): Promise<Record<string, unknown>> {
  const { model } = loadModel(weights, modelSpec, {}, { ignore: ['optimizer.*'] });
  try {
    const rows: Record<string, unknown> = {};
    for (const m of MODES) {
      if (m.prune?.mode === 'ice' && model.config.iceHead === 'none') {
        rows[m.name] = { top1: null, note: 'no ICE head in these weights' };
        continue;
      }
      const r = await runAccuracy({ model, format: 'digits', limit, batchSize: 64, ...(m.prune ? { prune: m.prune } : {}) });
      rows[m.name] = {
        top1: round(r.metrics.top1, 4),
        ...(r.metrics.ice_top1 !== undefined ? { ice_top1: round(r.metrics.ice_top1, 4) } : {}),
        tokens_after_blocks: r.tokens,
        ...(r.prune ? { locations_1based: r.prune.locations.map((l) => l + 1), fuse: r.prune.fuse } : {}),
      };
    }
    return {
      weights,
      model: modelSpec,
      depth: model.config.depth,
      split: 'digits test',
      images: limit,
      rows,
      note: "top1 = the CLS head's prediction (Table 5's accuracy). Inference-mode pruning of a model trained without it (no fine-tuning with pruning).",
    };
  } finally {
    model.dispose();
  }
}

async function main(): Promise<void> {
  const backend = await initBackend();
  const load = os.loadavg().map((v) => round(v, 2));
  const out: Record<string, unknown> = { bench: 'prune', backend: backend.name, cpus: os.cpus().length, loadavg_at_start: load };
  const preset = arg('preset', 'deit_tiny_patch16_224');
  // EViT's throughput protocol (main.py:320-329, helpers.py:21-40): random input in batches of 64. `--batch 1` measures
  // one image per pass, where per-kernel overhead that does not shrink with the tokens weighs more.
  const batch = Number(arg('batch', '64'));
  out.speed = speed(preset, batch, Number(arg('iters', batch >= 32 ? '1' : '2')), Number(arg('rounds', '10')));
  if (!process.argv.includes('--skip-accuracy')) {
    const weights = arg('digits-weights', fs.existsSync(ICE_F) ? ICE_F : 'assets/digits-tiny-pretrained.safetensors');
    out.accuracy = await accuracy(weights, arg('digits-model', 'digits-tiny'), Number(arg('digits-limit', '997')));
  }
  out.loadavg_at_end = os.loadavg().map((v) => round(v, 2));
  console.log(JSON.stringify(out, null, 2));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
