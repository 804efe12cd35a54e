/**
 * Every job the system runs: its name, its queue and its payload schema. The payload schemas embed
 * the contracts themselves (the RunConfig of @ice/experiments, the EvaluationSpec of
 * @ice/evaluation), so a worker parses a job's payload once, at its boundary (a job is untyped JSON
 * by the time it leaves Redis), and its handler receives typed values. The handler registry checks
 * at boot that every name has exactly one handler.
 */
import { z } from 'zod';
import { parseInput } from '@ice/core';
import { EvaluationSpecSchema } from '@ice/evaluation';
import { RunConfigSchema } from '@ice/experiments';
import type { QueueName } from './queues';

const uuid = z.uuid();

export const JOB_DEFINITIONS = {
  /** One training run, or one data-parallel rank of it (rank < config.worldSize; the ranks share the run's row). */
  'run.train': {
    queue: 'training',
    payload: z
      .object({ runId: uuid, rank: z.number().int().min(0).default(0), config: RunConfigSchema })
      .strict()
      .superRefine((p, ctx) => {
        if (p.rank >= p.config.worldSize)
          ctx.addIssue({ code: 'custom', path: ['rank'], message: `job for rank ${p.rank} of a run with worldSize ${p.config.worldSize}` });
      }),
  },
  /** The parent of a sweep's flow: runs once every child run has finished (or finally failed). */
  'sweep.finalize': {
    queue: 'sweeps',
    payload: z.object({ sweepId: uuid }).strict(),
  },
  /** One evaluation. */
  'evaluation.run': {
    queue: 'evaluation',
    // Optional: jobs queued before the spec travelled in the payload read it from their row.
    payload: z.object({ evaluationId: uuid, spec: EvaluationSpecSchema.optional() }).strict(),
  },
} as const satisfies Record<string, { queue: QueueName; payload: z.ZodType }>;

export type JobName = keyof typeof JOB_DEFINITIONS;
export const JOB_NAMES = Object.keys(JOB_DEFINITIONS) as JobName[];
export type JobPayload<N extends JobName> = z.output<(typeof JOB_DEFINITIONS)[N]['payload']>;
export type JobPayloadInput<N extends JobName> = z.input<(typeof JOB_DEFINITIONS)[N]['payload']>;

export function isJobName(name: string): name is JobName {
  return Object.hasOwn(JOB_DEFINITIONS, name);
}

/** The worker's one parse of a job's payload; INPUT_INVALID naming every field that is wrong. */
export function parseJobPayload<N extends JobName>(name: N, raw: unknown): JobPayload<N> {
  const schema = JOB_DEFINITIONS[name].payload as unknown as z.ZodType<JobPayload<N>>;
  return parseInput(schema, raw, 'INPUT_INVALID', `payload of job ${name}`);
}

/** Job ids are derived from the row they act on, so adding the same job twice is a no-op. */
export const jobIds = {
  run: (runId: string, rank = 0): string => (rank === 0 ? `run-${runId}` : `run-${runId}-rank-${rank}`),
  sweep: (sweepId: string): string => `sweep-${sweepId}`,
  evaluation: (id: string): string => `evaluation-${id}`,
};
