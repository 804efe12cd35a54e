/* eslint-disable @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-return --
   response bodies are untyped JSON of the API under test */
import {
  createTestEnv,
  http,
  readSse,
  spawnWorker,
  startApi,
  TINY_RUN,
  waitFor,
  type SseEvent,
  type TestApi,
  type TestEnv,
  type TestWorker,
} from './support/harness';

/**
 * A 2×2 α × λ_class sweep of tiny runs through HTTP, watched over SSE to completion, then its
 * ablation table; and cancelling runs, queued and running. One real worker process.
 */
describe('sweeps and cancellation (e2e)', () => {
  let t: TestEnv;
  let api: TestApi;
  let worker: TestWorker;

  beforeAll(async () => {
    t = await createTestEnv('sweep');
    api = await startApi(t);
    worker = spawnWorker(t);
    await worker.ready;
  }, 60_000);
  afterAll(async () => {
    await worker?.stop();
    await api?.close();
    await t?.cleanup();
  });

  it('runs a 2×2 sweep to completion, streams it, and tabulates it', async () => {
    const submitted = await http(api.url, 'POST', '/sweeps', {
      name: 'alpha-lambda',
      base: TINY_RUN,
      grid: { alpha: [0.5, 1], lambda_class: [0.5, 1] },
    });
    expect(submitted.status).toBe(201);
    // Axes are named by their run config paths, whatever alias the grid used.
    expect(submitted.body).toMatchObject({ status: 'queued', runCount: 4, axes: ['loss.alpha', 'loss.lambdaClass'] });
    const id = submitted.body.id as string;

    const events = await readSse(`${api.url}/sweeps/${id}/events`, {
      timeoutMs: 150_000,
      until: (e) => e.event === 'sweep.status' && ['succeeded', 'partial', 'failed', 'cancelled'].includes(e.data.status),
    });
    const last = events[events.length - 1];
    expect(last.data).toMatchObject({ type: 'sweep.status', status: 'succeeded', counts: { succeeded: 4, failed: 0 } });
    // The stream carried the runs' own lifecycle and progress.
    const runEvents = events.filter((e: SseEvent) => e.event === 'run.status');
    expect(new Set(runEvents.filter((e) => e.data.status === 'succeeded').map((e) => e.data.runId)).size).toBe(4);
    expect(events.some((e) => e.event === 'run.progress' && e.data.progress.step > 0)).toBe(true);

    const sweep = await http(api.url, 'GET', `/sweeps/${id}`);
    expect(sweep.body.status).toBe('succeeded');
    expect(sweep.body.runs).toHaveLength(4);
    for (const r of sweep.body.runs) {
      expect(r).toMatchObject({ status: 'succeeded', attempts: 1, config: { codeVersion: 'e2e', backend: expect.any(String) } });
      expect(r.metrics.top1).toEqual(expect.any(Number));
      expect(r.checkpoint).toMatch(/final\.safetensors$/);
    }

    const table = await http(api.url, 'GET', `/sweeps/${id}/table?rows=alpha,lambda_class&metrics=top1,miou&format=json`);
    expect(table.status).toBe(200);
    expect(table.body.rows).toEqual(['loss.alpha', 'loss.lambdaClass']);
    // ICE runs: the foreground IoU and fraction are always shown, and every line says whether its maps are degenerate.
    expect(table.body.metrics).toEqual(['top1', 'miou', 'iou_fg', 'fg_fraction']);
    for (const l of table.body.lines) expect(l).toHaveProperty('degenerate');
    expect(table.body.notes).toEqual(expect.any(Array));
    expect(table.body.lines.map((l: { key: unknown }) => l.key)).toEqual([
      { 'loss.alpha': 0.5, 'loss.lambdaClass': 0.5 },
      { 'loss.alpha': 0.5, 'loss.lambdaClass': 1 },
      { 'loss.alpha': 1, 'loss.lambdaClass': 0.5 },
      { 'loss.alpha': 1, 'loss.lambdaClass': 1 },
    ]);
    for (const l of table.body.lines) expect(l.cells.top1).toMatchObject({ n: 1, mean: expect.any(Number) });

    const md = await http(api.url, 'GET', `/sweeps/${id}/table?rows=lambdaClass,loss.alpha&metrics=top1&format=markdown`);
    expect(md.headers.get('content-type')).toMatch(/text\/markdown/);
    expect(md.text.split('\n')[0]).toBe('| loss.lambdaClass | loss.alpha | top1 | iou_fg | fg_fraction | runs | flag |');
    const csv = await http(api.url, 'GET', `/sweeps/${id}/table?metrics=top1&format=csv`);
    expect(csv.headers.get('content-type')).toMatch(/text\/csv/);
    expect(csv.text.split('\n')).toHaveLength(6); // header, 4 cells, trailing newline

    // The metric series of a run lives in its own table.
    const series = await http(api.url, 'GET', `/runs/${sweep.body.runs[0].id}/metrics`);
    expect(series.body.series.loss.length).toBeGreaterThan(0);
    expect(series.body.series['final.top1']).toHaveLength(1);

    const listed = await http(api.url, 'GET', '/sweeps?status=succeeded&name=alpha-lambda');
    expect(listed.body.items.map((s: { id: string }) => s.id)).toEqual([id]);

    // Evaluate one of the finished runs' checkpoints.
    const ev = await http(api.url, 'POST', '/evaluations', { runId: sweep.body.runs[0].id, data: { limit: 16 } });
    expect(ev.status).toBe(201);
    const done = await waitFor(
      'the evaluation',
      async () => {
        const e = await http(api.url, 'GET', `/evaluations/${ev.body.id}`);
        return ['succeeded', 'failed'].includes(e.body.status) ? e.body : null;
      },
      60_000,
    );
    expect(done).toMatchObject({ status: 'succeeded', result: { metrics: { top1: expect.any(Number), eval_images: 16 } } });
  }, 180_000);

  it('cancels a queued run at once and a running run promptly', async () => {
    const long = { ...TINY_RUN, steps: 5000, checkpointEvery: 1000 };
    const running = await http(api.url, 'POST', '/experiments', long);
    const queued = await http(api.url, 'POST', '/experiments', long); // behind the first: the worker runs one at a time
    expect(running.status).toBe(201);

    // Wait until the first run is really training (progress arrives over its SSE stream).
    await readSse(`${api.url}/runs/${running.body.id}/events`, {
      timeoutMs: 60_000,
      until: (e) => e.event === 'run.progress' && e.data.progress.step >= 2,
    });

    const cq = await http(api.url, 'POST', `/runs/${queued.body.id}/cancel`, {});
    expect(cq.status).toBe(202);
    expect(cq.body.status).toBe('cancelled');

    const t0 = Date.now();
    const stream = readSse(`${api.url}/runs/${running.body.id}/events`, {
      timeoutMs: 30_000,
      until: (e) => e.event === 'run.status' && e.data.status === 'cancelled',
    });
    const cr = await http(api.url, 'POST', `/runs/${running.body.id}/cancel`, {});
    expect(cr.status).toBe(202);
    expect(cr.body.cancelRequested).toBe(true);
    await stream;
    expect(Date.now() - t0).toBeLessThan(10_000);
    const after = await http(api.url, 'GET', `/runs/${running.body.id}`);
    expect(after.body.status).toBe('cancelled');
    expect(after.body.progress.step).toBeLessThan(5000);

    // A finished run cannot be cancelled again; the worker is free for the next job.
    expect((await http(api.url, 'POST', `/runs/${running.body.id}/cancel`, {})).status).toBe(409);
    const next = await http(api.url, 'POST', '/experiments', TINY_RUN);
    await waitFor(
      'the next run to succeed',
      async () => (await http(api.url, 'GET', `/runs/${next.body.id}`)).body.status === 'succeeded',
      60_000,
    );
    // The cancelled queued run never started.
    expect((await http(api.url, 'GET', `/runs/${queued.body.id}`)).body).toMatchObject({
      status: 'cancelled',
      attempts: 0,
      startedAt: null,
    });
  }, 120_000);
});
