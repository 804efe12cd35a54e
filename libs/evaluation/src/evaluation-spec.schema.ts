/**
 * What an evaluation runs, fully resolved (the weights file and the model it is loaded with): the
 * API builds it from a request, stores it on the evaluation row and sends it in the job; the
 * worker parses it again at its boundary and turns it into runEvaluation's options
 * (`evaluationOptions`), as `ice eval` does with its flags. The rules live here, once, so that the
 * API's 400s, the worker's checks and the CLI cannot drift apart.
 */
import { z } from 'zod';
import { EXPLAINER_NAMES, IceError, parseInput, PRUNE_MODES, TARGET_SOURCES, type ExplainerName } from '@ice/core';
import {
  EVALUATION_FORMATS,
  EVALUATION_PROTOCOLS,
  JACCARD_HEAD_RULES,
  MASK_RULES,
  NORMALIZATION_CHOICES,
  type EvaluationFormat,
  type EvaluationOptions,
  type EvaluationProtocol,
} from './evaluation.types';

/** 'accuracy' is the training library's top-1 / ICE-foreground check (@ice/experiments); the rest are the map protocols. */
export const ACCURACY_PROTOCOL = 'accuracy';
export const EVALUATION_SPEC_PROTOCOLS = [ACCURACY_PROTOCOL, ...EVALUATION_PROTOCOLS] as const;
export type EvaluationSpecProtocol = (typeof EVALUATION_SPEC_PROTOCOLS)[number];

/** The map protocols' formats plus ImageNet folders, which only 'accuracy' reads. */
export const EVALUATION_SPEC_FORMATS = [...EVALUATION_FORMATS, 'imagenet'] as const;
export type EvaluationSpecFormat = (typeof EVALUATION_SPEC_FORMATS)[number];

export const ACCURACY_METHODS = ['ice', 'cls'] as const;

/** Which formats carry what each protocol scores against (checked per sample by the protocols too, but only after the model has loaded). */
export const PROTOCOL_FORMATS: Record<EvaluationSpecProtocol, { formats: readonly EvaluationSpecFormat[]; needs: string }> = {
  accuracy: { formats: ['digits', 'imagenet', 'voc', 'cub'], needs: 'class labels' },
  segmentation: { formats: ['digits', 'imagenet-seg', 'voc'] satisfies readonly EvaluationFormat[], needs: 'foreground masks' },
  jaccard: { formats: ['digits', 'imagenet-seg', 'voc'] satisfies readonly EvaluationFormat[], needs: 'segmentation masks' },
  corloc: { formats: ['digits', 'voc', 'cub'] satisfies readonly EvaluationFormat[], needs: 'ground-truth boxes' },
  localization: { formats: ['digits', 'voc', 'cub'] satisfies readonly EvaluationFormat[], needs: 'ground-truth boxes and class labels' },
};

/** Splits that exist whatever the files say; VOC and ImageNet folders list theirs on disk. */
const KNOWN_SPLITS: Partial<Record<EvaluationSpecFormat, readonly string[]>> = {
  digits: ['train', 'val', 'test'],
  cub: ['train', 'test'],
  'imagenet-seg': ['test'],
};

export const MAX_SAVED_MAPS = 64;

/** runEvaluation's tuning options (each defaults to the reference code's choice; see EvaluationOptions). */
const MapTuningSchema = z
  .object({
    normalization: z.enum(NORMALIZATION_CHOICES).optional(),
    targetSource: z.enum(TARGET_SOURCES).optional(),
    imgSize: z.number().int().min(8).max(1024).optional(),
    rolloutStartLayer: z.number().int().min(0).max(64).optional(),
    excludeVoid: z.boolean().optional(),
    taus: z.array(z.number().gt(0).lte(1)).min(1).max(16).optional(),
    jaccardHeads: z.enum(JACCARD_HEAD_RULES).optional(),
    corlocMask: z.enum(MASK_RULES).optional(),
    corlocTau: z.number().gt(0).lte(1).optional(),
    camThreshold: z.number().min(0).lt(1).optional(),
    strictTop1: z.boolean().optional(),
    maxBoxAccIous: z.array(z.number().gt(0).lte(1)).min(1).max(16).optional(),
    // Below 0.001 the threshold sweep grows past the reference's 1,000 steps per image.
    maxBoxAccInterval: z.number().gte(0.001).lt(1).optional(),
    digitsSeed: z.number().int().min(0).optional(),
  })
  .strict() satisfies z.ZodType<Partial<EvaluationOptions>>;

