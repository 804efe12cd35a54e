import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { IceError } from '@ice/core';
import {
  buildAblationTable,
  executeRun,
  expandSweep,
  parseRunConfig,
  RunOutcome,
  RunResult,
  tableToMarkdown,
  type RunProgress,
} from '@ice/experiments';

/**
 * `ice train` (one run) and `ice sweep` (a grid of runs, one after another in this process) —
 * the same executor the workers run, for a laptop or a single GPU without Redis.
 */
function readJson(file: string): unknown {
  if (!fs.existsSync(file)) throw new IceError('FILE_NOT_FOUND', `config file ${file} does not exist`);
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new IceError('CONFIG_INVALID', `${file} is not valid JSON: ${(e as Error).message}`);
  }
}

function progressLine(prefix: string): (p: RunProgress) => void {
  return (p) => {
    const extra = p.clsPer !== undefined ? ` fg ${(100 * p.clsPer).toFixed(0)}%` : '';
    process.stderr.write(`${prefix} step ${p.step}/${p.totalSteps} loss ${p.loss.toFixed(4)}${extra} lr ${p.lr.toExponential(2)} ${p.imgPerSec.toFixed(0)} img/s eta ${Math.round(p.etaSeconds)}s\n`);
  };
}

const RESULT_FILE = 'result.json';

/** Runs (or reuses) one run in `dir`: a finished run's result.json is read back instead of retraining. */
export async function runOnce(raw: unknown, dir: string, label: string): Promise<RunResult> {
  const config = parseRunConfig(raw);
  const resultPath = path.join(dir, RESULT_FILE);
  if (fs.existsSync(resultPath)) {
    const prev = JSON.parse(fs.readFileSync(resultPath, 'utf8')) as { config: unknown; result: RunResult };
    if (JSON.stringify(prev.config) === JSON.stringify(config)) {
      process.stderr.write(`${label}: reusing finished result in ${dir}\n`);
      return prev.result;
    }
  }
  const result = await executeRun(config, { runDir: dir, onProgress: progressLine(label), progressIntervalMs: 5000, log: (m) => process.stderr.write(`${label}: ${m}\n`) });
  fs.writeFileSync(resultPath, JSON.stringify({ config, result }, null, 2));
  return result;
}

export function registerTrainCommands(program: Command): void {
  program
    .command('train')
    .description('run one fine-tuning or pre-training run in this process (config: a RunConfig JSON)')
    .requiredOption('--config <run.json>', 'run configuration (see libs/experiments/src/run-config.ts)')
    .requiredOption('--out <dir>', 'run directory (checkpoints, result.json); an unfinished run there is resumed')
    .action(async (opts: { config: string; out: string }) => {
      const result = await runOnce(readJson(opts.config), opts.out, 'train');
      console.log(JSON.stringify(result, null, 2));
    });

  program
    .command('sweep')
    .description('run every cell of a sweep in this process and print the ablation table')
    .requiredOption('--config <sweep.json>', '{ "base": RunConfig, "grid": { "alpha": [...], "lambda_class": [...] }, "seeds": [...] }')
    .requiredOption('--out <dir>', 'sweep directory; finished cells are reused')
    .option('--rows <axes>', 'table rows (default: the grid axes)')
    .option('--metrics <names>', 'table columns (default: all metrics)')
    .action(async (opts: { config: string; out: string; rows?: string; metrics?: string }) => {
      const { request, cells } = expandSweep(readJson(opts.config));
      const outcomes: RunOutcome[] = [];
      for (const [i, cell] of cells.entries()) {
        const dir = path.join(opts.out, `${cell.cellKey.replace(/[^\w.=,-]/g, '_')},seed=${cell.seed}`);
        const label = `[${i + 1}/${cells.length}] ${cell.cellKey} seed ${cell.seed}`;
        try {
          const r = await runOnce(cell.config, dir, label);
          outcomes.push({ values: cell.values, seed: cell.seed, status: 'completed', metrics: r.metrics });
        } catch (e) {
          if (e instanceof IceError && e.code === 'CONFIG_INVALID') throw e;
          process.stderr.write(`${label}: failed: ${(e as Error).message}\n`);
          outcomes.push({ values: cell.values, seed: cell.seed, status: 'failed', metrics: null });
        }
      }
      const rows = opts.rows?.split(',') ?? Object.keys(request.grid);
      console.log(tableToMarkdown(buildAblationTable(outcomes, rows, opts.metrics?.split(','))));
    });
}
