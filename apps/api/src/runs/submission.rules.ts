import { Inject, Injectable } from '@nestjs/common';
import { IceError } from '@ice/core';
import { expandSweep, parseRunConfig, type RunConfig, type SweepCell, type SweepRequest } from '@ice/experiments';
import { ArtifactStore, assertInsideRoots, ORCHESTRATION_CONFIG, type OrchestrationConfig, type StoredRunConfig } from '@ice/orchestration';

/**
 * What a submission must satisfy beyond its schema: one rank per run for now, and files it names inside the configured
 * data roots (weights may also come from the artifact directory, i.e. a finished run's checkpoint).
 */
@Injectable()
export class SubmissionRules {
  constructor(
    @Inject(ORCHESTRATION_CONFIG) private readonly config: OrchestrationConfig,
    private readonly artifacts: ArtifactStore,
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
    // Jobs and run state are keyed by rank already, but ranks do not yet exchange gradients: refuse rather than silently train one rank.
    if (config.worldSize > 1) throw new IceError('INPUT_INVALID', `${prefix}worldSize: data-parallel runs (worldSize > 1) are not supported yet; use 1`);
    if (config.data.root) assertInsideRoots(`${prefix}data.root`, config.data.root, this.config.dataRoots);
    if (config.model.weights) assertInsideRoots(`${prefix}model.weights`, config.model.weights, [...this.config.dataRoots, this.artifacts.root]);
  }

  stored(config: RunConfig): StoredRunConfig {
    return { run: config, codeVersion: this.config.codeVersion, backend: null };
  }
}
