import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { main } from '../apps/cli/src/main';
import {
  API_KEY,
  createTestEnv,
  freePort,
  http,
  readSse,
  spawnWorker,
  startApi,
  TINY_RUN,
  type TestApi,
  type TestEnv,
  type TestWorker,
} from './support/harness';

const ROOT = path.resolve(__dirname, '..');

interface CliResult {
  code: number;
  out: string;
  err: string;
}

/**
 * `ice` in this process (the module graph is loaded once, so a call costs milliseconds): its
 * stdout, stderr and exit code. The key comes from ICE_API_KEY as a user would set it.
 */
async function ice(args: string[], key: string | null = API_KEY): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const savedKey = process.env.ICE_API_KEY;
  if (key === null) delete process.env.ICE_API_KEY;
  else process.env.ICE_API_KEY = key;
  const spies = [
    jest.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => (out.push(String(c)), true)),
    jest.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => (err.push(String(c)), true)),
    jest.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(`${a.map(String).join(' ')}\n`)),
    jest.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(`${a.map(String).join(' ')}\n`)),
  ];
  process.exitCode = undefined;
  try {
    await main(['node', 'ice', ...args]);
    return { code: Number(process.exitCode ?? 0), out: out.join(''), err: err.join('') };
  } finally {
    process.exitCode = undefined;
    for (const s of spies) s.mockRestore();
    if (savedKey === undefined) delete process.env.ICE_API_KEY;
    else process.env.ICE_API_KEY = savedKey;
  }
}

/**
 * The remote verbs of `ice` against a real API and worker (PostgreSQL and Redis of the machine):
 * submit a sweep, watch it to the end, read its table, see the API's validation messages and the
 * documented exit codes, cancel, list; one run through the real `ice` binary.
 */
