/**
 * Test thread of run-executor.spec.ts: trains one run inside a worker thread (started with
 * @ice/core's startThread), its loader threads nested in it, and posts the outcome back.
 */
import { parentPort } from 'node:worker_threads';
import { threadData } from '@ice/core';
import { parseRunConfig } from '../run.contract';
import { executeRun } from '../run-executor';

const { config, dir } = threadData<{ config: unknown; dir: string }>();
const logs: string[] = [];
executeRun(parseRunConfig(config), { runDir: dir, log: (m) => logs.push(m) }).then(
  (r) => parentPort?.postMessage({ ok: true, steps: r.steps, logs }),
  (e: unknown) => parentPort?.postMessage({ ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) }),
);
