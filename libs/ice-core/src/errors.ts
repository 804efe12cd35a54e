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
 * Parses untrusted input (a request, a job payload, a file, the environment) with a schema, or
 * throws IceError(code) "invalid <what>: <every problem, named by its field>". The one place where
 * validation issues become a domain error, so every door reports them alike.
 */
export function parseInput<T>(schema: { safeParse(raw: unknown): CheckedInput<T> }, raw: unknown, code: IceErrorCode, what: string): T {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  throw new IceError(code, `invalid ${what}: ${describeIssues(r.error.issues)}`, { issues: r.error.issues });
}
