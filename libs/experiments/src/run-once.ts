/**
 * A run in a local directory, for the CLI and the results scripts: a finished run's result.json
 * is read back instead of training again (when its config is the same), an unfinished one resumes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseRunConfig, type RunProgress, type RunResult } from './run.contract';
import { executeRun, weightsFingerprint } from './run-executor';

/** One stderr line per progress report: "<prefix> step 3/100 loss 1.2345 fg 40% lr 1.00e-3 120 img/s eta 30s". */
export function progressLine(prefix: string): (p: RunProgress) => void {
  return (p) => {
    const fg = p.clsPer !== undefined ? ` fg ${(100 * p.clsPer).toFixed(0)}%` : '';
    const speed = `${p.imgPerSec.toFixed(0)} img/s eta ${p.etaSeconds === null ? '–' : `${Math.round(p.etaSeconds)}s`}`;
    process.stderr.write(`${prefix} step ${p.step}/${p.totalSteps} loss ${p.loss.toFixed(4)}${fg} lr ${p.lr.toExponential(2)} ${speed}\n`);
  };
}

const RESULT_FILE = 'result.json';

/** Runs (or reuses) one run in `dir`: a finished run's result.json is read back instead of retraining. */
export async function runOnce(raw: unknown, dir: string, label: string): Promise<RunResult> {
  const config = parseRunConfig(raw);
  const resultPath = path.join(dir, RESULT_FILE);
  // Same config and same starting weights' content (a path can hold new weights).
  const initWeightsSha256 = config.model.weights ? weightsFingerprint(config.model.weights) : null;
  if (fs.existsSync(resultPath)) {
    const prev = JSON.parse(fs.readFileSync(resultPath, 'utf8')) as {
      config: unknown;
      initWeightsSha256?: string | null;
      result: RunResult;
    };
    if (JSON.stringify(prev.config) === JSON.stringify(config) && (prev.initWeightsSha256 ?? null) === initWeightsSha256) {
      process.stderr.write(`${label}: reusing finished result in ${dir}\n`);
      return prev.result;
    }
  }
  const result = await executeRun(config, {
    runDir: dir,
    onProgress: progressLine(label),
    progressIntervalMs: 5000,
    log: (m) => process.stderr.write(`${label}: ${m}\n`),
  });
  fs.writeFileSync(resultPath, JSON.stringify({ config, initWeightsSha256, result }, null, 2));
  return result;
}
