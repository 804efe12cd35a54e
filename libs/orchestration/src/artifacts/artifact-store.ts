import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The one door to the artifact directory: where each run keeps its checkpoints. A run's
 * directory depends only on its id (and rank), so whichever worker picks the job up — the first
 * or one that took over after a crash — finds the same checkpoints and resumes from them.
 */
export class ArtifactStore {
  constructor(readonly root: string) {}

  runDir(runId: string, rank = 0): string {
    if (!/^[0-9a-f-]{36}$/.test(runId)) throw new Error(`not a run id: ${runId}`);
    return path.join(this.root, 'runs', runId, rank === 0 ? '' : `rank-${rank}`);
  }

  /** An evaluation's files (its saved maps); keyed by id like a run's, so a retried job writes to the same place. */
  evaluationDir(evaluationId: string): string {
    if (!/^[0-9a-f-]{36}$/.test(evaluationId)) throw new Error(`not an evaluation id: ${evaluationId}`);
    return path.join(this.root, 'evaluations', evaluationId);
  }

  /** The newest checkpoint file in a run directory, if any. */
  latestCheckpoint(runId: string, rank = 0): string | null {
    const dir = this.runDir(runId, rank);
    if (!fs.existsSync(dir)) return null;
    const files = fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.safetensors'))
      .map((f) => ({ f: path.join(dir, f), t: fs.statSync(path.join(dir, f)).mtimeMs }))
      .sort((a, b) => b.t - a.t);
    return files[0]?.f ?? null;
  }

  /**
   * A weights name as a client gives it: the API answers with artifact-relative names
   * (`runs/<id>/final.safetensors`), so a relative name of an existing artifact file is that
   * file; any other name is returned unchanged (absolute, or relative to the working directory).
   */
  resolveName(name: string): string {
    if (path.isAbsolute(name)) return name;
    const inside = path.resolve(this.root, name);
    return this.contains(inside) && fs.existsSync(inside) ? inside : name;
  }

  contains(file: string): boolean {
    const rel = path.relative(this.root, path.resolve(file));
    return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
  }
}
