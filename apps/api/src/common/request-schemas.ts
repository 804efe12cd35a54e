import { z } from 'zod';
import { parseInput } from '@ice/core';
import { RUN_STATUSES, SWEEP_STATUSES } from '@ice/orchestration';

/** Parses query strings and bodies; a failure is a 400 (INPUT_INVALID) naming each offending field. */
export function parseRequest<S extends z.ZodType>(schema: S, raw: unknown, what: string): z.output<S> {
  return parseInput(schema as z.ZodType<z.output<S>>, raw, 'INPUT_INVALID', what);
}

const page = {
  limit: z.coerce.number().int().min(1).max(500).default(50),
  offset: z.coerce.number().int().min(0).default(0),
};

export const RunListQuery = z.object({ ...page, status: z.enum(RUN_STATUSES).optional(), sweepId: z.uuid().optional() }).strict();
export const SweepListQuery = z.object({ ...page, status: z.enum(SWEEP_STATUSES).optional(), name: z.string().min(1).optional() }).strict();
export const PageQuery = z.object(page).strict();

const csvList = z
  .string()
  .optional()
  .transform((s) =>
    s
      ? s
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean)
      : undefined,
  );

export const TableQuery = z
  .object({
    rows: csvList,
    metrics: csvList,
    format: z.enum(['json', 'csv', 'markdown']).default('json'),
    digits: z.coerce.number().int().min(0).max(10).default(4),
  })
  .strict();

export const MetricsQuery = z.object({ names: csvList }).strict();

export const IdParam = z.uuid();

export function parseId(raw: string, field = 'id'): string {
  return parseRequest(z.object({ [field]: IdParam }), { [field]: raw }, 'path')[field];
}
