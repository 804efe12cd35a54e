/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-call --
   response bodies and SSE payloads are untyped JSON of the API under test */
/**
 * End-to-end harness: a fresh PostgreSQL database and a fresh BullMQ prefix per test file (on the
 * real local servers), the API in-process on a free port, and workers as real child processes
 * (so that a test can kill one).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import type { INestApplication } from '@nestjs/common';
import { deleteKeysWithPrefix, loadOrchestrationConfig, readSseStream, type OrchestrationConfig } from '@ice/orchestration';
import { createApiApp } from '../../apps/api/src/app.factory';

export const ADMIN_DB_URL = process.env.E2E_ADMIN_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = process.env.E2E_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const API_KEY = 'e2e-key';
const ROOT = path.resolve(__dirname, '..', '..');

export interface TestEnv {
  id: string;
  env: Record<string, string>;
  dataRoot: string;
  artifactDir: string;
  config: OrchestrationConfig;
  cleanup(): Promise<void>;
}

/** A database and queue prefix of its own, plus temp data/artifact dirs. */
export async function createTestEnv(name: string, extra: Record<string, string> = {}): Promise<TestEnv> {
  const id = `${name.replace(/[^a-z0-9]/gi, '_').toLowerCase()}_${randomBytes(4).toString('hex')}`;
  const admin = new Client({ connectionString: ADMIN_DB_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ice_e2e_${id}`);
  await admin.end();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `ice-e2e-${name}-`));
  const dataRoot = path.join(tmp, 'data');
  const artifactDir = path.join(tmp, 'artifacts');
  fs.mkdirSync(dataRoot, { recursive: true });
  const dbUrl = new URL(ADMIN_DB_URL);
  dbUrl.pathname = `/ice_e2e_${id}`;
  const env: Record<string, string> = {
    DATABASE_URL: dbUrl.toString(),
    REDIS_URL,
    QUEUE_PREFIX: `e2e-${id}`,
    API_KEYS: API_KEY,
    DATA_ROOTS: dataRoot,
    ARTIFACT_DIR: artifactDir,
    CODE_VERSION: 'e2e',
    PROGRESS_INTERVAL_MS: '300',
    RUN_BACKOFF_MS: '500',
    ...extra,
  };
  return {
    id,
    env,
    dataRoot,
    artifactDir,
    config: loadOrchestrationConfig('api', env),
    async cleanup() {
      await deleteQueueKeys(env.QUEUE_PREFIX);
      const a = new Client({ connectionString: ADMIN_DB_URL });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ice_e2e_${id} WITH (FORCE)`);
      await a.end();
      fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
}

/** Removes every BullMQ key of a test's queue prefix. */
export async function deleteQueueKeys(prefix: string): Promise<void> {
  await deleteKeysWithPrefix(REDIS_URL, prefix);
}

export interface TestApi {
  app: INestApplication;
  url: string;
  close(): Promise<void>;
}

export async function startApi(t: TestEnv): Promise<TestApi> {
  const app = await createApiApp(t.config, { logger: ['error'] });
  await app.listen(0, '127.0.0.1');
  const addr = app.getHttpServer().address() as { port: number };
  return { app, url: `http://127.0.0.1:${addr.port}`, close: () => app.close() };
}

export interface TestWorker {
  proc: ChildProcess;
  output(): string;
  ready: Promise<void>;
  /** Graceful stop (SIGTERM) and wait for exit. */
  stop(): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** A worker process, exactly as production runs it, on the test's database and prefix. */
export function spawnWorker(t: Pick<TestEnv, 'env'>, extra: Record<string, string> = {}): TestWorker {
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin', 'run-ts.js'), path.join(ROOT, 'apps', 'worker', 'src', 'main.ts')], {
    cwd: ROOT,
    env: { ...process.env, ...t.env, ...extra, NO_COLOR: '1', FORCE_COLOR: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const ready = new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (out.includes('ready (pid')) resolve();
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.once('exit', (code) => reject(new Error(`worker exited (${code}) before it was ready:\n${out}`)));
  });
  ready.catch(() => undefined);
  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    await exited;
  };
  return { proc, output: () => out, ready, stop: () => kill('SIGTERM'), kill };
}

/** The API as its own process (for the embedded-database default, which PGlite cannot do inside Jest). */
export async function spawnApi(
  env: Record<string, string>,
  port: number,
): Promise<{ url: string; output(): string; stop(): Promise<void> }> {
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin', 'run-ts.js'), path.join(ROOT, 'apps', 'api', 'src', 'main.ts')], {
    cwd: ROOT,
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1', NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  await waitFor(
    `the API on ${url}`,
    async () => {
      if (proc.exitCode !== null) throw new Error(`API exited (${proc.exitCode}):\n${out}`);
      return fetch(`${url}/health`)
        .then((r) => r.ok)
        .catch(() => false);
    },
    60_000,
  );
  return {
    url,
    output: () => out,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGINT');
      await exited;
    },
  };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export interface HttpResult<T = any> {
  status: number;
  body: T;
  text: string;
  headers: Headers;
}

export async function http<T = any>(
  base: string,
  method: string,
  url: string,
  body?: unknown,
  key: string | null = API_KEY,
): Promise<HttpResult<T>> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (key) headers['x-api-key'] = key;
  const res = await fetch(base + url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON (csv, markdown)
  }
  return { status: res.status, body: parsed as T, text, headers: res.headers };
}

export interface SseEvent {
  event: string;
  data: any;
}

/**
 * Reads a server-sent event stream until it ends, `until` returns true, or the timeout passes
 * (then it throws with what it saw). `onEvent` sees each event as it arrives.
 */
export async function readSse(
  url: string,
  opts: { timeoutMs: number; until?: (e: SseEvent) => boolean; onEvent?: (e: SseEvent) => void | Promise<void> },
): Promise<SseEvent[]> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), opts.timeoutMs);
  const events: SseEvent[] = [];
  try {
    const res = await fetch(url, { signal: ac.signal, headers: { accept: 'text/event-stream' } });
    if (!res.ok || !res.body) throw new Error(`SSE ${url}: HTTP ${res.status}`);
    for await (const m of readSseStream(res.body)) {
      const e: SseEvent = { event: m.event, data: JSON.parse(m.data) };
      events.push(e);
      await opts.onEvent?.(e);
      if (opts.until?.(e)) {
        ac.abort();
        return events;
      }
    }
    return events;
  } catch (e) {
    if (ac.signal.aborted && events.length && opts.until?.(events[events.length - 1])) return events;
    throw new Error(
      `SSE ${url} did not finish within ${opts.timeoutMs} ms (${(e as Error).message}); saw: ${JSON.stringify(events.slice(-5))}`,
      { cause: e },
    );
  } finally {
    clearTimeout(timer);
  }
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | null | undefined | false>,
  timeoutMs: number,
  everyMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A run small enough to finish in a few seconds on one core. */
export const TINY_RUN = { steps: 6, checkpointEvery: 3, data: { batchSize: 8, evalLimit: 16 }, optimizer: { warmupSteps: 2 } };
