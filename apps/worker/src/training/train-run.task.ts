/** Runs in a worker thread: the CPU-bound training loop of one run (or one rank of it), with progress posted back. */
import { z } from 'zod';
import { parseInput } from '@ice/core';
import { executeRun, RunConfigSchema, type RunProgress, type RunResult } from '@ice/experiments';
import { defineThreadTask, RedisGradientReducer } from '@ice/orchestration';

/** What the handler hands the thread; parsed once on arrival (the thread's boundary), the RunConfig with it. */
const TrainRunInputSchema = z
  .object({
    config: RunConfigSchema,
    runDir: z.string().min(1),
    progressIntervalMs: z.number().int().min(0),
    /** This job's data-parallel rank (of config.worldSize). */
    rank: z.number().int().min(0),
    /** Where the ranks exchange gradients; only for worldSize > 1 (one rank alone never talks to Redis). */
    allReduce: z
      .object({ redisUrl: z.string().min(1), keyPrefix: z.string().min(1), runId: z.uuid(), timeoutMs: z.number().int().positive() })
      .strict()
      .optional(),
  })
  .strict();

export type TrainRunInput = z.input<typeof TrainRunInputSchema>;
export type TrainRunMessage = { kind: 'progress'; progress: RunProgress } | { kind: 'log'; message: string };

export default defineThreadTask<z.output<typeof TrainRunInputSchema>, RunResult, TrainRunMessage>(
  async (input, ctx) => {
    const { config } = input;
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
  },
  (raw) => parseInput(TrainRunInputSchema, raw, 'INPUT_INVALID', 'training thread input'),
);
