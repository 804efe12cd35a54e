/**
 * Retries a database statement while the database is away (connection refused, server shutting
 * down or restarting), with exponential backoff and jitter, up to a horizon. Any other error (a
 * constraint, a syntax error) is thrown at once: retrying cannot fix it.
 */

export interface RetryWriteOptions {
  /** Give up (throwing the last error) once this much time has passed since the first try. */
  horizonMs: number;
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Stops the waiting (throwing the last error) when aborted. */
  signal?: AbortSignal;
  /** Called before each wait (for one log line per outage, say). */
  onRetry?: (info: { attempt: number; error: Error; delayMs: number; elapsedMs: number }) => void;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

/** PostgreSQL SQLSTATE classes and codes meaning "the database is not there right now". */
const TRANSIENT_SQLSTATE = /^(08|57P0[1-3]|53300)/;
const TRANSIENT_NODE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

/** True for errors of the link to the database, false for errors of the statement itself. */
export function isTransientDbError(e: unknown): boolean {
  for (
    let err = e as { code?: unknown; message?: unknown; cause?: unknown; driverError?: unknown } | undefined, depth = 0;
    err && depth < 4;
    depth++
  ) {
    const code = typeof err.code === 'string' ? err.code : '';
    if (TRANSIENT_NODE_CODES.has(code) || TRANSIENT_SQLSTATE.test(code)) return true;
    const msg = typeof err.message === 'string' ? err.message : '';
    if (
      /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|the database system is (starting up|shutting down)|terminating connection/i.test(
        msg,
      )
    )
      return true;
    err = (err.driverError ?? err.cause) as typeof err;
  }
  return false;
}

export async function retryWrite<T>(write: () => Promise<T>, opts: RetryWriteOptions): Promise<T> {
  const now = opts.now ?? Date.now;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const initial = opts.initialDelayMs ?? 500;
  const max = opts.maxDelayMs ?? 30_000;
  const start = now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await write();
    } catch (e) {
      const elapsed = now() - start;
      if (!isTransientDbError(e) || elapsed >= opts.horizonMs || opts.signal?.aborted) throw e;
      // Full jitter around an exponential step: processes waiting for the same database do not retry in lockstep.
      const step = Math.min(max, initial * 2 ** Math.min(attempt - 1, 20));
      const delayMs = Math.min(Math.round(step / 2 + (Math.random() * step) / 2), opts.horizonMs - elapsed);
      opts.onRetry?.({ attempt, error: e as Error, delayMs, elapsedMs: elapsed });
      await sleep(Math.max(0, delayMs));
    }
  }
}
