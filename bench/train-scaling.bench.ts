/**
 * `npm run bench:train-scaling [-- --cases deit_tiny_patch16_224:32,deit_tiny_patch16_224:16,digits-tiny:32] [--rounds 5] [--steps 3] [--warmup 2] [--torch deit_tiny_patch16_224|none]`
 *
 * Data-parallel scaling at the same global batch G: img/s of two ranks (separate processes, G/2
 * each, averaging their gradients with RingGradientReducer exactly as a worker does:
 * accumulateGradients → allReduceMean → applyGradients) against one rank training with G.
 * Efficiency = img/s(2 ranks) / (2 × img/s(1 rank)).
 *
 * This machine's speed drifts by 10–30 % over minutes (other tenants), so measuring one rank, then
 * two, then one again in separate runs mostly measures the drift. Here the same two processes stay
 * up for the whole case and take turns, round after round, at five modes of `--steps` steps each
 * (the order rotates every round):
 *   one   rank 0 alone at G (the one-rank baseline; rank 1 idles);
 *   half  rank 0 alone at G/2;
 *   pair  both at G/2 at once, each on its own (no all-reduce): what two busy cores allow;
 *   shm   both at G/2 as a group, gradients through shared memory (ranks on one machine, the default);
 *   tcp   the same through the TCP ring over loopback (ranks on different machines).
 * Every ratio is taken within a round, between modes measured seconds apart; the report gives the
 * median over rounds and the range. It splits the loss: `machine` (pair against one: two busy cores
 * slow each other, and per-step costs that do not halve with the batch) times `synchronous_share`
 * (the group against the pair: the all-reduce, and waiting for the slower rank at every step).
 *
 * The yardstick (`--torch`, DeiT-Tiny by default): the same model, loss and optimizer in PyTorch,
 * two ranks under DistributedDataParallel over gloo (which overlaps its all-reduce with the
 * backward pass), measured the same way right after (bench/torch/ddp_scaling.py; Debian's
 * python3-torch, skipped with the reason when it is missing).
 *
 * One rank uses one core (the wasm backend is single-threaded in Node), so two ranks need both
 * cores of this 2-core machine. Prints one JSON document.
 */
import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as net from 'node:net';
import { availableParallelism, loadavg } from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { Command } from 'commander';
import IORedis from 'ioredis';
import * as tf from '@tensorflow/tfjs-core';
import { IceTrainer, IceVit, initBackend, MIXUP_PRESETS, TRAIN_PRESETS, vitConfig, type VitPresetName } from '@ice/core';
import { RingGradientReducer } from '@ice/orchestration';

const ROOT = path.resolve(__dirname, '..');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const KEY_PREFIX = process.env.ICE_BENCH_SCALING_PREFIX ?? `ice-bench-scaling-${process.pid}`;

const MODES = ['one', 'half', 'pair', 'shm', 'tcp'] as const;
type Mode = (typeof MODES)[number];
/** Modes rank 1 takes part in. */
const BOTH: ReadonlySet<Mode> = new Set(['pair', 'shm', 'tcp']);

