/**
 * A unit of CPU-bound work that runs in a worker thread (see runInThread): it receives its input,
 * an AbortSignal that fires when the parent cancels, and a way to post messages (progress) back.
 * The task module's default export is the task. A task that declares `parseInput` gets its input
 * parsed there, once, at the thread boundary (the input arrives structured-cloned).
 */
export interface ThreadTaskContext<P> {
  signal: AbortSignal;
  post(message: P): void;
}

export interface ThreadTask<I, O, P = never> {
  /** The thread's one parse of its input; without it the input is taken as it arrives. */
  parseInput?(raw: unknown): I;
  run(input: I, ctx: ThreadTaskContext<P>): Promise<O>;
}

/** Declares a task module's default export, fixing its types where it is declared. */
export function defineThreadTask<I, O, P = never>(
  run: (input: I, ctx: ThreadTaskContext<P>) => Promise<O>,
  parseInput?: (raw: unknown) => I,
): ThreadTask<I, O, P> {
  return parseInput ? { run, parseInput } : { run };
}

/** Messages between a runner and its thread. */
export type ToThread = { type: 'cancel'; reason: string };
export type FromThread =
  | { type: 'message'; payload: unknown }
  | { type: 'done'; result: unknown }
  | { type: 'error'; error: { name: string; message: string; code?: string; details?: Record<string, unknown>; stack?: string } };
