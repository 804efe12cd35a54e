import { Inject, Injectable, Logger } from '@nestjs/common';
import { IceError, vitConfig } from '@ice/core';
import {
  batchesPerEpoch,
  expandSweep,
  parseRunConfig,
  trainDatasetSpec,
  type RunConfig,
  type SweepCell,
  type SweepRequest,
} from '@ice/experiments';
import {
  ArtifactStore,
  assertExists,
  assertInsideRoots,
  ORCHESTRATION_CONFIG,
  WorkerRegistry,
  type OrchestrationConfig,
  type StoredRunConfig,
} from '@ice/orchestration';

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * What a submission must satisfy beyond its schema: files it names inside the configured data
 * roots (weights may also come from the artifact directory, i.e. a finished run's checkpoint) and
 * existing (a missing weights file or data directory is a 400 now, not a failed run later),
 * and, for data-parallel runs, shards that hold a batch. The schema bounds worldSize (≤ 64);
 * data.batchSize is per rank. The request's RunConfig is parsed here, once.
 */
@Injectable()
export class SubmissionRules {
  private readonly log = new Logger('submission');

  constructor(
    @Inject(ORCHESTRATION_CONFIG) private readonly config: OrchestrationConfig,
    private readonly artifacts: ArtifactStore,
    private readonly workers: WorkerRegistry,
  ) {}

  runConfig(raw: unknown, field = ''): RunConfig {
    const config = parseRunConfig(raw);
    this.check(config, field);
    return config;
  }

  sweep(raw: unknown): { request: SweepRequest; cells: SweepCell[] } {
    const expanded = expandSweep(raw);
    // Paths and worldSize can come from the base or from a grid axis; checking every cell catches both.
    for (const c of expanded.cells) this.check(c.config, `grid cell ${c.cellKey}: `);
    return expanded;
  }

  private check(config: RunConfig, prefix: string): void {
    if (config.worldSize > 1) this.checkShards(config, prefix);
    if (config.data.root) {
      assertInsideRoots(`${prefix}data.root`, config.data.root, this.config.dataRoots);
      assertExists(`${prefix}data.root`, config.data.root, 'dir');
    }
    if (config.model.weights) {
      // An artifact-relative name (what GET /runs answers) stands for the artifact file; the stored config keeps the path.
      config.model.weights = this.artifacts.resolveName(config.model.weights);
      assertInsideRoots(`${prefix}model.weights`, config.model.weights, [...this.config.dataRoots, this.artifacts.root]);
      assertExists(`${prefix}model.weights`, config.model.weights, 'file');
    }
  }

  /**
   * Data-parallel admission: a run of worldSize W needs W training slots free at the same time
   * (its ranks wait for each other, each holding a worker). Refused with 409 (NO_CAPACITY) when
   * the live workers' free slots — their slots minus the jobs running and the jobs queued ahead —
   * are fewer than W, instead of holding workers for minutes and failing later. Single-rank runs
   * queue as always. For a sweep, its widest cell counts (its cells run one after another).
   */
  async admit(configs: readonly RunConfig[]): Promise<void> {
    const W = configs.reduce((m, c) => Math.max(m, c.worldSize), 1);
    if (W <= 1) return;
    const c = await withTimeout(this.workers.capacity('training'), 2000).catch((e: unknown) => {
      // Redis away: the slots are unknown, and no worker takes a job meanwhile anyway; admit rather than refuse blindly.
      this.log.warn(`admission of worldSize ${W} without a capacity check: the worker registry did not answer (${(e as Error).message})`);
      return null;
    });
    if (!c || W <= c.free) return;
    throw new IceError(
      'NO_CAPACITY',
      `worldSize ${W} needs ${W} free training slots at once, and ${c.free} ${c.free === 1 ? 'is' : 'are'} free ` +
        `(${c.workers} live worker${c.workers === 1 ? '' : 's'} with ${c.slots} slot${c.slots === 1 ? '' : 's'}, ${c.active} running a job, ${c.queued} queued ahead): ` +
        'its ranks would hold workers waiting for one another. Start more workers (or raise WORKER_CONCURRENCY), wait for the queue to drain, or lower worldSize',
      { worldSize: W, ...c },
    );
  }

  /** Every rank's shard of an epoch must hold at least one batch (the workers would fail on it after queueing). */
  private checkShards(config: RunConfig, prefix: string): void {
    // Other formats are refused at training time (no file-backed pipeline in runs yet).
    if (config.data.format !== 'digits') return;
    const spec = trainDatasetSpec(config, vitConfig(config.model.preset).imgSize);
    const length = spec.format === 'digits' ? (spec.options?.length ?? 0) : 0;
    try {
      batchesPerEpoch(length, config.data.batchSize, config.worldSize);
    } catch (e) {
      throw new IceError(
        'INPUT_INVALID',
        `${prefix}worldSize ${config.worldSize} × data.batchSize ${config.data.batchSize}: ${(e as Error).message}`,
      );
    }
  }

  stored(config: RunConfig): StoredRunConfig {
    return { run: config, codeVersion: this.config.codeVersion, backend: null };
  }
}
