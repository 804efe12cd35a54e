/**
 * Domain errors: every failure a user can cause carries a stable code, so that the CLI, the
 * API's exception filter and the workers report it the same way (and map it to HTTP in one place).
 */
export type IceErrorCode =
  | 'WEIGHTS_FORMAT' // a weights file that is not what it claims to be (corrupt header, truncated data)
  | 'WEIGHTS_MISMATCH' // names or shapes do not match the model
  | 'CONFIG_INVALID' // a model/training configuration that cannot work
  | 'FILE_NOT_FOUND'
  | 'INPUT_INVALID' // a tensor or argument of the wrong shape/type
  | 'NON_FINITE_LOSS' // NaN/Inf during training
  | 'BACKEND_UNAVAILABLE'
  | 'CHECKPOINT_INVALID'
  | 'CANCELLED' // a run stopped on request
  | 'RANK_TIMEOUT' // a data-parallel rank waited too long for the other ranks' gradients
  | 'NO_CAPACITY' // not enough registered worker slots for a data-parallel run's ranks at once
  | 'RANKS_APART' // a data-parallel rank resumed one checkpoint ahead of the others and must step back to their common one
  | 'IMAGE_CORRUPT'; // an image file that exists but cannot be decoded (pipelines skip and count these)

export class IceError extends Error {
  constructor(
    readonly code: IceErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'IceError';
  }
}

/** One problem a validator found in untrusted input: where (a field path) and what. zod's issues have this shape. */
export interface InputIssue {
  readonly path: readonly PropertyKey[];
  readonly message: string;
  readonly code?: string;
  /** The unknown fields of an `unrecognized_keys` issue. */
  readonly keys?: readonly string[];
}

/** "loss.alpha: alpha must be in (0, 1]; lossy: unknown field (Unrecognized key)" — every problem, named by its field path. */
export function describeIssues(issues: readonly InputIssue[]): string {
  return issues
    .flatMap((i) => {
      const at = i.path.map(String);
      if (i.code === 'unrecognized_keys' && i.keys?.length)
        return i.keys.map((k) => `${[...at, k].join('.')}: unknown field (Unrecognized key)`);
      return [`${at.length ? at.join('.') : '(root)'}: ${i.message}`];
    })
    .join('; ');
}

/** What a schema's safeParse returns (zod's shape): the typed value, or the issues. */
export type CheckedInput<T> = { success: true; data: T } | { success: false; error: { issues: readonly InputIssue[] } };

/**
 * Keys that reach an object's prototype when code assigns through them (`o[k] = v`): never
 * accepted in untrusted JSON, at any depth, so no walker (a schema's record parse, a dotted-path
 * setter) can be steered into Object.prototype.
 */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** The path to the first forbidden key in plain objects and arrays of `raw` (own keys, as JSON.parse makes them), or null. */
export function forbiddenKeyPath(raw: unknown): string[] | null {
  const seen = new Set<object>();
  const walk = (v: unknown, at: string[]): string[] | null => {
    if (typeof v !== 'object' || v === null || seen.has(v) || ArrayBuffer.isView(v)) return null;
    seen.add(v);
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const hit = walk(v[i], [...at, String(i)]);
        if (hit) return hit;
      }
      return null;
    }
    for (const k of Object.keys(v)) {
      if (FORBIDDEN_KEYS.has(k)) return [...at, k];
      const hit = walk((v as Record<string, unknown>)[k], [...at, k]);
      if (hit) return hit;
    }
    return null;
  };
  return walk(raw, []);
}

/** Throws IceError(code) naming the first forbidden key of `raw` (see FORBIDDEN_KEYS). */
export function assertNoForbiddenKeys(raw: unknown, code: IceErrorCode, what: string): void {
  const hit = forbiddenKeyPath(raw);
  if (hit)
    throw new IceError(
      code,
      `invalid ${what}: ${hit.join('.')}: forbidden key '${hit[hit.length - 1]}' (${[...FORBIDDEN_KEYS].join(', ')} are never accepted)`,
    );
}

/**
 * Parses untrusted input (a request, a job payload, a file, the environment) with a schema, or
 * throws IceError(code) "invalid <what>: <every problem, named by its field>". The one place where
 * validation issues become a domain error, so every door reports them alike; prototype keys are
 * refused before the schema walks the input.
 */
export function parseInput<T>(schema: { safeParse(raw: unknown): CheckedInput<T> }, raw: unknown, code: IceErrorCode, what: string): T {
  assertNoForbiddenKeys(raw, code, what);
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  throw new IceError(code, `invalid ${what}: ${describeIssues(r.error.issues)}`, { issues: r.error.issues });
}
