/* eslint-disable @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-return -- response bodies are untyped JSON of the API under test */
import {
  createTestEnv,
  http,
  readSse,
  spawnWorker,
  startApi,
  TINY_RUN,
  waitFor,
  type TestApi,
  type TestEnv,
  type TestWorker,
} from './support/harness';

/**
 * Workers in the registry, with one real worker process: data-parallel runs wider than the free
 * slots are refused with 409; a deterministic failure (a non-finite loss) is not retried; and a
 * killed worker's job is taken back by the next worker the moment it starts, not after BullMQ's
 * 30 s lock and stall check.
 */
describe('admission, failure classes and the worker registry (e2e)', () => {
  let t: TestEnv;
  let api: TestApi;
  const workers: TestWorker[] = [];
  // Long locks and stall checks (the defaults): anything that happens in seconds is the registry's doing.
  const env = { WORKER_HEARTBEAT_MS: '500', LOCK_DURATION_MS: '30000', STALLED_INTERVAL_MS: '30000', RUN_ATTEMPTS: '3' };

  beforeAll(async () => {
    t = await createTestEnv('admission', env);
    api = await startApi(t);
    workers.push(spawnWorker(t, { ...env, WORKER_ID: 'worker-a' }));
    await workers[0].ready;
  }, 120_000);
  afterAll(async () => {
    for (const w of workers) await w.kill();
    await api?.close();
    await t?.cleanup();
  });

  it('refuses a worldSize wider than the free worker slots with 409 naming the numbers; one rank queues as always', async () => {
    const run = await http(api.url, 'POST', '/experiments', { ...TINY_RUN, worldSize: 2 });
    expect(run.status).toBe(409);
    expect(run.body.code).toBe('NO_CAPACITY');
    expect(run.body.message).toMatch(
      /^worldSize 2 needs 2 free training slots at once, and 1 is free \(1 live worker with 1 slot, 0 running a job, 0 queued ahead\)/,
    );
    const sweep = await http(api.url, 'POST', '/sweeps', { base: TINY_RUN, grid: { alpha: [0.5], worldSize: [1, 3] } });
    expect(sweep.status).toBe(409);
    expect(sweep.body.message).toMatch(/^worldSize 3 needs 3 free training slots/);
    expect((await http(api.url, 'GET', '/runs')).body.total).toBe(0); // nothing stored
  });

  it('does not retry a deterministic failure: a non-finite loss fails the run on its first attempt', async () => {
    const submitted = await http(api.url, 'POST', '/experiments', { ...TINY_RUN, optimizer: { ...TINY_RUN.optimizer, lr: 1e308 } });
    expect(submitted.status).toBe(201);
    const id = submitted.body.id as string;
    await readSse(`${api.url}/runs/${id}/events`, {
      timeoutMs: 90_000,
      until: (e) => e.event === 'run.status' && ['succeeded', 'failed'].includes(e.data.status),
    });
    const run = (await http(api.url, 'GET', `/runs/${id}`)).body;
    expect(run).toMatchObject({ status: 'failed', attempts: 1 });
    expect(run.error).toMatch(/loss is (NaN|-?Infinity) at step \d+/);
    expect(workers[0].output()).toMatch(new RegExp(`run ${id} attempt 1 failed: loss is`));
    expect(workers[0].output()).not.toMatch(new RegExp(`run ${id} attempt 1 failed \\(will be retried\\)`));
  }, 120_000);

  it("takes a killed worker's job back the moment the next worker starts", async () => {
    const submitted = await http(api.url, 'POST', '/experiments', { ...TINY_RUN, steps: 20_000, checkpointEvery: 10 });
    const id = submitted.body.id as string;
    await readSse(`${api.url}/runs/${id}/events`, {
      timeoutMs: 90_000,
      until: (e) => e.event === 'run.progress' && e.data.progress.step >= 12,
    });
    await workers[0].kill('SIGKILL');
    const b = spawnWorker(t, { ...env, WORKER_ID: 'worker-b' });
    workers.push(b);
    await b.ready;
    const readyAt = Date.now();
    const resumed = await waitFor(
      'the run to be taken over by worker-b',
      async () => {
        const r = (await http(api.url, 'GET', `/runs/${id}`)).body;
        return r.workerId === 'worker-b' && r.status === 'running' ? r : undefined;
      },
      25_000,
      100,
    );
    const tookMs = Date.now() - readyAt;
    console.log(JSON.stringify({ takeover: { msAfterNewWorkerReady: tookMs, lockDurationMs: 30_000 } }));
    expect(resumed.attempts).toBe(2);
    expect(b.output()).toMatch(/worker worker-a stopped beating: its job training\/run-.* is back in the waiting list/);
    // Far below the 30 s lock: the registry, not BullMQ's stall check, brought it back.
    expect(tookMs).toBeLessThan(15_000);
    expect((await http(api.url, 'POST', `/runs/${id}/cancel`, {})).status).toBe(202);
  }, 180_000);
});
