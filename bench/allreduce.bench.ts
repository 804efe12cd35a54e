/**
 * `npm run bench:allreduce [-- --sizes 5717416,22050664] [--worlds 2,4] [--iters 5] [--segment-kib 1024] [--skip-reducer]`
 *
 * Milliseconds per all-reduce of N float32s (DeiT-Tiny's 5.7 M and DeiT-S's 22 M parameters by
 * default) by the ring (RingGroup: Redis rendezvous, TCP ring, reduce-scatter + all-gather) with
 * W ranks as separate processes on loopback, beside a loopback TCP copy of the same 4N bytes from
 * one process to another, measured in the same run. Every rank checks that all ranks end with the
 * same bits. Each case runs twice: through the TCP ring, and with shared memory allowed (the
 * ranks share this machine, so the group reduces through /dev/shm; ring-shm.ts). Then, for the
 * overlap question (issue point 3), the whole GradientReducer path of a DeiT-Tiny gradient at
 * W = 2 (RingGradientReducer, its transport thread and tensors), both ways: how long reading the
 * gradients back from the tfjs backend takes beside the all-reduce itself.
 *
 * Prints one JSON document. Timing is noisy on a shared machine: compare the ratios, and see
 * `loadavg` in the output.
 */
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import * as net from 'node:net';
import { availableParallelism, loadavg } from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import IORedis from 'ioredis';
import * as tf from '@tensorflow/tfjs-core';
import { IceVit, initBackend, vitConfig } from '@ice/core';
import { ADDON_PATH } from '@ice/native-kernels';
import { RingGradientReducer, RingGroup } from '@ice/orchestration';

const ROOT = path.resolve(__dirname, '..');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
// One namespace per bench run, handed to the children.
const KEY_PREFIX = process.env.ICE_BENCH_ALLREDUCE_PREFIX ?? `ice-bench-allreduce-${process.pid}`;

/** A rank of a timed group: `iters` all-reduces after `warmup`. */
interface RankChild {
  iters: number;
  warmup: number;
  rank: number;
  world: number;
  runId: string;
  segmentBytes: number;
  transport: Transport;
}

type Child =
  | { kind: 'copy-recv'; bytes: number; iters: number }
  | { kind: 'copy-send'; bytes: number; iters: number; port: number }
  | (RankChild & { kind: 'ring'; floats: number })
  | (RankChild & { kind: 'reducer' });

/** 'tcp': the ring over loopback TCP; 'shm': the same group with shared memory allowed (every rank is on this machine). */
type Transport = 'tcp' | 'shm';

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const r1 = (x: number): number => Math.round(x * 10) / 10;

// ---------------------------------------------------------------------------------------------
// Children (one process each)

async function copyRecv(c: Extract<Child, { kind: 'copy-recv' }>): Promise<unknown> {
  const into = Buffer.allocUnsafe(c.bytes);
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  console.log(JSON.stringify({ port: (server.address() as net.AddressInfo).port }));
  const socket = await new Promise<net.Socket>((r) => server.once('connection', r));
  socket.setNoDelay(true);
  let fill = 0;
  let done = 0;
  await new Promise<void>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      // A real copy: every byte lands in the destination buffer, as the ring's receive does.
      chunk.copy(into, fill);
      fill += chunk.length;
      if (fill === c.bytes) {
        fill = 0;
        socket.write(Buffer.from([1]));
        if (++done === c.iters) resolve();
      }
    });
  });
  socket.end();
  server.close();
  return { received: done };
}

async function copySend(c: Extract<Child, { kind: 'copy-send' }>): Promise<unknown> {
  const data = Buffer.alloc(c.bytes, 7);
  const socket = net.connect({ host: '127.0.0.1', port: c.port, noDelay: true });
  await new Promise((r) => socket.once('connect', r));
  const times: number[] = [];
  for (let i = 0; i < c.iters; i++) {
    const ack = new Promise((r) => socket.once('data', r));
    const t0 = performance.now();
    socket.write(data);
    await ack;
    times.push(performance.now() - t0);
  }
  socket.end();
  return { times };
}

function fillRank(data: Float32Array, rank: number): void {
  let s = (rank + 1) * 2654435761;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    data[i] = (s / 4294967296 - 0.5) * 1e-2;
  }
}

async function ringRank(c: Extract<Child, { kind: 'ring' }>): Promise<unknown> {
  const redis = new IORedis(REDIS_URL);
  const group = new RingGroup({
    redis,
    keyPrefix: KEY_PREFIX,
    runId: c.runId,
    rank: c.rank,
    worldSize: c.world,
    timeoutMs: 120_000,
    heartbeatTimeoutMs: 30_000,
    segmentBytes: c.segmentBytes,
    transport: c.transport === 'shm' ? 'auto' : 'tcp',
    addonPath: ADDON_PATH,
  });
  const mine = new Float32Array(c.floats);
  fillRank(mine, c.rank);
  const data = new Float32Array(c.floats);
  const times: number[] = [];
  for (let i = 0; i < c.warmup + c.iters; i++) {
    data.set(mine);
    const t0 = performance.now();
    await group.allReduceSum(i, data);
    if (i >= c.warmup) times.push(performance.now() - t0);
  }
  const digest = createHash('sha256').update(Buffer.from(data.buffer)).digest('hex');
  await group.close();
  await redis.quit();
  if (group.stats.transport !== c.transport)
    throw new Error(`asked for ${c.transport}, the group chose ${group.stats.transport} (${group.stats.shmUnavailable})`);
  return { times, digest, formMs: group.stats.formMs };
}