describe('ice remote verbs (e2e)', () => {
  let t: TestEnv;
  let api: TestApi;
  let worker: TestWorker;
  let tmp: string;
  const file = (name: string, body: unknown): string => {
    const f = path.join(tmp, name);
    fs.writeFileSync(f, JSON.stringify(body));
    return f;
  };

  beforeAll(async () => {
    t = await createTestEnv('cli');
    api = await startApi(t);
    worker = spawnWorker(t);
    tmp = fs.mkdtempSync(path.join(t.dataRoot, 'cli-'));
    await worker.ready;
  }, 60_000);
  afterAll(async () => {
    await worker?.stop();
    await api?.close();
    await t?.cleanup();
  });

  it('submits a sweep, watches it to the end (run k of n), tabulates it; replayed events keep the time of the change', async () => {
    const sweepFile = file('tiny.sweep.json', {
      $schema: './schema/sweep.json',
      name: 'cli-sweep',
      base: TINY_RUN,
      grid: { 'loss.alpha': [0.5, 1] },
      seeds: [0],
    });
    const submitted = await ice(['submit', 'sweep', sweepFile, '--api', api.url]);
    expect(submitted).toMatchObject({
      code: 0,
      err: expect.stringMatching(/submitted sweep .* \(2 runs\): queued; follow it with: ice watch /),
    });
    const id = submitted.out.trim();
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(submitted.err).toContain(`results page: ${api.url}/ui/#/sweeps/${id}`);

    const watched = await ice(['watch', id, '--api', api.url]);
    expect(watched.code).toBe(0);
    expect(watched.err).toMatch(/sweep .* \(cli-sweep\): 2 runs over loss\.alpha/);
    expect(watched.err).toMatch(/run 1 of 2 finished: loss\.alpha=(0\.5|1) seed 0 succeeded/);
    expect(watched.err).toMatch(/run 2 of 2 finished: loss\.alpha=(0\.5|1) seed 0 succeeded · top1 /);
    expect(watched.out).toMatch(/^sweep .*: succeeded since /);
    expect(watched.out).toMatch(/2 of 2 finished \(2 succeeded, 0 failed, 0 cancelled\)/);

    const status = await ice(['status', id, '--api', api.url, '--json']);
    expect(status.code).toBe(0);
    const view = JSON.parse(status.out);
    expect(view).toMatchObject({ kind: 'sweep', status: 'succeeded', runCount: 2 });

    // A replayed sweep.status event says when the sweep finished, not when the stream was opened.
    await new Promise((r) => setTimeout(r, 1100));
    const opened = Date.now();
    const events = await readSse(`${api.url}/sweeps/${id}/events`, { timeoutMs: 10_000, until: (e) => e.event === 'sweep.status' });
    const replayed = events.find((e) => e.event === 'sweep.status')!.data;
    expect(replayed.at).toBe(view.statusChangedAt);
    expect(Date.parse(String(replayed.at))).toBeLessThan(opened - 1000);
    const runId = view.runs[0].id as string;
    const runEvents = await readSse(`${api.url}/runs/${runId}/events`, { timeoutMs: 10_000, until: (e) => e.event === 'run.status' });
    expect(runEvents.find((e) => e.event === 'run.status')!.data.at).toBe(view.runs[0].statusChangedAt);

    const csv = await ice(['table', id, '--api', api.url, '--format', 'csv', '--metrics', 'top1']);
    expect(csv.code).toBe(0);
    const lines = csv.out.trim().split('\n');
    expect(lines[0]).toMatch(/^loss\.alpha,top1_mean,top1_std,top1_n,/);
    expect(lines).toHaveLength(3);
    const md = await ice(['table', id, '--api', api.url, '--metrics', 'top1,miou']);
    expect(md.out.split('\n')[0]).toBe('| loss.alpha | top1 | miou | iou_fg | fg_fraction | runs | flag |');
    const saved = path.join(tmp, 'table.json');
    expect((await ice(['table', id, '--api', api.url, '--format', 'json', '--out', saved])).code).toBe(0);
    expect(JSON.parse(fs.readFileSync(saved, 'utf8'))).toMatchObject({ sweepId: id, rows: ['loss.alpha'] });

    // An unknown metric is the API's 400, with its list of the known ones; eval_images is a count, not a metric.
    for (const bogus of ['bogus', 'eval_images']) {
      const direct = await http(api.url, 'GET', `/sweeps/${id}/table?metrics=${bogus}`);
      expect(direct.status).toBe(400);
      expect(direct.body.message).toMatch(new RegExp(`^metrics: ${bogus} is not a metric; known: top1, `));
      const viaCli = await ice(['table', id, '--api', api.url, '--metrics', bogus]);
      expect(viaCli.code).toBe(2);
      expect(viaCli.err).toContain(String(direct.body.message));
    }

    // An example evaluation file for one of the sweep's runs (--run replaces the weights it names); then cancelled.
    const evalSubmitted = await ice(['submit', 'eval', path.join(ROOT, 'configs', 'ice-maps.eval.json'), '--run', runId, '--api', api.url]);
    expect(evalSubmitted).toMatchObject({ code: 0, err: expect.stringMatching(/^submitted evaluation /) });
    const evalId = evalSubmitted.out.trim();
    expect((await http(api.url, 'GET', `/evaluations/${evalId}`)).body).toMatchObject({ runId, protocol: 'segmentation' });
    expect(await ice(['status', evalId, '--api', api.url])).toMatchObject({
      out: expect.stringMatching(/^evaluation .* \(segmentation of run /),
    });
    expect(await ice(['cancel', evalId, '--api', api.url])).toMatchObject({ code: 0, out: `evaluation ${evalId}: cancel requested\n` });
    expect(await ice(['submit', 'run', sweepFile, '--run', runId, '--api', api.url])).toMatchObject({
      code: 2,
      err: /--run only goes with submit eval/,
    });

    const listed = await ice(['ls', 'sweeps', '--api', api.url]);
    expect(listed.out).toMatch(new RegExp(`${id}\\s+succeeded\\s+2/2 finished .* cli-sweep`));
    expect(JSON.parse((await ice(['ls', '--api', api.url, '--json', '--limit', '5'])).out)).toMatchObject({
      sweeps: [expect.objectContaining({ id })],
      runs: expect.any(Array),
      evaluations: [expect.objectContaining({ id: evalId })],
    });
  }, 180_000);

  it("shows the API's validation messages and exits with the documented codes", async () => {
    const bad = file('bad.run.json', { ...TINY_RUN, loss: { alpha: 5 } });
    const direct = await http(api.url, 'POST', '/experiments', { ...TINY_RUN, loss: { alpha: 5 } });
    expect(direct.status).toBe(400);
    const r = await ice(['submit', 'run', bad, '--api', api.url]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`HTTP 400: CONFIG_INVALID: ${direct.body.message as string}`);
    expect(r.out).toBe('');

    // Usage: a wrong kind, a missing file, a file that is not JSON.
    expect((await ice(['submit', 'grid', bad, '--api', api.url])).code).toBe(2);
    expect(await ice(['submit', 'run', path.join(tmp, 'nope.json'), '--api', api.url])).toMatchObject({ code: 2, err: /does not exist/ });
    fs.writeFileSync(path.join(tmp, 'broken.json'), '{"steps": ');
    expect(await ice(['submit', 'run', path.join(tmp, 'broken.json'), '--api', api.url])).toMatchObject({ code: 2, err: /not valid JSON/ });
    // No key, a wrong key.
    const ok = file('ok.run.json', TINY_RUN);
    expect(await ice(['submit', 'run', ok, '--api', api.url], null)).toMatchObject({ code: 5, err: /HTTP 401: .*set ICE_API_KEY/ });
    expect(await ice(['submit', 'run', ok, '--api', api.url], 'wrong')).toMatchObject({ code: 5, err: /not one of the API keys/ });
    // Not found, not an id, nobody listening.
    expect(await ice(['status', '00000000-0000-4000-8000-000000000000', '--api', api.url])).toMatchObject({
      code: 4,
      err: /no sweep, run or evaluation/,
    });
    expect(await ice(['status', 'not-an-id', '--api', api.url])).toMatchObject({ code: 2, err: /HTTP 400: INPUT_INVALID: .*id/ });
    const closed = await freePort();
    expect(await ice(['ls', '--api', `http://127.0.0.1:${closed}`])).toMatchObject({
      code: 3,
      err: /cannot reach the API at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/,
    });
    expect(await ice(['ls', '--api', 'nowhere'])).toMatchObject({ code: 2, err: /--api: nowhere is not a URL/ });
  }, 60_000);

  it('cancels a running run (then watch and status exit 1, and a second cancel 6)', async () => {
    const long = file('long.run.json', { ...TINY_RUN, steps: 5000, checkpointEvery: 1000 });
    const id = (await ice(['submit', 'run', long, '--api', api.url])).out.trim();
    await readSse(`${api.url}/runs/${id}/events`, {
      timeoutMs: 60_000,
      until: (e) => e.event === 'run.progress' && e.data.progress.step >= 2,
    });
    const running = await ice(['status', id, '--api', api.url]);
    expect(running).toMatchObject({
      code: 0,
      out: expect.stringMatching(/^run .*: running since .*\n {2}running · step \d+\/5000, loss /),
    });
    expect(await ice(['cancel', id, '--api', api.url])).toMatchObject({ code: 0, out: `run ${id}: cancel requested\n` });
    const watched = await ice(['watch', id, '--api', api.url]);
    expect(watched.code).toBe(1);
    expect(watched.err).toMatch(/run 1 of 1 finished: run .* cancelled/);
    expect((await ice(['status', id, '--api', api.url])).code).toBe(1);
    expect(await ice(['cancel', id, '--api', api.url])).toMatchObject({ code: 6, err: /HTTP 409: .*already finished/ });
  }, 90_000);

  it('cancels a whole sweep in one call (then watch exits 1, and a second cancel 6)', async () => {
    const sweepFile = file('long.sweep.json', {
      name: 'cli-cancel',
      base: { ...TINY_RUN, steps: 5000, checkpointEvery: 1000 },
      grid: { 'loss.alpha': [0.25, 0.5, 1] },
      seeds: [0],
    });
    const id = (await ice(['submit', 'sweep', sweepFile, '--api', api.url])).out.trim();
    const runs = async (): Promise<{ status: string }[]> =>
      ((await (await fetch(`${api.url}/sweeps/${id}`, { headers: { 'x-api-key': API_KEY } })).json()) as { runs: { status: string }[] })
        .runs;
    for (let i = 0; i < 240 && !(await runs()).some((r) => r.status === 'running'); i++) await new Promise((r) => setTimeout(r, 250));
    const cancelled = await ice(['cancel', id, '--api', api.url]);
    expect(cancelled.code).toBe(0);
    const m = /^sweep (\S+): (\d+) queued runs cancelled, (\d+) running ones stopping\n$/.exec(cancelled.out);
    expect(m?.[1]).toBe(id);
    expect(Number(m?.[2]) + Number(m?.[3])).toBe(3);
    expect(Number(m?.[3])).toBeGreaterThanOrEqual(1);
    const watched = await ice(['watch', id, '--api', api.url]);
    expect(watched.code).toBe(1);
    expect((await runs()).map((r) => r.status)).toEqual(['cancelled', 'cancelled', 'cancelled']);
    expect(await ice(['cancel', id, '--api', api.url])).toMatchObject({ code: 6, err: /HTTP 409: .*already finished/ });
  }, 120_000);

  it('works as the installed binary: ice submit run FILE --watch, with ICE_API_URL', async () => {
    const run = file('tiny.run.json', TINY_RUN);
    const proc = spawn(process.execPath, [path.join(ROOT, 'bin', 'ice.js'), 'submit', 'run', run, '--watch'], {
      cwd: ROOT,
      env: { ...process.env, ICE_API_URL: api.url, ICE_API_KEY: API_KEY, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
    expect({ code, err }).toMatchObject({ code: 0, err: expect.stringMatching(/run 1 of 1 finished: run [0-9a-f]{8} succeeded · top1 /) });
    const id = out.split('\n')[0];
    expect(out).toContain(`run ${id}: succeeded since `);
    expect((await http(api.url, 'GET', `/runs/${id}`)).body.status).toBe('succeeded');
  }, 90_000);

  it('serves the run-config JSON Schema and links it from /docs', async () => {
    const schema = await http(api.url, 'GET', '/schemas/run-config.json');
    expect(schema.status).toBe(200);
    expect(schema.headers.get('content-type')).toMatch(/application\/schema\+json/);
    expect(schema.body).toEqual(JSON.parse(fs.readFileSync(path.join(ROOT, 'configs', 'schema', 'run-config.json'), 'utf8')));
    expect((await http(api.url, 'GET', '/schemas/nope.json')).status).toBe(404);
    const doc = await http(api.url, 'GET', '/docs-json');
    expect(doc.body.info.description).toContain('(/schemas/run-config.json)');
  });
});
