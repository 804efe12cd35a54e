/**
 * A redis-server and a PostgreSQL cluster of the test's own, on loopback ports of its choosing,
 * that it may stop, restart or wipe — the machine's own services are never touched. Used by the
 * fault-tolerance e2e tests and by `npm run chaos`.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function until(what: string, fn: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface PrivateRedis {
  url: string;
  port: number;
  /** Stops the server (SIGTERM; nothing is saved: no persistence) and starts a fresh, empty one on the same port after `downMs`. */
  restart(downMs?: number): Promise<void>;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server for good and removes its directory. */
  destroy(): Promise<void>;
}

/** A redis-server without persistence (every restart loses every key, as a crashed cache would). */
export async function startPrivateRedis(port: number): Promise<PrivateRedis> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ice-redis-${port}-`));
  let proc: ChildProcess | null = null;
  const start = async (): Promise<void> => {
    if (await canConnect(port)) throw new Error(`port ${port} is taken: cannot start a private redis-server there`);
    proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
      stdio: 'ignore',
    });
    await until(`redis-server on ${port}`, () => canConnect(port), 10_000);
  };
  const stop = async (): Promise<void> => {
    const p = proc;
    proc = null;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGKILL');
    await exited;
    await until(`redis-server on ${port} to stop`, async () => !(await canConnect(port)), 10_000);
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    start,
    async restart(downMs = 0) {
      await stop();
      if (downMs) await new Promise((r) => setTimeout(r, downMs));
      await start();
    },
    stop,
    async destroy() {
      await stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface PrivatePostgres {
  /** The admin database's URL (user postgres, trust). */
  url: string;
  port: number;
  /** Fast shutdown: every connection is cut, as when the server goes away. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the cluster for good and removes its files. */
  destroy(): Promise<void>;
}

function pgBin(name: string): string {
  const base = '/usr/lib/postgresql';
  const versions = fs.existsSync(base) ? fs.readdirSync(base).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) {
    const p = path.join(base, v, 'bin', name);
    if (fs.existsSync(p)) return p;
  }
  return name; // on PATH
}

/** PostgreSQL refuses to run as root: as root, its commands run as the postgres user. */
function pgCommand(bin: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', pgBin(bin), ...args]] : [pgBin(bin), args];
}

function pg(bin: string, args: string[]): void {
  const [cmd, a] = pgCommand(bin, args);
  execFileSync(cmd, a, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
}

/** A throw-away PostgreSQL cluster (initdb + pg_ctl in a temp dir, fsync off: it is test data). */
export async function startPrivatePostgres(port: number): Promise<PrivatePostgres> {
  if (await canConnect(port)) throw new Error(`port ${port} is taken: cannot start a private PostgreSQL there`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ice-pg-${port}-`));
  if (process.getuid?.() === 0) execFileSync('chown', ['postgres', dir]);
  const data = path.join(dir, 'data');
  pg('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=100`;
  const start = async (): Promise<void> => {
    pg('pg_ctl', ['-D', data, '-o', opts, '-l', path.join(dir, 'log'), '-w', '-t', '60', 'start']);
    await until(`PostgreSQL on ${port}`, () => canConnect(port), 10_000);
  };
  const stop = async (): Promise<void> => {
    pg('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop']);
    await until(`PostgreSQL on ${port} to stop`, async () => !(await canConnect(port)), 10_000);
  };
  await start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    start,
    stop,
    async destroy() {
      if (await canConnect(port)) await stop().catch(() => undefined);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
