/**
 * A unit of CPU-bound work that runs in a worker thread (see runInThread): it receives its input,
 * an AbortSignal that fires when the parent cancels, and a way to post messages (progress) back.
 * The task module's default export is the function itself.
 */
export interface ThreadTaskContext<P> {
  signal: AbortSignal;
  post(message: P): void;
}

export type ThreadTask<I, O, P = never> = (input: I, ctx: ThreadTaskContext<P>) => Promise<O>;

/** Identity helper that fixes a task's types where it is declared. */
export function defineThreadTask<I, O, P = never>(task: ThreadTask<I, O, P>): ThreadTask<I, O, P> {
  return task;
}

/** Messages between a runner and its thread. */
export type ToThread = { type: 'cancel'; reason: string };
export type FromThread =
  | { type: 'message'; payload: unknown }
  | { type: 'done'; result: unknown }
  | { type: 'error'; error: { name: string; message: string; code?: string; details?: Record<string, unknown>; stack?: string } };
