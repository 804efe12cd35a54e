import { DelayedError } from 'bullmq';
import type { JobContext } from '@ice/orchestration';
import { isRetryable } from './retry-policy';

/**
 * An attempt's own AbortController, aborted with BullMQ's reason when the job's signal fires (a
 * user's cancel, a shutdown), and by the handler itself (a cancel flag seen on the row).
 * `release()` detaches it from the job's signal.
 */
export function attemptAbort(ctx: JobContext): { abort: AbortController; release: () => void } {
  const abort = new AbortController();
  const onJobAbort = (): void => abort.abort(ctx.signal?.reason);
  if (ctx.signal?.aborted) onJobAbort();
  else ctx.signal?.addEventListener('abort', onJobAbort, { once: true });
  return { abort, release: () => ctx.signal?.removeEventListener('abort', onJobAbort) };
}

/** How an attempt's error ends it: retried by BullMQ (not final) or the row's last word (final). */
export interface AttemptFailure {
  message: string;
  retryable: boolean;
  final: boolean;
  /** 1-based number of this attempt. */
  attempt: number;
}

export function attemptFailure(e: unknown, ctx: JobContext): AttemptFailure {
  const retryable = isRetryable(e);
  const attempt = ctx.job.attemptsMade + 1;
  return { message: (e as Error).message, retryable, final: !retryable || attempt >= (ctx.job.opts.attempts ?? 1), attempt };
}

/** The worker is shutting down: put the job back (without using up an attempt) to run elsewhere. */
export async function handBackJob(ctx: JobContext): Promise<never> {
  await ctx.job.moveToDelayed(Date.now() + 1000, ctx.token);
  throw new DelayedError();
}
