import { type ExplainerName, IceError, type TargetSource } from '@ice/core';
import type { EvaluationProtocol, JaccardHeadRule, MaskRule, MetricValue } from './evaluation.types';
import type { MethodMap } from './explain.runner';
import type { PreparedSample } from './sample-prep.util';

/** Everything a protocol needs to know, defaults resolved. */
export interface ProtocolSettings {
  /** Whose top-1 is the default target class and Top-1 Cls. */
  targetSource: TargetSource;
  /** Model input side S. */
  size: number;
  /** Patch side p (S = g·p). */
  patch: number;
  /** Grid side g. */
  grid: number;
  rolloutStartLayer: number;
  excludeVoid: boolean;
  taus: number[];
  jaccardHeads: JaccardHeadRule;
  corlocMask: MaskRule;
  corlocTau: number;
  camThreshold: number;
  strictTop1: boolean;
  maxBoxAccIous: number[];
  maxBoxAccThresholds?: number[];
}

/** Accumulates one method's scores over the images. */
export interface MethodScorer {
  add(p: PreparedSample, m: MethodMap): void;
  /** One value per protocol column. */
  result(): Record<string, MetricValue>;
}

export interface ProtocolDefinition {
  readonly protocol: EvaluationProtocol;
  /** Metric columns, in display order. */
  readonly columns: string[];
  /** Needs the CLS head's top-1 class of each image (beside the explainer's target). */
  readonly needsTop1: boolean;
  /** Throws INPUT_INVALID when the sample lacks a field the protocol scores against. */
  check(p: PreparedSample): void;
  /** The explainer's target class for this image (undefined: the CLS head's top-1, as the references). */
  target(p: PreparedSample): number | undefined;
  /** Raw attention per head (Jaccard's per-head masks). */
  perHead(method: ExplainerName): boolean;
  conventions(): string[];
  scorer(method: ExplainerName): MethodScorer;
}

export function missingField(protocol: EvaluationProtocol, p: PreparedSample, field: string, hint: string): IceError {
  return new IceError('INPUT_INVALID', `the ${protocol} protocol needs ${field} for every image, and sample ${p.id} has none (${hint})`, {
    sample: p.id,
  });
}

/** Formats a number for convention strings. */
/** The default target class, as the conventions state it. */
export function top1Text(source: TargetSource): string {
  switch (source) {
    case 'cls':
      return "the CLS head's top-1 prediction";
    case 'ice':
      return (
        "the ICE head's own top-1 prediction (argmax over the image classes of Ŷ, the foreground-pooled ICE logits; the " +
        "CLS head's where no patch is foreground)"
      );
  }
}

export function fmt(v: number): string {
  return String(Number(v.toPrecision(6)));
}
