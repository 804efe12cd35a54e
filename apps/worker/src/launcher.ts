/**
 * Starts the worker processes of one machine (WORKERS=n overrides the count), restarts one that
 * dies unexpectedly (its job is picked up again from its checkpoint), and on SIGINT/SIGTERM
 * stops them all gracefully: each hands its active run back to the queue before exiting.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { countCores, countGpus, planWorkers, type WorkerSlot } from './launcher.plan';

const fromSource = __filename.endsWith('.ts');
const workerMain = path.join(__dirname, fromSource ? 'main.ts' : 'main.js');
const runTs = path.resolve(__dirname, '..', '..', '..', 'bin', 'run-ts.js');

const requested = process.env.WORKERS ? Number(process.env.WORKERS) : undefined;
if (requested !== undefined && !(Number.isInteger(requested) && requested > 0)) {
  console.error(`WORKERS must be a positive integer, not ${process.env.WORKERS}`);
  process.exit(2);
}
const gpus = countGpus();
const slots = planWorkers({ gpus, cores: countCores(), requested });
console.log(`launcher: ${slots.length} worker(s) (${gpus ? `${gpus} GPU(s)` : `${countCores()} core(s), no GPU`})`);

const children = new Map<number, ChildProcess>();
const restarts = new Map<number, number[]>();
let stopping = false;

function start(slot: WorkerSlot): void {
  const args = fromSource ? [runTs, workerMain] : [workerMain];
  const child = spawn(process.execPath, args, {
    env: {
      ...process.env,
      ...slot.env,
      WORKER_ID: process.env.WORKER_ID ? `${process.env.WORKER_ID}-${slot.label}` : `${os.hostname()}-${slot.label}`,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  children.set(slot.index, child);
  child.on('exit', (code, signal) => {
    children.delete(slot.index);
    if (stopping) {
      if (children.size === 0) process.exit(0);
      return;
    }
    // Restart, but not in a tight loop: a worker that cannot start (bad config) would spin.
    const now = Date.now();
    const recent = (restarts.get(slot.index) ?? []).filter((t) => now - t < 60_000);
    restarts.set(slot.index, [...recent, now]);
    if (recent.length >= 5) {
      console.error(`launcher: worker ${slot.label} keeps exiting (${code ?? signal}); giving up on it`);
      if (children.size === 0) process.exit(1);
      return;
    }
    console.error(`launcher: worker ${slot.label} exited (${code ?? signal}); restarting`);
    setTimeout(() => start(slot), 1000 * (recent.length + 1));
  });
}

function stop(): void {
  if (stopping) return;
  stopping = true;
  console.log('launcher: stopping workers');
  if (children.size === 0) process.exit(0);
  for (const c of children.values()) c.kill('SIGTERM');
  // A worker stuck past the grace period is killed; its job resumes from its checkpoint elsewhere.
  setTimeout(() => {
    for (const c of children.values()) c.kill('SIGKILL');
    process.exit(0);
  }, 30_000).unref();
}

process.on('SIGINT', stop);
process.on('SIGTERM', stop);
for (const s of slots) start(s);
