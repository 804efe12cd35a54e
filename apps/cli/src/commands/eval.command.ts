/**
 * `ice eval <protocol>`: scores explainers of one checkpoint with one of the paper's protocols on a
 * data set, one row per method (the protocol's metrics, images, images/s), as a table or JSON.
 * The flags become the same EvaluationSpec the API stores and the workers run (@ice/evaluation),
 * checked by the same rules and turned into runEvaluation's options by the same function.
 * `ice eval accuracy` reports the checkpoint's top-1 instead, optionally with token pruning
 * (`--prune ice|evit --keep ρ`, the paper's Table 5).
 */
import { Command, InvalidArgumentError } from 'commander';
import {
  describeIssues,
  type ExplainerName,
  EXPLAINER_NAMES,
  IceError,
  isExplainerName,
  parseInput,
  PRUNE_MODES,
  type PruneOptions,
  TARGET_SOURCES,
} from '@ice/core';
import {
  ACCURACY_FORMATS,
  type AccuracyOptions,
  type AccuracyResult,
  formatAccuracyReport,
  runAccuracy,
  DEFAULT_SAVED_MAPS,
  EVALUATION_FORMATS,
  EVALUATION_PROTOCOLS,
  type EvaluationOptions,
  type EvaluationResult,
  evaluationOptions,
  evaluationSpecIssues,
  EvaluationSpecShape,
  type EvaluationTuning,
  formatEvaluationReport,
  JACCARD_HEAD_RULES,
  MASK_RULES,
  type MapEvaluationSpec,
  NORMALIZATION_CHOICES,
  runEvaluation,
} from '@ice/evaluation';

export interface EvalCommandOptions {
  /** Required by the map protocols; accuracy defaults to digits. */
  format?: string;
  root?: string;
  split?: string;
  weights: string;
  model: string;
  /** Required by the map protocols; not taken by accuracy. */
  method?: string;
  prune?: string;
  keep?: number;
  pruneLocations?: string;
  fuseTokens?: boolean;
  limit?: number;
  batchSize?: number;
  targetSource?: string;
  json?: boolean;
  saveMaps?: string;
  saveMapsCount?: number;
  imgSize?: number;
  normalization?: string;
  rolloutStartLayer?: number;
  excludeVoid?: boolean;
  taus?: string;
  jaccardHeads?: string;
  corlocMask?: string;
  corlocTau?: number;
  camThreshold?: number;
  top1Iou?: string;
  maxboxaccInterval?: number;
  maxboxaccIous?: string;
  digitsSeed?: number;
}

function oneOf<const T extends string>(what: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value))
    throw new IceError('CONFIG_INVALID', `${what} must be one of ${allowed.join(', ')}; got '${value}'`);
  return value as T;
}

export function parseMethods(list: string): ExplainerName[] {
  const names = list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (names.length === 0) throw new IceError('CONFIG_INVALID', `--method names no method; choose from ${EXPLAINER_NAMES.join(', ')}`);
  if (names.length === 1 && names[0] === 'all') return [...EXPLAINER_NAMES];
  return names.map((n) => {
    if (!isExplainerName(n))
      throw new IceError('CONFIG_INVALID', `unknown method '${n}'; choose from ${EXPLAINER_NAMES.join(', ')} (or all)`);
    return n;
  });
}

function parseNumberList(what: string, list: string): number[] {
  const out = list.split(',').map((s) => Number(s.trim()));
  if (out.length === 0 || out.some((v) => !Number.isFinite(v)))
    throw new IceError('CONFIG_INVALID', `${what} must be comma-separated numbers; got '${list}'`);
  return out;
}

