import { parentPort, workerData } from 'node:worker_threads';
import type { FromThread, ThreadTask, ToThread } from './thread-task';

/**
 * Runs inside the worker thread: loads the task module, runs it with an AbortSignal wired to the
 * parent's cancel message, and reports the result (or the error with its IceError code).
 */
interface EntryData {
  taskFile: string;
  input: unknown;
}

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('thread-entry must run in a worker thread');
  const { taskFile, input } = workerData as EntryData;
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
    const mod = require(taskFile) as { default?: ThreadTask<unknown, unknown, unknown> };
    if (typeof mod.default !== 'function') throw new Error(`${taskFile} has no default-exported task function`);
    const result = await mod.default(input, { signal: controller.signal, post: (payload) => send({ type: 'message', payload }) });
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
