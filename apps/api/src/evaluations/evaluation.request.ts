import { z } from 'zod';
import { DATASET_FORMATS } from '@ice/experiments';

/**
 * An evaluation of a trained model: a finished run's checkpoint or a weights file, scored by a
 * protocol on a data set. 'accuracy' (top-1 of the CLS head and the ICE foreground fraction) is
 * the protocol the workers run today.
 */
export const EVALUATION_PROTOCOLS = ['accuracy'] as const;

export const EvaluationRequestSchema = z
  .object({
    protocol: z.enum(EVALUATION_PROTOCOLS).default('accuracy'),
    data: z
      .object({
        format: z.enum(DATASET_FORMATS).default('digits'),
        root: z.string().min(1).optional(),
        limit: z.number().int().min(1).max(100_000).default(200),
        batchSize: z.number().int().min(1).max(256).default(32),
      })
      .strict()
      .prefault({}),
    methods: z.array(z.enum(['ice', 'cls'])).min(1).default(['ice']),
    runId: z.uuid().optional(),
    weights: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((r, ctx) => {
    if (!r.runId === !r.weights) ctx.addIssue({ code: 'custom', path: ['runId'], message: 'give exactly one of runId (a finished run) or weights (a file)' });
    if (r.data.format !== 'digits' && !r.data.root) ctx.addIssue({ code: 'custom', path: ['data', 'root'], message: `data.root is required for format ${r.data.format}` });
  });

export type EvaluationRequest = z.output<typeof EvaluationRequestSchema>;
