/* eslint-disable @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-argument -- response bodies are untyped JSON of the API under test */
import * as path from 'node:path';
import { API_KEY, createTestEnv, http, startApi, TINY_RUN, type TestApi, type TestEnv } from './support/harness';

/** Every validation rule of the API answers 400 naming the field; keys guard every mutation. No worker needed. */
describe('API validation and access (e2e)', () => {
  let t: TestEnv;
  let api: TestApi;

  beforeAll(async () => {
    t = await createTestEnv('validation');
    api = await startApi(t);
  });
  afterAll(async () => {
    await api?.close();
    await t?.cleanup();
  });

  const post = (url: string, body: unknown, key: string | null = API_KEY) => http(api.url, 'POST', url, body, key);

  it.each([
    ['unknown preset', { model: { preset: 'vit-gigantic' } }, /model\.preset: unknown model preset/],
    ['α = 0', { loss: { alpha: 0 } }, /loss\.alpha: alpha must be in \(0, 1\]/],
    ['α > 1', { loss: { alpha: 1.5 } }, /loss\.alpha: alpha must be in \(0, 1\]/],
    ['λ_class < 0', { loss: { lambdaClass: -0.1 } }, /loss\.lambdaClass: lambdaClass must be in \[0, 1\]/],
    ['λ_class > 1', { loss: { lambdaClass: 1.2 } }, /loss\.lambdaClass: lambdaClass must be in \[0, 1\]/],
    ['an unknown field', { lossy: 1 }, /lossy/],
  ])('POST /experiments rejects %s with 400 naming the field', async (_name, body, message) => {
    const r = await post('/experiments', body);
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('CONFIG_INVALID');
    expect(r.body.message).toMatch(message);
  });

  it('rejects data roots and weights outside the configured roots', async () => {
    const outside = await post('/experiments', { data: { format: 'voc', root: '/etc' } });
    expect(outside.status).toBe(400);
    expect(outside.body.message).toMatch(/^data\.root: \/etc is outside the configured data roots/);
    const escape = await post('/experiments', { data: { format: 'voc', root: path.join(t.dataRoot, '..', '..') } });
    expect(escape.status).toBe(400);
    expect(escape.body.message).toMatch(/data\.root/);
    const weights = await post('/experiments', { model: { weights: '/root/model.pth' } });
    expect(weights.status).toBe(400);
    expect(weights.body.message).toMatch(/^model\.weights: /);
  });

  it('bounds data-parallel runs at 64 ranks', async () => {
    const r = await post('/experiments', { worldSize: 65 });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('CONFIG_INVALID');
    expect(r.body.message).toMatch(/worldSize: /);
  });

  it('rejects a grid over 1,000 runs unless explicitly allowed', async () => {
    const grid = {
      alpha: Array.from({ length: 40 }, (_, i) => (i + 1) / 40),
      lambda_class: Array.from({ length: 30 }, (_, i) => (i + 1) / 30),
    };
    const r = await post('/sweeps', { base: TINY_RUN, grid });
    expect(r.status).toBe(400);
    expect(r.body.message).toMatch(/grid: 1200 cells .* exceeds 1000; set allowLargeGrid/);
  });

  it('names the grid cell whose value is invalid', async () => {
    const r = await post('/sweeps', { base: TINY_RUN, grid: { alpha: [0.5, 2] } });
    expect(r.status).toBe(400);
    expect(r.body.message).toMatch(/grid cell loss\.alpha=2: .*loss\.alpha: alpha must be in \(0, 1\]/);
  });

  it('rejects a data root outside the roots given through a grid axis', async () => {
    const r = await post('/sweeps', {
      base: { ...TINY_RUN, data: { ...TINY_RUN.data, format: 'voc', root: t.dataRoot } },
      grid: { 'data.root': [t.dataRoot, '/var'] },
    });
    expect(r.status).toBe(400);
    expect(r.body.message).toMatch(/data\.root: \/var is outside/);
  });

  it('validates evaluations', async () => {
    const both = await post('/evaluations', {});
    expect(both.status).toBe(400);
    expect(both.body.message).toMatch(/runId: give exactly one of runId/);
    const missing = await post('/evaluations', { runId: '00000000-0000-4000-8000-000000000000' });
    expect(missing.status).toBe(400);
    expect(missing.body.message).toMatch(/^runId: run .* does not exist/);
    const outside = await post('/evaluations', { weights: '/etc/passwd' });
    expect(outside.status).toBe(400);
    expect(outside.body.message).toMatch(/^weights: /);
  });

  it('validates query strings and ids', async () => {
    expect((await http(api.url, 'GET', '/runs?limit=0')).body.message).toMatch(/limit/);
    expect((await http(api.url, 'GET', '/runs?status=done')).status).toBe(400);
    expect((await http(api.url, 'GET', '/runs/not-a-uuid')).status).toBe(400);
    expect((await http(api.url, 'GET', '/runs/00000000-0000-4000-8000-000000000000')).status).toBe(404);
    expect((await http(api.url, 'GET', '/sweeps/00000000-0000-4000-8000-000000000000/table')).status).toBe(404);
  });

  it('requires a configured API key for every mutating request', async () => {
    for (const [url, body] of [
      ['/experiments', TINY_RUN],
      ['/sweeps', { base: TINY_RUN, grid: { alpha: [1] } }],
      ['/evaluations', {}],
      ['/runs/00000000-0000-4000-8000-000000000000/cancel', {}],
    ] as const) {
      expect((await post(url, body, null)).status).toBe(401);
      expect((await post(url, body, 'wrong-key')).status).toBe(401);
    }
    // Reads are open.
    expect((await http(api.url, 'GET', '/runs', undefined, null)).status).toBe(200);
  });

  it('accepts a valid experiment and lists it', async () => {
    const r = await post('/experiments', { ...TINY_RUN, loss: { alpha: 1, lambdaClass: 0.5 } });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      status: 'queued',
      config: { codeVersion: 'e2e', backend: null, run: { loss: { alpha: 1, lambdaClass: 0.5 } } },
    });
    const list = await http(api.url, 'GET', '/runs?status=queued&limit=5');
    expect(list.body.items.map((x: { id: string }) => x.id)).toContain(r.body.id);
  });

  it('serves health, the OpenAPI document and the key-protected dashboard', async () => {
    const health = await http(api.url, 'GET', '/health');
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ status: 'ok', redis: { ok: true }, postgres: { ok: true } });
    const doc = await http(api.url, 'GET', '/docs-json');
    expect(doc.status).toBe(200);
    expect(Object.keys(doc.body.paths)).toEqual(
      expect.arrayContaining(['/experiments', '/sweeps', '/sweeps/{id}/table', '/runs/{id}/cancel', '/runs/{id}/events', '/health']),
    );
    expect((await http(api.url, 'GET', '/queues', undefined, null)).status).toBe(401);
    const board = await http(api.url, 'GET', '/queues', undefined, API_KEY);
    expect(board.status).toBe(200);
    expect(board.text).toMatch(/<html/i);
    const basic = await fetch(`${api.url}/queues/api/queues`, {
      headers: { authorization: `Basic ${Buffer.from(`any:${API_KEY}`).toString('base64')}` },
    });
    expect(basic.status).toBe(200);
    const queues = (await basic.json()) as { queues: { name: string }[] };
    expect(queues.queues.map((q) => q.name).sort()).toEqual(['evaluation', 'sweeps', 'training']);
  });
});