interface ChildSpec {
  preset: VitPresetName;
  global: number;
  rank: number;
  /** One group per transport, so that both stay formed for the whole case. */
  runIds: { shm: string; tcp: string };
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
const r3 = (x: number): number => Math.round(x * 1000) / 1000;

// ---------------------------------------------------------------------------------------------
// A rank: one model, one trainer, both batches, and a reducer per transport; runs the modes it is told on stdin.

async function child(spec: ChildSpec): Promise<void> {
  await initBackend();
  const config = vitConfig(spec.preset, { numClasses: 10, iceHead: 'official' });
  const model = IceVit.create(config, 0);
  // bench:train's work: hard labels, no mixup, the released ICE loss, AdamW.
  const trainer = new IceTrainer(model, { ...TRAIN_PRESETS.iceReleased, mixup: { ...MIXUP_PRESETS.smoothingOnly, labelSmoothing: 0 } });
  const batchOf = (n: number): { x: tf.Tensor4D; labels: number[] } => ({
    x: tf.randomUniform([n, 3, config.imgSize, config.imgSize], 0, 1, 'float32', 1 + spec.rank),
    labels: Array.from({ length: n }, (_, i) => (i + spec.rank * n) % 10),
  });
  const full = spec.rank === 0 ? batchOf(spec.global) : undefined;
  const half = batchOf(spec.global / 2);
  const reducers = {
    shm: new RingGradientReducer({
      redisUrl: REDIS_URL,
      keyPrefix: KEY_PREFIX,
      runId: spec.runIds.shm,
      rank: spec.rank,
      worldSize: 2,
      timeoutMs: 300_000,
      transport: 'auto',
    }),
    tcp: new RingGradientReducer({
      redisUrl: REDIS_URL,
      keyPrefix: KEY_PREFIX,
      runId: spec.runIds.tcp,
      rank: spec.rank,
      worldSize: 2,
      timeoutMs: 300_000,
      transport: 'tcp',
    }),
  };
  // Each group numbers its own updates (the trainer's step counts the other modes' updates too).
  const updates = { shm: 0, tcp: 0 };

  const run = async (mode: Mode): Promise<StepRow> => {
    const t0 = performance.now();
    if (mode === 'one' || mode === 'half' || mode === 'pair') {
      const b = mode === 'one' ? full! : half;
      trainer.trainStep(b.x, b.labels); // reads the loss back: the step is complete when it returns
      return { total: performance.now() - t0, compute: 0, readback: 0, ring: 0, mean: 0, apply: 0, readyAt: 0, reducedAt: 0 };
    }
    const reducer = reducers[mode];
    const { update } = trainer.accumulateGradients(half.x, half.labels);
    const t1 = performance.now();
    const mean = await reducer.allReduceMean(updates[mode]++, update!);
    const t2 = performance.now();
    tf.dispose([...update!.values()]);
    trainer.applyGradients(mean);
    tf.dispose([...mean.values()]);
    const t = reducer.lastTimings;
    if (t.transport !== mode) throw new Error(`asked for ${mode}, the reducer used ${t.transport}`);
    const wall = (ms: number): number => performance.timeOrigin + ms;
    return {
      total: performance.now() - t0,
      compute: t1 - t0,
      readback: t.flattenMs,
      ring: t.ringMs,
      mean: t.unflattenMs,
      apply: performance.now() - t2,
      readyAt: wall(t1),
      reducedAt: wall(t2),
    };
  };

  const say = (m: unknown): void => void process.stdout.write(`${JSON.stringify(m)}\n`);
  say({ ready: true, params: model.parameterCount() });
  for await (const line of readline.createInterface({ input: process.stdin })) {
    const cmd = JSON.parse(line) as { mode: Mode; steps: number } | { exit: true };
    if ('exit' in cmd) break;
    const rows: StepRow[] = [];
    for (let i = 0; i < cmd.steps; i++) rows.push(await run(cmd.mode));
    say({ rows });
  }
  await Promise.all([reducers.shm.close(), reducers.tcp.close()]);
  tf.dispose([full?.x, half.x].filter((t): t is tf.Tensor4D => !!t));
  trainer.dispose();
  model.dispose();
}

// ---------------------------------------------------------------------------------------------
// The parent: two ranks per case, rounds of modes.

class Rank {
  private readonly proc: ChildProcessByStdio<Writable, Readable, null>;
  private readonly lines: AsyncIterator<string>;
  private readonly exited: Promise<number | null>;

