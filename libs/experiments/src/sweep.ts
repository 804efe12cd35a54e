/**
 * A sweep: a base run config and a grid of values for named fields; every combination (cell)
 * becomes one run per seed. Axes are the config's dotted paths ("loss.alpha"); short aliases
 * (alpha, lambda_class, …) are accepted and canonicalised here (sweep-axes.ts), so the expanded
 * sweep, its cells and its table speak of paths only.
 */
import { z } from 'zod';
import { IceError, parseInput } from '@ice/core';
import { parseRunConfig, withoutSchemaRef, type RunConfig } from './run.contract';
import { canonicalAxes, knownAxesText, setConfigPath } from './sweep-axes';

export const MAX_CELLS_DEFAULT = 1000;

export const SweepRequestSchema = z
  .object({
    name: z.string().min(1).max(200).optional(),
    base: z.record(z.string(), z.unknown()).default({}),
    /** Axis → values; α and λ_class first by convention. */
    grid: z
      .record(z.string(), z.array(z.union([z.number(), z.string(), z.boolean()])).min(1))
      .refine((g) => Object.keys(g).length > 0, 'grid needs at least one axis')
      .describe(`axis → values; an axis is a run config path or an alias of one: ${knownAxesText()}`),
    /** Repeats of every cell with these seeds (default: the base seed only). */
    seeds: z.array(z.number().int().min(0)).min(1).optional(),
    /** Required to submit more than MAX_CELLS_DEFAULT cells. */
    allowLargeGrid: z.boolean().default(false),
  })
  .strict();

export type SweepRequest = z.infer<typeof SweepRequestSchema>;

export interface SweepCell {
  /** Stable key of the grid cell, e.g. "loss.alpha=0.5,loss.lambdaClass=0.975". */
  cellKey: string;
  /** Axis (canonical path) → value of this cell. */
  values: Record<string, number | string | boolean>;
  seed: number;
  config: RunConfig;
}

/** Every (cell, seed) of the grid as a validated run config; errors name the offending cell. */
export function expandSweep(raw: unknown): { request: SweepRequest; cells: SweepCell[] } {
  const given = parseInput(SweepRequestSchema, withoutSchemaRef(raw), 'CONFIG_INVALID', 'sweep');
  // One name per axis from here on: the request comes back with its grid keyed by canonical paths.
  const axes = canonicalAxes(Object.keys(given.grid), 'grid');
  const request: SweepRequest = { ...given, grid: Object.fromEntries(Object.values(given.grid).map((v, i) => [axes[i], v])) };
  const base = parseRunConfig(request.base); // the base alone must be valid
  const seeds = request.seeds ?? [base.seed];
  const nCells = axes.reduce((n, a) => n * request.grid[a].length, 1);
  if (nCells * seeds.length > MAX_CELLS_DEFAULT && !request.allowLargeGrid) {
    throw new IceError(
      'CONFIG_INVALID',
      `grid: ${nCells} cells × ${seeds.length} seeds = ${nCells * seeds.length} runs exceeds ${MAX_CELLS_DEFAULT}; set allowLargeGrid: true to submit it`,
    );
  }
  const cells: SweepCell[] = [];
  const combo = (i: number, values: Record<string, number | string | boolean>): void => {
    if (i === axes.length) {
      const cellKey = axes.map((a) => `${a}=${String(values[a])}`).join(',');
      for (const seed of seeds) {
        const input: Record<string, unknown> = structuredClone(request.base);
        for (const a of axes) setConfigPath(input, a, values[a]);
        input.seed = seed;
        let config: RunConfig;
        try {
          config = parseRunConfig(input);
        } catch (e) {
          throw new IceError('CONFIG_INVALID', `grid cell ${cellKey}: ${(e as Error).message}`);
        }
        cells.push({ cellKey, values: { ...values }, seed, config });
      }
      return;
    }
    for (const v of request.grid[axes[i]]) combo(i + 1, { ...values, [axes[i]]: v });
  };
  combo(0, {});
  return { request, cells };
}
