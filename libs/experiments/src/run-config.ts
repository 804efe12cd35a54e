import { z } from 'zod';
import { IceError, isVitPreset, VIT_PRESETS } from '@ice/core';

/**
 * One fine-tuning (or pre-training) run, as users submit it and as workers receive it. The same
 * schema validates the HTTP request and, again, the job payload in the worker (it arrives as
 * untyped JSON). zod was chosen because one declaration gives the TypeScript type, the runtime
 * check with field-named messages, and a JSON Schema for the OpenAPI document.
 */
export const DATASET_FORMATS = ['digits', 'imagenet', 'voc', 'cub'] as const;

/** Most data-parallel ranks of one run. */
export const MAX_WORLD_SIZE = 64;

const presetName = z.string().refine(isVitPreset, { message: `unknown model preset; known: ${Object.keys(VIT_PRESETS).join(', ')}` });

export const RunConfigSchema = z
  .object({
    /** 'ice' fine-tunes with adversarial normalization; 'classify' pre-trains the CLS head. */
    mode: z.enum(['ice', 'classify']).default('ice'),
    model: z
      .object({
        preset: presetName.default('digits-micro'),
        /** Starting weights (timm/DeiT/ICE .pth or .safetensors, or a finished run's checkpoint). */
        weights: z.string().min(1).optional(),
        head: z.enum(['official', 'icef', 'paper']).default('official'),
        dropPathRate: z.number().min(0).lt(1).default(0),
      })
      .strict()
      .prefault({}),
    loss: z
      .object({
        variant: z.enum(['official', 'paper']).default('official'),
        alpha: z.number().gt(0, 'alpha must be in (0, 1]').lte(1, 'alpha must be in (0, 1]').default(0.5),
        lambdaClass: z
          .number()
          .gte(0, 'lambdaClass must be in [0, 1]')
          .lte(1, 'lambdaClass must be in [0, 1]')
          .default(1 / 1.025),
        /** The released code's background-loss gate (fraction of foreground patches); 0 = off. */
        gateThreshold: z.number().min(0).max(1).optional(),
      })
      .strict()
      .prefault({}),
    optimizer: z
      .object({
        lr: z.number().positive().default(1e-3),
        weightDecay: z.number().min(0).default(0.05),
        warmupSteps: z.number().int().min(0).default(10),
        minLr: z.number().min(0).default(1e-5),
        accumSteps: z.number().int().min(1).default(1),
        mixup: z.boolean().default(false),
        labelSmoothing: z.number().min(0).lt(1).default(0.1),
      })
      .strict()
      .prefault({}),
    data: z
      .object({
        format: z.enum(DATASET_FORMATS).default('digits'),
        /** Root folder of a file-backed data set; must lie inside a configured data root. */
        root: z.string().min(1).optional(),
        batchSize: z.number().int().min(2).max(1024).default(16),
        /** Samples of the evaluation split scored at the end of the run. */
        evalLimit: z.number().int().min(1).default(200),
        /**
         * Worker threads that build training batches off the training thread (prefetched); 0 builds
         * them on the training thread between steps; 'auto' picks for the machine (1 on 2 cores).
         * Batches, and so results, are the same whatever the setting.
         */
        loaderThreads: z.union([z.literal('auto'), z.number().int().min(0).max(16)]).default('auto'),
      })
      .strict()
      .prefault({}),
    steps: z.number().int().min(1).max(1_000_000).default(100),
    seed: z.number().int().min(0).default(0),
    /**
     * Data-parallel ranks: W workers, each training on its shard of every batch (data.batchSize
     * samples per rank, W × batchSize per update) and averaging gradients; 1 = one worker.
     */
    worldSize: z.number().int().min(1).max(MAX_WORLD_SIZE).default(1),
    checkpointEvery: z.number().int().min(1).default(50),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.data.format !== 'digits' && !c.data.root) {
      ctx.addIssue({ code: 'custom', path: ['data', 'root'], message: `data.root is required for format ${c.data.format}` });
    }
    if (c.mode === 'ice' && c.loss.variant === 'official' && c.loss.lambdaClass === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['loss', 'lambdaClass'],
        message: 'the official loss needs lambdaClass > 0 (its background weight is (1−λ)/λ)',
      });
    }
  });

export type RunConfig = z.infer<typeof RunConfigSchema>;
export type RunConfigInput = z.input<typeof RunConfigSchema>;

/** "loss.alpha: alpha must be in (0, 1]; steps: ..." — every problem, each named by its field path. */
export function formatZodError(e: z.ZodError): string {
  return e.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ');
}

/** Parses untrusted input (an HTTP body, a job payload) into a complete RunConfig. */
export function parseRunConfig(raw: unknown): RunConfig {
  const r = RunConfigSchema.safeParse(raw);
  if (!r.success) throw new IceError('CONFIG_INVALID', `invalid run config: ${formatZodError(r.error)}`, { issues: r.error.issues });
  return r.data;
}
