import { z } from 'zod';
import { IceError } from '@ice/core';

/**
 * Every job the system runs: its name, its queue and its payload schema. Workers validate each
 * payload again with these schemas (a job is untyped JSON by the time it leaves Redis), and
 * the handler registry checks at boot that every name has exactly one handler.
 */
export const QUEUE_NAMES = ['training', 'evaluation', 'sweeps'] as const;
export type QueueName = (typeof QUEUE_NAMES)[number];

const uuid = z.uuid();

export const JOB_DEFINITIONS = {
  /** One training run, or one data-parallel rank of it (rank < config.worldSize; the ranks share the run's row). */
  'run.train': {
    queue: 'training',
    payload: z.object({ runId: uuid, rank: z.number().int().min(0).default(0), config: z.record(z.string(), z.unknown()) }).strict(),
  },
  /** The parent of a sweep's flow: runs once every child run has finished (or finally failed). */
  'sweep.finalize': {
    queue: 'sweeps',
    payload: z.object({ sweepId: uuid }).strict(),
  },
  /** One evaluation; `spec` is checked again by the handler (EvaluationSpecSchema), which marks the row failed when it does not parse. */
  'evaluation.run': {
    queue: 'evaluation',
    // Optional: jobs queued before the spec travelled in the payload read it from their row.
    payload: z.object({ evaluationId: uuid, spec: z.record(z.string(), z.unknown()).optional() }).strict(),
  },
} as const satisfies Record<string, { queue: QueueName; payload: z.ZodType }>;

export type JobName = keyof typeof JOB_DEFINITIONS;
export const JOB_NAMES = Object.keys(JOB_DEFINITIONS) as JobName[];
export type JobPayload<N extends JobName> = z.output<(typeof JOB_DEFINITIONS)[N]['payload']>;
export type JobPayloadInput<N extends JobName> = z.input<(typeof JOB_DEFINITIONS)[N]['payload']>;

export function isJobName(name: string): name is JobName {
  return Object.hasOwn(JOB_DEFINITIONS, name);
}

export function parseJobPayload<N extends JobName>(name: N, raw: unknown): JobPayload<N> {
  const r = JOB_DEFINITIONS[name].payload.safeParse(raw);
  if (!r.success) {
    throw new IceError(
      'INPUT_INVALID',
      `job ${name}: invalid payload: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`,
    );
  }
  return r.data as JobPayload<N>;
}

/** Job ids are derived from the row they act on, so adding the same job twice is a no-op. */
export const jobIds = {
  run: (runId: string, rank = 0): string => (rank === 0 ? `run-${runId}` : `run-${runId}-rank-${rank}`),
  sweep: (sweepId: string): string => `sweep-${sweepId}`,
  evaluation: (id: string): string => `evaluation-${id}`,
};
