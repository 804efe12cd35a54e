/* eslint-disable @typescript-eslint/no-unsafe-argument -- response bodies are untyped JSON of the API under test */
import * as fs from 'node:fs';
import * as path from 'node:path';
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
 * A worker killed (SIGKILL) in the middle of a run: its job's lock expires, another worker takes
 * the job over and resumes from the last checkpoint, and the run ends with one result.
 */
describe('worker crash and resume (e2e)', () => {
  let t: TestEnv;
  let api: TestApi;
  const workers: TestWorker[] = [];
  // Short locks so that the dead worker's job is declared stalled within seconds, not 30 s.
  const fastStall = { LOCK_DURATION_MS: '3000', STALLED_INTERVAL_MS: '1000' };

  beforeAll(async () => {
    t = await createTestEnv('recovery');
    api = await startApi(t);
  });
  afterAll(async () => {
    for (const w of workers) await w.kill();
    await api?.close();
    await t?.cleanup();
  });

  it('resumes a killed worker’s run on another worker from its checkpoint, with one result', async () => {
    const first = spawnWorker(t, { ...fastStall, WORKER_ID: 'worker-a' });
    workers.push(first);
    await first.ready;

    const submitted = await http(api.url, 'POST', '/experiments', { ...TINY_RUN, steps: 400, checkpointEvery: 10 });
    expect(submitted.status).toBe(201);
    const id = submitted.body.id as string;
    const last = path.join(t.artifactDir, 'runs', id, 'last.safetensors');

    // Train past at least two checkpoints, then kill the worker without warning.
    await readSse(`${api.url}/runs/${id}/events`, {
      timeoutMs: 90_000,
      until: (e) => e.event === 'run.progress' && e.data.progress.step >= 25,
    });
    await waitFor('a checkpoint on disk', () => Promise.resolve(fs.existsSync(last)), 10_000);
    const before = await http(api.url, 'GET', `/runs/${id}`);
    expect(before.body).toMatchObject({ status: 'running', workerId: 'worker-a', attempts: 1 });
    await first.kill('SIGKILL');
    const killedAt = (await http(api.url, 'GET', `/runs/${id}`)).body.progress.step as number;

    const second = spawnWorker(t, { ...fastStall, WORKER_ID: 'worker-b' });
    workers.push(second);
    await second.ready;

    await readSse(`${api.url}/runs/${id}/events`, {
      timeoutMs: 150_000,
      until: (e) => e.event === 'run.status' && ['succeeded', 'failed'].includes(e.data.status),
    });
    const run = (await http(api.url, 'GET', `/runs/${id}`)).body;
    expect(run).toMatchObject({ status: 'succeeded', workerId: 'worker-b', attempts: 2 });
    // Resumed from a checkpoint written by the first worker, not from step 0.
    expect(run.resumedFromStep).toBeGreaterThanOrEqual(10);
    // Progress reports are throttled, so the stored step may trail the checkpoint on disk by up to one interval.
    expect(run.resumedFromStep).toBeLessThanOrEqual(killedAt + 10);
    expect(run.resumedFromStep % 10).toBe(0);
    expect(second.output()).toMatch(new RegExp(`resuming from .*last\\.safetensors at step ${run.resumedFromStep}`));

    // One run row and one final result; the series has each step once even where both workers reported it.
    const runs = await http(api.url, 'GET', '/runs');
    expect(runs.body.total).toBe(1);
    const series = (await http(api.url, 'GET', `/runs/${id}/metrics`)).body.series as Record<string, { step: number }[]>;
    expect(series['final.top1']).toHaveLength(1);
    const steps = series.loss.map((p) => p.step);
    expect(new Set(steps).size).toBe(steps.length);
    expect(Math.max(...steps)).toBe(400);
  }, 240_000);

  it('hands a running run back when its worker is stopped (SIGTERM), not as a failed attempt, and another worker resumes it', async () => {
    // Only this test's workers take jobs.
    for (const w of workers.splice(0)) await w.stop();
    const first = spawnWorker(t, { WORKER_ID: 'worker-c' });
    workers.push(first);
    await first.ready;
    const submitted = await http(api.url, 'POST', '/experiments', { ...TINY_RUN, steps: 200, checkpointEvery: 10 });
    const id = submitted.body.id as string;
    await readSse(`${api.url}/runs/${id}/events`, {
      timeoutMs: 90_000,
      until: (e) => e.event === 'run.progress' && e.data.progress.step >= 15,
    });
    await first.stop(); // graceful: the job is handed back before the worker exits
    expect(first.output()).toMatch(new RegExp(`run ${id}: worker shutting down; handing the job back`));
    const handedBack = (await http(api.url, 'GET', `/runs/${id}`)).body;
    expect(handedBack).toMatchObject({ status: 'queued', attempts: 1, error: expect.stringMatching(/worker shut down/) });

    const second = spawnWorker(t, { WORKER_ID: 'worker-d' });
    workers.push(second);
    await second.ready;
    await readSse(`${api.url}/runs/${id}/events`, {
      timeoutMs: 150_000,
      until: (e) => e.event === 'run.status' && ['succeeded', 'failed'].includes(e.data.status),
    });
    const run = (await http(api.url, 'GET', `/runs/${id}`)).body;
    expect(run).toMatchObject({ status: 'succeeded', workerId: 'worker-d', attempts: 2, error: null });
    expect(run.resumedFromStep).toBeGreaterThanOrEqual(10);
  }, 240_000);
});
