/**
 * `npm run demo`: starts Redis (if nothing answers and redis-server is on PATH), the API on the
 * embedded database (or DATABASE_URL), one worker per core, then
 *   1. takes the committed digits-tiny backbone (64², 8×8 patch grid; DEMO_QUICK pre-trains a few steps instead), and
 *   2. sweeps α × λ_class (ICE fine-tuning from that backbone, two seeds per cell),
 * showing progress, and prints the ablation table. About 10 minutes on 2 CPU cores.
 * Ctrl-C stops everything (workers hand their runs back); running it again reuses finished
 * stages and resumes unfinished ones from their checkpoints.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import IORedis from 'ioredis';
import type { RunProgressSnapshot, RunStatus } from '@ice/experiments';
import { isTerminalRunStatus, readSseStream, runProgressLine, SweepProgress, type OrchestrationEvent } from '@ice/orchestration';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const RUN_TS = path.join(ROOT, 'bin', 'run-ts.js');
const DATA_DIR = path.resolve(process.env.DATA_DIR ?? path.join(ROOT, '.data'));
const LOG_DIR = path.join(DATA_DIR, 'demo-logs');
/** Where the demo leaves its results (the ablation table as markdown and CSV); DEMO_OUT overrides. */
const OUT_DIR = path.resolve(process.env.DEMO_OUT ?? path.join(process.env.ARTIFACT_DIR ?? path.join(ROOT, 'artifacts'), 'demo'));
const PORT = Number(process.env.DEMO_PORT ?? process.env.PORT ?? 3000);
const API = `http://127.0.0.1:${PORT}`;
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const API_KEY = (process.env.API_KEYS ?? 'demo-local-key').split(',')[0].trim();

// DEMO_QUICK=1: the same pipeline at a few steps per run (a smoke test of the demo itself).
const QUICK = process.env.DEMO_QUICK === '1';
const PRETRAIN = {
  name: QUICK ? 'demo-pretrain-quick' : 'demo-pretrain-v2',
  base: {
    mode: 'classify',
    model: { preset: 'digits-tiny' },
    steps: QUICK ? 40 : 1200,
    checkpointEvery: QUICK ? 20 : 200,
    data: { batchSize: 32, evalLimit: QUICK ? 32 : 500 },
    optimizer: { lr: 1e-3, warmupSteps: QUICK ? 5 : 50 },
  },
  grid: { mode: ['classify'] },
};
const SWEEP = (weights: string) => ({
  name: QUICK ? 'demo-alpha-lambda-quick' : 'demo-alpha-lambda-v5',
  base: {
    steps: QUICK ? 20 : 600,
    checkpointEvery: QUICK ? 10 : 200,
    model: { preset: 'digits-tiny', weights },
    data: { batchSize: QUICK ? 16 : 32, evalLimit: QUICK ? 32 : 300 },
    optimizer: { lr: 5e-4, warmupSteps: QUICK ? 5 : 30 },
  },
  // Every run starts at λ_class 0.65 and reaches its cell's λ_class after 60 % of its updates (the run config's
  // default loss.lambdaWarmup): without it the released λ_class (0.975) ends all-foreground on this benchmark
  // (docs/collapse.md), which the table would flag.
  grid: { alpha: [0.5, 1], lambda_class: [0.8, 0.975] },
  seeds: QUICK ? [0] : [0, 1],
});
const TABLE_METRICS = 'ice_top1,top1,pix_acc,miou,iou_fg,map,fg_fraction,ice_no_fg';
const COMMITTED_BACKBONE = path.join(ROOT, 'assets', 'digits-tiny-pretrained.safetensors');

const children: { name: string; proc: ChildProcess }[] = [];
let stopping = false;

function log(msg: string): void {
  console.log(`[demo] ${msg}`);
}

function startProcess(name: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  fs.mkdirSync(LOG_DIR, { recursive: true });
  const out = fs.openSync(path.join(LOG_DIR, `${name}.log`), 'a');
  // Own process group: Ctrl-C reaches the demo only, which then stops the services in order.
  const proc = spawn(args[0], args.slice(1), { cwd: ROOT, env, stdio: ['ignore', out, out], detached: true });
  children.push({ name, proc });
  proc.on('exit', (code, signal) => {
    if (!stopping) {
      console.error(`[demo] ${name} exited unexpectedly (${code ?? signal}); see ${path.join(LOG_DIR, `${name}.log`)}`);
      void shutdown(1);
    }
  });
  return proc;
}

