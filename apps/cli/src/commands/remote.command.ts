/**
 * `ice submit | status | watch | table | cancel | ls`: the API's workflow from the command line.
 * Top-level verbs (not `ice remote …`): none of them clashes with a local command, each only makes
 * sense against the API (a local run has no id), and they read as what a person does ("ice
 * submit sweep", "ice watch ID"). `--api URL` (or ICE_API_URL, default http://127.0.0.1:3000);
 * the key comes from ICE_API_KEY. Input is validated by the API only, so messages are its own;
 * exit codes are in exit-codes.ts and the README. The actions load lazily (remote.actions.ts).
 */
import { Argument, Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_API_URL } from '../remote/api-target';
import type { ApiOpts, LsKind, SubmitKind } from '../remote/remote.actions';

export const REMOTE_HELP_GROUP = 'Remote commands (against the API: --api URL or ICE_API_URL; key in ICE_API_KEY):';

const LS_KINDS: readonly LsKind[] = ['all', 'sweeps', 'runs', 'evals'];

function apiOption(): Option {
  return new Option('--api <url>', `the API's base URL (default: ICE_API_URL, else ${DEFAULT_API_URL})`);
}

const actions = () => import('../remote/remote.actions');

function parseLimit(v: string): number {
  const n = Number(v);
  // Commander reports an InvalidArgumentError as a usage error (exit 2).
  if (!Number.isInteger(n) || n < 1 || n > 500) throw new InvalidArgumentError(`an integer in 1..500, got ${v}`);
  return n;
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
      exitWith(async (kind: SubmitKind, file: string, opts: ApiOpts & { watch?: boolean; run?: string; name?: string }) =>
        (await actions()).submit(kind, file, opts),
      ),
    );

  program
    .command('status')
    .helpGroup(REMOTE_HELP_GROUP)
    .description('where a sweep, run or evaluation stands (exit 1 when it failed, partly failed or was cancelled)')
    .argument('<id>', 'a sweep, run or evaluation id')
    .addOption(apiOption())
    .option('--json', "the API's JSON instead of text")
    .action(exitWith(async (id: string, opts: ApiOpts & { json?: boolean }) => (await actions()).status(id, opts)));

  program
    .command('watch')
    .helpGroup(REMOTE_HELP_GROUP)
    .description('follow a sweep, run or evaluation live until it finishes: bars on a terminal, lines elsewhere (exit 0 succeeded, 1 not)')
    .argument('<id>', 'a sweep, run or evaluation id')
    .addOption(apiOption())
    .action(exitWith(async (id: string, opts: ApiOpts) => (await actions()).watch(id, opts)));

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
      exitWith(async (id: string, opts: ApiOpts & { rows?: string; metrics?: string; format: string; digits?: string; out?: string }) =>
        (await actions()).table(id, opts),
      ),
    );

  program
    .command('cancel')
    .helpGroup(REMOTE_HELP_GROUP)
    .description('stop a run or evaluation, or every unfinished run of a sweep (exit 6 when it had already finished)')
    .argument('<id>', 'a sweep, run or evaluation id')
    .addOption(apiOption())
    .action(exitWith(async (id: string, opts: ApiOpts) => (await actions()).cancel(id, opts)));

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
      exitWith(async (what: LsKind, opts: ApiOpts & { status?: string; limit: number; json?: boolean }) =>
        (await actions()).ls(what, opts),
      ),
    );
}
