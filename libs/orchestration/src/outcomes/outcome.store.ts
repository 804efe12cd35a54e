/**
 * A finished run's outcome, kept durably on disk beside its checkpoints before the database is
 * told: if the database is away when the run ends (or the worker dies before it comes back), the
 * result is not lost — the worker, a redelivered job or the reconciler records it from this file,
 * and the run is never trained again for it. Paths are relative to the artifact directory, so the
 * file stays valid when the directory is mounted elsewhere.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { IceError, parseInput, writeFileAtomic as writeBytesAtomic } from '@ice/core';
import type { RunFinish } from '../db/repositories';
import type { ArtifactStore } from '../artifacts/artifact-store';

export const OUTCOME_FILE = 'outcome.json';

const relPath = z
  .string()
  .min(1)
  .refine((p) => !path.isAbsolute(p) && !p.split(/[\\/]/).includes('..'), 'must be relative to the artifact directory');

const StoredOutcomeSchema = z
  .object({
    version: z.literal(1),
    runId: z.uuid(),
    status: z.literal('succeeded'),
    metrics: z.record(z.string(), z.number()),
    /** The final weights, relative to the artifact directory. */
    checkpoint: relPath,
    /** The last resumable checkpoint, relative to the artifact directory. */
    lastCheckpoint: relPath.nullable(),
    steps: z.number().int().min(0),
    resumedFromStep: z.number().int().min(0).nullable(),
    backend: z.string(),
    durationMs: z.number().min(0),
    finishedAt: z.iso.datetime(),
  })
  .strict();

export type StoredOutcome = z.output<typeof StoredOutcomeSchema>;

/** Writes `text` to `file` so that a crash leaves either the old file or the whole new one (core's writeFileAtomic: temp file, fsync, rename, fsync of the directory). */
export function writeFileAtomic(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeBytesAtomic(file, [Buffer.from(text, 'utf8')]);
}

/** The run outcomes beside the checkpoints (rank 0's directory of each run). */
export class OutcomeStore {
  constructor(private readonly artifacts: ArtifactStore) {}

  file(runId: string): string {
    return path.join(this.artifacts.runDir(runId), OUTCOME_FILE);
  }

  private relative(file: string): string {
    if (!this.artifacts.contains(file)) throw new IceError('INPUT_INVALID', `${file} is not inside the artifact directory`);
    return path.relative(this.artifacts.root, path.resolve(file));
  }

  /** Records a finished run's result durably (before the database write). */
  write(runId: string, result: RunFinish, finishedAt: Date = new Date()): StoredOutcome {
    const outcome: StoredOutcome = {
      version: 1,
      runId,
      status: 'succeeded',
      metrics: result.metrics,
      checkpoint: this.relative(result.checkpoint),
      lastCheckpoint: result.lastCheckpoint ? this.relative(result.lastCheckpoint) : null,
      steps: result.steps,
      resumedFromStep: result.resumedFromStep,
      backend: result.backend,
      durationMs: Math.round(result.durationMs),
      finishedAt: finishedAt.toISOString(),
    };
    writeFileAtomic(this.file(runId), JSON.stringify(outcome, null, 2) + '\n');
    return outcome;
  }

  /** The run's stored outcome; null when it has none. A file that does not parse is an error naming it (never silently ignored). */
  read(runId: string): StoredOutcome | null {
    const file = this.file(runId);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new IceError('INPUT_INVALID', `run outcome ${file} is not JSON: ${(e as Error).message}`);
    }
    const outcome = parseInput(StoredOutcomeSchema, raw, 'INPUT_INVALID', `run outcome ${file}`);
    if (outcome.runId !== runId) throw new IceError('INPUT_INVALID', `run outcome ${file} belongs to run ${outcome.runId}`);
    return outcome;
  }

  /** The stored outcome as the repository records it (absolute paths, as the rows keep them). */
  toFinish(outcome: StoredOutcome): RunFinish {
    return {
      metrics: outcome.metrics,
      checkpoint: path.join(this.artifacts.root, outcome.checkpoint),
      lastCheckpoint: outcome.lastCheckpoint ? path.join(this.artifacts.root, outcome.lastCheckpoint) : null,
      steps: outcome.steps,
      resumedFromStep: outcome.resumedFromStep,
      backend: outcome.backend,
      durationMs: outcome.durationMs,
    };
  }
}
