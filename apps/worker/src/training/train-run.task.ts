import { executeRun, parseRunConfig, type RunProgress, type RunResult } from '@ice/experiments';
import { defineThreadTask, RedisGradientReducer } from '@ice/orchestration';

/** Runs in a worker thread: the CPU-bound training loop of one run (or one rank of it), with progress posted back. */
export interface TrainRunInput {
  config: unknown;
  runDir: string;
  progressIntervalMs: number;
  /** This job's data-parallel rank (of config.worldSize). */
  rank: number;
  /** Where the ranks exchange gradients; only for worldSize > 1 (one rank alone never talks to Redis). */
  allReduce?: { redisUrl: string; keyPrefix: string; runId: string; timeoutMs: number };
}

export type TrainRunMessage = { kind: 'progress'; progress: RunProgress } | { kind: 'log'; message: string };

export default defineThreadTask<TrainRunInput, RunResult, TrainRunMessage>(async (input, ctx) => {
  // Validated in the handler already; parsing again restores defaults lost in structured cloning (none today) and costs nothing.
  const config = parseRunConfig(input.config);
  // The reducer's connection lives in this thread: waiting for the other ranks blocks it, not the handler's thread.
  const reducer =
    input.allReduce && config.worldSize > 1
      ? new RedisGradientReducer({ ...input.allReduce, rank: input.rank, worldSize: config.worldSize })
      : undefined;
  try {
    return await executeRun(config, {
      runDir: input.runDir,
      rank: input.rank,
      reducer,
      signal: ctx.signal,
      progressIntervalMs: input.progressIntervalMs,
      onProgress: (progress) => ctx.post({ kind: 'progress', progress }),
      log: (message) => ctx.post({ kind: 'log', message }),
    });
  } finally {
    await reducer?.close();
  }
});
