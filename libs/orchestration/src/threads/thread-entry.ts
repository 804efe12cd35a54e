/**
 * Runs inside the worker thread (started by runInThread through @ice/core's startThread): loads the
 * task module, parses its input (when the task declares how), runs it with an AbortSignal wired to
 * the parent's cancel message, and reports the result (or the error with its IceError code).
 */
import { parentPort } from 'node:worker_threads';
import { threadData } from '@ice/core';
import type { FromThread, ThreadTask, ToThread } from './thread-task';

/** What runInThread hands the thread. */
export interface ThreadEntryData {
  taskFile: string;
  input: unknown;
}

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('thread-entry must run in a worker thread');
  const { taskFile, input } = threadData<ThreadEntryData>();
  const send = (m: FromThread): void => port.postMessage(m);
  const controller = new AbortController();
  port.on('message', (m: ToThread) => {
    switch (m.type) {
      case 'cancel':
        controller.abort(m.reason);
        break;
    }
  });
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const task = (require(taskFile) as { default?: ThreadTask<unknown, unknown, unknown> }).default;
    if (typeof task?.run !== 'function') throw new Error(`${taskFile} has no default-exported task (defineThreadTask)`);
    const parsed = task.parseInput ? task.parseInput(input) : input;
    const result = await task.run(parsed, { signal: controller.signal, post: (payload) => send({ type: 'message', payload }) });
    send({ type: 'done', result });
  } catch (e) {
    const err = e as Error & { code?: string; details?: Record<string, unknown> };
    send({
      type: 'error',
      error: { name: err.name ?? 'Error', message: err.message ?? String(e), code: err.code, details: err.details, stack: err.stack },
    });
  } finally {
    port.close();
  }
}

void main();