async function reducerRank(c: Extract<Child, { kind: 'reducer' }>): Promise<unknown> {
  await initBackend();
  // DeiT-Tiny's parameters (ImageNet head): the gradient of a real update has exactly these tensors.
  const model = IceVit.create(vitConfig('deit_tiny_patch16_224', { numClasses: 1000, iceHead: 'official' }), 0);
  const grads = new Map<string, tf.Tensor>();
  for (const [name, v] of model.params) grads.set(name, tf.randomNormal(v.shape, 0, 1e-3, 'float32', c.rank * 1000 + grads.size));
  model.dispose();
  const reducer = new RingGradientReducer({
    redisUrl: REDIS_URL,
    keyPrefix: KEY_PREFIX,
    runId: c.runId,
    rank: c.rank,
    worldSize: c.world,
    timeoutMs: 120_000,
    segmentBytes: c.segmentBytes,
    transport: c.transport === 'shm' ? 'auto' : 'tcp',
  });
  const rows: { total: number; flatten: number; ring: number; unflatten: number }[] = [];
  let digest = '';
  for (let i = 0; i < c.warmup + c.iters; i++) {
    const t0 = performance.now();
    const mean = await reducer.allReduceMean(i, grads);
    const total = performance.now() - t0;
    if (i >= c.warmup)
      rows.push({
        total,
        flatten: reducer.lastTimings.flattenMs,
        ring: reducer.lastTimings.ringMs,
        unflatten: reducer.lastTimings.unflattenMs,
      });
    if (i === c.warmup + c.iters - 1) {
      const h = createHash('sha256');
      for (const n of [...mean.keys()].sort()) h.update(Buffer.from((mean.get(n)!.dataSync() as Float32Array).buffer));
      digest = h.digest('hex');
    }
    tf.dispose([...mean.values()]);
  }
  await reducer.close();
  if (reducer.lastTimings.transport !== c.transport)
    throw new Error(`asked for ${c.transport}, the reducer used ${reducer.lastTimings.transport}`);
  const floats = [...grads.values()].reduce((n, g) => n + g.size, 0);
  tf.dispose([...grads.values()]);
  return {
    floats,
    tensors: grads.size,
    digest,
    total: median(rows.map((r) => r.total)),
    flatten: median(rows.map((r) => r.flatten)),
    ring: median(rows.map((r) => r.ring)),
    unflatten: median(rows.map((r) => r.unflatten)),
  };
}

async function child(c: Child): Promise<void> {
  let out: unknown;
  switch (c.kind) {
    case 'copy-recv':
      out = await copyRecv(c);
      break;
    case 'copy-send':
      out = await copySend(c);
      break;
    case 'ring':
      out = await ringRank(c);
      break;
    case 'reducer':
      out = await reducerRank(c);
      break;
  }
  console.log(JSON.stringify({ result: out }));
}

// ---------------------------------------------------------------------------------------------
// Parent

interface Spawned {
  lines: AsyncGenerator<Record<string, unknown>>;
  done: Promise<Record<string, unknown>>;
}

function spawnChild(c: Child): Spawned {
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin', 'run-ts.js'), __filename, '--child', JSON.stringify(c)], {
    cwd: ROOT,
    env: { ...process.env, ICE_BENCH_ALLREDUCE_PREFIX: KEY_PREFIX },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const queue: Record<string, unknown>[] = [];
  let wake: (() => void) | undefined;
  let buf = '';
  let result: Record<string, unknown> | undefined;
  proc.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line.startsWith('{')) continue;
      const msg = JSON.parse(line) as Record<string, unknown>;
      if ('result' in msg) result = msg.result as Record<string, unknown>;
      else queue.push(msg);
      wake?.();
    }
  });
  const done = new Promise<Record<string, unknown>>((resolve, reject) =>
    proc.once('exit', (code) => (code === 0 && result ? resolve(result) : reject(new Error(`${c.kind} child exited with code ${code}`)))),
  );
  async function* lines(): AsyncGenerator<Record<string, unknown>> {
    for (;;) {
      while (queue.length) yield queue.shift()!;
      if (proc.exitCode !== null) return;
      await new Promise<void>((r) => (wake = r));
    }
  }
  return { lines: lines(), done };
}

