/* eslint-disable @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-argument --
   response bodies are untyped JSON of the API under test */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RunRepository } from '@ice/orchestration';
import { API_KEY, createTestEnv, http, readSse, startApi, TINY_RUN, type TestApi, type TestEnv } from './support/harness';

/**
 * Input safety through HTTP, no worker needed: prototype keys and unknown sweep axes are refused
 * and leave the API process unharmed; missing files are refused at submit; responses and errors
 * show no server paths; READ_AUTH=on guards reads. The API runs in this process, so
 * Object.prototype here is the API's.
 */
describe('input safety, paths and read access (e2e)', () => {
  let t: TestEnv;
  let api: TestApi;
  let guarded: TestApi;

  beforeAll(async () => {
    t = await createTestEnv('input_safety');
    api = await startApi(t);
    guarded = await startApi({ ...t, config: { ...t.config, readAuth: true } });
  });
  afterAll(async () => {
    await guarded?.close();
    await api?.close();
    await t?.cleanup();
  });

  const post = (url: string, body: unknown) => http(api.url, 'POST', url, body);
  const postRaw = async (url: string, json: string) => {
    const res = await fetch(api.url + url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': API_KEY },
      body: json,
    });
    return { status: res.status, body: (await res.json()) as { code?: string; message: string } };
  };

  it('refuses prototype keys and unknown axes with 400, and the process stays unharmed', async () => {
    const attempts: [string, string, RegExp][] = [
      [
        '/sweeps',
        '{"base":{"steps":6},"grid":{"__proto__.polluted":[1]}}',
        /unknown axis '__proto__\.polluted'; known: .*loss\.lambdaClass/,
      ],
      ['/sweeps', '{"grid":{"constructor.prototype.polluted":[1]}}', /unknown axis 'constructor\.prototype\.polluted'/],
      ['/sweeps', '{"grid":{"__proto__":[1]}}', /grid\.__proto__: forbidden key '__proto__'/],
      ['/sweeps', '{"grid":{"alpha":[0.5]},"base":{"__proto__":{"polluted":1}}}', /base\.__proto__: forbidden key/],
      [
        '/sweeps',
        '{"grid":{"loss.lambda_class":[0.5]}}',
        /grid: unknown axis 'loss\.lambda_class'; known: .*loss\.lambdaClass \(lambda_class, lambdaClass\)/,
      ],
      ['/experiments', '{"__proto__":{"polluted":1}}', /__proto__: forbidden key/],
      ['/experiments', '{"model":{"constructor":{"prototype":{"polluted":1}}}}', /model\.constructor: forbidden key/],
      ['/evaluations', '{"runId":"00000000-0000-4000-8000-000000000000","options":{"__proto__":{"polluted":1}}}', /forbidden key/],
    ];
    for (const [url, json, message] of attempts) {
      const r = await postRaw(url, json);
      expect([url, json, r.status]).toEqual([url, json, 400]);
      expect(r.body.message).toMatch(message);
    }
    const table = await http(api.url, 'GET', '/sweeps/00000000-0000-4000-8000-000000000000/table?rows=__proto__');
    expect(table.status).toBe(404); // the sweep is looked up first; a real sweep's unknown row is a 400 (below)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');

    // Later valid requests work as before.
    const sweep = await post('/sweeps', { base: TINY_RUN, grid: { lambda_class: [0.5], 'loss.alpha': [0.5, 1] } });
    expect(sweep.status).toBe(201);
    expect(sweep.body.axes).toEqual(['loss.lambdaClass', 'loss.alpha']);
    const run = await post('/experiments', TINY_RUN);
    expect(run.status).toBe(201);
    const runs = await http(api.url, 'GET', '/runs');
    expect(runs.status).toBe(200);
    expect(runs.body.total).toBe(3);
    const bad = await http(api.url, 'GET', `/sweeps/${sweep.body.id}/table?rows=__proto__`);
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/rows: unknown axis '__proto__'; known: /);
    const aliased = await http(api.url, 'GET', `/sweeps/${sweep.body.id}/table?rows=alpha,lambdaClass`);
    expect(aliased.status).toBe(200);
    expect(aliased.body.rows).toEqual(['loss.alpha', 'loss.lambdaClass']);
    expect(aliased.body.lines.map((l: { key: unknown }) => l.key)).toEqual([
      { 'loss.alpha': 0.5, 'loss.lambdaClass': 0.5 },
      { 'loss.alpha': 1, 'loss.lambdaClass': 0.5 },
    ]);
  });

  it('refuses missing weights files and data directories at submit, naming no server path or data root', async () => {
    const missing = await post('/experiments', { ...TINY_RUN, model: { weights: path.join(t.dataRoot, 'missing.safetensors') } });
    expect(missing.status).toBe(400);
    expect(missing.body.message).toBe('model.weights: missing.safetensors does not exist');
    const dir = await post('/experiments', { ...TINY_RUN, model: { weights: t.dataRoot } });
    expect(dir.body.message).toBe('model.weights: . is not a file');
    const root = await post('/experiments', { ...TINY_RUN, data: { ...TINY_RUN.data, format: 'voc', root: path.join(t.dataRoot, 'VOC') } });
    expect(root.status).toBe(400);
    expect(root.body.message).toBe('data.root: VOC does not exist');
    const cell = await post('/sweeps', { base: TINY_RUN, grid: { 'model.weights': [path.join(t.dataRoot, 'gone.pth')] } });
    expect(cell.status).toBe(400);
    expect(cell.body.message).toMatch(/^grid cell model\.weights=.*: model\.weights: gone\.pth does not exist$/);
    const evaluation = await post('/evaluations', { weights: path.join(t.dataRoot, 'w.safetensors') });
    expect(evaluation.status).toBe(400);
    expect(evaluation.body.message).toBe('weights: w.safetensors does not exist');
    const outside = await post('/experiments', { data: { format: 'voc', root: '/etc' } });
    expect(outside.status).toBe(400);
    expect(outside.body.message).toBe('data.root: /etc is outside the configured data roots');
    for (const r of [missing, dir, root, cell, evaluation, outside]) expect(r.text).not.toContain(t.dataRoot);
  });

  it('answers with artifact-relative names, never absolute server paths', async () => {
    const weights = path.join(t.dataRoot, 'backbone.safetensors');
    fs.writeFileSync(weights, '');
    const submitted = await post('/experiments', { ...TINY_RUN, model: { weights } });
    expect(submitted.status).toBe(201);
    expect(submitted.body.config.run.model.weights).toBe('backbone.safetensors');
    const id = submitted.body.id as string;
    // A worker's outcome, written the way a worker writes it.
    const runs = api.app.get(RunRepository);
    await runs.start(id, 'w');
    const dir = path.join(t.artifactDir, 'runs', id);
    await runs.finish(id, {
      metrics: { top1: 0.5 },
      checkpoint: path.join(dir, 'final.safetensors'),
      lastCheckpoint: path.join(dir, 'last.safetensors'),
      steps: 6,
      resumedFromStep: null,
      backend: 'cpu',
      durationMs: 10,
    });
    // Messages name files the same way.
    const other = await post('/experiments', TINY_RUN);
    await runs.fail(other.body.id, `could not read ${path.join(dir, 'x.bin')}`, true);
    expect((await http(api.url, 'GET', `/runs/${other.body.id}`)).body.error).toBe(`could not read runs/${id}/x.bin`);
    // SSE events go through the same rule.
    const failed = await readSse(`${api.url}/runs/${other.body.id}/events`, { timeoutMs: 10_000, until: (e) => e.event === 'run.status' });
    expect(failed[failed.length - 1].data).toMatchObject({ status: 'failed', error: `could not read runs/${id}/x.bin` });
    const got = await http(api.url, 'GET', `/runs/${id}`);
    expect(got.body).toMatchObject({
      checkpoint: `runs/${id}/final.safetensors`,
      lastCheckpoint: `runs/${id}/last.safetensors`,
      config: { run: { model: { weights: 'backbone.safetensors' } } },
    });
    const listed = await http(api.url, 'GET', '/runs?limit=500');
    const events = await readSse(`${api.url}/runs/${id}/events`, { timeoutMs: 10_000, until: (e) => e.event === 'run.status' });
    for (const text of [got.text, listed.text, JSON.stringify(events)]) {
      expect(text).not.toContain(t.artifactDir);
      expect(text).not.toContain(t.dataRoot);
    }
    // The name the API gives is one it takes back: an evaluation of those weights by their artifact-relative name.
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'final.safetensors'), '');
    const ev = await post('/evaluations', { weights: got.body.checkpoint, model: 'digits-micro' });
    expect(ev.status).toBe(201);
    expect(ev.body.spec.checkpoint).toBe(`runs/${id}/final.safetensors`);
  });

  it('READ_AUTH=on requires the key for reads too (header or Basic auth); /health stays open', async () => {
    const url = guarded.url;
    expect((await http(url, 'GET', '/runs', undefined, null)).status).toBe(401);
    expect((await http(url, 'GET', '/sweeps', undefined, null)).status).toBe(401);
    expect((await http(url, 'GET', '/evaluations', undefined, 'wrong')).status).toBe(401);
    const sse = await fetch(`${url}/runs/00000000-0000-4000-8000-000000000000/events`);
    expect(sse.status).toBe(401);
    await sse.body?.cancel();
    expect((await http(url, 'GET', '/runs', undefined, API_KEY)).status).toBe(200);
    const basic = await fetch(`${url}/runs`, { headers: { authorization: `Basic ${Buffer.from(`me:${API_KEY}`).toString('base64')}` } });
    expect(basic.status).toBe(200);
    expect((await fetch(`${url}/health`)).status).toBe(200);
    // Without READ_AUTH reads stay open, and mutations need the key either way.
    expect((await http(api.url, 'GET', '/runs', undefined, null)).status).toBe(200);
    expect((await http(url, 'POST', '/experiments', TINY_RUN, null)).status).toBe(401);
  });
});
