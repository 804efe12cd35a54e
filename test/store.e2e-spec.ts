import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { OrchestrationStore, type NewRun } from '@ice/orchestration';
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

/** The store's guarantees, on the real PostgreSQL and on the embedded PGlite server. */
describe('OrchestrationStore (e2e)', () => {
  describe('on PostgreSQL', () => {
    let t: TestEnv;
    let store: OrchestrationStore;
    beforeAll(async () => {
      t = await createTestEnv('store');
      store = await OrchestrationStore.open(t.config);
    });
    afterAll(async () => {
      await store?.close();
      await t?.cleanup();
    });

    it('keeps one run per (sweep, grid cell, seed)', async () => {
      await expect(
        store.createSweep({ name: 'dup', spec: {}, axes: ['alpha'], runs: [newRun('alpha=1', 0), newRun('alpha=1', 0)] }),
      ).rejects.toThrow(/runs_sweep_cell_seed_key/);
      // The failed sweep left nothing behind (one transaction).
      expect((await store.listSweeps({ name: 'dup' }, { limit: 10, offset: 0 })).total).toBe(0);
    });

    it('writes a run’s result once, however often its job is delivered', async () => {
      const { runs } = await store.createSweep({
        name: 'once',
        spec: {},
        axes: ['alpha'],
        runs: [newRun('alpha=0.5', 0), newRun('alpha=0.5', 1)],
      });
      const id = runs[0].id;
      expect(await store.startRun(id, 'w1')).toMatchObject({ status: 'running', attempts: 1 });
      expect(await store.startRun(id, 'w2')).toMatchObject({ status: 'running', attempts: 2, workerId: 'w2' }); // redelivered after a crash
      const progress = { step: 5, totalSteps: 10, epoch: 0, loss: 1, imgPerSec: 1, etaSeconds: 1, lr: 0.1, at: new Date().toISOString() };
      await store.recordProgress(id, progress, { loss: 1 }, null);
      await store.recordProgress(id, progress, { loss: 0.9 }, null); // the same step reported by the second worker
      const finish = {
        metrics: { top1: 0.5 },
        checkpoint: '/x/final.safetensors',
        lastCheckpoint: null,
        resumedFromStep: 5,
        backend: 'cpu',
        durationMs: 10,
        steps: 10,
      };
      expect(await store.finishRun(id, finish)).toBe(true);
      expect(await store.finishRun(id, { ...finish, metrics: { top1: 0.9 } })).toBe(false);
      expect(await store.startRun(id, 'w3')).toBeNull();
      const run = await store.getRun(id);
      expect(run).toMatchObject({ status: 'succeeded', metrics: { top1: 0.5 }, config: { backend: 'cpu', codeVersion: 'e2e' } });
      expect(await store.metricSeries(id)).toEqual({ loss: [{ step: 5, value: 0.9 }], 'final.top1': [{ step: 10, value: 0.5 }] });
    });

    it('cancels a queued run so that no worker starts it', async () => {
      const run = await store.createRun(newRun('', 0));
      expect(await store.requestCancel(run.id)).toMatchObject({ status: 'cancelled', cancelRequested: true });
      expect(await store.startRun(run.id, 'w1')).toBeNull();
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
