/* eslint-disable @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-explicit-any -- response bodies are untyped JSON of the API under test */
import * as fs from 'node:fs';
import * as path from 'node:path';
import IORedis from 'ioredis';
import { readWeights, type StateDict } from '@ice/core';
import {
  createTestEnv,
  http,
  readSse,
  REDIS_URL,
  spawnWorker,
  startApi,
  TINY_RUN,
  waitFor,
  type TestApi,
  type TestEnv,
  type TestWorker,
} from './support/harness';

/**
 * Data-parallel runs: worldSize W is W rank jobs, taken by W workers, averaging gradients over a
 * TCP ring (Redis only for the rendezvous); the run ends with one result row written by rank 0.
 */

const weightsOf = (file: string): StateDict => {
  const t = readWeights(file).tensors;
  for (const k of [...t.keys()]) if (k.startsWith('optimizer.')) t.delete(k);
  return t;
};

/** Largest |a − b| over the weights; `skip(name, i, size)` leaves elements out. */
function maxAbsDiff(a: StateDict, b: StateDict, skip: (name: string, i: number, size: number) => boolean = () => false): number {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  let m = 0;
  for (const [k, ta] of a) {
    const tb = b.get(k)!;
    for (let i = 0; i < ta.data.length; i++)
      if (!skip(k, i, ta.data.length)) m = Math.max(m, Math.abs(Number(ta.data[i]) - Number(tb.data[i])));
  }
  return m;
}

/** The attention key bias has a zero gradient up to rounding noise, which AdamW amplifies to ±lr per step (see libs/orchestration data-parallel.spec.ts). */
const isKeyBias = (name: string, i: number, size: number): boolean => /attn\.qkv\.bias$/.test(name) && i >= size / 3 && i < (2 * size) / 3;

async function allReduceKeys(prefix: string): Promise<string[]> {
  const redis = new IORedis(REDIS_URL);
  try {
    return await redis.keys(`${prefix}:allreduce:*`);
  } finally {
    await redis.quit();
  }
}

