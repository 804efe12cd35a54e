/**
 * The run contract, one declaration from the HTTP request to the training thread: what a run is
 * (RunConfig), what it reports while it trains (RunProgress) and what it ends with (RunResult).
 *
 * Every process boundary parses a RunConfig once — the API's request, the worker's job payload
 * (whose schema embeds RunConfigSchema), the training thread's input, the CLI's file — and past it
 * the typed value travels. The enums and defaults are @ice/core's (ICE heads, loss variants and
 * presets, training modes) and the α/λ_class/gate ranges are core's `iceLossConfigIssues`, so the
 * API's 400s, the worker's checks and the trainer's own validation cannot drift apart.
 *
 * zod: one declaration gives the TypeScript type, the runtime check with field-named messages, and
 * a JSON Schema for the OpenAPI document.
 */
import { z } from 'zod';
import {
  ICE_HEAD_KINDS,
  ICE_LOSS_PRESETS,
  ICE_LOSS_RULES,
  ICE_LOSS_VARIANTS,
  iceLossConfigIssues,
  isVitPreset,
  parseInput,
  TRAIN_MODES,
  VIT_PRESETS,
  type IceHeadKind,
  type IceLossConfig,
  type LambdaWarmup,
  type LossStats,
} from '@ice/core';

export const DATASET_FORMATS = ['digits', 'imagenet', 'voc', 'cub'] as const;

/** Most data-parallel ranks of one run. */
export const MAX_WORLD_SIZE = 64;

/** The ICE heads a run trains ('none' is what mode 'classify' builds). */
export const RUN_ICE_HEADS = ICE_HEAD_KINDS.filter((h): h is Exclude<IceHeadKind, 'none'> => h !== 'none');

/** The released code's recipe: the defaults of α, λ_class and the loss variant. */
const RELEASED_LOSS = ICE_LOSS_PRESETS.official;

/** The warm-up under which the released λ_class gives object maps on the digits benchmark (docs/collapse.md). */
export const DEFAULT_LAMBDA_WARMUP = { from: 0.65, fraction: 0.6 } as const;

const presetName = z.string().refine(isVitPreset, { message: `unknown model preset; known: ${Object.keys(VIT_PRESETS).join(', ')}` });

const LossSchema = z
  .object({
    variant: z.enum(ICE_LOSS_VARIANTS).default(RELEASED_LOSS.variant),
    alpha: z.number().default(RELEASED_LOSS.alpha).describe(`α: scale of the background logit mean, ${ICE_LOSS_RULES.alpha}`),
    lambdaClass: z
      .number()
      .default(RELEASED_LOSS.lambdaClass)
      .describe(`λ_class: weight of L_ICE against L_bg, ${ICE_LOSS_RULES.lambdaClass} (> 0 for the official variant)`),
    /** The released code's background-loss gate (fraction of foreground patches); 0 = off. Default: the variant's preset. */
    gateThreshold: z.number().optional().describe(`background-loss gate, ${ICE_LOSS_RULES.gateThreshold}; default: the variant's preset`),
    /**
     * λ_class moves from `from` to lambdaClass over the first `steps` updates, or the first `fraction` of
     * the run (core's LambdaWarmup); it only applies where λ_class is above `from` (a weaker start is no
     * warm-up). Default DEFAULT_LAMBDA_WARMUP (from 0.65 over the first 60 % of the run): on the digits
     * benchmark the released λ_class alone leaves every patch foreground, while a run that starts at
     * 0.65 splits digits from clutter and keeps that split as λ_class rises to 0.975 (docs/collapse.md).
     * null: no warm-up, the released code's behaviour.
     */
    lambdaWarmup: z
      .object({
        from: z.number().describe(`λ_class at the first update, ${ICE_LOSS_RULES.lambdaClass} (> 0 for the official variant)`),
        steps: z.number().int().min(0).optional().describe('optimizer updates over which λ_class reaches lambdaClass'),
        fraction: z
          .number()
          .min(0)
          .max(1)
          .optional()
          .describe('share of the run over which λ_class reaches lambdaClass (instead of steps)'),
      })
      .strict()
      .refine((w) => (w.steps === undefined) !== (w.fraction === undefined), {
        message: 'lambdaWarmup needs exactly one of steps and fraction',
        path: ['steps'],
      })
      .nullable()
      .default(DEFAULT_LAMBDA_WARMUP)
      .describe(
        'warm-up of the background term: a stronger background loss while the ICE head is young (docs/collapse.md); null: none, as the released code',
      ),
  })
  .strict()
  // The ranges are core's, stated once (iceLossConfigIssues); each issue names its field.
  .superRefine((loss, ctx) => {
    for (const i of iceLossConfigIssues(runLossConfig(loss)))
      ctx.addIssue({ code: 'custom', path: [i.field], message: `${i.field} must be ${i.rule}` });
    if (loss.lambdaWarmup)
      for (const i of iceLossConfigIssues({ ...runLossConfig(loss), lambdaClass: loss.lambdaWarmup.from }).filter(
        (x) => x.field === 'lambdaClass',
      ))
        ctx.addIssue({ code: 'custom', path: ['lambdaWarmup', 'from'], message: `lambdaWarmup.from must be ${i.rule}` });
  });

