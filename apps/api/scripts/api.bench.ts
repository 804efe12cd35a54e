/**
 * `npm run bench:api`: submissions per second and latency of POST /experiments, and of
 * GET /sweeps/:id/table on a 4×4×3-seed sweep with synthetic results, under 50 concurrent
 * clients. Starts its own API process (DATABASE_URL if set, else the embedded database) on a
 * fresh queue prefix, with no workers: this measures the API, not training. Prints JSON.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import autocannon from 'autocannon';
import { createRepositories, deleteKeysWithPrefix, loadOrchestrationConfig, OrchestrationDatabase } from '@ice/orchestration';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const DURATION = Number(process.env.BENCH_DURATION ?? 10);
const KEY = 'bench-key';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function cannon(opts: autocannon.Options) {
  const r = await autocannon({ connections: CONNECTIONS, duration: DURATION, ...opts });
  return {
    requestsPerSec: r.requests.average,
    latencyMs: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, max: r.latency.max },
    requests: r.requests.total,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
  };
}

async function main(): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-bench-'));
  const prefix = `bench-${randomBytes(4).toString('hex')}`;
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    API_KEYS: KEY,
    QUEUE_PREFIX: prefix,
    PORT: String(port),
    HOST: '127.0.0.1',
    DATA_DIR: tmp,
    ARTIFACT_DIR: path.join(tmp, 'artifacts'),
    EMBEDDED_PG_PORT: String(await freePort()),
    NO_COLOR: '1',
  };
  const url = `http://127.0.0.1:${port}`;
  const api = spawn(process.execPath, [path.join(ROOT, 'bin', 'run-ts.js'), path.join(ROOT, 'apps', 'api', 'src', 'main.ts')], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<void>((r) => api.once('exit', () => r()));
  let db: OrchestrationDatabase | null = null;
  try {
    for (
      let i = 0;
      i < 120 &&
      !(await fetch(`${url}/health`)
        .then((r) => r.ok)
        .catch(() => false));
      i++
    )
      await new Promise((r) => setTimeout(r, 500));

    // A sweep whose runs "finished" with synthetic metrics, so the table has real work to do.
    const res = await fetch(`${url}/sweeps`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': KEY },
      body: JSON.stringify({
        name: 'bench',
        base: { steps: 10 },
        grid: { alpha: [0.25, 0.5, 0.75, 1], lambda_class: [0.25, 0.5, 0.75, 1] },
        seeds: [0, 1, 2],
      }),
    });
    const sweep = (await res.json()) as { id: string; runIds: string[] };
    db = await OrchestrationDatabase.open(loadOrchestrationConfig('worker', env));
    const { runs } = createRepositories(db);
    for (const id of sweep.runIds) {
      await runs.start(id, 'bench');
      await runs.finish(id, {
        metrics: { top1: Math.random(), miou: Math.random() },
        checkpoint: '-',
        lastCheckpoint: null,
        resumedFromStep: null,
        backend: 'none',
        durationMs: 0,
        steps: 10,
      });
    }

    const post = await cannon({
      url: `${url}/experiments`,
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': KEY },
      body: JSON.stringify({ steps: 10, loss: { alpha: 0.5, lambdaClass: 0.9 }, data: { batchSize: 8 } }),
    });
    const table = await cannon({ url: `${url}/sweeps/${sweep.id}/table?rows=alpha,lambda_class&metrics=top1,miou&format=json` });
    console.log(
      JSON.stringify(
        {
          connections: CONNECTIONS,
          durationSec: DURATION,
          database: process.env.DATABASE_URL ? 'postgres (DATABASE_URL)' : 'embedded (pglite)',
          cpus: os.availableParallelism(),
          'POST /experiments': { submissionsPerSec: post.requestsPerSec, ...post },
          'GET /sweeps/:id/table': table,
        },
        null,
        2,
      ),
    );
  } finally {
    // Let requests still queued when autocannon stopped drain before the API shuts down.
    await new Promise((r) => setTimeout(r, 2000));
    await db?.close();
    api.kill('SIGINT');
    await exited;
    await deleteKeysWithPrefix(env.REDIS_URL ?? 'redis://127.0.0.1:6379', prefix);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
