import { execFileSync } from 'node:child_process';
import * as os from 'node:os';

/** One worker process per GPU (pinned with CUDA_VISIBLE_DEVICES), else one per CPU core. */
export interface WorkerSlot {
  index: number;
  env: Record<string, string>;
  label: string;
}

export function planWorkers(opts: { gpus: number; cores: number; requested?: number }): WorkerSlot[] {
  if (opts.gpus > 0) {
    const n = Math.min(opts.requested ?? opts.gpus, opts.gpus);
    return Array.from({ length: n }, (_, i) => ({ index: i, env: { CUDA_VISIBLE_DEVICES: String(i) }, label: `gpu${i}` }));
  }
  // CPU: no GPU may leak into a worker that tfjs-node-gpu would otherwise grab.
  const n = Math.max(1, opts.requested ?? opts.cores);
  return Array.from({ length: n }, (_, i) => ({ index: i, env: { CUDA_VISIBLE_DEVICES: '' }, label: `cpu${i}` }));
}

/** GPUs as nvidia-smi lists them; none when it is absent. */
export function countGpus(): number {
  try {
    return execFileSync('nvidia-smi', ['--query-gpu=index', '--format=csv,noheader'], {
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 5000,
    })
      .toString()
      .split('\n')
      .filter((l) => l.trim() !== '').length;
  } catch {
    return 0;
  }
}

export function countCores(): number {
  return os.availableParallelism();
}