export const RunConfigSchema = z
  .object({
    /** 'ice' fine-tunes with adversarial normalization; 'classify' pre-trains the CLS head. */
    mode: z
      .enum(TRAIN_MODES)
      .default('ice')
      .describe("'ice' fine-tunes with adversarial normalization; 'classify' pre-trains the CLS head"),
    model: z
      .object({
        preset: presetName.default('digits-micro').describe('model preset (architecture); see the README, Model presets'),
        /** Starting weights (timm/DeiT/ICE .pth or .safetensors, or a finished run's checkpoint). */
        weights: z
          .string()
          .min(1)
          .optional()
          .describe("starting weights: timm/DeiT/ICE .pth or .safetensors, or a finished run's checkpoint (inside the API's data roots)"),
        head: z
          .enum(RUN_ICE_HEADS)
          .default('official')
          .describe("ICE head: 'official' (released code), 'icef' (ICE-f, backbone frozen), 'paper' (the paper's head)"),
        dropPathRate: z.number().min(0).lt(1).default(0),
      })
      .strict()
      .prefault({}),
    loss: LossSchema.prefault({}),
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
        root: z.string().min(1).optional().describe('root folder of a file-backed data set (inside a configured data root)'),
        batchSize: z.number().int().min(2).max(1024).default(16).describe('samples per step and rank'),
        /** Samples of the evaluation split scored at the end of the run. */
        evalLimit: z.number().int().min(1).default(200).describe('samples of the evaluation split scored at the end of the run'),
        /**
         * Worker threads that build training batches off the training thread (prefetched); 0 builds
         * them on the training thread between steps; 'auto' picks for the machine (1 on 2 cores).
         * Batches, and so results, are the same whatever the setting.
         */
        loaderThreads: z.union([z.literal('auto'), z.number().int().min(0).max(16)]).default('auto'),
      })
      .strict()
      .prefault({}),
    steps: z.number().int().min(1).max(1_000_000).default(100).describe('optimizer updates'),
    seed: z.number().int().min(0).default(0),
    /**
     * Data-parallel ranks: W workers, each training on its shard of every batch (data.batchSize
     * samples per rank, W × batchSize per update) and averaging gradients; 1 = one worker.
     */
    worldSize: z
      .number()
      .int()
      .min(1)
      .max(MAX_WORLD_SIZE)
      .default(1)
      .describe('data-parallel ranks (workers), each with data.batchSize samples per step; 1 = one worker'),
    checkpointEvery: z.number().int().min(1).default(50).describe('updates between resumable checkpoints'),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.data.format !== 'digits' && !c.data.root) {
      ctx.addIssue({ code: 'custom', path: ['data', 'root'], message: `data.root is required for format ${c.data.format}` });
    }
  });

export type RunConfig = z.infer<typeof RunConfigSchema>;
export type RunConfigInput = z.input<typeof RunConfigSchema>;