/** The tuning flags, each checked against the evaluation library's own choices. */
function tuningOptions(o: EvalCommandOptions): EvaluationTuning {
  const options: EvaluationTuning = {
    imgSize: o.imgSize,
    rolloutStartLayer: o.rolloutStartLayer,
    excludeVoid: o.excludeVoid,
    corlocTau: o.corlocTau,
    camThreshold: o.camThreshold,
    maxBoxAccInterval: o.maxboxaccInterval,
    digitsSeed: o.digitsSeed,
  };
  if (o.targetSource !== undefined) options.targetSource = oneOf('--target-source', o.targetSource, TARGET_SOURCES);
  if (o.normalization !== undefined) options.normalization = oneOf('--normalization', o.normalization, NORMALIZATION_CHOICES);
  if (o.taus !== undefined) options.taus = parseNumberList('--taus', o.taus);
  if (o.maxboxaccIous !== undefined) options.maxBoxAccIous = parseNumberList('--maxboxacc-ious', o.maxboxaccIous);
  if (o.jaccardHeads !== undefined) options.jaccardHeads = oneOf('--jaccard-heads', o.jaccardHeads, JACCARD_HEAD_RULES);
  if (o.corlocMask !== undefined) options.corlocMask = oneOf('--corloc-mask', o.corlocMask, MASK_RULES);
  if (o.top1Iou !== undefined) options.strictTop1 = oneOf('--top1-iou', o.top1Iou, ['gt', 'ge'] as const) === 'gt';
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
}

/**
 * Command-line options → the evaluation spec, checked by its rules. An option of another protocol
 * is only a warning here (runEvaluation ignores it; the API refuses it).
 */
export function toEvaluationSpec(protocol: string, o: EvalCommandOptions, log: (m: string) => void): MapEvaluationSpec {
  if (o.format === undefined)
    throw new IceError('CONFIG_INVALID', `the ${protocol} protocol needs --format (${EVALUATION_FORMATS.join(', ')})`);
  if (o.method === undefined)
    throw new IceError('CONFIG_INVALID', `the ${protocol} protocol needs --method (${EXPLAINER_NAMES.join(', ')}, or all)`);
  if (o.prune !== undefined || o.keep !== undefined || o.pruneLocations !== undefined || o.fuseTokens !== undefined)
    throw new IceError(
      'CONFIG_INVALID',
      'token pruning (--prune, --keep, --prune-locations, --fuse-tokens) applies to `ice eval accuracy` only',
    );
  if (o.saveMapsCount !== undefined && o.saveMaps === undefined)
    throw new IceError('CONFIG_INVALID', '--save-maps-count needs --save-maps DIR');
  const spec = parseInput(
    EvaluationSpecShape,
    {
      protocol: oneOf('the protocol', protocol, EVALUATION_PROTOCOLS),
      data: {
        format: oneOf('--format', o.format, EVALUATION_FORMATS),
        root: o.root,
        split: o.split,
        limit: o.limit,
        batchSize: o.batchSize,
      },
      methods: parseMethods(o.method),
      checkpoint: o.weights,
      model: o.model,
      runId: null,
      saveMaps: o.saveMaps === undefined ? 0 : (o.saveMapsCount ?? DEFAULT_SAVED_MAPS),
      options: tuningOptions(o),
    },
    'CONFIG_INVALID',
    'evaluation',
  ) as MapEvaluationSpec;
  const issues = evaluationSpecIssues(spec);
  for (const i of issues.filter((x) => x.outOfScope))
    log(`warning: ${i.path.join('.')}: ${i.message}; the ${spec.protocol} protocol ignores it`);
  const errors = issues.filter((x) => !x.outOfScope);
  if (errors.length) throw new IceError('CONFIG_INVALID', `invalid evaluation: ${describeIssues(errors)}`);
  return spec;
}

/** Command-line options → runEvaluation options (through the evaluation spec). */
export function toEvaluationOptions(protocol: string, o: EvalCommandOptions, log: (m: string) => void): EvaluationOptions {
  return { ...evaluationOptions(toEvaluationSpec(protocol, o, log), o.saveMaps ?? null), log };
}

