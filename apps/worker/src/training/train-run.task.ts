import { executeRun, parseRunConfig, type RunProgress, type RunResult } from '@ice/experiments';
import { defineThreadTask, RingGradientReducer, type RingGradientReducerOptions } from '@ice/orchestration';

/** Runs in a worker thread: the CPU-bound training loop of one run (or one rank of it), with progress posted back. */
export interface TrainRunInput {
  config: unknown;
  runDir: string;
  progressIntervalMs: number;
  /** This job's data-parallel rank (of config.worldSize). */
  rank: number;
  /** How the ranks meet (Redis rendezvous) and reach each other (TCP ring); only for worldSize > 1 (one rank alone talks to nobody). */
  allReduce?: Omit<RingGradientReducerOptions, 'rank' | 'worldSize' | 'log'>;
}

export type TrainRunMessage = { kind: 'progress'; progress: RunProgress } | { kind: 'log'; message: string };

export default defineThreadTask<TrainRunInput, RunResult, TrainRunMessage>(async (input, ctx) => {
  // Validated in the handler already; parsing again restores defaults lost in structured cloning (none today) and costs nothing.
  const config = parseRunConfig(input.config);
  const log = (message: string): void => ctx.post({ kind: 'log', message });
  // The reducer's sockets and heartbeats live in a thread of its own, started from here: the training steps block this one.
  const reducer =
    input.allReduce && config.worldSize > 1
      ? new RingGradientReducer({ ...input.allReduce, rank: input.rank, worldSize: config.worldSize, log })
      : undefined;
  try {
    return await executeRun(config, {
      runDir: input.runDir,
      rank: input.rank,
      reducer,
      signal: ctx.signal,
      progressIntervalMs: input.progressIntervalMs,
      onProgress: (progress) => ctx.post({ kind: 'progress', progress }),
      log,
    });
  } finally {
    await reducer?.close();
  }
});
