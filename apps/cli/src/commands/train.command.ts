/**
 * `ice train` (one run) and `ice sweep` (a grid of runs, one after another in this process) —
 * the same executor the workers run, for a laptop or a single GPU without Redis.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { IceError } from '@ice/core';
import {
  buildAblationTable,
  canonicalAxes,
  expandSweep,
  rowValueOf,
  RUN_METRICS,
  runOnce,
  RunOutcome,
  tableToMarkdown,
  type SweepCell,
} from '@ice/experiments';

function readJson(file: string): unknown {
  if (!fs.existsSync(file)) throw new IceError('FILE_NOT_FOUND', `config file ${file} does not exist`);
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new IceError('CONFIG_INVALID', `${file} is not valid JSON: ${(e as Error).message}`);
  }
}

/** Where a new user finds what a config file may hold: the examples and the JSON Schema (for editors). */
const CONFIG_HELP = (kind: 'run' | 'sweep'): string => {
  const schema = kind === 'run' ? 'run-config.json' : 'sweep.json';
  const examples =
    kind === 'run'
      ? 'configs/*.run.json (ICE official, paper head, ICE-f, data-parallel) and\n  configs/*-pretrain.json (classification pre-training of the digits backbones)'
      : "configs/alpha-lambda.sweep.json (the paper's α × λ_class ablation, two seeds)";
  return `
Examples:
  ${examples}
Every field with its default and range: the JSON Schema configs/schema/${schema}
  (the API serves it at /schemas/${schema}); a file with "$schema": "./schema/${schema}"
  in configs/ is completed and checked by editors.
The same file goes to the API with \`ice submit ${kind} FILE\`.`;
};

export function registerTrainCommands(program: Command): void {
  program
    .command('train')
    .description('run one fine-tuning or pre-training run in this process (config: a RunConfig JSON)')
    .requiredOption('--config <run.json>', 'run configuration: a JSON file as in configs/*.run.json')
    .requiredOption('--out <dir>', 'run directory (checkpoints, result.json); an unfinished run there is resumed')
    .addHelpText('after', CONFIG_HELP('run'))
    .action(async (opts: { config: string; out: string }) => {
      const result = await runOnce(readJson(opts.config), opts.out, 'train');
      console.log(JSON.stringify(result, null, 2));
    });

  program
    .command('sweep')
    .description('run every cell of a sweep in this process and print the ablation table')
    .requiredOption(
      '--config <sweep.json>',
      '{ "base": RunConfig, "grid": { "loss.alpha": [...], "loss.lambdaClass": [...] }, "seeds": [...] } (aliases alpha, lambda_class… accepted)',
    )
    .requiredOption('--out <dir>', 'sweep directory; finished cells are reused')
    .option('--rows <axes>', 'table rows: run config paths or their aliases (default: the grid axes)')
    .option('--metrics <names>', `table columns (default: all metrics; known: ${RUN_METRICS.join(', ')})`)
    .addHelpText('after', CONFIG_HELP('sweep'))
    .action(async (opts: { config: string; out: string; rows?: string; metrics?: string }) => {
      const { request, cells } = expandSweep(readJson(opts.config));
      // The same axis names as the API's table (aliases → config paths), checked before any training.
      const rows = canonicalAxes(opts.rows?.split(',') ?? Object.keys(request.grid), '--rows');
      const rowValues = (cell: SweepCell): RunOutcome['values'] =>
        Object.fromEntries(rows.map((r) => [r, rowValueOf(cell.values, cell.config, r) ?? '–']));
      const outcomes: RunOutcome[] = [];
      for (const [i, cell] of cells.entries()) {
        const dir = path.join(opts.out, `${cell.cellKey.replace(/[^\w.=,-]/g, '_')},seed=${cell.seed}`);
        const label = `[${i + 1}/${cells.length}] ${cell.cellKey} seed ${cell.seed}`;
        try {
          const r = await runOnce(cell.config, dir, label);
          outcomes.push({ values: rowValues(cell), seed: cell.seed, status: 'succeeded', metrics: r.metrics });
        } catch (e) {
          if (e instanceof IceError && e.code === 'CONFIG_INVALID') throw e;
          process.stderr.write(`${label}: failed: ${(e as Error).message}\n`);
          outcomes.push({ values: rowValues(cell), seed: cell.seed, status: 'failed', metrics: null });
        }
      }
      console.log(tableToMarkdown(buildAblationTable(outcomes, rows, opts.metrics?.split(','))));
    });
}
