/**
 * npm run chaos: a small sweep under faults, then checks that nothing was lost or doubled.
 *
 * On loopback only, with a private redis-server (no persistence) and a private PostgreSQL
 * cluster (CHAOS_REDIS_PORT, CHAOS_PG_PORT; 6393 and 5443 by default), the API and two workers as
 * child processes: submits a 2×2 sweep × 2 seeds of small digits-micro runs (120 steps), then kills a worker (SIGKILL)
 * in the middle of a run and starts a new one, restarts Redis (every key lost), stops the
 * database for a while — each fault while runs are training. Once the sweep has ended (or the
 * time bound CHAOS_TIMEOUT_S, 600 s by default, has passed) it checks: every run `succeeded`,
 * recorded exactly once; no run or sweep left queued/running; no duplicate metric point; every
 * final weights file present. Prints a JSON summary; exits 1 when a check fails.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { API_KEY, freePort, http, spawnApi, spawnWorker, type TestWorker } from '../test/support/harness';
import { startPrivatePostgres, startPrivateRedis } from '../test/support/private-services';

const REDIS_PORT = Number(process.env.CHAOS_REDIS_PORT ?? 6393);
const PG_PORT = Number(process.env.CHAOS_PG_PORT ?? 5443);
const TIMEOUT_S = Number(process.env.CHAOS_TIMEOUT_S ?? 600);
const DB_DOWN_S = Number(process.env.CHAOS_DB_DOWN_S ?? 20);
const REDIS_DOWN_S = Number(process.env.CHAOS_REDIS_DOWN_S ?? 3);

const RUN = {
  steps: 120,
  checkpointEvery: 10,
  model: { preset: 'digits-micro' },
  data: { batchSize: 8, evalLimit: 16 },
  optimizer: { warmupSteps: 2 },
};

interface Fault {
  kind: string;
  atS: number;
  detail: string;
}

interface RunRow {
  id: string;
  status: string;
  attempts: number;
  checkpoint: string | null;
  progress: { step: number } | null;
  worker_id: string | null;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<number> {
  const t0 = Date.now();
  const since = (): number => Math.round((Date.now() - t0) / 100) / 10;
  const deadline = t0 + TIMEOUT_S * 1000;
  const faults: Fault[] = [];
  const fault = (kind: string, detail: string): void => {
    faults.push({ kind, atS: since(), detail });
    process.stderr.write(`[chaos ${since()} s] ${kind}: ${detail}\n`);
  };
  const pg = await startPrivatePostgres(PG_PORT);
  const redis = await startPrivateRedis(REDIS_PORT).catch(async (e: unknown) => {
    await pg.destroy();
    throw e;
  });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-chaos-'));
  fs.mkdirSync(path.join(tmp, 'data'));
  const env: Record<string, string> = {
    DATABASE_URL: pg.url,
    REDIS_URL: redis.url,
    QUEUE_PREFIX: 'chaos',
    API_KEYS: API_KEY,
    DATA_ROOTS: path.join(tmp, 'data'),
    ARTIFACT_DIR: path.join(tmp, 'artifacts'),
    CODE_VERSION: 'chaos',
    PROGRESS_INTERVAL_MS: '300',
    RUN_BACKOFF_MS: '500',
    RECONCILE_INTERVAL_MS: '3000',
    WORKER_HEARTBEAT_MS: '1000',
    LOCK_DURATION_MS: '5000',
    STALLED_INTERVAL_MS: '2000',
  };
  const workers: TestWorker[] = [];
  const killed = new Set<string>();
  const allWorkers: TestWorker[] = [];
  let api: Awaited<ReturnType<typeof spawnApi>> | null = null;
  const db = (): Client => new Client({ connectionString: pg.url });
  const query = async <T>(sql: string, params: unknown[] = []): Promise<T[]> => {
    const c = db();
    await c.connect();
    try {
      return (await c.query(sql, params)).rows as T[];
    } finally {
      await c.end();
    }
  };
  const runs = (): Promise<RunRow[]> =>
    query<RunRow>('SELECT id, status, attempts, checkpoint, progress, worker_id FROM runs ORDER BY cell_key');
  const startWorker = async (id: string): Promise<TestWorker> => {
    const w = spawnWorker({ env }, { WORKER_ID: id });
    workers.push(w);
    allWorkers.push(w);
    await w.ready;
    return w;
  };
  /** Waits until a run is training past `step` (and returns it); null when every run has ended, or at the deadline. */
  const trainingRun = async (step: number): Promise<RunRow | null> => {
    while (Date.now() < deadline) {
      const all = await runs().catch(() => null);
      // A live worker's run (the killed worker's row says running until its job is taken over).
      const r = all?.find((x) => x.status === 'running' && (x.progress?.step ?? 0) >= step && !killed.has(x.worker_id ?? ''));
      if (r) return r;
      if (all?.length && all.every((x) => !['queued', 'running'].includes(x.status))) return null;
      await sleep(300);
    }
    return null;
  };

  try {
    api = await spawnApi(env, await freePort());
    await Promise.all([startWorker('chaos-a'), startWorker('chaos-b')]);
    const submitted = await http(api.url, 'POST', '/sweeps', {
      name: 'chaos',
      base: RUN,
      grid: { alpha: [0.5, 1], lambda_class: [0.5, 1] },
      seeds: [0, 1],
    });
    if (submitted.status !== 201) throw new Error(`POST /sweeps: ${submitted.status} ${submitted.text}`);
    const sweepId = (submitted.body as { id: string }).id;

    // 1. A worker killed without warning in the middle of a run; a new one takes its place.
    const victim = await trainingRun(10);
    if (victim) {
      const w = workers.find((x) => x.output().includes(`worker ${victim.worker_id} taking jobs`));
      if (w) {
        await w.kill('SIGKILL');
        killed.add(victim.worker_id ?? '');
        workers.splice(workers.indexOf(w), 1);
        fault('worker killed (SIGKILL)', `${victim.worker_id} while training run ${victim.id} at step ${victim.progress?.step}`);
        await startWorker('chaos-c');
      }
    }
    // 2. Redis restarted without persistence while runs train (every job, lock and registry key lost).
    const during = await trainingRun(5);
    await redis.restart(REDIS_DOWN_S * 1000);
    fault('Redis restarted empty', `${REDIS_DOWN_S} s down${during ? `, run ${during.id} training at step ${during.progress?.step}` : ''}`);
    // 3. The database away while runs train and finish.
    const before = await trainingRun(5);
    await pg.stop();
    fault('PostgreSQL stopped', `${DB_DOWN_S} s${before ? `, run ${before.id} training at step ${before.progress?.step}` : ''}`);
    await sleep(DB_DOWN_S * 1000);
    await pg.start();
    fault('PostgreSQL started', 'back');

    // The end: the sweep terminal, or the time bound.
    let sweepStatus = 'unknown';
    while (Date.now() < deadline) {
      const s = await query<{ status: string }>('SELECT status FROM sweeps WHERE id = $1', [sweepId]).catch(() => []);
      sweepStatus = s[0]?.status ?? sweepStatus;
      if (['succeeded', 'partial', 'failed', 'cancelled'].includes(sweepStatus)) break;
      await sleep(1000);
    }

    // Checks.
    const rows = await runs();
    const logs = allWorkers.map((w) => w.output()).join('\n');
    const recorded = Object.fromEntries(rows.map((r) => [r.id, (logs.match(new RegExp(`run ${r.id} succeeded in`, 'g')) ?? []).length]));
    const fromOutcome = Object.fromEntries(
      rows.map((r) => [r.id, (api!.output() + logs).match(new RegExp(`run ${r.id} finished from its stored outcome`, 'g'))?.length ?? 0]),
    );
    const dupPoints = await query<{ n: number }>(
      'SELECT count(*)::int AS n FROM (SELECT 1 FROM metric_points GROUP BY run_id, name, step HAVING count(*) > 1) d',
    );
    const finals = await query<{ run_id: string; n: number }>(
      "SELECT run_id, count(*)::int AS n FROM metric_points WHERE name = 'final.top1' GROUP BY run_id",
    );
    const openRows = await query<{ n: number }>(
      "SELECT (SELECT count(*) FROM runs WHERE status IN ('queued','running')) + (SELECT count(*) FROM sweeps WHERE status IN ('queued','running')) AS n",
    );
    const missingWeights = rows.filter((r) => !r.checkpoint || !fs.existsSync(r.checkpoint)).map((r) => r.id);
    const checks = {
      everyRunSucceeded: rows.length === 8 && rows.every((r) => r.status === 'succeeded'),
      // Each run's outcome written to its row once: by its worker, or by the reconciler from the stored outcome.
      recordedExactlyOnce: rows.every((r) => recorded[r.id] + fromOutcome[r.id] === 1),
      oneFinalScorePerRun: rows.every((r) => finals.find((f) => f.run_id === r.id)?.n === 1),
      noRowQueuedOrRunning: Number(openRows[0].n) === 0,
      noDuplicateMetricPoints: dupPoints[0].n === 0,
      everyFinalWeightsFilePresent: missingWeights.length === 0,
      sweepSucceeded: sweepStatus === 'succeeded',
    };
    const ok = Object.values(checks).every(Boolean);
    const all = api.output() + logs;
    const summary = {
      ok,
      seconds: since(),
      sweep: { id: sweepId, status: sweepStatus },
      runs: rows.map((r) => ({
        id: r.id,
        status: r.status,
        attempts: r.attempts,
        recordedBy: recorded[r.id] ? 'worker' : fromOutcome[r.id] ? 'reconciler' : 'nobody',
        finalWeights: r.checkpoint ? path.relative(env.ARTIFACT_DIR, r.checkpoint) : null,
      })),
      faults,
      checks,
      missingWeights,
      logs: {
        redisOutageLines: (all.match(/Redis unreachable since/g) ?? []).length,
        redisBackLines: (all.match(/Redis back after/g) ?? []).length,
        unhandledRedisErrors: (all.match(/Unhandled error event/g) ?? []).length,
        dbWaits: (logs.match(/the database is unreachable/g) ?? []).length,
        reconcilerPasses: (all.match(/reconciled: /g) ?? []).length,
        // What the reconcilers did, summed over their passes (e.g. enqueued 3, sweepsRequeued 1).
        reconciled: [...all.matchAll(/reconciled: ([^(\n]*)/g)]
          .flatMap((m) => m[1].split(', '))
          .reduce<Record<string, number>>((acc, part) => {
            const [k, n] = part.trim().split(' ');
            if (k && n) acc[k] = (acc[k] ?? 0) + Number(n);
            return acc;
          }, {}),
      },
    };
    console.log(JSON.stringify(summary, null, 2));
    if (!ok && process.env.CHAOS_KEEP) console.error(`kept ${tmp}`);
    return ok ? 0 : 1;
  } finally {
    for (const w of workers) await w.kill('SIGKILL');
    await api?.stop();
    await redis.destroy();
    await pg.destroy();
    if (!process.env.CHAOS_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e instanceof Error ? (e.stack ?? e.message) : e);
    process.exit(2);
  },
);
