/**
 * The worker-thread side of the input pipeline (a piscina task handler, loaded through @ice/core's
 * thread bootstrap so that TypeScript runs from source). Each thread keeps its own
 * BatchBuilder, i.e. its own opened datasets. Replies are data, never thrown errors, so IceError
 * codes survive the thread boundary; batch arrays are transferred, not copied.
 */
import { Piscina, transferableSymbol, valueSymbol } from 'piscina';
import { serializeError } from './dataset-spec.util';
import { BatchBuilder } from './batch.builder';
import type { BuiltBatch, WorkerReply, WorkerTask } from './pipeline.types';

const builder = new BatchBuilder();

/**
 * The pool hands this thread several tasks at once (so that it keeps working while the main thread
 * is blocked in a training step); run them one after another, in arrival order, rather than
 * interleaved, so the oldest batch — the one the trainer needs next — is finished first.
 */
let queue: Promise<unknown> = Promise.resolve();
function inOrder<T>(fn: () => Promise<T>): Promise<T> {
  const run = queue.then(fn, fn);
  queue = run.catch(() => undefined);
  return run;
}

/** A reply whose big buffers move to the main thread instead of being cloned. */
class MovableReply {
  constructor(
    private readonly reply: WorkerReply,
    private readonly buffers: ArrayBuffer[],
  ) {}

  get [transferableSymbol](): ArrayBuffer[] {
    return this.buffers;
  }

  get [valueSymbol](): WorkerReply {
    return this.reply;
  }
}

function buffersOf(b: BuiltBatch): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (const a of [b.x, b.labels, b.masks]) {
    if (a && a.byteLength > 0 && a.buffer instanceof ArrayBuffer && !out.includes(a.buffer)) out.push(a.buffer);
  }
  return out;
}

/** piscina's entry point. */
export default function handle(task: WorkerTask): Promise<unknown> {
  return inOrder(() => runTask(task));
}

async function runTask(task: WorkerTask): Promise<unknown> {
  try {
    switch (task.kind) {
      case 'describe':
        return { ok: true, value: await builder.describe(task.dataset) } satisfies WorkerReply;
      case 'batch': {
        const built = await builder.build(task);
        return Piscina.move(new MovableReply({ ok: true, value: built }, buffersOf(built)));
      }
    }
  } catch (err) {
    return { ok: false, error: serializeError(err) } satisfies WorkerReply;
  }
}