describe('data-parallel runs (e2e)', () => {
  let t: TestEnv;
  let api: TestApi;
  const workers: TestWorker[] = [];

  beforeAll(async () => {
    t = await createTestEnv('dataparallel', { ALLREDUCE_TIMEOUT_MS: '60000' });
    api = await startApi(t);
    for (const id of ['worker-a', 'worker-b', 'worker-c']) workers.push(spawnWorker(t, { WORKER_ID: id }));
    await Promise.all(workers.map((w) => w.ready));
  }, 120_000);
  afterAll(async () => {
    for (const w of workers) await w.stop();
    await api?.close();
    await t?.cleanup();
  });

  async function runToEnd(body: Record<string, unknown>, timeoutMs = 150_000): Promise<{ id: string; run: any }> {
    const submitted = await http(api.url, 'POST', '/experiments', body);
    expect(submitted.status).toBe(201);
    const id = submitted.body.id as string;
    await readSse(`${api.url}/runs/${id}/events`, {
      timeoutMs,
      until: (e) => e.event === 'run.status' && ['succeeded', 'failed', 'cancelled'].includes(e.data.status),
    });
    return { id, run: (await http(api.url, 'GET', `/runs/${id}`)).body };
  }

  it('trains a worldSize 2 run on two workers to one result, the ranks bit-identical', async () => {
    const { id, run } = await runToEnd({ ...TINY_RUN, worldSize: 2 });
    expect(run).toMatchObject({ status: 'succeeded', attempts: 1, error: null });
    expect(run.metrics.top1).toBeGreaterThanOrEqual(0);

    // One row, one final result; each step's progress once (rank 0's).
    expect((await http(api.url, 'GET', '/runs')).body.total).toBe(1);
    const series = (await http(api.url, 'GET', `/runs/${id}/metrics`)).body.series as Record<string, { step: number }[]>;
    expect(series['final.top1']).toHaveLength(1);
    const steps = series.loss.map((p) => p.step);
    expect(new Set(steps).size).toBe(steps.length);
    expect(Math.max(...steps)).toBe(TINY_RUN.steps);

    // Each rank trained on its own worker, into its own directory; only rank 0 wrote final weights, the same bits as rank 1's.
    const dir = path.join(t.artifactDir, 'runs', id);
    expect(fs.existsSync(path.join(dir, 'rank-1', 'final.safetensors'))).toBe(false);
    expect(maxAbsDiff(weightsOf(path.join(dir, 'final.safetensors')), weightsOf(path.join(dir, 'rank-1', 'last.safetensors')))).toBe(0);
    const logs = workers.map((w) => w.output());
    const byRank = [0, 1].map((r) =>
      logs.findIndex((o) => o.includes(`run ${id} rank ${r}/2 finished`) || (r === 0 && o.includes(`run ${id} succeeded`))),
    );
    expect(byRank.every((i) => i >= 0)).toBe(true);
    expect(byRank[0]).not.toBe(byRank[1]);
    // The ranks met over TCP (the worker logs the ring it formed), and the rendezvous keys are gone.
    expect(logs.join('\n')).toMatch(new RegExp(`run ${id} rank 1/2: all-reduce ring formed`));
    expect(await allReduceKeys(t.env.QUEUE_PREFIX)).toEqual([]);
  }, 180_000);

  it('a worldSize 3 run ends bit-identical across ranks and within float tolerance of one rank at the same global batch', async () => {
    // Classification with a per-sample mean loss (no mixup): the mean of the ranks' gradients is the gradient of the union batch.
    const classify = {
      mode: 'classify',
      steps: 3,
      checkpointEvery: 2,
      seed: 7,
      data: { batchSize: 4, evalLimit: 8 },
      optimizer: { warmupSteps: 1, lr: 1e-3, mixup: false },
    };
    const three = await runToEnd({ ...classify, worldSize: 3 });
    expect(three.run).toMatchObject({ status: 'succeeded', attempts: 1 });
    const one = await runToEnd({ ...classify, data: { ...classify.data, batchSize: 12 } });
    expect(one.run).toMatchObject({ status: 'succeeded' });
    const dir = path.join(t.artifactDir, 'runs', three.id);
    const rank0 = weightsOf(path.join(dir, 'final.safetensors'));
    for (const r of [1, 2]) expect(maxAbsDiff(rank0, weightsOf(path.join(dir, `rank-${r}`, 'last.safetensors')))).toBe(0);
    const single = weightsOf(path.join(t.artifactDir, 'runs', one.id, 'final.safetensors'));
    expect(maxAbsDiff(rank0, single, isKeyBias)).toBeLessThan(1e-6);
    expect(maxAbsDiff(rank0, single)).toBeLessThan(3 * 1e-3);
    expect(await allReduceKeys(t.env.QUEUE_PREFIX)).toEqual([]);
  }, 240_000);

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
    expect(await allReduceKeys(t.env.QUEUE_PREFIX)).toEqual([]);
  }, 240_000);
});

