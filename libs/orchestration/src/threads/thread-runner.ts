import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { IceError, type IceErrorCode } from '@ice/core';
import type { FromThread, ToThread } from './thread-task';

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
 * never blocks this thread's event loop: BullMQ's lock renewal, Redis and HTTP keep running.
 * From TypeScript sources (tests, `bin/run-ts.js`) the thread compiles the task with
 * @swc-node/register, like the parent; from a build it loads the compiled .js.
 */
export function runInThread<I, O, P = never>(taskFile: string, input: I, opts: RunInThreadOptions<P> = {}): Promise<O> {
  const fromSource = __filename.endsWith('.ts');
  const entry = path.join(__dirname, `thread-entry${fromSource ? '.ts' : '.js'}`);
  const bootstrap = [
    `const { workerData } = require('node:worker_threads');`,
    fromSource ? `process.env.SWCRC = 'true'; require(${JSON.stringify(require.resolve('@swc-node/register'))});` : '',
    `require(workerData.entry);`,
  ].join('\n');
  return new Promise<O>((resolve, reject) => {
    const worker = new Worker(bootstrap, {
      eval: true,
      workerData: { entry, taskFile, input },
      env: opts.env ?? process.env,
    });
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
