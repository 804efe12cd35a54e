import { executeRun, parseRunConfig, type RunProgress, type RunResult } from '@ice/experiments';
import { defineThreadTask } from '@ice/orchestration';

/** Runs in a worker thread: the CPU-bound training loop of one run, with progress posted back. */
export interface TrainRunInput {
  config: unknown;
  runDir: string;
  progressIntervalMs: number;
}

export type TrainRunMessage = { kind: 'progress'; progress: RunProgress } | { kind: 'log'; message: string };

export default defineThreadTask<TrainRunInput, RunResult, TrainRunMessage>(async (input, ctx) => {
  // Validated in the handler already; parsing again restores defaults lost in structured cloning (none today) and costs nothing.
  const config = parseRunConfig(input.config);
  return executeRun(config, {
    runDir: input.runDir,
    signal: ctx.signal,
    progressIntervalMs: input.progressIntervalMs,
    onProgress: (progress) => ctx.post({ kind: 'progress', progress }),
    log: (message) => ctx.post({ kind: 'log', message }),
  });
});