/** Token pruning of the accuracy protocol (runAccuracy; the paper's Table 5): an inference mode of the model. */
export const PruneSpecSchema = z
  .object({
    mode: z.enum(PRUNE_MODES),
    keepRate: z.number().gt(0).lte(1),
    /** 0-based pruning blocks (default: the model's, 3, 6, 9 at depth 12); checked against the depth once the model is loaded. */
    locations: z.array(z.number().int().min(0).max(63)).min(1).max(64).optional(),
    fuse: z.boolean().optional(),
  })
  .strict();

export const EvaluationTuningSchema = MapTuningSchema.extend({ prune: PruneSpecSchema.optional() }).strict();
export type EvaluationTuning = z.output<typeof EvaluationTuningSchema>;

/** The protocol an option belongs to ('any' = every map protocol); 'digits' = the digits format. */
const OPTION_SCOPE: Record<keyof EvaluationTuning, EvaluationSpecProtocol | 'any' | 'digits'> = {
  normalization: 'any',
  targetSource: 'any',
  imgSize: 'any',
  rolloutStartLayer: 'any',
  excludeVoid: 'jaccard',
  taus: 'jaccard',
  jaccardHeads: 'jaccard',
  corlocMask: 'corloc',
  corlocTau: 'corloc',
  camThreshold: 'localization',
  strictTop1: 'localization',
  maxBoxAccIous: 'localization',
  maxBoxAccInterval: 'localization',
  digitsSeed: 'digits',
  prune: 'accuracy',
};

export const EvaluationDataSchema = z
  .object({
    format: z.enum(EVALUATION_SPEC_FORMATS),
    /** Data set root (inside a configured data root); none for digits, which is generated. */
    root: z.string().min(1).optional(),
    split: z.string().min(1).optional(),
    /** First N images (none: all; the API always sets one). */
    limit: z.number().int().min(1).max(100_000).optional(),
    /** Images per forward (explainer) call; default 32 for accuracy, the evaluation's memory-aware default for map protocols. */
    batchSize: z.number().int().min(1).max(256).optional(),
  })
  .strict();

/** The spec's fields, without the rules between them (EvaluationSpecSchema adds those). */
export const EvaluationSpecShape = z
  .object({
    protocol: z.enum(EVALUATION_SPEC_PROTOCOLS),
    data: EvaluationDataSchema,
    methods: z.array(z.string()).min(1),
    /** The weights file loaded: a finished run's final checkpoint or a file inside the roots. */
    checkpoint: z.string().min(1),
    /** Preset name or config.json the weights are loaded with (a project checkpoint's own config wins). */
    model: z.string().min(1),
    runId: z.uuid().nullable(),
    /** Overlays of the first N images per method, and a contact sheet (0 = none). */
    saveMaps: z.number().int().min(0).max(MAX_SAVED_MAPS),
    options: EvaluationTuningSchema,
  })
  .strict();

export const EvaluationSpecSchema = EvaluationSpecShape.superRefine((s, ctx) => {
  for (const i of evaluationSpecIssues(s)) ctx.addIssue({ code: 'custom', path: i.path, message: i.message });
});

export type EvaluationSpec = z.output<typeof EvaluationSpecSchema>;

export interface SpecIssue {
  path: (string | number)[];
  message: string;
  /** An option of another protocol (or format): runEvaluation would ignore it, so `ice eval` only warns. */
  outOfScope?: true;
}

