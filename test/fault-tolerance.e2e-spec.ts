/* eslint-disable @typescript-eslint/no-unsafe-argument --
   response bodies are untyped JSON of the API under test */
/**
 * Faults injected into a private PostgreSQL cluster and a private redis-server (never the
 * machine's own): the database goes away while a run finishes; Redis restarts (losing every key)
 * with runs and a sweep queued; a worker dies and Redis loses its job, so that only the reconciler
 * can bring the run back. The API and the workers run as real processes, as in production.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { API_KEY, freePort, http, readSse, spawnApi, spawnWorker, TINY_RUN, waitFor, type TestWorker } from './support/harness';
import { startPrivatePostgres, startPrivateRedis, type PrivatePostgres, type PrivateRedis } from './support/private-services';

const PG_PORT = Number(process.env.E2E_FAULT_PG_PORT ?? 5441);
const REDIS_PORT = Number(process.env.E2E_FAULT_REDIS_PORT ?? 6391);

describe('fault tolerance: database and Redis outages (e2e)', () => {
  let pg: PrivatePostgres;
  let redis: PrivateRedis;
  let api: Awaited<ReturnType<typeof spawnApi>>;
  let tmp: string;
  let env: Record<string, string>;
  const workers: TestWorker[] = [];

  beforeAll(async () => {
    pg = await startPrivatePostgres(PG_PORT);
    redis = await startPrivateRedis(REDIS_PORT);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-e2e-faults-'));
    fs.mkdirSync(path.join(tmp, 'data'));
    env = {
      DATABASE_URL: pg.url,
      REDIS_URL: redis.url,
      QUEUE_PREFIX: 'e2e-faults',
      API_KEYS: API_KEY,
      DATA_ROOTS: path.join(tmp, 'data'),
      ARTIFACT_DIR: path.join(tmp, 'artifacts'),
      CODE_VERSION: 'e2e',
      PROGRESS_INTERVAL_MS: '300',
      RUN_BACKOFF_MS: '500',
      RECONCILE_INTERVAL_MS: '2000',
      WORKER_HEARTBEAT_MS: '500',
      LOCK_DURATION_MS: '5000',
      STALLED_INTERVAL_MS: '2000',
    };
    api = await spawnApi(env, await freePort());
  }, 120_000);

  afterAll(async () => {
    for (const w of workers) await w.kill();
    await api?.stop();
    await redis?.destroy();
    await pg?.destroy();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  }, 120_000);

  async function startWorker(id: string): Promise<TestWorker> {
    const w = spawnWorker({ env }, { WORKER_ID: id });
    workers.push(w);
    await w.ready;
    return w;
  }

  it('keeps a run that finishes while the database is away: succeeded with its metrics once it is back, no attempt spent, SSE ended', async () => {
    const worker = await startWorker('worker-db');
    const submitted = await http(api.url, 'POST', '/experiments', { ...TINY_RUN, steps: 150, checkpointEvery: 10 });
    expect(submitted.status).toBe(201);
    const id = submitted.body.id as string;
    const outcomeFile = path.join(env.ARTIFACT_DIR, 'runs', id, 'outcome.json');

    // One stream open across the outage: it must end with the run's terminal status.
    const stream = readSse(`${api.url}/runs/${id}/events`, {
      timeoutMs: 240_000,
      until: (e) => e.event === 'run.status' && ['succeeded', 'failed', 'cancelled'].includes(e.data.status),
    });
    await readSse(`${api.url}/runs/${id}/events`, {
      timeoutMs: 120_000,
      until: (e) => e.event === 'run.progress' && e.data.progress.step >= 20,
    });
    await pg.stop();
    // The run finishes with the database away: its outcome is on disk, the worker keeps retrying the row.
    await waitFor('the outcome beside the checkpoint', () => Promise.resolve(fs.existsSync(outcomeFile)), 180_000);
    await waitFor('a retry while the database is away', () => Promise.resolve(/the database is unreachable/.test(worker.output())), 30_000);
    await new Promise((r) => setTimeout(r, 3000));
    const health = await http(api.url, 'GET', '/health');
    expect(health.status).toBe(503);
    expect(health.body).toMatchObject({ status: 'degraded', postgres: { ok: false }, redis: { ok: true } });
    await pg.start();

    const end = await stream;
    expect(end[end.length - 1].data).toMatchObject({ status: 'succeeded' });
    const run = (await http(api.url, 'GET', `/runs/${id}`)).body;
    expect(run).toMatchObject({ status: 'succeeded', attempts: 1, error: null });
    expect(run.metrics.top1).toEqual(expect.any(Number));
    expect(run.checkpoint).toMatch(/final\.safetensors$/);
    const stored = JSON.parse(fs.readFileSync(outcomeFile, 'utf8'));
    expect(stored).toMatchObject({ runId: id, status: 'succeeded', metrics: run.metrics, checkpoint: `runs/${id}/final.safetensors` });
    expect(fs.existsSync(path.join(env.ARTIFACT_DIR, stored.checkpoint))).toBe(true);
    const series = (await http(api.url, 'GET', `/runs/${id}/metrics`)).body.series as Record<string, { step: number }[]>;
    expect(series['final.top1']).toHaveLength(1);
    // Trained once, recorded once: by the worker's retried write or by a reconciler (the API's or the worker's) from the stored outcome.
    const logs = worker.output() + api.output();
    const byWorker = logs.match(new RegExp(`run ${id} succeeded in`, 'g'))?.length ?? 0;
    const byReconciler = logs.match(new RegExp(`run ${id} finished from its stored outcome`, 'g'))?.length ?? 0;
    expect(byWorker + byReconciler).toBe(1);
    expect(worker.output().match(/per step over \d+ steps/g)).toHaveLength(1);
    // The worker's own write, retried with backoff, gets through too (a no-op when a reconciler was first).
    await waitFor('the worker to see the database back', () => Promise.resolve(/the database is back/.test(worker.output())), 60_000);
    expect(worker.output()).not.toMatch(/attempt 1 failed/);
    await worker.stop();
  }, 300_000);

  it('re-creates the jobs of queued runs and sweeps after Redis restarts empty; /health is degraded meanwhile; the outage is logged once', async () => {
    for (const w of workers.splice(0)) await w.stop();
    // No worker: everything stays queued, its jobs only in Redis.
    const single = await http(api.url, 'POST', '/experiments', TINY_RUN);
    const sweep = await http(api.url, 'POST', '/sweeps', { base: TINY_RUN, grid: { alpha: [0.5, 1] } });
    expect([single.status, sweep.status]).toEqual([201, 201]);

    await redis.stop();
    await waitFor(
      '/health to say degraded',
      async () => {
        const h = await http(api.url, 'GET', '/health');
        return h.status === 503 && h.body.status === 'degraded' && h.body.redis.ok === false;
      },
      20_000,
    );
    await new Promise((r) => setTimeout(r, 3000)); // several reconnection tries of every connection
    await redis.start(); // empty: the jobs are gone
    await waitFor('/health ok again', async () => (await http(api.url, 'GET', '/health')).status === 200, 30_000);

    const worker = await startWorker('worker-redis');
    const sweepEnd = readSse(`${api.url}/sweeps/${sweep.body.id}/events`, {
      timeoutMs: 240_000,
      until: (e) => e.event === 'sweep.status' && ['succeeded', 'partial', 'failed', 'cancelled'].includes(e.data.status),
    });
    await waitFor(
      'the queued run to succeed',
      async () => (await http(api.url, 'GET', `/runs/${single.body.id}`)).body.status === 'succeeded',
      240_000,
      1000,
    );
    const events = await sweepEnd;
    expect(events[events.length - 1].data).toMatchObject({ status: 'succeeded', counts: { succeeded: 2 } });
    const rows = (await http(api.url, 'GET', `/sweeps/${sweep.body.id}`)).body.runs as { status: string; attempts: number }[];
    expect(rows.map((r) => [r.status, r.attempts])).toEqual([
      ['succeeded', 1],
      ['succeeded', 1],
    ]);

    // Logged once per outage by the API, not once per reconnection try of each connection.
    const out = api.output();
    expect(out.match(/Redis unreachable since/g)).toHaveLength(1);
    expect(out.match(/Redis back after \d+\.\d s/g)).toHaveLength(1);
    expect(out).not.toMatch(/Unhandled error event/);
    expect(out + worker.output()).toMatch(/reconciled: .*enqueued 3/);
  }, 300_000);

  it('queues again a running run whose worker died and whose job Redis lost; it resumes from its checkpoint', async () => {
    for (const w of workers.splice(0)) await w.stop();
    const first = await startWorker('worker-lost');
    const submitted = await http(api.url, 'POST', '/experiments', { ...TINY_RUN, steps: 150, checkpointEvery: 10 });
    const id = submitted.body.id as string;
    await readSse(`${api.url}/runs/${id}/events`, {
      timeoutMs: 120_000,
      until: (e) => e.event === 'run.progress' && e.data.progress.step >= 20,
    });
    // Nobody left to notice: the worker dies and Redis forgets its job (and the lock BullMQ's stall check would have used).
    await first.kill('SIGKILL');
    await redis.restart();
    const second = await startWorker('worker-after');
    const events = await readSse(`${api.url}/runs/${id}/events`, {
      timeoutMs: 240_000,
      until: (e) => e.event === 'run.status' && ['succeeded', 'failed', 'cancelled'].includes(e.data.status),
    });
    expect(events[events.length - 1].data.status).toBe('succeeded');
    expect(api.output() + second.output()).toMatch(
      new RegExp(`run ${id}: its job is missing and no live worker runs it; queued again \\(attempt 2 of 3\\)`),
    );
    const run = (await http(api.url, 'GET', `/runs/${id}`)).body;
    expect(run).toMatchObject({ status: 'succeeded', attempts: 2, workerId: 'worker-after', error: null });
    expect(run.resumedFromStep).toBeGreaterThanOrEqual(10);
    expect(second.output()).toMatch(new RegExp(`resuming from .*last\\.safetensors at step ${run.resumedFromStep}`));
  }, 300_000);

  it('leaves no row queued or running and no duplicate metric point', async () => {
    const db = new Client({ connectionString: pg.url });
    await db.connect();
    try {
      const open = await db.query("SELECT count(*)::int AS n FROM runs WHERE status IN ('queued','running')");
      expect(open.rows[0].n).toBe(0);
      const dup = await db.query(
        'SELECT count(*)::int AS n FROM (SELECT 1 FROM metric_points GROUP BY run_id, name, step HAVING count(*) > 1) d',
      );
      expect(dup.rows[0].n).toBe(0);
    } finally {
      await db.end();
    }
  });
});