/** `--prune`, `--keep`, `--prune-locations`, `--fuse-tokens` → the model's pruning option (undefined: none). */
export function toPruneOptions(o: EvalCommandOptions): PruneOptions | undefined {
  if (o.prune === undefined) {
    if (o.keep !== undefined || o.pruneLocations !== undefined || o.fuseTokens !== undefined)
      throw new IceError('CONFIG_INVALID', '--keep, --prune-locations and --fuse-tokens need --prune ice|evit');
    return undefined;
  }
  const mode = oneOf('--prune', o.prune, PRUNE_MODES);
  if (o.keep === undefined) throw new IceError('CONFIG_INVALID', '--prune needs --keep ρ (the keep rate, e.g. 0.7)');
  const prune: PruneOptions = { mode, keepRate: o.keep };
  if (o.pruneLocations !== undefined) prune.locations = parseNumberList('--prune-locations', o.pruneLocations);
  if (o.fuseTokens !== undefined) prune.fuse = o.fuseTokens;
  return prune;
}

/** Command-line options → runAccuracy options. */
export function toAccuracyOptions(o: EvalCommandOptions, log: (m: string) => void): AccuracyOptions {
  if (o.method !== undefined)
    throw new IceError('CONFIG_INVALID', 'the accuracy protocol takes no --method (it scores the CLS and ICE heads)');
  const opts: AccuracyOptions = {
    format: oneOf('--format', o.format ?? 'digits', ACCURACY_FORMATS),
    root: o.root,
    split: o.split,
    weights: o.weights,
    modelSpec: o.model,
    limit: o.limit,
    batchSize: o.batchSize,
    digitsSeed: o.digitsSeed,
    log,
  };
  const prune = toPruneOptions(o);
  if (prune) opts.prune = prune;
  return opts;
}

/** `ice eval accuracy`: top-1 with optional token pruning. */
export async function runAccuracyCommand(
  o: EvalCommandOptions,
  log: (m: string) => void = (m) => process.stderr.write(`${m}\n`),
): Promise<AccuracyResult> {
  return runAccuracy(toAccuracyOptions(o, log));
}

/** Runs the evaluation; progress goes to `log` (stderr from the CLI). */
export async function runEvalCommand(
  protocol: string,
  o: EvalCommandOptions,
  log: (m: string) => void = (m) => process.stderr.write(`${m}\n`),
): Promise<EvaluationResult> {
  const opts = toEvaluationOptions(protocol, o, log);
  let last = 0;
  opts.onProgress = (done, total) => {
    const now = Date.now();
    if (done === total || now - last > 2000) {
      last = now;
      log(`eval ${protocol}: ${done}/${total} images`);
    }
  };
  return runEvaluation(opts);
}

