/* eslint-disable @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-return --
   response bodies are untyped JSON of the API under test */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client } from 'pg';
import {
  createTestEnv,
  http,
  spawnWorker,
  startApi,
  TINY_RUN,
  waitFor,
  type TestApi,
  type TestEnv,
  type TestWorker,
} from './support/harness';

/**
 * Evaluations of the paper's map protocols through HTTP: a finished tiny run's checkpoint (and the
 * same file as a weights path) scored on digits by real worker processes, the per-method rows read
 * back through the API and straight from PostgreSQL, saved maps served; cancelling; and every
 * validation rule of POST /evaluations.
 */
describe('evaluations (e2e)', () => {
  let t: TestEnv;
  let api: TestApi;
  let worker: TestWorker;
  let runId: string;

  const post = (url: string, body: unknown) => http(api.url, 'POST', url, body);
  const finished = (id: string, timeoutMs = 90_000) =>
    waitFor(
      `evaluation ${id} to finish`,
      async () => {
        const e = await http(api.url, 'GET', `/evaluations/${id}`);
        return ['succeeded', 'failed', 'cancelled'].includes(e.body.status) ? e.body : null;
      },
      timeoutMs,
    );

  beforeAll(async () => {
    t = await createTestEnv('evaluation');
    api = await startApi(t);
    worker = spawnWorker(t);
    await worker.ready;
    const run = await post('/experiments', TINY_RUN);
    expect(run.status).toBe(201);
    runId = run.body.id;
    await waitFor(
      'the tiny run to succeed',
      async () => (await http(api.url, 'GET', `/runs/${runId}`)).body.status === 'succeeded',
      90_000,
    );
  }, 150_000);
  afterAll(async () => {
    await worker?.stop();
    await api?.close();
    await t?.cleanup();
  });

  it("scores a finished run's checkpoint with the segmentation protocol and stores one row per method", async () => {
    const submitted = await post('/evaluations', {
      protocol: 'segmentation',
      format: 'digits',
      runId,
      methods: ['ice', 'rollout', 'gradcam'],
      limit: 8,
      saveMaps: 2,
    });
    expect(submitted.status).toBe(201);
    expect(submitted.body).toMatchObject({ status: 'queued', protocol: 'segmentation', runId, result: null });
    expect(submitted.body.spec).toMatchObject({
      data: { format: 'digits', limit: 8 },
      model: 'digits-micro',
      checkpoint: expect.stringMatching(/final\.safetensors$/),
    });
    const id = submitted.body.id as string;

    const done = await finished(id);
    expect(done).toMatchObject({ status: 'succeeded', attempts: 1, error: null, progress: { done: 8, total: 8 } });
    const result = done.result;
    expect(result).toMatchObject({
      protocol: 'segmentation',
      format: 'digits',
      dataset: { split: 'test', images: 8 },
      backend: expect.any(String),
    });
    expect(result.columns.length).toBeGreaterThan(0);
    expect(result.conventions.some((c: string) => /threshold|mean/i.test(c))).toBe(true);
    expect(result.rows.map((r: { method: string }) => r.method)).toEqual(['ice', 'rollout', 'gradcam']);
    for (const row of result.rows) {
      expect(row).toMatchObject({ images: 8, seconds: expect.any(Number) });
      expect(Object.keys(row.metrics).sort()).toEqual([...result.columns].sort());
      expect(row.imagesPerSecond === null || row.imagesPerSecond > 0).toBe(true);
    }

    // The rows live in their own table, one per method.
    const db = new Client({ connectionString: t.env.DATABASE_URL });
    await db.connect();
    try {
      const rows = await db.query<{ method: string; images: number }>(
        'SELECT method, images FROM evaluation_results WHERE evaluation_id = $1 ORDER BY position',
        [id],
      );
      expect(rows.rows).toEqual([
        { method: 'ice', images: 8 },
        { method: 'rollout', images: 8 },
        { method: 'gradcam', images: 8 },
      ]);
    } finally {
      await db.end();
    }

    // Saved maps sit under the artifact directory and are listed as the URLs that serve them (no server paths).
    const maps = result.savedMaps;
    expect(maps.files).toHaveLength(2 * 3);
    expect(Object.keys(maps).sort()).toEqual(['contactSheet', 'files']);
    for (const url of [...maps.files, maps.contactSheet]) {
      expect(url).toMatch(new RegExp(`^/evaluations/${id}/maps/[\\w.-]+\\.png$`));
      expect(fs.existsSync(path.join(t.artifactDir, 'evaluations', id, 'maps', path.basename(url)))).toBe(true);
    }
    expect(JSON.stringify(done)).not.toContain(t.artifactDir);
    const png = await fetch(`${api.url}${maps.contactSheet}`);
    expect(png.status).toBe(200);
    expect(png.headers.get('content-type')).toMatch(/image\/png/);
    expect(
      Buffer.from(await png.arrayBuffer())
        .subarray(1, 4)
        .toString(),
    ).toBe('PNG');
    expect((await http(api.url, 'GET', `/evaluations/${id}/maps/..%2F..%2Fetc%2Fpasswd`)).status).toBe(404);

    const listed = await http(api.url, 'GET', `/evaluations?protocol=segmentation&runId=${runId}&limit=5`);
    expect(listed.status).toBe(200);
    expect(listed.body).toMatchObject({ total: 1, limit: 5, offset: 0 });
    expect(listed.body.items[0]).toMatchObject({ id, status: 'succeeded' });
    expect(listed.body.items[0].result.rows).toHaveLength(3);
    expect((await http(api.url, 'GET', '/evaluations?protocol=corloc')).body.total).toBe(0);

    // Finished: a cancel is refused.
    expect((await post(`/evaluations/${id}/cancel`, {})).status).toBe(409);
  }, 120_000);

  it('evaluates a weights file with a named model (corloc)', async () => {
    const run = await http(api.url, 'GET', `/runs/${runId}`);
    const weights = path.join(t.dataRoot, 'tiny.safetensors');
    // Runs name their weights relative to the artifact directory.
    expect(path.isAbsolute(run.body.checkpoint)).toBe(false);
    fs.copyFileSync(path.join(t.artifactDir, run.body.checkpoint), weights);
    const submitted = await post('/evaluations', {
      protocol: 'corloc',
      data: { format: 'digits', limit: 4 },
      weights,
      model: 'digits-micro',
      methods: ['ice', 'rollout'],
    });
    expect(submitted.status).toBe(201);
    expect(submitted.body.runId).toBeNull();
    const done = await finished(submitted.body.id);
    expect(done.status).toBe('succeeded');
    expect(done.result.rows.map((r: { method: string; images: number }) => [r.method, r.images])).toEqual([
      ['ice', 4],
      ['rollout', 4],
    ]);
    expect(done.result.savedMaps).toBeUndefined();
  }, 90_000);

  it('cancels a queued evaluation at once and a running one promptly', async () => {
    const long = {
      protocol: 'localization',
      format: 'digits',
      runId,
      methods: ['gradcam', 'generic-attention'],
      limit: 5000,
      options: { maxBoxAccInterval: 0.01 },
    };
    const running = await post('/evaluations', long);
    const queued = await post('/evaluations', long); // behind the first: the worker runs one evaluation at a time
    expect(running.status).toBe(201);
    await waitFor(
      'the evaluation to report progress',
      async () => ((await http(api.url, 'GET', `/evaluations/${running.body.id}`)).body.progress?.done ?? 0) > 0,
      60_000,
    );

    const cq = await post(`/evaluations/${queued.body.id}/cancel`, {});
    expect(cq.status).toBe(202);
    expect(cq.body.status).toBe('cancelled');

    const t0 = Date.now();
    const cr = await post(`/evaluations/${running.body.id}/cancel`, {});
    expect(cr.status).toBe(202);
    expect(cr.body).toMatchObject({ status: 'running', cancelRequested: true });
    const after = await finished(running.body.id, 20_000);
    expect(after.status).toBe('cancelled');
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(after.progress.done).toBeLessThan(5000);
    expect(after.result).toBeNull();

    // The cancelled queued evaluation never started; the worker is free for the next one.
    expect((await http(api.url, 'GET', `/evaluations/${queued.body.id}`)).body).toMatchObject({
      status: 'cancelled',
      attempts: 0,
      startedAt: null,
    });
    const next = await post('/evaluations', { protocol: 'jaccard', format: 'digits', runId, methods: ['raw-attention'], limit: 2 });
    expect((await finished(next.body.id)).status).toBe('succeeded');
  }, 120_000);

  describe('validation', () => {
    it.each([
      [
        'an unknown method',
        { protocol: 'segmentation', methods: ['ice', 'lrp'] },
        /methods\.1: unknown method 'lrp' for the segmentation protocol; choose from ice, ice-class, raw-attention, rollout, gradcam, generic-attention, transformer-attribution, partial-lrp/,
      ],
      ['a method named twice', { protocol: 'segmentation', methods: ['ice', 'ice'] }, /methods\.1: method 'ice' is named twice/],
      ['no methods for a map protocol', { protocol: 'corloc' }, /methods: the corloc protocol needs methods/],
      [
        'an explainer for the accuracy protocol',
        { methods: ['gradcam'] },
        /methods\.0: unknown method 'gradcam' for the accuracy protocol; choose from ice, cls/,
      ],
      ['an unknown protocol', { protocol: 'lrp', methods: ['ice'] }, /protocol: /],
      ['an unknown format', { protocol: 'segmentation', format: 'coco', methods: ['ice'] }, /format: /],
      [
        'a format without boxes for localization',
        { protocol: 'localization', format: 'imagenet-seg', root: '/x', methods: ['ice'] },
        /data\.format: the localization protocol needs ground-truth boxes and class labels, which imagenet-seg does not provide; use digits, voc, cub/,
      ],
      [
        'a format without masks for segmentation',
        { protocol: 'segmentation', data: { format: 'cub', root: '/x' }, methods: ['ice'] },
        /data\.format: the segmentation protocol needs foreground masks, which cub does not provide/,
      ],
      [
        'a file format without a root',
        { protocol: 'jaccard', format: 'voc', methods: ['ice'] },
        /data\.root: data\.root is required for format voc/,
      ],
      ['a root for digits', { protocol: 'jaccard', format: 'digits', root: '/x', methods: ['ice'] }, /data\.root: digits is generated/],
      [
        'an unknown digits split',
        { protocol: 'corloc', split: 'dev', methods: ['ice'] },
        /data\.split: digits has the splits train, val, test; got 'dev'/,
      ],
      ['a limit of 0', { protocol: 'corloc', limit: 0, methods: ['ice'] }, /limit: /],
      [
        'format twice',
        { protocol: 'corloc', format: 'digits', data: { format: 'digits' }, methods: ['ice'] },
        /format: give format at the top level or as data\.format, not both/,
      ],
      [
        'an option of another protocol',
        { protocol: 'corloc', methods: ['ice'], options: { taus: [0.5] } },
        /options\.taus: taus applies to the jaccard protocol only/,
      ],
      ['an out-of-range option', { protocol: 'corloc', methods: ['ice'], options: { corlocTau: 2 } }, /options\.corlocTau: /],
      ['saved maps for accuracy', { saveMaps: 4 }, /saveMaps: the accuracy protocol draws no maps/],
      ['too many saved maps', { protocol: 'corloc', methods: ['ice'], saveMaps: 1000 }, /saveMaps: /],
      ['an unknown field', { protocol: 'corloc', methods: ['ice'], checkpointy: 'x' }, /checkpointy: unknown field/],
      [
        'a weights file without its model',
        { protocol: 'corloc', methods: ['ice'], weights: '/w.safetensors', runId: undefined },
        /model: a weights file needs the model it was trained with/,
      ],
    ])('rejects %s with 400 naming the field', async (_name, body, message) => {
      const r = await post('/evaluations', { runId: '00000000-0000-4000-8000-000000000000', ...body });
      expect(r.status).toBe(400);
      expect(r.body.message).toMatch(message);
    });

    it('checks paths, the run and the model against the server', async () => {
      const base = { protocol: 'segmentation', methods: ['ice'] };
      const outside = await post('/evaluations', { ...base, runId, format: 'voc', root: '/etc' });
      expect(outside.status).toBe(400);
      expect(outside.body.message).toMatch(/^data\.root: \/etc is outside the configured data roots/);
      const weights = await post('/evaluations', { ...base, weights: '/etc/passwd', model: 'digits-micro' });
      expect(weights.body.message).toMatch(/^weights: \/etc\/passwd is outside/);
      const escape = await post('/evaluations', {
        ...base,
        weights: path.join(t.dataRoot, '..', '..', 'w.safetensors'),
        model: 'digits-micro',
      });
      expect(escape.body.message).toMatch(/^weights: /);
      const preset = await post('/evaluations', { ...base, runId, model: 'vit-gigantic' });
      expect(preset.status).toBe(400);
      expect(preset.body.message).toMatch(/^model: 'vit-gigantic' is neither a known preset nor a config \.json file/);
      const config = await post('/evaluations', { ...base, runId, model: '/etc/model.json' });
      expect(config.body.message).toMatch(/^model: \/etc\/model\.json is outside/);
      const missing = await post('/evaluations', { ...base, runId: '00000000-0000-4000-8000-000000000000' });
      expect(missing.body.message).toMatch(/^runId: run .* does not exist/);

      const unfinished = await post('/experiments', { ...TINY_RUN, steps: 5000 });
      const early = await post('/evaluations', { ...base, runId: unfinished.body.id });
      expect(early.status).toBe(400);
      expect(early.body.message).toMatch(/^runId: run .* has not finished \((queued|running)\); evaluate a succeeded run/);
      await post(`/runs/${unfinished.body.id}/cancel`, {});
    });

    it('answers 404 for unknown evaluations and 400 for bad ids and queries', async () => {
      const nobody = '00000000-0000-4000-8000-000000000000';
      expect((await http(api.url, 'GET', `/evaluations/${nobody}`)).status).toBe(404);
      expect((await post(`/evaluations/${nobody}/cancel`, {})).status).toBe(404);
      expect((await http(api.url, 'GET', `/evaluations/${nobody}/maps/contact-sheet.png`)).status).toBe(404);
      expect((await http(api.url, 'GET', '/evaluations/not-a-uuid')).status).toBe(400);
      expect((await http(api.url, 'GET', '/evaluations?protocol=lrp')).body.message).toMatch(/protocol/);
      expect((await http(api.url, 'GET', '/evaluations?limit=0')).body.message).toMatch(/limit/);
    });
  });
});
