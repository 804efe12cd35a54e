import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRepositories, OrchestrationDatabase, type NewRun, type Repositories } from '@ice/orchestration';
import {
  API_KEY,
  createTestEnv,
  deleteQueueKeys,
  freePort,
  http,
  spawnApi,
  spawnWorker,
  TINY_RUN,
  waitFor,
  type TestEnv,
} from './support/harness';

const stored = { run: { steps: 1 }, codeVersion: 'e2e', backend: null };
const newRun = (cellKey: string, seed: number): NewRun => ({
  cellKey,
  cell: { alpha: Number(cellKey.split('=')[1]) },
  seed,
  config: stored,
});

/** The repositories' guarantees, on the real PostgreSQL and on the embedded PGlite server. */
describe('repositories (e2e)', () => {
  describe('on PostgreSQL', () => {
    let t: TestEnv;
    let db: OrchestrationDatabase;
    let sweeps: Repositories['sweeps'];
    let runs: Repositories['runs'];
    let metrics: Repositories['metrics'];
    let evaluations: Repositories['evaluations'];
    beforeAll(async () => {
      t = await createTestEnv('store');
      db = await OrchestrationDatabase.open(t.config);
      ({ sweeps, runs, metrics, evaluations } = createRepositories(db));
    });
    afterAll(async () => {
      await db?.close();
      await t?.cleanup();
    });

    it('keeps one run per (sweep, grid cell, seed)', async () => {
      await expect(
        sweeps.create({ name: 'dup', spec: {}, axes: ['alpha'], runs: [newRun('alpha=1', 0), newRun('alpha=1', 0)] }),
      ).rejects.toThrow(/runs_sweep_cell_seed_key/);
      // The failed sweep left nothing behind (one transaction).
      expect((await sweeps.list({ name: 'dup' }, { limit: 10, offset: 0 })).total).toBe(0);
    });

    it('writes a run’s result once, however often its job is delivered', async () => {
      const created = await sweeps.create({
        name: 'once',
        spec: {},
        axes: ['alpha'],
        runs: [newRun('alpha=0.5', 0), newRun('alpha=0.5', 1)],
      });
      const id = created.runs[0].id;
      expect(await runs.start(id, 'w1')).toMatchObject({ status: 'running', attempts: 1 });
      expect(await runs.start(id, 'w2')).toMatchObject({ status: 'running', attempts: 2, workerId: 'w2' }); // redelivered after a crash
      const progress = { step: 5, totalSteps: 10, epoch: 0, loss: 1, imgPerSec: 1, etaSeconds: 1, lr: 0.1, at: new Date().toISOString() };
      await runs.recordProgress(id, progress, { loss: 1 }, null);
      await runs.recordProgress(id, progress, { loss: 0.9 }, null); // the same step reported by the second worker
      const finish = {
        metrics: { top1: 0.5 },
        checkpoint: '/x/final.safetensors',
        lastCheckpoint: null,
        resumedFromStep: 5,
        backend: 'cpu',
        durationMs: 10,
        steps: 10,
      };
      expect(await runs.finish(id, finish)).toBe(true);
      expect(await runs.finish(id, { ...finish, metrics: { top1: 0.9 } })).toBe(false);
      expect(await runs.start(id, 'w3')).toBeNull();
      const run = await runs.get(id);
      expect(run).toMatchObject({ status: 'succeeded', metrics: { top1: 0.5 }, config: { backend: 'cpu', codeVersion: 'e2e' } });
      expect(await metrics.series(id)).toEqual({ loss: [{ step: 5, value: 0.9 }], 'final.top1': [{ step: 10, value: 0.5 }] });
    });

    it('takes a finished outcome on a run that went back to the queue (the reconciler finishing it from disk), and lists what is unfinished', async () => {
      const run = await runs.create(newRun('', 7));
      await runs.start(run.id, 'w1');
      await runs.fail(run.id, 'requeued by the reconciler', false);
      expect((await runs.unfinished()).map((r) => r.id)).toContain(run.id);
      const finish = {
        metrics: { top1: 0.25 },
        checkpoint: '/x/final.safetensors',
        lastCheckpoint: null,
        resumedFromStep: null,
        backend: 'cpu',
        durationMs: 5,
        steps: 4,
      };
      expect(await runs.finish(run.id, finish)).toBe(true);
      expect(await runs.get(run.id)).toMatchObject({ status: 'succeeded', metrics: { top1: 0.25 } });
      expect((await runs.unfinished()).map((r) => r.id)).not.toContain(run.id);
      expect(await runs.finish(run.id, finish)).toBe(false);
    });

    it('cancels a queued run so that no worker starts it', async () => {
      const run = await runs.create(newRun('', 0));
      expect(await runs.requestCancel(run.id)).toMatchObject({ status: 'cancelled', cancelRequested: true });
      expect(await runs.start(run.id, 'w1')).toBeNull();
    });

    it('moves a sweep to running when a worker claims one of its runs, and never reopens a finished sweep', async () => {
      const { sweep, runs: created } = await sweeps.create({ name: 'life', spec: {}, axes: ['alpha'], runs: [newRun('alpha=1', 0)] });
      expect(await sweeps.countsOf(sweep.id)).toEqual({ queued: 1, running: 0, succeeded: 0, failed: 0, cancelled: 0 });
      await runs.start(created[0].id, 'w1');
      expect(await sweeps.get(sweep.id)).toMatchObject({ status: 'running', finishedAt: null });
      expect(await sweeps.countsOf(sweep.id)).toMatchObject({ queued: 0, running: 1 });
      expect(await sweeps.setStatus(sweep.id, 'partial')).toBe(true);
      expect(await sweeps.setStatus(sweep.id, 'running')).toBe(false);
      expect(await sweeps.get(sweep.id)).toMatchObject({ status: 'partial', finishedAt: expect.any(Date) });
      expect((await runs.ofSweep(sweep.id)).map((r) => r.id)).toEqual([created[0].id]);
      expect((await runs.list({ sweepId: sweep.id, status: 'running' }, { limit: 5, offset: 0 })).total).toBe(1);
    });

    it('dates each status change, not each update (status_changed_at, the time a replayed status event carries)', async () => {
      const { sweep, runs: created } = await sweeps.create({ name: 'dated', spec: {}, axes: ['alpha'], runs: [newRun('alpha=2', 0)] });
      const id = created[0].id;
      const queuedAt = (await runs.get(id))!.statusChangedAt;
      expect(queuedAt).toBeInstanceOf(Date);
      await new Promise((r) => setTimeout(r, 30));
      const startedAt = (await runs.start(id, 'w1'))!.statusChangedAt;
      expect(startedAt.getTime()).toBeGreaterThan(queuedAt.getTime());
      expect((await sweeps.get(sweep.id))!.statusChangedAt.getTime()).toBeGreaterThanOrEqual(startedAt.getTime());
      await new Promise((r) => setTimeout(r, 30));
      // Progress and a redelivery (running → running) are not status changes.
      const progress = {
        step: 1,
        totalSteps: 10,
        epoch: 0,
        loss: 1,
        imgPerSec: 1,
        etaSeconds: null,
        lr: 0.1,
        at: new Date().toISOString(),
      };
      await runs.recordProgress(id, progress, { loss: 1 }, null);
      await runs.start(id, 'w2');
      expect((await runs.get(id))!.statusChangedAt).toEqual(startedAt);
      await runs.fail(id, 'boom', true);
      const failed = (await runs.get(id))!;
      expect(failed.statusChangedAt.getTime()).toBeGreaterThan(startedAt.getTime());
      expect(failed.statusChangedAt).toEqual(failed.finishedAt);
    });

    it('sends a failed attempt back to the queue while retries remain, and fails the run after the last', async () => {
      const run = await runs.create(newRun('', 1));
      await runs.start(run.id, 'w1');
      await runs.fail(run.id, 'boom', false);
      expect(await runs.get(run.id)).toMatchObject({ status: 'queued', error: 'boom', finishedAt: null });
      expect(await runs.start(run.id, 'w2')).toMatchObject({ status: 'running', attempts: 2, error: null });
      await runs.fail(run.id, 'boom again', true);
      expect(await runs.get(run.id)).toMatchObject({ status: 'failed', error: 'boom again', finishedAt: expect.any(Date) });
      expect(await runs.start(run.id, 'w3')).toBeNull();
      // A finished run is not cancelled afterwards.
      expect(await runs.markCancelled(run.id)).toBe(false);
    });

    it('flags a running run, which its worker then marks cancelled once', async () => {
      const run = await runs.create(newRun('', 2));
      await runs.start(run.id, 'w1');
      expect(await runs.requestCancel(run.id)).toMatchObject({ status: 'running', cancelRequested: true });
      expect(await runs.start(run.id, 'w2')).toBeNull(); // a redelivery does not restart it
      expect(await runs.markCancelled(run.id)).toBe(true);
      expect(await runs.markCancelled(run.id)).toBe(false);
      expect(await runs.get(run.id)).toMatchObject({ status: 'cancelled', finishedAt: expect.any(Date) });
    });

    it('keeps one metric point per (run, name, step), leaves non-finite values out, and filters by name', async () => {
      const run = await runs.create(newRun('', 3));
      await metrics.add(run.id, 1, { loss: 2, lr: 0.1, bad: Number.NaN });
      await metrics.add(run.id, 2, { loss: 1.5, lr: 0.2, worse: Infinity });
      await metrics.add(run.id, 1, { loss: 1.9 });
      expect(await metrics.series(run.id)).toEqual({
        loss: [
          { step: 1, value: 1.9 },
          { step: 2, value: 1.5 },
        ],
        lr: [
          { step: 1, value: 0.1 },
          { step: 2, value: 0.2 },
        ],
      });
      expect(Object.keys(await metrics.series(run.id, ['lr']))).toEqual(['lr']);
    });

    it('writes an evaluation’s result and its rows once, in the order of the methods', async () => {
      const e = await evaluations.create({ protocol: 'segmentation' }, null, 'segmentation');
      expect(await evaluations.start(e.id, 'w1')).toBe(true);
      await evaluations.recordProgress(e.id, { done: 1, total: 2, at: new Date().toISOString() });
      const row = (method: string, imagesPerSecond: number) => ({
        method,
        label: method,
        metrics: { miou: 0.5 },
        images: 2,
        imagesPerSecond,
        seconds: 1,
      });
      const finish = { result: { protocol: 'segmentation' }, rows: [row('rollout', 3), row('ice', Infinity)], durationMs: 12.4 };
      expect(await evaluations.finish(e.id, finish)).toBe(true);
      expect(await evaluations.finish(e.id, { ...finish, rows: [row('gradcam', 1)] })).toBe(false);
      expect(await evaluations.start(e.id, 'w2')).toBe(false);
      expect(await evaluations.get(e.id)).toMatchObject({ status: 'succeeded', durationMs: 12, progress: { done: 2, total: 2 } });
      const rows = (await evaluations.results([e.id])).get(e.id)!;
      expect(rows.map((r) => [r.method, r.position, r.imagesPerSecond])).toEqual([
        ['rollout', 0, 3],
        ['ice', 1, null], // Infinity is "not measurable"
      ]);
      expect(await evaluations.fail(e.id, 'late', true)).toBe(false);
    });

    it('cancels a queued evaluation at once, flags a running one, and retries a failed one until the last attempt', async () => {
      const queued = await evaluations.create({}, null, 'corloc');
      expect(await evaluations.requestCancel(queued.id)).toMatchObject({ status: 'cancelled', cancelRequested: true });
      expect(await evaluations.start(queued.id, 'w1')).toBe(false);

      const running = await evaluations.create({}, null, 'corloc');
      await evaluations.start(running.id, 'w1');
      expect(await evaluations.requestCancel(running.id)).toMatchObject({ status: 'running', cancelRequested: true });
      expect(await evaluations.markCancelled(running.id)).toBe(true);

      const failing = await evaluations.create({}, null, 'jaccard');
      await evaluations.start(failing.id, 'w1');
      expect(await evaluations.fail(failing.id, 'boom', false)).toBe(true);
      expect(await evaluations.get(failing.id)).toMatchObject({ status: 'queued', error: 'boom' });
      expect(await evaluations.start(failing.id, 'w2')).toBe(true);
      expect(await evaluations.fail(failing.id, 'boom', true)).toBe(true);
      expect(await evaluations.get(failing.id)).toMatchObject({ status: 'failed', attempts: 2, finishedAt: expect.any(Date) });

      const listed = await evaluations.list({ protocol: 'corloc', status: 'cancelled' }, { limit: 10, offset: 0 });
      expect(listed.items.map((x) => x.id).sort()).toEqual([queued.id, running.id].sort());
    });
  });

  describe('embedded (no DATABASE_URL)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-pglite-'));
    const prefix = `e2e-embedded-${process.pid}`;
    afterAll(async () => {
      fs.rmSync(dir, { recursive: true, force: true });
      await deleteQueueKeys(prefix);
    });

    it('hosts PGlite in the API process, serves a worker over TCP, and keeps data across restarts', async () => {
      const env = {
        DATA_DIR: dir,
        ARTIFACT_DIR: path.join(dir, 'artifacts'),
        EMBEDDED_PG_PORT: String(await freePort()),
        QUEUE_PREFIX: prefix,
        API_KEYS: API_KEY,
        CODE_VERSION: 'e2e',
        DATABASE_URL: '',
      };
      const port = await freePort();
      let api = await spawnApi(env, port);
      const worker = spawnWorker({ env });
      try {
        await worker.ready;
        const run = await http(api.url, 'POST', '/experiments', TINY_RUN);
        expect(run.status).toBe(201);
        await waitFor(
          'the run to succeed',
          async () => (await http(api.url, 'GET', `/runs/${run.body.id}`)).body.status === 'succeeded',
          90_000,
        );
        await worker.stop();
        await api.stop();

        api = await spawnApi(env, port);
        expect((await http(api.url, 'GET', `/runs/${run.body.id}`)).body).toMatchObject({
          status: 'succeeded',
          config: { codeVersion: 'e2e' },
        });
        expect(fs.existsSync(path.join(dir, 'pglite'))).toBe(true);
      } finally {
        await worker.kill();
        await api.stop();
      }
    }, 150_000);
  });
});