describe('data-parallel run with a rank killed mid-step (e2e)', () => {
  let t: TestEnv;
  let api: TestApi;
  const workers: TestWorker[] = [];
  // Short locks so that the dead worker's job is declared stalled within seconds; a long all-reduce
  // timeout, so that anything that happens in seconds is the ring's doing, not a timeout's.
  const env = {
    LOCK_DURATION_MS: '3000',
    STALLED_INTERVAL_MS: '1000',
    ALLREDUCE_TIMEOUT_MS: '120000',
    ALLREDUCE_HEARTBEAT_TIMEOUT_MS: '10000',
  };

  beforeAll(async () => {
    t = await createTestEnv('dpkill', env);
    api = await startApi(t);
    for (const id of ['worker-a', 'worker-b']) workers.push(spawnWorker(t, { WORKER_ID: id }));
    await Promise.all(workers.map((w) => w.ready));
  }, 120_000);
  afterAll(async () => {
    for (const w of workers) await w.kill();
    await api?.close();
    await t?.cleanup();
  });

  /** When a line matching `re` first shows in a worker's output (polled every 100 ms). */
  const seen = (w: () => string, re: RegExp, timeoutMs: number): Promise<number> =>
    waitFor(`${re}`, () => Promise.resolve(re.test(w()) && Date.now()), timeoutMs, 100);

  it('the surviving rank fails its attempt within seconds, and the group recovers within seconds of the rank’s return', async () => {
    const submitted = await http(api.url, 'POST', '/experiments', { ...TINY_RUN, steps: 300, checkpointEvery: 10, worldSize: 2 });
    expect(submitted.status).toBe(201);
    const id = submitted.body.id as string;
    await readSse(`${api.url}/runs/${id}/events`, {
      timeoutMs: 120_000,
      until: (e) => e.event === 'run.progress' && e.data.progress.step >= 15,
    });
    const holder = (r: number): TestWorker => workers.find((w) => w.output().includes(`run ${id} rank ${r}/2:`))!;
    const [survivor, victim] = [holder(0), holder(1)];
    expect(survivor).toBeDefined();
    expect(victim).toBeDefined();
    expect(survivor).not.toBe(victim);
    await victim.kill('SIGKILL');
    const killedAt = Date.now();

    // Rank 0 hears the sockets close at once (no 10 s heartbeat, no 120 s timeout) and fails its attempt, to be retried.
    const failedAt = await seen(
      () => survivor.output(),
      new RegExp(`run ${id} rank 0/2 attempt 1 failed \\(will be retried\\): .*lost`),
      30_000,
    );
    expect(failedAt - killedAt).toBeLessThan(8000);

    // The rank comes back: a new worker. The dead worker's job is declared stalled and redelivered; both ranks resume from their checkpoints.
    const back = spawnWorker(t, { ...env, WORKER_ID: 'worker-c' });
    workers.push(back);
    await back.ready;
    const resumed = new RegExp(`run ${id} rank 1/2: resuming from .* at step (\\d+)`);
    const rank1At = await seen(() => workers.map((w) => w.output()).join('\n'), resumed, 60_000);
    const resumedStep = Number(resumed.exec(workers.map((w) => w.output()).join('\n'))![1]);
    expect(resumedStep % 10).toBe(0);
    // The group re-forms as soon as the last rank joins: each rank logs how long it waited from joining to a connected ring,
    // and the one that came last (the returning rank, unless rank 0's retry was slower) waited next to nothing.
    const formed = new RegExp(
      `run ${id} rank [01]/2: all-reduce ring formed \\(round ([2-9]|\\d\\d+), \\d+ tr(?:y|ies), (\\d+) ms\\)`,
      'g',
    );
    const all = (): string => workers.map((w) => w.output()).join('\n');
    const formedAt = await seen(all, new RegExp(formed.source), 90_000);
    await waitFor('both ranks to log the new ring', () => Promise.resolve([...all().matchAll(formed)].length >= 2), 10_000, 100);
    const waits = [...all().matchAll(formed)].map((m) => Number(m[2]));
    expect(Math.min(...waits)).toBeLessThan(5000);
    // And the run moves on (progress stamped after the return; the stream first replays the snapshot from before the kill).
    await readSse(`${api.url}/runs/${id}/events`, {
      timeoutMs: 60_000,
      until: (e) => e.event === 'run.progress' && Date.parse(e.data.progress.at) > formedAt - 1000 && e.data.progress.step > resumedStep,
    });
    // Rank 1's job start to the group's first step: loading the data and a first step, no waiting on a timeout.
    expect(formedAt - rank1At).toBeLessThan(60_000);
    console.log(
      `rank killed at step ≥ 15: survivor failed its attempt ${failedAt - killedAt} ms after the kill; rank 1 resumed at step ${resumedStep}; ` +
        `ring re-formed ${formedAt - rank1At} ms after rank 1's job started (waits from joining to a connected ring: ${waits.join(', ')} ms)`,
    );

    await readSse(`${api.url}/runs/${id}/events`, {
      timeoutMs: 180_000,
      until: (e) => e.event === 'run.status' && ['succeeded', 'failed'].includes(e.data.status),
    });
    const run = (await http(api.url, 'GET', `/runs/${id}`)).body;
    expect(run).toMatchObject({ status: 'succeeded', attempts: 2 });
    expect(run.resumedFromStep).toBe(resumedStep);
    const dir = path.join(t.artifactDir, 'runs', id);
    expect(maxAbsDiff(weightsOf(path.join(dir, 'final.safetensors')), weightsOf(path.join(dir, 'rank-1', 'last.safetensors')))).toBe(0);
    expect(await allReduceKeys(t.env.QUEUE_PREFIX)).toEqual([]);
  }, 420_000);
});
