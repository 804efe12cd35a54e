/**
 * `ice submit | status | watch | table | cancel | ls`: the API's workflow from the command line.
 * Top-level verbs (not `ice remote …`): none of them clashes with a local command, each only makes
 * sense against the API (a local run has no id), and they read as what a person does ("ice
 * submit sweep", "ice watch ID"). `--api URL` (or ICE_API_URL, default http://127.0.0.1:3000);
 * the key comes from ICE_API_KEY. Input is validated by the API only, so messages are its own;
 * exit codes are in exit-codes.ts and the README.
 */
import * as fs from 'node:fs';
import { Argument, Command, Option } from 'commander';
import { isTerminalRunStatus, type RunStatus } from '@ice/orchestration';
import { apiTarget, DEFAULT_API_URL, IceApiClient } from '../remote/api-client';
import { CliError, EXIT } from '../remote/exit-codes';
import {
  outcomeOf,
  resolveSubject,
  runLabel,
  statusText,
  type EvaluationView,
  type RunView,
  type Subject,
  type SweepView,
} from '../remote/views';
import { watchSubject } from '../remote/watch';

export const REMOTE_HELP_GROUP = 'Remote commands (against the API: --api URL or ICE_API_URL; key in ICE_API_KEY):';

const SUBMIT_PATHS = { sweep: '/sweeps', run: '/experiments', eval: '/evaluations' } as const;
type SubmitKind = keyof typeof SUBMIT_PATHS;

interface ApiOpts {
  api?: string;
}

function client(opts: ApiOpts): IceApiClient {
  return new IceApiClient(apiTarget(opts.api));
}

function apiOption(): Option {
  return new Option('--api <url>', `the API's base URL (default: ICE_API_URL, else ${DEFAULT_API_URL})`);
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

async function submit(kind: SubmitKind, file: string, opts: ApiOpts & { watch?: boolean; run?: string; name?: string }): Promise<number> {
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

function parseLimit(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 500) throw new CliError(EXIT.usage, `--limit must be an integer in 1..500, got ${v}`);
  return n;
}

const LS_KINDS = ['all', 'sweeps', 'runs', 'evals'] as const;

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

async function ls(what: (typeof LS_KINDS)[number], opts: ApiOpts & { status?: string; limit: number; json?: boolean }): Promise<number> {
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

async function cancel(id: string, opts: ApiOpts): Promise<number> {
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
      // A sweep is its runs: cancelling it cancels each unfinished one (the sweep then ends as cancelled or partial).
      const open = (s.view.runs ?? []).filter((r) => !isTerminalRunStatus(r.status));
      if (!open.length) throw new CliError(EXIT.conflict, `sweep ${id} has already finished (${s.view.status})`);
      let n = 0;
      for (const r of open) {
        try {
          await api.post(`/runs/${r.id}/cancel`, {});
          n++;
        } catch (e) {
          // Finished between the listing and the request: nothing to cancel.
          if (!(e instanceof CliError && e.exitCode === EXIT.conflict)) throw e;
        }
      }
      console.log(`sweep ${id}: cancel requested for ${n} of its ${s.view.runCount} runs (the unfinished ones)`);
      return EXIT.ok;
    }
  }
}

const FORMATS: Record<string, 'markdown' | 'csv' | 'json'> = { md: 'markdown', markdown: 'markdown', csv: 'csv', json: 'json' };

async function table(
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

/** Runs an action and sets the process's exit code from its result. */
function exitWith<A extends unknown[]>(fn: (...args: A) => Promise<number>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    process.exitCode = await fn(...args);
  };
}

export function registerRemoteCommands(program: Command): void {
  program
    .command('submit')
    .helpGroup(REMOTE_HELP_GROUP)
    .description('submit a sweep, run or evaluation file to the API; prints its id (configs/ has examples)')
    .addArgument(new Argument('<kind>', 'sweep, run or eval').choices(['sweep', 'run', 'eval']))
    .argument('<file>', 'a JSON file: a sweep (configs/*.sweep.json), a run config (*.run.json) or an evaluation (*.eval.json)')
    .addOption(apiOption())
    .option('--watch', 'then follow it until it finishes (as ice watch)')
    .option('--run <id>', 'eval: evaluate this finished run (replaces the weights named in the file)')
    .option('--name <name>', 'sweep: its name (replaces the one in the file)')
    .action(
      exitWith((kind: SubmitKind, file: string, opts: ApiOpts & { watch?: boolean; run?: string; name?: string }) =>
        submit(kind, file, opts),
      ),
    );

  program
    .command('status')
    .helpGroup(REMOTE_HELP_GROUP)
    .description('where a sweep, run or evaluation stands (exit 1 when it failed, partly failed or was cancelled)')
    .argument('<id>', 'a sweep, run or evaluation id')
    .addOption(apiOption())
    .option('--json', "the API's JSON instead of text")
    .action(
      exitWith(async (id: string, opts: ApiOpts & { json?: boolean }) => {
        const s = await requireSubject(client(opts), id);
        console.log(opts.json ? JSON.stringify({ kind: s.kind, ...s.view }, null, 2) : statusText(s));
        return outcomeOf(s).bad ? EXIT.failed : EXIT.ok;
      }),
    );

  program
    .command('watch')
    .helpGroup(REMOTE_HELP_GROUP)
    .description('follow a sweep, run or evaluation live until it finishes: bars on a terminal, lines elsewhere (exit 0 succeeded, 1 not)')
    .argument('<id>', 'a sweep, run or evaluation id')
    .addOption(apiOption())
    .action(
      exitWith(async (id: string, opts: ApiOpts) => {
        const api = client(opts);
        return watchAndReport(api, await requireSubject(api, id));
      }),
    );

  program
    .command('table')
    .helpGroup(REMOTE_HELP_GROUP)
    .description("a sweep's ablation table: one line per grid cell, mean ± std over seeds per metric")
    .argument('<sweep>', 'sweep id')
    .addOption(apiOption())
    .option('--rows <axes>', 'comma-separated grid axes or run config fields (default: the grid axes)')
    .option('--metrics <names>', 'comma-separated metrics (default: all the runs report)')
    .option('--format <format>', 'md, csv or json', 'md')
    .option('--digits <n>', 'decimals in md (default 4)')
    .option('--out <file>', 'write the table to a file instead of stdout')
    .action(
      exitWith((id: string, opts: ApiOpts & { rows?: string; metrics?: string; format: string; digits?: string; out?: string }) =>
        table(id, opts),
      ),
    );

  program
    .command('cancel')
    .helpGroup(REMOTE_HELP_GROUP)
    .description('stop a run or evaluation, or every unfinished run of a sweep (exit 6 when it had already finished)')
    .argument('<id>', 'a sweep, run or evaluation id')
    .addOption(apiOption())
    .action(exitWith((id: string, opts: ApiOpts) => cancel(id, opts)));

  program
    .command('ls')
    .helpGroup(REMOTE_HELP_GROUP)
    .description('the newest sweeps, runs and evaluations')
    .addArgument(new Argument('[what]', 'all, sweeps, runs or evals').choices(LS_KINDS).default('all'))
    .addOption(apiOption())
    .option('--status <status>', 'only those in this status (queued, running, succeeded, failed, cancelled; sweeps also partial)')
    .option('--limit <n>', 'how many of each (1..500)', parseLimit, 10)
    .option('--json', "the API's JSON instead of text")
    .action(
      exitWith((what: (typeof LS_KINDS)[number], opts: ApiOpts & { status?: RunStatus; limit: number; json?: boolean }) => ls(what, opts)),
    );
}