/** The rules between fields: protocol × format, methods of the protocol, options of the protocol. */
export function evaluationSpecIssues(s: Pick<EvaluationSpec, 'protocol' | 'data' | 'methods' | 'saveMaps' | 'options'>): SpecIssue[] {
  const out: SpecIssue[] = [];
  const { protocol, data } = s;
  const allowed = PROTOCOL_FORMATS[protocol];
  if (!allowed.formats.includes(data.format)) {
    out.push({
      path: ['data', 'format'],
      message: `the ${protocol} protocol needs ${allowed.needs}, which ${data.format} does not provide; use ${allowed.formats.join(', ')}`,
    });
  }
  if (data.format === 'digits' && data.root)
    out.push({ path: ['data', 'root'], message: 'digits is generated, not read from disk; give no root' });
  if (data.format !== 'digits' && !data.root)
    out.push({ path: ['data', 'root'], message: `data.root is required for format ${data.format}` });
  const splits = KNOWN_SPLITS[data.format];
  if (data.split && splits && !splits.includes(data.split))
    out.push({ path: ['data', 'split'], message: `${data.format} has the splits ${splits.join(', ')}; got '${data.split}'` });

  const names: readonly string[] = protocol === 'accuracy' ? ACCURACY_METHODS : EXPLAINER_NAMES;
  s.methods.forEach((m, i) => {
    if (!names.includes(m))
      out.push({ path: ['methods', i], message: `unknown method '${m}' for the ${protocol} protocol; choose from ${names.join(', ')}` });
    else if (s.methods.indexOf(m) !== i) out.push({ path: ['methods', i], message: `method '${m}' is named twice` });
  });

  if (protocol === 'accuracy') {
    if (s.saveMaps > 0)
      out.push({
        path: ['saveMaps'],
        message: 'the accuracy protocol draws no maps; use a map protocol (segmentation, jaccard, corloc, localization)',
      });
    if (data.split)
      out.push({ path: ['data', 'split'], message: "the accuracy protocol scores the training run's evaluation split; give no split" });
    if (s.options.prune && data.format !== 'digits' && data.format !== 'imagenet')
      out.push({ path: ['options', 'prune'], message: `token pruning is scored on digits or imagenet, not ${data.format}` });
  }
  for (const key of Object.keys(s.options) as (keyof EvaluationTuning)[]) {
    if (s.options[key] === undefined) continue;
    const scope = OPTION_SCOPE[key];
    const ok =
      scope === 'accuracy'
        ? protocol === 'accuracy'
        : protocol !== 'accuracy' && (scope === 'any' || scope === protocol || (scope === 'digits' && data.format === 'digits'));
    if (!ok) {
      const where = scope === 'any' ? 'the map protocols' : scope === 'digits' ? 'map protocols on digits' : `the ${scope} protocol`;
      out.push({ path: ['options', key], message: `${key} applies to ${where} only`, outOfScope: true });
    }
  }
  return out;
}

/** Parses an untrusted spec (a job payload, a stored row) or throws CONFIG_INVALID naming each field. */
export function parseEvaluationSpec(raw: unknown): EvaluationSpec {
  return parseInput(EvaluationSpecSchema, raw, 'CONFIG_INVALID', 'evaluation spec');
}

/** A spec of one of the map protocols (runEvaluation's); 'accuracy' is scored by the training library. */
export type MapEvaluationSpec = EvaluationSpec & { protocol: EvaluationProtocol };

export function isMapEvaluationSpec(spec: EvaluationSpec): spec is MapEvaluationSpec {
  return spec.protocol !== ACCURACY_PROTOCOL;
}

/** A spec → runEvaluation's options; the tuning options pass through as named. Saved maps go to `mapsDir` (none: no maps). */
export function evaluationOptions(spec: MapEvaluationSpec, mapsDir: string | null): EvaluationOptions {
  const format = spec.data.format;
  // The rules keep ImageNet folders (accuracy-only) out of the map protocols; checked again for the type.
  if (format === 'imagenet') throw new IceError('CONFIG_INVALID', `the ${spec.protocol} protocol cannot read format imagenet`);
  const { prune: _accuracyOnly, ...tuning } = spec.options;
  return {
    ...tuning,
    protocol: spec.protocol,
    format,
    root: spec.data.root,
    split: spec.data.split,
    weights: spec.checkpoint,
    modelSpec: spec.model,
    methods: spec.methods as ExplainerName[], // checked against the explainer names by the rules
    limit: spec.data.limit,
    batchSize: spec.data.batchSize,
    saveMaps: spec.saveMaps > 0 && mapsDir ? { dir: mapsDir, count: spec.saveMaps } : undefined,
  };
}