async function stopProcess(name: string, signal: NodeJS.Signals, timeoutMs: number): Promise<void> {
  const c = children.find((x) => x.name === name);
  if (!c || c.proc.exitCode !== null || c.proc.signalCode !== null) return;
  const exited = new Promise<void>((r) => c.proc.once('exit', () => r()));
  c.proc.kill(signal);
  const timer = setTimeout(() => c.proc.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

let stopped: Promise<never> | null = null;

/** Stops the services in order, once, however many times it is asked (Ctrl-C, a dropped stream…). */
function shutdown(code: number): Promise<never> {
  stopping = true;
  stopped ??= (async () => {
    log('stopping workers (running runs are handed back and resume next time), API and Redis…');
    await stopProcess('workers', 'SIGTERM', 40_000);
    await stopProcess('api', 'SIGINT', 15_000);
    await stopProcess('redis', 'SIGTERM', 10_000);
    process.exit(code);
  })();
  return stopped;
}

async function redisAnswers(url: string): Promise<boolean> {
  const r = new IORedis(url, {
    lazyConnect: true,
    connectTimeout: 1000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  r.on('error', () => undefined);
  try {
    await r.connect();
    await r.ping();
    return true;
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

async function ensureRedis(): Promise<void> {
  if (await redisAnswers(REDIS_URL)) return log(`Redis at ${REDIS_URL}`);
  const u = new URL(REDIS_URL);
  const local = ['127.0.0.1', 'localhost', '::1'].includes(u.hostname);
  const hasServer = spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
  if (!local || !hasServer) {
    console.error(
      `[demo] nothing answers at ${REDIS_URL}${local ? ' and there is no redis-server on PATH' : ''}.\n` +
        '       Install Redis (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis),\n' +
        '       or run one in Docker (docker run -p 6379:6379 redis:7), or point REDIS_URL at a server.',
    );
    process.exit(1);
  }
  const dir = path.join(DATA_DIR, 'redis');
  fs.mkdirSync(dir, { recursive: true });
  // Append-only file under the data dir: queued jobs survive a Ctrl-C and the next run continues them.
  startProcess(
    'redis',
    ['redis-server', '--port', u.port || '6379', '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', ''],
    process.env,
  );
  for (let i = 0; i < 50 && !(await redisAnswers(REDIS_URL)); i++) await sleep(200);
  if (!(await redisAnswers(REDIS_URL))) throw new Error('redis-server did not start; see its log');
  log(`started redis-server on port ${u.port || 6379} (data in ${dir})`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function api<T>(method: string, url: string, body?: unknown): Promise<T> {
  const res = await fetch(API + url, {
    method,
    headers: { 'content-type': 'application/json', 'x-api-key': API_KEY },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${url}: HTTP ${res.status}: ${text}`);
  return (res.headers.get('content-type') ?? '').includes('json') ? (JSON.parse(text) as T) : (text as T);
}

interface SweepView {
  id: string;
  name: string;
  status: string;
  runCount: number;
  counts: Record<string, number>;
  runs?: {
    id: string;
    status: RunStatus;
    cellKey: string | null;
    seed: number;
    config: { run: { steps?: number } };
    progress: RunProgressSnapshot | null;
    checkpoint: string | null;
  }[];
}

/** The newest sweep of that name that is usable (finished or still going), else a new one. */
async function sweepFor(spec: { name: string }): Promise<SweepView> {
  const found = await api<{ items: SweepView[] }>('GET', `/sweeps?name=${encodeURIComponent(spec.name)}&limit=1`);
  const s = found.items[0];
  if (s && ['succeeded', 'partial', 'queued', 'running'].includes(s.status)) {
    log(`${spec.name}: reusing sweep ${s.id} (${s.status})`);
    return s;
  }
  const created = await api<SweepView>('POST', '/sweeps', spec);
  log(`${spec.name}: submitted sweep ${created.id} (${created.runCount} runs)`);
  return created;
}

/**
 * Follows a sweep over SSE: a line per run that starts and per run that finishes ("run k of n
 * finished"), and every few seconds where the sweep stands with each running run's step and loss.
 * ETAs (SweepProgress) appear once a rate is measured: a first report, which follows the run's
 * start-up, never gives one.
 */
async function watch(id: string, label: string): Promise<string> {
  let progress: SweepProgress | null = null;
  for (;;) {
    const s = await api<SweepView>('GET', `/sweeps/${id}`);
    if (!['queued', 'running'].includes(s.status)) return s.status;
    const runs = s.runs ?? [];
    if (!progress) {
      progress = new SweepProgress(
        runs.map((r) => ({
          id: r.id,
          label: `${r.cellKey ?? r.id.slice(0, 8)} seed ${r.seed}`,
          status: r.status,
          totalSteps: r.config.run.steps ?? 0,
          progress: r.progress,
        })),
      );
      log(`${label}: ${progress.summaryLine()}`);
    } else {
      // Back after a dropped stream: catch up from the database.
      for (const r of runs)
        progress.apply({ type: 'run.status', runId: r.id, sweepId: id, status: r.status, at: new Date().toISOString() });
    }
    let lastPrint = Date.now();
    const ac = new AbortController();
    try {
      const res = await fetch(`${API}/sweeps/${id}/events`, { signal: ac.signal });
      for await (const m of readSseStream(res.body as unknown as AsyncIterable<Uint8Array>)) {
        const e = JSON.parse(m.data) as OrchestrationEvent;
        const before = e.type === 'run.status' ? progress.all().find((r) => r.id === e.runId)?.status : undefined;
        progress.apply(e);
        if (e.type === 'run.status') {
          const run = progress.all().find((r) => r.id === e.runId);
          if (run && isTerminalRunStatus(run.status)) log(`${label}: ${progress.finishedLine(run)}`);
          else if (run && run.status === 'running' && before !== 'running') log(`${label}: started ${run.label}`);
        }
        if (e.type === 'sweep.status' && !['queued', 'running'].includes(e.status)) return e.status;
        if (Date.now() - lastPrint > 5000 && progress.running().length) {
          lastPrint = Date.now();
          log(`${label}: ${progress.summaryLine()}`);
          for (const r of progress.running()) log(`${label}:   ${runProgressLine(r)}`);
        }
      }
    } catch (e) {
      if (stopping) throw e;
      await sleep(1000); // the stream dropped: re-read the state and follow again
    } finally {
      ac.abort();
    }
  }
}

/** Prints the ablation table and saves it (markdown and CSV) under OUT_DIR; returns the files. */
async function saveTable(sweep: SweepView, query: string): Promise<string[]> {
  const markdown = await api<string>('GET', `/sweeps/${sweep.id}/table?${query}&format=markdown`);
  const csv = await api<string>('GET', `/sweeps/${sweep.id}/table?${query}&format=csv`);
  console.log(markdown);
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const base = path.join(OUT_DIR, `${sweep.name}.table`);
  fs.writeFileSync(`${base}.md`, markdown.endsWith('\n') ? markdown : `${markdown}\n`);
  fs.writeFileSync(`${base}.csv`, csv);
  return [`${base}.md`, `${base}.csv`];
}

async function main(): Promise<void> {
  process.on('SIGINT', () => void shutdown(130));
  process.on('SIGTERM', () => void shutdown(143));
  fs.mkdirSync(DATA_DIR, { recursive: true });
  await ensureRedis();

  if (
    await fetch(`${API}/health`)
      .then(() => true)
      .catch(() => false)
  ) {
    throw new Error(`something already answers on ${API}; stop it or set DEMO_PORT`);
  }
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    REDIS_URL,
    API_KEYS: process.env.API_KEYS ?? API_KEY,
    PORT: String(PORT),
    HOST: '127.0.0.1',
    DATA_DIR,
    ARTIFACT_DIR: process.env.ARTIFACT_DIR ?? path.join(ROOT, 'artifacts'),
    // The committed backbone lives in assets/: allow it as a weights source.
    DATA_ROOTS: process.env.DATA_ROOTS ?? [path.join(ROOT, 'data'), path.join(ROOT, 'assets')].join(','),
    NO_COLOR: '1',
  };
  startProcess('api', [process.execPath, RUN_TS, path.join(ROOT, 'apps', 'api', 'src', 'main.ts')], env);
  for (
    let i = 0;
    i < 120 &&
    !(await fetch(`${API}/health`)
      .then((r) => r.ok)
      .catch(() => false));
    i++
  )
    await sleep(500);
  log(
    `API at ${API} (docs ${API}/docs, queues ${API}/queues with key ${API_KEY}); database: ` +
      `${process.env.DATABASE_URL ? 'DATABASE_URL' : `embedded in ${path.join(DATA_DIR, 'pglite')}`}`,
  );
  const workers = process.env.WORKERS ?? String(os.availableParallelism());
  startProcess('workers', [process.execPath, RUN_TS, path.join(ROOT, 'apps', 'worker', 'src', 'launcher.ts')], {
    ...env,
    WORKERS: workers,
  });
  log(`${workers} worker(s) started; logs in ${LOG_DIR}`);
  log(`results page (live while the demo runs): ${API}/ui/`);

  let backbone: string;
  if (!QUICK && fs.existsSync(COMMITTED_BACKBONE)) {
    // The committed backbone (npm run pretrain:digits: configs/digits-tiny-pretrain.json): pre-training it takes longer than the sweep.
    backbone = COMMITTED_BACKBONE;
  } else {
    const pre = await sweepFor(PRETRAIN);
    const preStatus = await watch(pre.id, 'pretrain');
    const preRun = (await api<SweepView>('GET', `/sweeps/${pre.id}`)).runs?.[0];
    if (preStatus !== 'succeeded' || !preRun?.checkpoint) throw new Error(`pre-training ended ${preStatus}; see ${LOG_DIR}`);
    backbone = preRun.checkpoint;
  }
  log(`backbone: ${backbone}`);

  const sweep = await sweepFor(SWEEP(backbone));
  const status = await watch(sweep.id, 'sweep');
  log(`sweep ${sweep.id} ${status}\n`);
  const saved = await saveTable(sweep, `rows=alpha,lambda_class&metrics=${TABLE_METRICS}`);
  log(`table saved: ${saved.join(', ')}`);
  log(
    `results page: ${API}/ui/#/sweeps/${sweep.id} (the demo stops the API now; to browse the results again, run ` +
      `PORT=${PORT} API_KEYS=${API_KEY} DATA_DIR=${DATA_DIR}${process.env.DATABASE_URL ? ' DATABASE_URL=…' : ''} npm run start:api)`,
  );
  await shutdown(0);
}

main().catch((e: unknown) => {
  if (!stopping) console.error(`[demo] ${(e as Error).message}`);
  void shutdown(1);
});
