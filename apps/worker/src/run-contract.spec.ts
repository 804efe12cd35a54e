/**
 * The RunConfig crosses three boundaries after the API's request: Redis (the job payload), the
 * worker (dispatchJob parses it once against the job's schema) and the training thread (its task
 * parses its input once). Each hop must give back the very same run, and a bad value must be
 * stopped, named, at the first boundary that sees it.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { UnrecoverableError, type Job } from 'bullmq';
import { IceError } from '@ice/core';
import { parseRunConfig, runIdentityJson, type RunConfig } from '@ice/experiments';
import { buildHandlerMap, dispatchJob, parseJobPayload, type JobHandler, type JobName, type JobPayload } from '@ice/orchestration';
import trainRunTask, { type TrainRunInput } from './training/train-run.task';

const RUN_ID = '00000000-0000-4000-8000-000000000001';
const overRedis = <T>(v: T): unknown => JSON.parse(JSON.stringify(v));
const job = (name: string, data: unknown): Job => ({ name, data }) as unknown as Job;

function threadInput(config: RunConfig, rank: number): TrainRunInput {
  return {
    config,
    runDir: path.join(os.tmpdir(), 'run'),
    progressIntervalMs: 100,
    rank,
    allReduce: { redisUrl: 'redis://127.0.0.1:6379', keyPrefix: 'ice:allreduce', runId: RUN_ID, timeoutMs: 1000 },
  };
}

describe('the run contract across its boundaries', () => {
  const body = { loss: { alpha: 0.25 }, steps: 5, worldSize: 2, data: { batchSize: 4, loaderThreads: 0 } };

  it('gives back the same run at every hop: API request → job payload → worker → thread', () => {
    const config = parseRunConfig(body); // the API's one parse (SubmissionRules.runConfig)
    expect(config).toMatchObject({ mode: 'ice', loss: { variant: 'official', alpha: 0.25 }, worldSize: 2, seed: 0 });
    for (const rank of [0, 1]) {
      const payload = parseJobPayload('run.train', overRedis({ runId: RUN_ID, rank, config })); // the worker's one parse
      expect(payload).toEqual({ runId: RUN_ID, rank, config });
      expect(runIdentityJson(payload.config)).toBe(runIdentityJson(config)); // same checkpoint identity
      const input = trainRunTask.parseInput!(structuredClone(threadInput(payload.config, rank))); // the thread's one parse
      expect(input.config).toEqual(config);
      expect(runIdentityJson(input.config)).toBe(runIdentityJson(config));
    }
  });

  it('stops a bad value at the first boundary that sees it, naming the field', () => {
    expect(() => parseRunConfig({ loss: { alpha: 2 } })).toThrow(/^invalid run config: loss\.alpha: alpha must be in \(0, 1\]/);
    const bad = (data: unknown): unknown => {
      try {
        return parseJobPayload('run.train', data);
      } catch (e) {
        return e;
      }
    };
    // A job added by hand or by an older API: the worker names the field inside the payload.
    expect(bad({ runId: RUN_ID, config: { loss: { alpha: 2 } } })).toMatchObject({
      code: 'INPUT_INVALID',
      message: expect.stringMatching(/config\.loss\.alpha: alpha must be in \(0, 1\]/) as unknown,
    });
    expect(bad({ runId: RUN_ID, rank: 2, config: { worldSize: 2 } })).toMatchObject({
      message: expect.stringMatching(/rank: job for rank 2 of a run with worldSize 2/) as unknown,
    });
    expect(bad({ runId: 'run-1', config: {} })).toMatchObject({ message: expect.stringMatching(/runId: /) as unknown });
    // The thread refuses an input that lost its config on the way.
    const { config: _dropped, ...noConfig } = threadInput(parseRunConfig({}), 0);
    expect(() => trainRunTask.parseInput!(noConfig)).toThrow(/training thread input: config: /);
  });

  describe('dispatchJob (the worker boundary)', () => {
    const seen: { payload?: unknown; rejected?: { raw: unknown; error: IceError } } = {};
    const handler = <N extends JobName>(): JobHandler<N> => ({ handle: () => Promise.resolve(null) });
    const run: JobHandler<'run.train'> = {
      handle: (payload: JobPayload<'run.train'>) => {
        seen.payload = payload;
        return Promise.resolve('trained');
      },
      rejectPayload: (raw, error) => {
        seen.rejected = { raw, error };
        return Promise.resolve();
      },
    };
    const handlers = buildHandlerMap([
      { name: 'run.train', handler: run, owner: 'Run' },
      { name: 'sweep.finalize', handler: handler(), owner: 'Sweep' },
      { name: 'evaluation.run', handler: handler(), owner: 'Evaluation' },
    ]);

    it('hands the handler the parsed, defaulted payload', async () => {
      await expect(
        dispatchJob(handlers, 'training', job('run.train', { runId: RUN_ID, config: { steps: 3 } }), 't', undefined),
      ).resolves.toBe('trained');
      expect(seen.payload).toEqual({ runId: RUN_ID, rank: 0, config: parseRunConfig({ steps: 3 }) });
    });

    it('fails an unparsable payload for good, letting its handler record why on the row', async () => {
      const raw = { runId: RUN_ID, config: { loss: { lambdaClass: 2 } } };
      const err = await dispatchJob(handlers, 'training', job('run.train', raw), 't', undefined).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnrecoverableError);
      expect(seen.rejected?.raw).toEqual(raw);
      expect(seen.rejected?.error).toBeInstanceOf(IceError);
      expect((err as Error).message).toBe(seen.rejected?.error.message);
      expect((err as Error).message).toMatch(/config\.loss\.lambdaClass/);
    });

    it('refuses a job that does not belong on the queue', async () => {
      await expect(dispatchJob(handlers, 'evaluation', job('run.train', {}), 't', undefined)).rejects.toThrow(
        'no job named run.train belongs on queue evaluation',
      );
      await expect(dispatchJob(handlers, 'training', job('run.tain', {}), 't', undefined)).rejects.toBeInstanceOf(UnrecoverableError);
    });
  });
});
