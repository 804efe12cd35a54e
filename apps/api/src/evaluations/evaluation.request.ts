/**
 * POST /evaluations: a protocol scored on a data set for a finished run's final checkpoint or a
 * weights file. 'accuracy' (top-1 of the CLS head and the ICE foreground fraction, the training
 * library's check) stays the default; 'segmentation', 'jaccard', 'corloc' and 'localization' are
 * the paper's map protocols (@ice/evaluation), one result row per explainer method.
 *
 * The data set goes in `data` (as in POST /experiments); `format`, `root`, `split` and `limit` are
 * also accepted at the top level, since that is how `ice eval` spells them.
 */
import { z } from 'zod';
import { EXPLAINER_NAMES, parseInput } from '@ice/core';
import {
  ACCURACY_METHODS,
  EVALUATION_SPEC_FORMATS,
  EVALUATION_SPEC_PROTOCOLS,
  EvaluationTuningSchema,
  evaluationSpecIssues,
  MAX_SAVED_MAPS,
} from '@ice/evaluation';
import { withoutSchemaRef } from '@ice/experiments';
import { RUN_STATUSES } from '@ice/orchestration';

const DataSchema = z
  .object({
    format: z.enum(EVALUATION_SPEC_FORMATS).optional(),
    root: z.string().min(1).optional(),
    split: z.string().min(1).optional(),
    limit: z.number().int().min(1).max(100_000).optional(),
    batchSize: z
      .number()
      .int()
      .min(1)
      .max(256)
      .optional()
      .describe('images per forward pass (default: 32 for accuracy; 16 for map protocols, fewer for large inputs)'),
  })
  .strict();

const SHORTHANDS = ['format', 'root', 'split', 'limit'] as const;

export const EvaluationRequestSchema = z
  .object({
    protocol: z.enum(EVALUATION_SPEC_PROTOCOLS).default('accuracy'),
    data: DataSchema.prefault({}),
    format: z.enum(EVALUATION_SPEC_FORMATS).optional(),
    root: z.string().min(1).optional(),
    split: z.string().min(1).optional(),
    limit: z.number().int().min(1).max(100_000).optional(),
    methods: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe(`accuracy: ${ACCURACY_METHODS.join(', ')} (default ice); map protocols (required): ${EXPLAINER_NAMES.join(', ')}`),
    runId: z.uuid().optional().describe('a succeeded run; its final checkpoint is evaluated'),
    weights: z.string().min(1).optional().describe('a weights file (.safetensors or .pth) inside the data roots or the artifact directory'),
    model: z
      .string()
      .min(1)
      .optional()
      .describe("preset name or config.json for `weights` (default: the run's preset; with weights, required by the map protocols)"),
    saveMaps: z
      .number()
      .int()
      .min(0)
      .max(MAX_SAVED_MAPS)
      .default(0)
      .describe('map protocols: overlays of the first N images per method and a contact sheet, under the artifact directory'),
    options: EvaluationTuningSchema.prefault({}),
  })
  .strict()
  .superRefine((r, ctx) => {
    for (const k of SHORTHANDS) {
      if (r[k] !== undefined && r.data[k] !== undefined)
        ctx.addIssue({ code: 'custom', path: [k], message: `give ${k} at the top level or as data.${k}, not both` });
    }
    if (!r.runId === !r.weights)
      ctx.addIssue({ code: 'custom', path: ['runId'], message: 'give exactly one of runId (a finished run) or weights (a file)' });
  })
  .transform((r) => {
    const mapProtocol = r.protocol !== 'accuracy';
    const data = {
      format: r.format ?? r.data.format ?? 'digits',
      root: r.root ?? r.data.root,
      split: r.split ?? r.data.split,
      limit: r.limit ?? r.data.limit ?? 200,
      batchSize: r.data.batchSize,
    };
    return {
      protocol: r.protocol,
      data,
      methods: r.methods ?? (mapProtocol ? [] : ['ice']),
      runId: r.runId,
      weights: r.weights,
      model: r.model,
      saveMaps: r.saveMaps,
      options: r.options,
    };
  })
  .superRefine((r, ctx) => {
    if (r.methods.length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['methods'],
        message: `the ${r.protocol} protocol needs methods: one or more of ${EXPLAINER_NAMES.join(', ')}`,
      });
      return;
    }
    for (const i of evaluationSpecIssues(r)) ctx.addIssue({ code: 'custom', path: i.path, message: i.message });
    if (r.protocol !== 'accuracy' && r.weights && !r.model) {
      ctx.addIssue({
        code: 'custom',
        path: ['model'],
        message: 'a weights file needs the model it was trained with: a preset name or a config.json',
      });
    }
  });

export type EvaluationRequest = z.output<typeof EvaluationRequestSchema>;

/** A request body or file (a `"$schema"` key naming its JSON Schema is dropped), or CONFIG_INVALID naming each field. */
export function parseEvaluationRequest(raw: unknown): EvaluationRequest {
  return parseInput(EvaluationRequestSchema, withoutSchemaRef(raw), 'CONFIG_INVALID', 'evaluation');
}

export const EvaluationListQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(500).default(50),
    offset: z.coerce.number().int().min(0).default(0),
    status: z.enum(RUN_STATUSES).optional(),
    protocol: z.enum(EVALUATION_SPEC_PROTOCOLS).optional(),
    runId: z.uuid().optional(),
  })
  .strict();