  constructor(readonly spec: ChildSpec) {
    this.proc = spawn(process.execPath, [path.join(ROOT, 'bin', 'run-ts.js'), __filename, '--child', JSON.stringify(spec)], {
      cwd: ROOT,
      env: { ...process.env, ICE_BENCH_SCALING_PREFIX: KEY_PREFIX },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.exited = new Promise((resolve) => this.proc.once('exit', (code) => resolve(code)));
    this.lines = readline.createInterface({ input: this.proc.stdout })[Symbol.asyncIterator]();
  }

  /** The next JSON message of the child (lines that are not JSON objects are its libraries' chatter). */
  async next<T>(): Promise<T> {
    for (;;) {
      const r = await Promise.race([this.lines.next(), this.exited.then((code) => ({ done: true as const, value: code }))]);
      if (r.done) throw new Error(`rank ${this.spec.rank} (${this.spec.preset}) exited with code ${String(r.value)}`);
      if (typeof r.value === 'string' && r.value.startsWith('{')) return JSON.parse(r.value) as T;
    }
  }

  async steps(mode: Mode, steps: number): Promise<StepRow[]> {
    this.proc.stdin.write(`${JSON.stringify({ mode, steps })}\n`);
    return (await this.next<{ rows: StepRow[] }>()).rows;
  }

  async exit(): Promise<void> {
    this.proc.stdin.write(`${JSON.stringify({ exit: true })}\n`);
    const code = await this.exited;
    if (code !== 0) throw new Error(`rank ${this.spec.rank} exited with code ${code}`);
  }
}

interface ModeResult {
  /** ms per step (stepMsOf). */
  stepMs: number;
  rows: StepRow[][];
}

/** ms per step of one mode in one round, from each taking-part rank's step times. */
function stepMsOf(kind: 'alone' | 'pair' | 'group', totals: number[][]): number {
  switch (kind) {
    case 'group': // a group's step lasts as long as its slower rank's
      return median(totals[0].map((_, i) => Math.max(totals[0][i], totals[1][i])));
    case 'pair': // two independent processes: their throughputs add up (G/2 each per step), whatever their phase
      return 2 / totals.reduce((sum, t) => sum + 1 / median(t), 0);
    case 'alone':
      return median(totals[0]);
  }
}

const KIND: Record<Mode, 'alone' | 'pair' | 'group'> = { one: 'alone', half: 'alone', pair: 'pair', shm: 'group', tcp: 'group' };

async function runMode(ranks: Rank[], mode: Mode, steps: number): Promise<ModeResult> {
  const rows = BOTH.has(mode) ? await Promise.all(ranks.map((r) => r.steps(mode, steps))) : [await ranks[0].steps(mode, steps)];
  return {
    stepMs: stepMsOf(
      KIND[mode],
      rows.map((rs) => rs.map((r) => r.total)),
    ),
    rows,
  };
}

/** The ratios of one round, from its step times per mode (`group` the two-rank mode in question). */
function roundRatios(
  one: number,
  half: number,
  pair: number,
  group: number,
): { efficiency: number; machine: number; sync: number; contention: number; halfShare: number } {
  return { efficiency: one / (2 * group), machine: one / (2 * pair), sync: pair / group, contention: pair / half, halfShare: half / one };
}

function spread(xs: number[]): { median: number; min: number; max: number } {
  return { median: r3(median(xs)), min: r3(Math.min(...xs)), max: r3(Math.max(...xs)) };
}

async function runCase(spec: string, rounds: number, steps: number, warmup: number): Promise<Record<string, unknown>> {
  const [preset, g] = spec.split(':');
  const global = Number(g);
  if (!Number.isInteger(global) || global < 2 || global % 2) throw new Error(`${spec}: the global batch must be an even integer ≥ 2`);
  const runIds = { shm: randomUUID(), tcp: randomUUID() };
  const ranks = [0, 1].map((rank) => new Rank({ preset: preset as VitPresetName, global, rank, runIds }));
  const [{ params }] = await Promise.all(ranks.map((r) => r.next<{ ready: true; params: number }>()));
  for (const mode of MODES) await runMode(ranks, mode, warmup); // forms both groups, warms every shape
  const byMode = Object.fromEntries(MODES.map((m) => [m, [] as ModeResult[]])) as Record<Mode, ModeResult[]>;
  const perRound: Record<string, number>[] = [];
  for (let k = 0; k < rounds; k++) {
    const order = MODES.map((_, i) => MODES[(i + k) % MODES.length]);
    const got = {} as Record<Mode, ModeResult>;
    for (const mode of order) got[mode] = await runMode(ranks, mode, steps);
    for (const mode of MODES) byMode[mode].push(got[mode]);
    const [shm, tcp] = [got.shm, got.tcp].map((g) => roundRatios(got.one.stepMs, got.half.stepMs, got.pair.stepMs, g.stepMs));
    perRound.push({
      shm: shm.efficiency,
      tcp: tcp.efficiency,
      machine: shm.machine,
      shmSync: shm.sync,
      tcpSync: tcp.sync,
      contention: shm.contention,
      halfShare: shm.halfShare,
    });
  }
  await Promise.all(ranks.map((r) => r.exit()));

  const ms = (mode: Mode): number => r1(median(byMode[mode].map((m) => m.stepMs)));
  const col = (key: string): number[] => perRound.map((p) => p[key]);
  const group = (mode: 'shm' | 'tcp'): Record<string, unknown> => {
    const pairs = byMode[mode].flatMap((m) => m.rows[0].map((_, i) => [m.rows[0][i], m.rows[1][i]] as const));
    const part = (k: keyof StepRow): number => r1(median(pairs.flatMap(([a, b]) => [a[k], b[k]])));
    return {
      step_ms: ms(mode),
      img_per_s: r1((global / ms(mode)) * 1000),
      per_rank_median_ms: {
        compute: part('compute'),
        readback: part('readback'),
        ring: part('ring'),
        mean_tensors: part('mean'),
        optimizer: part('apply'),
      },
      // From the moment the later rank's gradients are ready to the moment the later all-reduce returns (read-back,
      // transfer, sums, mean tensors): the all-reduce's own cost on the critical path.
      allreduce_after_last_rank_ready_ms: r1(
        median(pairs.map(([a, b]) => Math.max(a.reducedAt, b.reducedAt) - Math.max(a.readyAt, b.readyAt))),
      ),
      compute_ms_by_rank: [0, 1].map((r) => r1(median(pairs.map((p) => p[r].compute)))),
      // How long the earlier rank waits for the later one's gradients: the price of synchronous steps on noisy cores.
      slower_rank_lead_ms: r1(median(pairs.map(([a, b]) => Math.abs(a.readyAt - b.readyAt)))),
    };
  };
  return {
    preset,
    params,
    global_batch: global,
    rounds,
    steps_per_mode: steps,
    step_ms: {
      one_rank: ms('one'),
      half_batch_alone: ms('half'),
      half_batch_pair: ms('pair'),
      two_ranks_shm: ms('shm'),
      two_ranks_tcp: ms('tcp'),
    },
    one_rank_img_per_s: r1((global / ms('one')) * 1000),
    // Per round, then the median and range over rounds.
    scaling_efficiency: { shared_memory: spread(col('shm')), tcp_ring: spread(col('tcp')) },
    machine: {
      // Two independent processes at G/2 against one at G: the most two ranks could reach here.
      efficiency_without_allreduce: spread(col('machine')),
      // > 1: two busy cores slow each other (shared caches and memory bandwidth, other tenants).
      contention_slowdown: spread(col('contention')),
      // > 0.5: per-step costs that do not shrink with the batch.
      half_batch_share_of_full_step: spread(col('halfShare')),
    },
    // The group's speed against the same two processes unsynchronized: what the all-reduce and waiting for the slower rank keep.
    synchronous_share: { shared_memory: spread(col('shmSync')), tcp_ring: spread(col('tcpSync')) },
    // Each process's own step in the pair: a difference here is a difference between the two cores.
    pair_step_ms_by_rank: [0, 1].map((r) => r1(median(byMode.pair.flatMap((m) => m.rows[r].map((x) => x.total))))),
    two_ranks_shm: group('shm'),
    two_ranks_tcp: group('tcp'),
  };
}

// ---------------------------------------------------------------------------------------------
// The yardstick: PyTorch DDP (gloo) on the same machine, same model, same modes (bench/torch/ddp_scaling.py).

const TORCH_SCRIPT = path.join(ROOT, 'bench', 'torch', 'ddp_scaling.py');

/** Why PyTorch cannot run here, or undefined when `python` imports torch with gloo. */
function torchMissing(python: string): string | undefined {
  const r = spawnSync(python, ['-c', 'import torch, torch.distributed as d; assert d.is_gloo_available()'], { encoding: 'utf8' });
  if (r.error) return `${python}: ${r.error.message}`;
  return r.status === 0 ? undefined : `${python} has no PyTorch with gloo (apt-get install python3-torch libopenblas0-pthread)`;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

interface TorchRank {
  params: number;
  runs: { round: number; mode: 'one' | 'half' | 'pair' | 'ddp'; rows: { total: number }[] }[];
}

async function runTorchCase(
  python: string,
  preset: VitPresetName,
  global: number,
  rounds: number,
  steps: number,
): Promise<Record<string, unknown>> {
  const c = vitConfig(preset, { numClasses: 10 });
  const port = await freePort();
  const args = (rank: number): string[] => [
    TORCH_SCRIPT,
    ...Object.entries({
      embed: c.embedDim,
      depth: c.depth,
      heads: c.numHeads,
      img: c.imgSize,
      patch: c.patchSize,
      'global-batch': global,
      rounds,
      steps,
      rank,
      port,
    }).flatMap(([k, v]) => [`--${k}`, String(v)]),
  ];
  // One BLAS thread per rank: without these OpenBLAS and OpenMP take both cores in each process.
  const env = { ...process.env, OPENBLAS_NUM_THREADS: '1', OMP_NUM_THREADS: '1' };
  const out = await Promise.all(
    [0, 1].map(
      (rank) =>
        new Promise<TorchRank>((resolve, reject) => {
          const p = spawn(python, args(rank), { env, stdio: ['ignore', 'pipe', 'inherit'] });
          let text = '';
          p.stdout.on('data', (d: Buffer) => (text += d.toString()));
          p.once('exit', (code) => {
            const line = text.split('\n').find((l) => l.startsWith('{'));
            if (code === 0 && line) resolve(JSON.parse(line) as TorchRank);
            else reject(new Error(`PyTorch rank ${rank} exited with code ${code}`));
          });
        }),
    ),
  );
  const perRound: ReturnType<typeof roundRatios>[] = [];
  const ms: Record<string, number[]> = { one: [], half: [], pair: [], ddp: [] };
  for (let k = 0; k < rounds; k++) {
    const of = (mode: string): number[][] =>
      out.map((o) => o.runs.find((r) => r.round === k && r.mode === mode)!.rows.map((x) => x.total)).filter((t) => t.length);
    const got = {
      one: stepMsOf('alone', of('one')),
      half: stepMsOf('alone', of('half')),
      pair: stepMsOf('pair', of('pair')),
      ddp: stepMsOf('group', of('ddp')),
    };
    for (const [mode, v] of Object.entries(got)) ms[mode].push(v);
    perRound.push(roundRatios(got.one, got.half, got.pair, got.ddp));
  }
  const col = (key: keyof ReturnType<typeof roundRatios>): number[] => perRound.map((p) => p[key]);
  const step = (mode: string): number => r1(median(ms[mode]));
  return {
    framework: 'PyTorch DistributedDataParallel (gloo, loopback), 1 thread per rank',
    params: out[0].params,
    step_ms: { one_rank: step('one'), half_batch_alone: step('half'), half_batch_pair: step('pair'), two_ranks_ddp: step('ddp') },
    one_rank_img_per_s: r1((global / step('one')) * 1000),
    scaling_efficiency: spread(col('efficiency')),
    machine: {
      efficiency_without_allreduce: spread(col('machine')),
      contention_slowdown: spread(col('contention')),
      half_batch_share_of_full_step: spread(col('halfShare')),
    },
    synchronous_share: spread(col('sync')),
  };
}

async function main(): Promise<void> {
  const opts = new Command()
    .option('--cases <list>', 'preset:globalBatch,…', 'deit_tiny_patch16_224:32,deit_tiny_patch16_224:16,digits-tiny:32')
    .option('--rounds <n>', 'rounds of the five modes', '5')
    .option('--steps <n>', 'timed steps per mode and round', '3')
    .option('--warmup <n>', 'untimed steps of every mode first', '2')
    .option('--torch <presets>', 'presets whose cases also run the PyTorch DDP yardstick ("none": skip it)', 'deit_tiny_patch16_224')
    .option('--python <bin>', 'python with torch', '/usr/bin/python3')
    .parse(process.argv)
    .opts<{ cases: string; rounds: string; steps: string; warmup: string; torch: string; python: string }>();
  const [rounds, steps, warmup] = [opts.rounds, opts.steps, opts.warmup].map(Number);
  if (![rounds, steps].every((n) => Number.isInteger(n) && n >= 1) || !(Number.isInteger(warmup) && warmup >= 1))
    throw new Error('--rounds, --steps and --warmup must be positive integers');
  const load: Record<string, number[]> = { before: loadavg().map(r1) };
  const results: Record<string, unknown>[] = [];
  try {
    const torchPresets = new Set(opts.torch === 'none' ? [] : opts.torch.split(','));
    const missing = torchPresets.size ? torchMissing(opts.python) : undefined;
    for (const spec of opts.cases.split(',')) {
      const result = await runCase(spec, rounds, steps, warmup);
      const preset = result.preset as VitPresetName;
      if (torchPresets.has(preset))
        result.pytorch_ddp = missing
          ? { skipped: missing }
          : await runTorchCase(opts.python, preset, result.global_batch as number, rounds, steps);
      results.push(result);
    }
  } finally {
    const redis = new IORedis(REDIS_URL);
    const left = await redis.keys(`${KEY_PREFIX}:*`);
    if (left.length) await redis.del(...left);
    await redis.quit();
  }
  load.after = loadavg().map(r1);
  console.log(
    JSON.stringify({ bench: 'train-scaling', node: process.version, cpus: availableParallelism(), loadavg: load, results }, null, 2),
  );
}

if (process.argv[2] === '--child') {
  child(JSON.parse(process.argv[3]) as ChildSpec).then(
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
