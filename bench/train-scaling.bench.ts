/**
 * `npm run bench:train-scaling [-- --cases digits-tiny:32:12,deit_tiny_patch16_224:32:4,deit_tiny_patch16_224:16:4] [--warmup 2]`
 *
 * Data-parallel scaling at the same global batch: img/s of one rank training with global batch G,
 * and of two ranks (separate processes) training with G/2 each and averaging their gradients with
 * RingGradientReducer (its transport thread, Redis for the rendezvous; the gradients through
 * shared memory, as ranks on one machine reduce by default, and again through the TCP ring on
 * loopback, as ranks on different machines do), exactly the path a worker runs (accumulateGradients → allReduceMean → applyGradients). The one
 * rank runs again after the two, so that drift in the machine's load shows. Efficiency =
 * img/s(2 ranks) / (2 × img/s(1 rank)). The two-rank rows also split a step into compute (forward,
 * loss, backward), read-back of the gradients from the tfjs backend, the ring, and building the mean
 * tensors: the read-back is all that overlapping it with the ring could hide (issue point 3).
 *
 * One rank uses one core (the wasm backend is single-threaded in Node), so 2 ranks need 2 idle
 * cores: on a busy machine the efficiency says more about the load than about the all-reduce,
 * which `allreduce_share_of_step` and `efficiency_ceiling_from_allreduce` isolate. `machine` measures the
 * rest without any all-reduce: one rank at half the batch alone and two such processes at once, so
 * scaling_efficiency = machine.efficiency_without_allreduce × efficiency_of_allreduce.
 * Cases are preset:globalBatch:steps. Prints one JSON document.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { availableParallelism, loadavg } from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import IORedis from 'ioredis';
import * as tf from '@tensorflow/tfjs-core';
import { IceTrainer, IceVit, initBackend, MIXUP_PRESETS, TRAIN_PRESETS, vitConfig, type VitPresetName } from '@ice/core';
import { RingGradientReducer } from '@ice/orchestration';

const ROOT = path.resolve(__dirname, '..');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const KEY_PREFIX = process.env.ICE_BENCH_SCALING_PREFIX ?? `ice-bench-scaling-${process.pid}`;

interface Child {
  preset: VitPresetName;
  batch: number;
  steps: number;
  warmup: number;
  rank: number;
  world: number;
  runId: string;
  /** How the two ranks average: 'shm' (the default on one machine: through /dev/shm) or 'tcp' (the ring over loopback). */
  transport?: 'shm' | 'tcp';
}

interface StepRow {
  total: number;
  compute: number;
  readback: number;
  ring: number;
  mean: number;
  /** The optimizer update after the all-reduce. */
  apply: number;
  /** Wall-clock time (ms since the epoch) at which this rank's gradients were ready, and its all-reduce returned. */
  readyAt: number;
  reducedAt: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const r1 = (x: number): number => Math.round(x * 10) / 10;

async function child(c: Child): Promise<void> {
  await initBackend();
  const config = vitConfig(c.preset, { numClasses: 10, iceHead: 'official' });
  const model = IceVit.create(config, 0);
  // bench:train's work: hard labels, no mixup, the released ICE loss, AdamW.
  const trainer = new IceTrainer(model, { ...TRAIN_PRESETS.iceReleased, mixup: { ...MIXUP_PRESETS.smoothingOnly, labelSmoothing: 0 } });
  const x: tf.Tensor4D = tf.randomUniform([c.batch, 3, config.imgSize, config.imgSize], 0, 1, 'float32', 1 + c.rank);
  const labels = Array.from({ length: c.batch }, (_, i) => (i + c.rank * c.batch) % 10);
  const reducer =
    c.world > 1
      ? new RingGradientReducer({
          redisUrl: REDIS_URL,
          keyPrefix: KEY_PREFIX,
          runId: c.runId,
          rank: c.rank,
          worldSize: c.world,
          timeoutMs: 120_000,
          transport: c.transport === 'tcp' ? 'tcp' : 'auto',
        })
      : undefined;
  const rows: StepRow[] = [];
  for (let i = 0; i < c.warmup + c.steps; i++) {
    const t0 = performance.now();
    let row: StepRow;
    if (!reducer) {
      trainer.trainStep(x, labels); // reads the loss back: the step is complete when it returns
      row = { total: performance.now() - t0, compute: 0, readback: 0, ring: 0, mean: 0, apply: 0, readyAt: 0, reducedAt: 0 };
    } else {
      const { update } = trainer.accumulateGradients(x, labels);
      const t1 = performance.now();
      const mean = await reducer.allReduceMean(trainer.step, update!);
      const t2 = performance.now();
      tf.dispose([...update!.values()]);
      trainer.applyGradients(mean);
      tf.dispose([...mean.values()]);
      const t = reducer.lastTimings;
      const wall = (ms: number): number => performance.timeOrigin + ms;
      row = {
        total: performance.now() - t0,
        compute: t1 - t0,
        readback: t.flattenMs,
        ring: t.ringMs,
        mean: t.unflattenMs,
        apply: performance.now() - t2,
        readyAt: wall(t1),
        reducedAt: wall(t2),
      };
    }
    if (i >= c.warmup) rows.push(row);
  }
  await reducer?.close();
  if (reducer && reducer.lastTimings.transport !== (c.transport ?? 'shm'))
    throw new Error(`asked for ${c.transport ?? 'shm'}, the reducer used ${reducer.lastTimings.transport}`);
  x.dispose();
  const params = model.parameterCount();
  trainer.dispose();
  model.dispose();
  console.log(JSON.stringify({ result: { rows, params } }));
}

function spawnChild(c: Child): Promise<{ rows: StepRow[]; params: number }> {
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin', 'run-ts.js'), __filename, '--child', JSON.stringify(c)], {
    cwd: ROOT,
    env: { ...process.env, ICE_BENCH_SCALING_PREFIX: KEY_PREFIX },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) =>
    proc.once('exit', (code) => {
      const line = out
        .split('\n')
        .reverse()
        .find((l) => l.startsWith('{"result"'));
      if (code === 0 && line) resolve((JSON.parse(line) as { result: { rows: StepRow[]; params: number } }).result);
      else reject(new Error(`rank ${c.rank} of ${c.world} exited with code ${code}`));
    }),
  );
}