function int(what: string, min: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${what} must be an integer ≥ ${min}`);
    return n;
  };
}

function num(what: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`${what} must be a number`);
    return n;
  };
}

export function registerEvalCommand(program: Command): void {
  program
    .command('eval')
    .description(
      'score explainability maps with a protocol of the paper: one row per method (metrics, images, images/s); ' +
        'or top-1 accuracy (accuracy), optionally with token pruning',
    )
    .argument('<protocol>', `${EVALUATION_PROTOCOLS.join(' | ')} | accuracy`)
    .option(
      '--format <format>',
      `${EVALUATION_FORMATS.join(' | ')} (map protocols, required); accuracy: ${ACCURACY_FORMATS.join(' | ')} (default digits)`,
    )
    .option(
      '--root <path>',
      'data set root (imagenet-seg: gtsegs_ijcv.mat or its folder; voc: the VOC20xx folder; cub: CUB_200_2011); not for digits',
    )
    .option(
      '--split <name>',
      'split (default: imagenet-seg test; voc val for segmentation/jaccard, trainval for corloc/localization; cub test; digits test)',
    )
    .requiredOption('--weights <file>', 'weights: .safetensors or PyTorch .pth')
    .requiredOption('--model <preset|config.json>', 'model preset name or JSON config')
    .option('--method <names>', `map protocols (required): comma-separated ${EXPLAINER_NAMES.join(', ')}, or all`)
    .option('--limit <n>', 'only the first N images', int('--limit', 1))
    .option(
      '--batch-size <n>',
      'images per explainer call (default 16, fewer for large inputs; each map is the one the image gets alone; 1 = one by one, as the reference code)',
      int('--batch-size', 1),
    )
    .option(
      '--target-source <cls|ice>',
      "whose top-1 is each image's target class (and Top-1 Cls): the CLS head's (default, as the reference code) or the ICE head's own",
    )
    .option('--json', 'print the result as JSON')
    .option('--save-maps <dir>', 'write overlays (image + map, jet at 50%) and a contact sheet for the first images')
    .option('--save-maps-count <k>', 'how many images --save-maps draws (default 8)', int('--save-maps-count', 1))
    .option(
      '--img-size <n>',
      "input side S (default: the model's; for jaccard on voc 512 for 224² models, else ×512/224 of the model's size)",
      int('--img-size', 1),
    )
    .option(
      '--normalization <half|imagenet|model>',
      'input normalisation (default: half for segmentation as the released code, imagenet otherwise, model for digits)',
    )
    .option(
      '--rollout-start-layer <n>',
      'first block of rollout and transformer attribution (default 1 for segmentation, else 0)',
      int('--rollout-start-layer', 0),
    )
    .option('--exclude-void', 'jaccard: leave void (255) pixels out of the unions (the released code counts them)')
    .option('--taus <list>', 'jaccard: attention-mass thresholds (default 0.9,0.8,0.6)')
    .option('--jaccard-heads <max|mean>', 'jaccard, raw attention: best head per class (default, Intriguing) or the head mean')
    .option('--corloc-mask <mass|mean>', 'corloc: mask rule for continuous maps (default mass)')
    .option('--corloc-tau <t>', 'corloc: attention-mass τ (default 0.6)', num('--corloc-tau'))
    .option('--cam-threshold <t>', 'localization: CAM threshold of GT-known/Top-1 Loc (default 0.1, TS-CAM)', num('--cam-threshold'))
    .option('--top1-iou <gt|ge>', 'localization: Top-1 Loc needs IoU > 0.5 (gt, TS-CAM, default) or ≥ 0.5 (ge)')
    .option(
      '--maxboxacc-interval <step>',
      'localization: CAM-threshold step of the MaxBoxAcc sweep (default 0.001, wsolevaluation; 0.01 is ~3× faster)',
      num('--maxboxacc-interval'),
    )
    .option(
      '--maxboxacc-ious <list>',
      'localization: IoU thresholds δ of MaxBoxAcc (default 0.5; later wsolevaluation reports 0.3,0.5,0.7)',
    )
    .option('--digits-seed <n>', 'digits: seed of the generated set (default 0)', int('--digits-seed', 0))
    .option('--prune <ice|evit>', "accuracy: token pruning by the ICE head's ranking or EViT's CLS attention (inference only)")
    .option('--keep <rho>', 'accuracy with --prune: keep rate ρ in (0, 1]', num('--keep'))
    .option(
      '--prune-locations <list>',
      "accuracy with --prune: 0-based pruning blocks, as EViT's --drop_loc (default 3,6,9 at depth 12; 0 at depth 2)",
    )
    .option('--fuse-tokens', 'accuracy with --prune: fuse the dropped tokens into one (default for evit)')
    .option('--no-fuse-tokens', 'accuracy with --prune: drop them (default for ice)')
    .action(async (protocol: string, opts: EvalCommandOptions) => {
      if (protocol === 'accuracy') {
        const r = await runAccuracyCommand(opts);
        console.log(opts.json ? JSON.stringify(r, null, 2) : formatAccuracyReport(r));
        return;
      }
      const result = await runEvalCommand(protocol, opts);
      console.log(opts.json ? JSON.stringify(result, null, 2) : formatEvaluationReport(result));
    });
}
