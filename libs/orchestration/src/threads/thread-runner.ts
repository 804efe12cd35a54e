import { IceError, moduleBeside, startThread, type IceErrorCode } from '@ice/core';
import type { ThreadEntryData } from './thread-entry';
import type { FromThread, ToThread } from './thread-task';

/** The module every task thread starts in (it loads the task module). */
const THREAD_ENTRY = moduleBeside(__filename, 'thread-entry');

export interface RunInThreadOptions<P> {
  /** Aborting asks the task to stop; after `cancelGraceMs` the thread is terminated. */
  signal?: AbortSignal;
  cancelGraceMs?: number;
  /** Messages the task posts, handled one after another; the result waits for the last. */
  onMessage?(message: P): void | Promise<void>;
  /** Environment of the thread (e.g. a tfjs backend choice); defaults to the process's. */
  env?: NodeJS.ProcessEnv;
}

/**
 * Runs a task module in a worker thread so that CPU-bound work (tfjs training on a CPU backend)
 * never blocks this thread's event loop: BullMQ's lock renewal, Redis and HTTP keep running. The
 * thread is started by @ice/core's startThread (TypeScript sources through @swc-node/register, a
 * build's compiled .js as is).
 */
export function runInThread<I, O, P = never>(taskFile: string, input: I, opts: RunInThreadOptions<P> = {}): Promise<O> {
  return new Promise<O>((resolve, reject) => {
    const data: ThreadEntryData = { taskFile, input };
    const worker = startThread(THREAD_ENTRY, { data, env: opts.env ?? process.env });
    let settled = false;
    let chain: Promise<void> = Promise.resolve();
    let killTimer: NodeJS.Timeout | undefined;
    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      if (killTimer) clearTimeout(killTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      // Progress handlers still in flight complete before the caller sees the outcome.
      chain.then(fn, fn);
    };
    const onAbort = (): void => {
      const reason = String(opts.signal?.reason ?? 'cancelled');
      worker.postMessage({ type: 'cancel', reason } satisfies ToThread);
      killTimer = setTimeout(() => {
        void worker.terminate();
        finish(() =>
          reject(
            new IceError(
              'CANCELLED',
              `task did not stop within ${opts.cancelGraceMs ?? 3000} ms of the cancel request; thread terminated`,
              { reason },
            ),
          ),
        );
      }, opts.cancelGraceMs ?? 3000);
      killTimer.unref();
    };
    worker.on('message', (m: FromThread) => {
      switch (m.type) {
        case 'message':
          if (opts.onMessage) chain = chain.then(() => opts.onMessage?.(m.payload as P)).catch(() => undefined);
          break;
        case 'done':
          finish(() => resolve(m.result as O));
          break;
        case 'error': {
          const e = m.error.code
            ? new IceError(m.error.code as IceErrorCode, m.error.message, m.error.details)
            : new Error(m.error.message);
          if (!m.error.code) e.name = m.error.name;
          if (m.error.stack) e.stack = m.error.stack;
          finish(() => reject(e));
          break;
        }
      }
    });
    worker.on('error', (e) => finish(() => reject(e)));
    worker.on('exit', (code) => finish(() => reject(new Error(`task thread exited with code ${code} before reporting a result`))));
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
  });
}
