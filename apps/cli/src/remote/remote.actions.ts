/**
 * What the remote verbs do (registered in commands/remote.command.ts, which loads this file only
 * when one of them runs: it pulls in @ice/orchestration, which the local commands do not need).
 */
import * as fs from 'node:fs';
import { IceApiClient } from './api-client';
import { apiTarget } from './api-target';
import { CliError, EXIT } from './exit-codes';
import { outcomeOf, resolveSubject, runLabel, statusText, type EvaluationView, type RunView, type Subject, type SweepView } from './views';
import { watchSubject } from './watch';

export const SUBMIT_PATHS = { sweep: '/sweeps', run: '/experiments', eval: '/evaluations' } as const;
export type SubmitKind = keyof typeof SUBMIT_PATHS;

export interface ApiOpts {
  api?: string;
}

function client(opts: ApiOpts): IceApiClient {
  return new IceApiClient(apiTarget(opts.api));
}

function readJsonFile(file: string): Record<string, unknown> {
  if (!fs.existsSync(file)) throw new CliError(EXIT.usage, `${file} does not exist`);
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CliError(EXIT.usage, `${file} is not valid JSON: ${(e as Error).message}`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new CliError(EXIT.usage, `${file} must hold a JSON object`);
  return raw as Record<string, unknown>;
}

async function requireSubject(api: IceApiClient, id: string): Promise<Subject> {
  const s = await resolveSubject(api, id);
  if (!s) throw new CliError(EXIT.notFound, `no sweep, run or evaluation ${id} at ${api.target.url}`);
  return s;
}

/** Watches with bars on a terminal, lines elsewhere; Ctrl-C stops watching (not the job). Returns the exit code. */
async function watchAndReport(api: IceApiClient, subject: Subject): Promise<number> {
  const ac = new AbortController();
  const onSigint = (): void => ac.abort();
  process.once('SIGINT', onSigint);
  try {
    const final = await watchSubject(api, subject, { err: process.stderr, bars: process.stderr.isTTY === true, signal: ac.signal });
    const { finished, bad } = outcomeOf(final);
    console.log(statusText(final));
    if (!finished) {
      process.stderr.write(`stopped watching; it goes on: ice watch ${final.view.id}\n`);
      return 130;
    }
    return bad ? EXIT.failed : EXIT.ok;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

export async function submit(
  kind: SubmitKind,
  file: string,
  opts: ApiOpts & { watch?: boolean; run?: string; name?: string },
): Promise<number> {
  const body = readJsonFile(file);
  if (opts.run !== undefined) {
    if (kind !== 'eval') throw new CliError(EXIT.usage, '--run only goes with submit eval');
    // The run replaces a weights file named in the example (and the model that came with it).
    if (body.weights !== undefined) delete body.model;
    delete body.weights;
    body.runId = opts.run;
  }
  if (opts.name !== undefined) {
    if (kind !== 'sweep') throw new CliError(EXIT.usage, '--name only goes with submit sweep');
    body.name = opts.name;
  }
  const api = client(opts);
  const created = await api.post<{ id: string; runCount?: number; status: string }>(SUBMIT_PATHS[kind], body);
  const what = kind === 'eval' ? 'evaluation' : kind;
  process.stderr.write(
    `submitted ${what} ${created.id}${created.runCount !== undefined ? ` (${created.runCount} runs)` : ''}: ${created.status}` +
      `${opts.watch ? '' : `; follow it with: ice watch ${created.id}`}\n` +
      `results page: ${api.target.url}/ui/#/${what}s/${created.id}\n`,
  );
  console.log(created.id);
  if (!opts.watch) return EXIT.ok;
  return watchAndReport(api, await requireSubject(api, created.id));
}

export type LsKind = 'all' | 'sweeps' | 'runs' | 'evals';

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

export async function ls(what: LsKind, opts: ApiOpts & { status?: string; limit: number; json?: boolean }): Promise<number> {
  const api = client(opts);
  const q = (extra = ''): string => `?limit=${opts.limit}${opts.status ? `&status=${encodeURIComponent(opts.status)}` : ''}${extra}`;
  const out: Record<string, unknown[]> = {};
  if (what === 'all' || what === 'sweeps') out.sweeps = (await api.get<{ items: SweepView[] }>(`/sweeps${q()}`)).items;
  if (what === 'all' || what === 'runs') out.runs = (await api.get<{ items: RunView[] }>(`/runs${q()}`)).items;
  if (what === 'all' || what === 'evals') out.evaluations = (await api.get<{ items: EvaluationView[] }>(`/evaluations${q()}`)).items;
  if (opts.json) {
    console.log(JSON.stringify(out, null, 2));
    return EXIT.ok;
  }
  const lines: string[] = [];
  if (out.sweeps) {
    lines.push('SWEEPS');
    for (const s of out.sweeps as SweepView[]) {
      const c = s.counts;
      lines.push(
        `  ${s.id}  ${pad(s.status, 9)}  ${c.succeeded + c.failed + c.cancelled}/${s.runCount} finished  ${s.createdAt}  ${s.name ?? ''}`.trimEnd(),
      );
    }
  }
  if (out.runs) {
    lines.push('RUNS');
    for (const r of out.runs as RunView[]) {
      const step = r.progress && r.status === 'running' ? ` step ${r.progress.step}/${r.progress.totalSteps}` : '';
      lines.push(
        `  ${r.id}  ${pad(r.status, 9)}  ${r.createdAt}  ${r.sweepId ? `${runLabel(r)} (sweep ${r.sweepId.slice(0, 8)})` : ''}${step}`.trimEnd(),
      );
    }
  }
  if (out.evaluations) {
    lines.push('EVALUATIONS');
    for (const e of out.evaluations as EvaluationView[])
      lines.push(`  ${e.id}  ${pad(e.status, 9)}  ${e.createdAt}  ${e.protocol}${e.runId ? ` of run ${e.runId.slice(0, 8)}` : ''}`);
  }
  console.log(lines.join('\n'));
  return EXIT.ok;
}

export async function cancel(id: string, opts: ApiOpts): Promise<number> {
  const api = client(opts);
  const s = await requireSubject(api, id);
  switch (s.kind) {
    case 'run':
      await api.post(`/runs/${id}/cancel`, {});
      console.log(`run ${id}: cancel requested`);
      return EXIT.ok;
    case 'evaluation':
      await api.post(`/evaluations/${id}/cancel`, {});
      console.log(`evaluation ${id}: cancel requested`);
      return EXIT.ok;
    case 'sweep': {
      // One call (POST /sweeps/:id/cancel): the API cancels every unfinished run in bulk; 409 when it has already finished.
      const r = await api.post<{ cancelled: number; stopping: number }>(`/sweeps/${id}/cancel`, {});
      console.log(`sweep ${id}: ${r.cancelled} queued runs cancelled, ${r.stopping} running ones stopping`);
      return EXIT.ok;
    }
  }
}

const FORMATS: Record<string, 'markdown' | 'csv' | 'json'> = { md: 'markdown', markdown: 'markdown', csv: 'csv', json: 'json' };

export async function table(
  id: string,
  opts: ApiOpts & { rows?: string; metrics?: string; format: string; digits?: string; out?: string },
): Promise<number> {
  const format = FORMATS[opts.format];
  if (!format) throw new CliError(EXIT.usage, `--format must be md, csv or json, got ${opts.format}`);
  const params = new URLSearchParams({ format });
  if (opts.rows) params.set('rows', opts.rows);
  if (opts.metrics) params.set('metrics', opts.metrics);
  if (opts.digits) params.set('digits', opts.digits);
  const res = await client(opts).request('GET', `/sweeps/${encodeURIComponent(id)}/table?${params.toString()}`);
  const text = format === 'json' ? JSON.stringify(res.body, null, 2) + '\n' : res.text.endsWith('\n') ? res.text : `${res.text}\n`;
  if (opts.out) {
    fs.writeFileSync(opts.out, text);
    process.stderr.write(`wrote ${opts.out}\n`);
  } else process.stdout.write(text);
  return EXIT.ok;
}

/** `ice status`: the subject's state; exit 1 when it failed, partly failed or was cancelled. */
export async function status(id: string, opts: ApiOpts & { json?: boolean }): Promise<number> {
  const s = await requireSubject(client(opts), id);
  console.log(opts.json ? JSON.stringify({ kind: s.kind, ...s.view }, null, 2) : statusText(s));
  return outcomeOf(s).bad ? EXIT.failed : EXIT.ok;
}

/** `ice watch`. */
export async function watch(id: string, opts: ApiOpts): Promise<number> {
  const api = client(opts);
  return watchAndReport(api, await requireSubject(api, id));
}
