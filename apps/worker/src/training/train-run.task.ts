/** Runs in a worker thread: the CPU-bound training loop of one run (or one rank of it), with progress posted back. */
import { z } from 'zod';
import { parseInput } from '@ice/core';
import { executeRun, RunConfigSchema, type RunProgress, type RunResult } from '@ice/experiments';
import { defineThreadTask, RingGradientReducer } from '@ice/orchestration';

/** What the handler hands the thread; parsed once on arrival (the thread's boundary), the RunConfig with it. */
const TrainRunInputSchema = z
  .object({
    config: RunConfigSchema,
    runDir: z.string().min(1),
    progressIntervalMs: z.number().int().min(0),
    /** This job's data-parallel rank (of config.worldSize). */
    rank: z.number().int().min(0),
    /** How the ranks meet (Redis rendezvous) and reach each other (TCP ring); only for worldSize > 1 (one rank alone talks to nobody). */
    allReduce: z
      .object({
        redisUrl: z.string().min(1),
        keyPrefix: z.string().min(1),
        runId: z.uuid(),
        timeoutMs: z.number().int().positive(),
        heartbeatTimeoutMs: z.number().int().positive().optional(),
        host: z.string().min(1).optional(),
        advertiseHost: z.string().min(1).optional(),
        ports: z
          .object({ from: z.number().int().min(1).max(65535), to: z.number().int().min(1).max(65535) })
          .strict()
          .nullable()
          .optional(),
        attempt: z
          .object({ number: z.number().int().min(1), of: z.number().int().min(1) })
          .strict()
          .optional(),
        workersKey: z.string().min(1).optional(),
        transport: z.enum(['auto', 'tcp']).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export type TrainRunInput = z.input<typeof TrainRunInputSchema>;
export type TrainRunMessage = { kind: 'progress'; progress: RunProgress } | { kind: 'log'; message: string };

export default defineThreadTask<z.output<typeof TrainRunInputSchema>, RunResult, TrainRunMessage>(
  async (input, ctx) => {
    const { config } = input;
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
  },
  (raw) => parseInput(TrainRunInputSchema, raw, 'INPUT_INVALID', 'training thread input'),
);