async function main(): Promise<void> {
  const opts = new Command()
    .option('--cases <list>', 'preset:globalBatch:steps,…', 'digits-tiny:32:12,deit_tiny_patch16_224:32:4,deit_tiny_patch16_224:16:4')
    .option('--warmup <n>', 'untimed steps first', '2')
    .parse(process.argv)
    .opts<{ cases: string; warmup: string }>();
  const warmup = Number(opts.warmup);
  const results: Record<string, unknown>[] = [];
  const load: Record<string, number[]> = { before: loadavg().map(r1) };
  for (const spec of opts.cases.split(',')) {
    const [preset, g, s] = spec.split(':');
    const global = Number(g);
    const steps = Number(s);
    if (global % 2) throw new Error(`${spec}: the global batch must split evenly over 2 ranks`);
    const base = { preset: preset as VitPresetName, steps, warmup, runId: randomUUID() };
    const one = await spawnChild({ ...base, batch: global, rank: 0, world: 1 });
    const two = await Promise.all([0, 1].map((rank) => spawnChild({ ...base, batch: global / 2, rank, world: 2, transport: 'shm' })));
    // The same two ranks through the TCP ring (what ranks on different machines use), in the same run.
    const tcpRun = randomUUID();
    const twoTcp = await Promise.all(
      [0, 1].map((rank) => spawnChild({ ...base, runId: tcpRun, batch: global / 2, rank, world: 2, transport: 'tcp' })),
    );
    const again = await spawnChild({ ...base, batch: global, rank: 0, world: 1 });
    // What the machine allows before any all-reduce: one rank at half the batch alone, then two independent one-rank
    // processes at half the batch at once (no ring: each its own world of 1). Their ratio is how much two busy cores
    // slow each other (shared caches, memory bandwidth, clocks); the pair against the full-batch rank is the
    // efficiency a free all-reduce would reach here.
    const halfAlone = await spawnChild({ ...base, batch: global / 2, rank: 0, world: 1 });
    const halfPair = await Promise.all(
      [0, 1].map((rank) => spawnChild({ ...base, runId: randomUUID(), batch: global / 2, rank, world: 1 })),
    );
    const oneMs = median(one.rows.map((r) => r.total));
    const againMs = median(again.rows.map((r) => r.total));
    // A group's step lasts as long as its slowest rank's.
    const perStep = two[0].rows.map((_, i) => Math.max(two[0].rows[i].total, two[1].rows[i].total));
    const twoMs = median(perStep);
    const partOf = (g: typeof two, k: keyof StepRow): number => r1(median(g.flatMap((t) => t.rows.map((r) => r[k]))));
    // The all-reduce's own cost on the critical path: from the moment the later rank's gradients are ready to the moment
    // the later of the two all-reduces returns (read-back, transfer, sum, mean tensors); waiting for the slower rank is not in it.
    const criticalOf = (g: typeof two): number =>
      r1(
        median(
          g[0].rows.map(
            (_, i) => Math.max(g[0].rows[i].reducedAt, g[1].rows[i].reducedAt) - Math.max(g[0].rows[i].readyAt, g[1].rows[i].readyAt),
          ),
        ),
      );
    const part = (k: keyof StepRow): number => partOf(two, k);
    const tcpMs = median(twoTcp[0].rows.map((_, i) => Math.max(twoTcp[0].rows[i].total, twoTcp[1].rows[i].total)));
    const halfAloneMs = median(halfAlone.rows.map((r) => r.total));
    const halfPairMs = median(halfPair[0].rows.map((_, i) => Math.max(halfPair[0].rows[i].total, halfPair[1].rows[i].total)));
    const oneImg = (global / oneMs) * 1000;
    const oneBest = (global / Math.min(oneMs, againMs)) * 1000;
    const twoImg = (global / twoMs) * 1000;
    results.push({
      preset,
      params: one.params,
      global_batch: global,
      steps,
      one_rank: { step_ms: r1(oneMs), img_per_s: r1(oneImg), again_step_ms: r1(againMs) },
      two_ranks: {
        transport: 'shared memory (/dev/shm)',
        batch_per_rank: global / 2,
        step_ms: r1(twoMs),
        img_per_s: r1(twoImg),
        per_rank_median_ms: {
          compute: part('compute'),
          readback: part('readback'),
          ring: part('ring'),
          mean_tensors: part('mean'),
          optimizer: part('apply'),
        },
        allreduce_after_last_rank_ready_ms: criticalOf(two),
      },
      scaling_efficiency: Math.round((twoImg / (2 * oneImg)) * 1000) / 1000,
      scaling_efficiency_vs_faster_one_rank: Math.round((twoImg / (2 * oneBest)) * 1000) / 1000,
      // What the all-reduce alone costs: its share of the two-rank step, and the efficiency it would leave if each rank's
      // compute at half the batch took half the one-rank step (true on 2 idle cores, not on a loaded machine).
      allreduce_share_of_step: Math.round(((part('readback') + part('ring') + part('mean')) / twoMs) * 1000) / 1000,
      efficiency_ceiling_from_allreduce:
        Math.round((oneMs / 2 / (oneMs / 2 + part('readback') + part('ring') + part('mean'))) * 1000) / 1000,
      machine: {
        half_batch_alone_step_ms: r1(halfAloneMs),
        half_batch_two_at_once_step_ms: r1(halfPairMs),
        // > 0.5 means per-step costs that do not shrink with the batch (optimizer update, kernel launches).
        half_batch_share_of_full_step: Math.round((halfAloneMs / oneMs) * 1000) / 1000,
        // > 1 means the two busy cores slow each other down.
        contention_slowdown: Math.round((halfPairMs / halfAloneMs) * 1000) / 1000,
        // Two ranks with an all-reduce that cost nothing: the most this machine allows.
        efficiency_without_allreduce: Math.round((oneMs / (2 * halfPairMs)) * 1000) / 1000,
      },
      // The all-reduce's own share of the loss: the two-rank step against the same two processes without it.
      efficiency_of_allreduce: Math.round((halfPairMs / twoMs) * 1000) / 1000,
      two_ranks_tcp: {
        transport: 'TCP ring over loopback',
        step_ms: r1(tcpMs),
        img_per_s: r1((global / tcpMs) * 1000),
        per_rank_median_ms: {
          compute: partOf(twoTcp, 'compute'),
          readback: partOf(twoTcp, 'readback'),
          ring: partOf(twoTcp, 'ring'),
          mean_tensors: partOf(twoTcp, 'mean'),
          optimizer: partOf(twoTcp, 'apply'),
        },
        allreduce_after_last_rank_ready_ms: criticalOf(twoTcp),
        scaling_efficiency: Math.round((global / tcpMs / ((2 * global) / oneMs)) * 1000) / 1000,
        efficiency_of_allreduce: Math.round((halfPairMs / tcpMs) * 1000) / 1000,
      },
    });
  }
  load.after = loadavg().map(r1);
  console.log(
    JSON.stringify({ bench: 'train-scaling', node: process.version, cpus: availableParallelism(), loadavg: load, results }, null, 2),
  );
  const redis = new IORedis(REDIS_URL);
  const left = await redis.keys(`${KEY_PREFIX}:*`);
  if (left.length) await redis.del(...left);
  await redis.quit();
}

if (process.argv[2] === '--child') {
  child(JSON.parse(process.argv[3]) as Child).then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
} else {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