/** A config file may name its JSON Schema (`"$schema": "…"`, for editors); that key is not part of the config. */
export function withoutSchemaRef(raw: unknown): unknown {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw) || typeof (raw as Record<string, unknown>).$schema !== 'string') return raw;
  const { $schema: _ref, ...rest } = raw as Record<string, unknown>;
  return rest;
}

/** Parses untrusted input (an HTTP body, a config file) into a complete RunConfig, or throws CONFIG_INVALID naming every field. */
export function parseRunConfig(raw: unknown): RunConfig {
  return parseInput(RunConfigSchema, withoutSchemaRef(raw), 'CONFIG_INVALID', 'run config');
}

/** The loss core trains with: the run's α, λ_class and variant, and the gate of the variant's preset unless the run sets one. */
export function runLossConfig(loss: Omit<IceLossConfig, 'gateThreshold'> & { gateThreshold?: number }): IceLossConfig {
  return {
    variant: loss.variant,
    alpha: loss.alpha,
    lambdaClass: loss.lambdaClass,
    gateThreshold: loss.gateThreshold ?? ICE_LOSS_PRESETS[loss.variant]?.gateThreshold ?? RELEASED_LOSS.gateThreshold,
  };
}

/**
 * Core's warm-up for a run: `fraction` turned into updates of this run, and none where it would not
 * strengthen the background term (λ_class at or below `from`) or in classification mode.
 */
export function runLambdaWarmup(config: Pick<RunConfig, 'mode' | 'loss' | 'steps'>): LambdaWarmup | null {
  const w = config.loss.lambdaWarmup;
  if (!w || config.mode !== 'ice' || config.loss.lambdaClass <= w.from) return null;
  const steps = w.steps ?? Math.round((w.fraction ?? 0) * config.steps);
  return steps > 0 ? { from: w.from, steps } : null;
}

/** What a run reports while it trains: core's loss statistics of the latest update, and where the run stands. */
export interface RunProgress extends LossStats {
  /** Optimizer updates done. */
  step: number;
  totalSteps: number;
  /** Epochs of the training split seen (fractional): updates × accumSteps ÷ the stream's batches per epoch and rank. */
  epoch: number;
  lr: number;
  /** The group's images per second (every rank trains at the group's pace). */
  imgPerSec: number;
  /**
   * Seconds left at the rate since the previous report; null in a session's first report, whose
   * window is mostly start-up (kernel compilation, loader warm-up) and would read far too long.
   */
  etaSeconds: number | null;
}

/** The latest report as a run's row keeps it (the series go to the metric points, see progressSeries). */
export type RunProgressSnapshot = Pick<RunProgress, 'step' | 'totalSteps' | 'epoch' | 'loss' | 'imgPerSec' | 'etaSeconds' | 'lr'> & {
  at: string;
};

export function progressSnapshot(p: RunProgress, at: Date = new Date()): RunProgressSnapshot {
  return {
    step: p.step,
    totalSteps: p.totalSteps,
    epoch: p.epoch,
    loss: p.loss,
    imgPerSec: p.imgPerSec,
    etaSeconds: p.etaSeconds,
    lr: p.lr,
    at: at.toISOString(),
  };
}

/** The metric series a report adds a point to, by their stored names (GET /runs/:id/metrics). */
export function progressSeries(p: RunProgress): Record<string, number> {
  const points: Record<string, number> = { loss: p.loss, lr: p.lr, img_per_sec: p.imgPerSec };
  if (p.lIce !== undefined) points.l_ice = p.lIce;
  if (p.lBg !== undefined) points.l_bg = p.lBg;
  if (p.clsPer !== undefined) points.cls_per = p.clsPer;
  return points;
}

/** What a finished run (or rank) returns. */
export interface RunResult {
  /** Scores of the final weights (rank 0; the other ranks return none). */
  metrics: Record<string, number>;
  checkpoint: string;
  steps: number;
  resumedFromStep: number | null;
  backend: string;
  durationMs: number;
}

/**
 * A run's lifecycle, one vocabulary for the API, the workers, the CLI and the tools (a run that
 * ended well is `succeeded`, everywhere); terminal states never change again.
 */
export const RUN_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];
