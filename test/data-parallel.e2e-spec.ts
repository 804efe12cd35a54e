/* eslint-disable @typescript-eslint/no-unsafe-argument -- response bodies are untyped JSON of the API under test */
import * as fs from 'node:fs';
import * as path from 'node:path';
import IORedis from 'ioredis';
import {
  createTestEnv,
  http,
  readSse,
  REDIS_URL,
  spawnWorker,
  startApi,
  TINY_RUN,
  type TestApi,
  type TestEnv,
  type TestWorker,
} from './support/harness';

/**
 * Data-parallel runs: worldSize 2 is two rank jobs, taken by two workers, averaging gradients
 * through Redis; the run ends with one result row written by rank 0.
 */
describe('data-parallel runs (e2e)', () => {
  let t: TestEnv;
  let api: TestApi;
  const workers: TestWorker[] = [];

  beforeAll(async () => {
    t = await createTestEnv('dataparallel', { ALLREDUCE_TIMEOUT_MS: '60000' });
    api = await startApi(t);
    for (const id of ['worker-a', 'worker-b']) workers.push(spawnWorker(t, { WORKER_ID: id }));
    await Promise.all(workers.map((w) => w.ready));
  }, 120_000);
  afterAll(async () => {
    for (const w of workers) await w.stop();
    await api?.close();
    await t?.cleanup();
  });

  const allReduceKeys = async (): Promise<string[]> => {
    const redis = new IORedis(REDIS_URL);
    try {
      return await redis.keys(`${t.env.QUEUE_PREFIX}:allreduce:*`);
    } finally {
      await redis.quit();
    }
  };

  it('trains a worldSize 2 run on two workers to one result', async () => {
    const submitted = await http(api.url, 'POST', '/experiments', { ...TINY_RUN, worldSize: 2 });
    expect(submitted.status).toBe(201);
    const id = submitted.body.id as string;

    await readSse(`${api.url}/runs/${id}/events`, {
      timeoutMs: 150_000,
      until: (e) => e.event === 'run.status' && ['succeeded', 'failed', 'cancelled'].includes(e.data.status),
    });
    const run = (await http(api.url, 'GET', `/runs/${id}`)).body;
    expect(run).toMatchObject({ status: 'succeeded', attempts: 1, error: null });
    expect(run.metrics.top1).toBeGreaterThanOrEqual(0);

    // One row, one final result; each step's progress once (rank 0's).
    expect((await http(api.url, 'GET', '/runs')).body.total).toBe(1);
    const series = (await http(api.url, 'GET', `/runs/${id}/metrics`)).body.series as Record<string, { step: number }[]>;
    expect(series['final.top1']).toHaveLength(1);
    const steps = series.loss.map((p) => p.step);
    expect(new Set(steps).size).toBe(steps.length);
    expect(Math.max(...steps)).toBe(TINY_RUN.steps);

    // Each rank trained on its own worker, into its own directory; only rank 0 wrote final weights.
    const dir = path.join(t.artifactDir, 'runs', id);
    expect(fs.existsSync(path.join(dir, 'final.safetensors'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'rank-1', 'last.safetensors'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'rank-1', 'final.safetensors'))).toBe(false);
    const logs = workers.map((w) => w.output());
    const byRank = [0, 1].map((r) =>
      logs.findIndex((o) => o.includes(`run ${id} rank ${r}/2 finished`) || (r === 0 && o.includes(`run ${id} succeeded`))),
    );
    expect(byRank.every((i) => i >= 0)).toBe(true);
    expect(byRank[0]).not.toBe(byRank[1]);
    expect(await allReduceKeys()).toEqual([]);
  }, 180_000);

  it('runs a sweep of worldSize 2 cells, each cell as two rank jobs', async () => {
    const submitted = await http(api.url, 'POST', '/sweeps', {
      name: 'dp',
      base: { ...TINY_RUN, worldSize: 2 },
      grid: { alpha: [0.5, 1] },
    });
    expect(submitted.status).toBe(201);
    const id = submitted.body.id as string;
    const events = await readSse(`${api.url}/sweeps/${id}/events`, {
      timeoutMs: 200_000,
      until: (e) => e.event === 'sweep.status' && ['succeeded', 'partial', 'failed', 'cancelled'].includes(e.data.status),
    });
    expect(events[events.length - 1].data).toMatchObject({ status: 'succeeded', counts: { succeeded: 2, failed: 0 } });
    const sweep = (await http(api.url, 'GET', `/sweeps/${id}`)).body;
    expect(sweep.runs).toHaveLength(2);
    for (const r of sweep.runs) expect(r).toMatchObject({ status: 'succeeded', attempts: 1 });
    expect(await allReduceKeys()).toEqual([]);
  }, 240_000);
});