async function loopbackCopy(bytes: number, iters: number): Promise<number[]> {
  const recv = spawnChild({ kind: 'copy-recv', bytes, iters });
  const first = await recv.lines.next();
  const port = (first.value as { port: number }).port;
  const send = spawnChild({ kind: 'copy-send', bytes, iters, port });
  const [s] = await Promise.all([send.done, recv.done]);
  return s.times as number[];
}

async function ring(
  floats: number,
  world: number,
  iters: number,
  segmentBytes: number,
  transport: Transport,
): Promise<{ times: number[]; identical: boolean; formMs: number }> {
  const runId = randomUUID();
  const ranks = Array.from({ length: world }, (_, rank) =>
    spawnChild({ kind: 'ring', floats, iters, warmup: 1, rank, world, runId, segmentBytes, transport }),
  );
  const results = await Promise.all(ranks.map((r) => r.done));
  // The step takes as long as its slowest rank: per iteration, the largest of the ranks' times.
  const times = (results[0].times as number[]).map((_, i) => Math.max(...results.map((r) => (r.times as number[])[i])));
  return { times, identical: new Set(results.map((r) => r.digest)).size === 1, formMs: results[0].formMs as number };
}

async function main(): Promise<void> {
  const opts = new Command()
    .option('--sizes <list>', 'float32 elements per all-reduce', '5717416,22050664')
    .option('--worlds <list>', 'ranks', '2,4')
    .option('--iters <n>', 'timed all-reduces per case (after one warm-up)', '5')
    .option('--segment-kib <n>', 'bytes per data frame, KiB', '1024')
    .option('--skip-reducer', 'skip the GradientReducer / overlap measurement (needs tfjs)')
    .parse(process.argv)
    .opts<{ sizes: string; worlds: string; iters: string; segmentKib: string; skipReducer?: boolean }>();
  const sizes = opts.sizes.split(',').map(Number);
  const worlds = opts.worlds.split(',').map(Number);
  const iters = Number(opts.iters);
  const segmentBytes = Number(opts.segmentKib) * 1024;
  const load: { before: number[]; after?: number[] } = { before: loadavg().map(r1) };
  const results: Record<string, unknown>[] = [];
  for (const floats of sizes) {
    const bytes = floats * 4;
    const copy = await loopbackCopy(bytes, iters + 1);
    const copyMs = median(copy.slice(1));
    const rows: Record<string, unknown>[] = [];
    for (const world of worlds) {
      for (const transport of ['tcp', 'shm'] as const) {
        const r = await ring(floats, world, iters, segmentBytes, transport);
        const ms = median(r.times);
        rows.push({
          world,
          transport,
          ms: r1(ms),
          min_ms: r1(Math.min(...r.times)),
          ratio_vs_copy: Math.round((ms / copyMs) * 100) / 100,
          within_3x_copy: ms <= 3 * copyMs,
          // Through the TCP stack; shared memory sends only marks (each rank writes 4N bytes and reads ≈ 4N·(W+1)/W).
          bytes_sent_per_rank: transport === 'tcp' ? Math.round((2 * (world - 1) * bytes) / world) : 0,
          ranks_bit_identical: r.identical,
          first_formation_ms: r.formMs,
        });
      }
    }
    // The copy again after the ring cases: the machine's load drifts; both copies are shown.
    const copyAfter = median((await loopbackCopy(bytes, iters + 1)).slice(1));
    results.push({ floats, mbytes: r1(bytes / 1e6), loopback_copy_ms: r1(copyMs), loopback_copy_after_ms: r1(copyAfter), ring: rows });
  }
  const report: Record<string, unknown> = {
    bench: 'allreduce',
    node: process.version,
    cpus: availableParallelism(),
    iters,
    segment_bytes: segmentBytes,
    results,
  };
  for (const transport of opts.skipReducer ? [] : (['tcp', 'shm'] as const)) {
    const runId = randomUUID();
    const ranks = [0, 1].map((rank) => spawnChild({ kind: 'reducer', iters, warmup: 1, rank, world: 2, runId, segmentBytes, transport }));
    const [a, b] = await Promise.all(ranks.map((r) => r.done));
    const readback = Math.max(a.flatten as number, b.flatten as number);
    const ringMs = Math.max(a.ring as number, b.ring as number);
    report[`reducer_deit_tiny_w2_${transport}`] = {
      floats: a.floats,
      tensors: a.tensors,
      ranks_bit_identical: a.digest === b.digest,
      total_ms: r1(Math.max(a.total as number, b.total as number)),
      readback_ms: r1(readback),
      ring_ms: r1(ringMs),
      mean_and_tensors_ms: r1(Math.max(a.unflatten as number, b.unflatten as number)),
      // Overlapping the read-back of later buckets with the ring of earlier ones hides at most the shorter of the two.
      overlap_saves_at_most_ms: r1(Math.min(readback, ringMs)),
    };
  }
  load.after = loadavg().map(r1);
  report.loadavg = load;
  console.log(JSON.stringify(report, null, 2));
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
