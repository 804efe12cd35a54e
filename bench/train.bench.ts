/**
 * `npm run bench:train [-- --reference ../shared/reference/torch_ice_step.py] [--steps N] [--skip-deit]`
 *
 * img/s of one full ICE training step (forward, ICE loss, backward, AdamW) on the default
 * backend, for the yardstick's configuration (embed 192, depth 4, heads 3, 64², patch 16,
 * batch 8) and for DeiT-Tiny at 224², batch 8. Under the wasm backend with native kernels, every
 * case runs with them on and off (side by side, interleaved). With --reference, runs the PyTorch
 * script (twice, interleaved with ours) with the same configuration in the same run and prints the
 * ratios, best run against best run. Prints one JSON document.
 */
import { execFileSync } from 'node:child_process';
import { Command } from 'commander';
import * as tf from '@tensorflow/tfjs-core';
import { IceTrainer, IceVit, initBackend, MIXUP_PRESETS, TRAIN_PRESETS, vitConfig, VitPresetName } from '@ice/core';
import { setNativeKernelsEnabled } from '@ice/native-kernels';

interface Case {
  name: string;
  /** Native kernels on or off (only under wasm with native kernels loaded). */
  native?: boolean;
  preset: VitPresetName;
  batch: number;
  steps: number;
  warmup: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function measure(c: Case): Record<string, unknown> {
  if (c.native !== undefined) setNativeKernelsEnabled(c.native);
  const config = vitConfig(c.preset, { numClasses: 10, iceHead: 'official' });
  const model = IceVit.create(config, 0);
  // Same work as the yardstick: hard labels, no mixup, official ICE loss, AdamW.
  const trainer = new IceTrainer(model, { ...TRAIN_PRESETS.iceReleased, mixup: { ...MIXUP_PRESETS.smoothingOnly, labelSmoothing: 0 } });
  const x: tf.Tensor4D = tf.randomUniform([c.batch, 3, config.imgSize, config.imgSize], 0, 1, 'float32', 1);
  const labels = Array.from({ length: c.batch }, (_, i) => i % 10);
  const times: number[] = [];
  for (let i = 0; i < c.warmup + c.steps; i++) {
    const t0 = performance.now();
    trainer.trainStep(x, labels); // reads the loss back, so the step is complete when it returns
    if (i >= c.warmup) times.push(performance.now() - t0);
  }
  const stepMs = median(times);
  x.dispose();
  trainer.dispose();
  model.dispose();
  return {
    name: c.name,
    ...(c.native !== undefined ? { native: c.native } : {}),
    preset: c.preset,
    embed: config.embedDim,
    depth: config.depth,
    heads: config.numHeads,
    img: config.imgSize,
    patch: config.patchSize,
    batch: c.batch,
    params: model.parameterCount(),
    steps: c.steps,
    step_ms: Math.round(stepMs * 100) / 100,
    img_per_s: Math.round((c.batch / stepMs) * 1000 * 100) / 100,
  };
}

function reference(script: string, python: string, steps: number): Record<string, unknown> {
  const out = execFileSync(
    python,
    [
      script,
      '--embed',
      '192',
      '--depth',
      '4',
      '--heads',
      '3',
      '--img',
      '64',
      '--patch',
      '16',
      '--batch',
      '8',
      '--threads',
      '1',
      '--steps',
      String(steps),
    ],
    {
      encoding: 'utf8',
      env: { ...process.env, OMP_NUM_THREADS: '1' },
    },
  );
  return JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>;
}

async function main(): Promise<void> {
  const opts = new Command()
    .option('--reference <script>', 'PyTorch yardstick to run side by side (torch_ice_step.py)')
    .option('--python <bin>', 'python with torch', '/usr/bin/python3')
    .option('--steps <n>', 'timed steps for the small config', '10')
    .option('--skip-deit', 'skip DeiT-Tiny 224² (slow on CPU backends)')
    .parse(process.argv)
    .opts<{ reference?: string; python: string; steps: string; skipDeit?: boolean }>();
  const backend = await initBackend(undefined, (m) => console.error(m));
  const steps = Number(opts.steps);
  // Both modes when the native kernels are loaded; otherwise the backend as it is.
  const modes: (boolean | undefined)[] = backend.native.kernels !== 'off' ? [true, false] : [undefined];
  const label = (native: boolean | undefined): string => (native === undefined ? 'default' : native ? 'native_on' : 'native_off');
  const small = (native: boolean | undefined, name: string, warmup: number): Record<string, unknown> =>
    measure({ name, native, preset: 'bench-small', batch: 8, steps, warmup });
  const results: Record<string, unknown>[] = modes.map((m) => small(m, 'yardstick-config', 2));
  const report: Record<string, unknown> = { bench: 'train', backend: backend.name, native: backend.native, node: process.version, results };
  if (opts.reference) {
    // Interleave: PyTorch, tfjs again, PyTorch again, so that both see the same machine load;
    // the ratio is best against best.
    const refs = [reference(opts.reference, opts.python, steps)];
    const again = modes.map((m) => small(m, 'yardstick-config (repeat)', 1));
    refs.push(reference(opts.reference, opts.python, steps));
    const ref = refs.reduce((a, b) => ((b.img_per_s as number) > (a.img_per_s as number) ? b : a));
    report.reference = ref;
    report.reference_runs_img_per_s = refs.map((r) => r.img_per_s);
    report.repeat = again;
    const ratios: Record<string, number> = {};
    modes.forEach((m, i) => {
      const ours = Math.max(results[i].img_per_s as number, again[i].img_per_s as number);
      ratios[label(m)] = Math.round((ours / (ref.img_per_s as number)) * 1000) / 1000;
    });
    report.ratio_vs_pytorch_1thread = modes.length === 1 ? ratios.default : ratios;
  }
  if (!opts.skipDeit) {
    const deit: Record<string, number> = {};
    for (const m of modes) {
      const r = measure({ name: 'deit-tiny-224', native: m, preset: 'deit_tiny_patch16_224', batch: 8, steps: 3, warmup: 1 });
      results.push(r);
      deit[label(m)] = r.img_per_s as number;
    }
    report.deit_tiny_img_per_s = modes.length === 1 ? deit.default : deit;
  }
  if (modes.length > 1) setNativeKernelsEnabled(true);
  console.log(JSON.stringify(report, null, 2));
}

void main();
