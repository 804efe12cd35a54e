/**
 * The exit codes of `ice` (documented in the README), for scripts: each says what went wrong
 * without parsing the message. The local commands use the same table for their errors.
 */
export const EXIT = {
  /** Done; for status/watch: the run, sweep or evaluation did not fail. */
  ok: 0,
  /** The run, sweep (some run) or evaluation failed or was cancelled; or a local command failed. */
  failed: 1,
  /** Wrong command line, unreadable file, or input the API (or a local command) refused (400). */
  usage: 2,
  /** The API does not answer (connection refused, timeout) or answers 5xx. */
  unreachable: 3,
  /** No run, sweep or evaluation with that id (404), or a missing file for a local command. */
  notFound: 4,
  /** The API wants a valid key: set ICE_API_KEY (401/403). */
  unauthorized: 5,
  /** Nothing to do: e.g. cancelling what has already finished (409). */
  conflict: 6,
  /** Not enough free worker slots for a data-parallel run's ranks (409 NO_CAPACITY): try later or with a smaller worldSize. */
  noCapacity: 7,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error that ends the command with its exit code; its message goes to stderr as it is. */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** The exit code of an HTTP error status (and the API's domain error code, where the body has one). */
export function exitCodeOfStatus(status: number, code?: unknown): ExitCode {
  if (code === 'NO_CAPACITY') return EXIT.noCapacity;
  if (status === 400 || status === 422) return EXIT.usage;
  if (status === 401 || status === 403) return EXIT.unauthorized;
  if (status === 404) return EXIT.notFound;
  if (status === 409) return EXIT.conflict;
  if (status >= 500) return EXIT.unreachable;
  return EXIT.failed;
}
