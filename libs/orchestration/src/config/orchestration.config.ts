/**
 * The one typed configuration of the API and the workers, read once from the environment at
 * start-up. Tests build it with overrides instead of mutating process.env.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { z } from 'zod';
import { IceError, parseInput } from '@ice/core';
import { QUEUE_NAMES, type QueueName } from '../queue/queues';

export type ProcessRole = 'api' | 'worker';

const csv = (raw: string | undefined): string[] =>
  (raw ?? '')
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter(Boolean);

const intFromEnv = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);

const EnvSchema = z.object({
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/ }).optional(),
  REDIS_URL: z.url({ protocol: /^rediss?$/ }).default('redis://127.0.0.1:6379'),
  QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, _ and - only')
    .default('ice'),
  API_KEYS: z.string().optional(),
  READ_AUTH: z.enum(['on', 'off'], { error: 'on or off' }).default('off'),
  DATA_ROOTS: z.string().optional(),
  ARTIFACT_DIR: z.string().min(1).default('artifacts'),
  DATA_DIR: z.string().min(1).default('.data'),
  EMBEDDED_PG_HOST: z.string().default('127.0.0.1'),
  EMBEDDED_PG_PORT: intFromEnv(1, 65535).default(54329),
  EMBEDDED_PG_MAX_CONNECTIONS: intFromEnv(1, 256).default(32),
  HOST: z.string().default('127.0.0.1'),
  PORT: intFromEnv(0, 65535).default(3000),
  WORKER_CONCURRENCY: intFromEnv(1, 64).default(1),
  WORKER_QUEUES: z.string().optional(),
  WORKER_HEARTBEAT_MS: intFromEnv(100).default(2000),
  LOCK_DURATION_MS: intFromEnv(1000).default(30_000),
  STALLED_INTERVAL_MS: intFromEnv(500).default(30_000),
  PROGRESS_INTERVAL_MS: intFromEnv(100).default(2000),
  RUN_ATTEMPTS: intFromEnv(1, 20).default(3),
  RUN_BACKOFF_MS: intFromEnv(0).default(5000),
  CANCEL_GRACE_MS: intFromEnv(0).default(3000),
  ALLREDUCE_TIMEOUT_MS: intFromEnv(100).default(300_000),
  ALLREDUCE_HOST: z.string().default('127.0.0.1'),
  ALLREDUCE_ADVERTISE_HOST: z.string().optional(),
  ALLREDUCE_PORTS: z
    .string()
    .regex(/^\d{1,5}(-\d{1,5})?$/, 'a port or a range like 29400-29431')
    .optional(),
  ALLREDUCE_HEARTBEAT_TIMEOUT_MS: intFromEnv(100).default(10_000),
  ALLREDUCE_TRANSPORT: z.enum(['auto', 'tcp']).default('auto'),
  OUTCOME_WRITE_HORIZON_MS: intFromEnv(0).default(30 * 60_000),
  RECONCILE_INTERVAL_MS: intFromEnv(0).default(60_000),
  CODE_VERSION: z.string().optional(),
  WORKER_ID: z.string().optional(),
});

export interface OrchestrationConfig {
  role: ProcessRole;
  /** Null: the embedded PGlite server (hosted by the API, reached over TCP by the workers). */
  databaseUrl: string | null;
  embeddedDb: { dataDir: string; host: string; port: number; maxConnections: number };
  redisUrl: string;
  /** BullMQ key prefix and pub/sub channel prefix: separate deployments (and test files) share one Redis. */
  queuePrefix: string;
  apiKeys: string[];
  /** READ_AUTH=on: reads (GET, SSE) need a key too, not only mutations; /health stays open for probes. */
  readAuth: boolean;
  dataRoots: string[];
  artifactDir: string;
  http: { host: string; port: number };
  worker: {
    id: string;
    /** Queues this worker takes jobs from (default: all). */
    queues: QueueName[];
    concurrency: number;
    /** How often a worker beats in the registry; 3 missed beats and its jobs are taken back (WorkerRegistry). */
    heartbeatMs: number;
    lockDurationMs: number;
    stalledIntervalMs: number;
    progressIntervalMs: number;
    attempts: number;
    backoffMs: number;
    cancelGraceMs: number;
    /**
     * How long a data-parallel rank waits at a step for the other ranks' gradients before its job
     * fails (and is retried from its checkpoint). Covers the group's start too: every rank's job
     * must be running within it.
     */
    allReduceTimeoutMs: number;
    /** Where a data-parallel rank listens for its ring neighbour (bind address). */
    allReduceHost: string;
    /** The address the other ranks connect to, when it is not the bind address (binding 0.0.0.0, NAT, several NICs). */
    allReduceAdvertiseHost: string | null;
    /** Fixed ports for the ring listeners (firewalls); null: ephemeral. A worker needs one per rank job it runs at once. */
    allReducePorts: { from: number; to: number } | null;
    /** A ring neighbour silent this long (no data, no heartbeat) fails the step. */
    allReduceHeartbeatTimeoutMs: number;
    /** 'auto': ranks that all share this machine reduce through shared memory; 'tcp': always the TCP ring. */
    allReduceTransport: 'auto' | 'tcp';
    /**
     * How long a finished run's worker keeps retrying the database write of its outcome (with
     * backoff) while the database is away, the job held (no attempt spent). Past it the outcome
     * stays on disk beside the checkpoint and the reconciler records it.
     */
    outcomeWriteHorizonMs: number;
  };
  /** The reconciler's period (API and workers; one at a time across processes); 0: only at start-up. */
  reconcileIntervalMs: number;
  codeVersion: string;
}

function detectCodeVersion(): string {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { stdio: ['ignore', 'pipe', 'ignore'], timeout: 2000 })
      .toString()
      .trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 2000,
    })
      .toString()
      .trim();
    return dirty ? `${sha}-dirty` : sha;
  } catch {
    // Not a git checkout (a Docker image): the package version is the best we have.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return `v${(require(path.resolve('package.json')) as { version: string }).version}`;
  }
}

export function loadOrchestrationConfig(role: ProcessRole, env: NodeJS.ProcessEnv = process.env): OrchestrationConfig {
  // An empty variable means unset (VAR= in a shell or a compose file).
  const e = parseInput(EnvSchema, Object.fromEntries(Object.entries(env).filter(([, v]) => v !== '')), 'CONFIG_INVALID', 'environment');
  const apiKeys = csv(e.API_KEYS);
  const queues = e.WORKER_QUEUES ? csv(e.WORKER_QUEUES) : [...QUEUE_NAMES];
  const unknownQueue = queues.find((q) => !(QUEUE_NAMES as readonly string[]).includes(q));
  if (unknownQueue) throw new IceError('CONFIG_INVALID', `WORKER_QUEUES: unknown queue ${unknownQueue}; known: ${QUEUE_NAMES.join(', ')}`);
  if (role === 'api' && apiKeys.length === 0) {
    throw new IceError('CONFIG_INVALID', 'API_KEYS: at least one key is required (comma-separated) to accept mutating requests');
  }
  const allReducePorts = e.ALLREDUCE_PORTS ? parsePortRange(e.ALLREDUCE_PORTS) : null;
  const dataRoots = (e.DATA_ROOTS ? csv(e.DATA_ROOTS) : ['data']).map((p) => path.resolve(p));
  return {
    role,
    databaseUrl: e.DATABASE_URL ?? null,
    embeddedDb: {
      dataDir: path.resolve(e.DATA_DIR, 'pglite'),
      host: e.EMBEDDED_PG_HOST,
      port: e.EMBEDDED_PG_PORT,
      maxConnections: e.EMBEDDED_PG_MAX_CONNECTIONS,
    },
    redisUrl: e.REDIS_URL,
    queuePrefix: e.QUEUE_PREFIX,
    apiKeys,
    readAuth: e.READ_AUTH === 'on',
    dataRoots,
    artifactDir: path.resolve(e.ARTIFACT_DIR),
    http: { host: e.HOST, port: e.PORT },
    worker: {
      id: e.WORKER_ID ?? `${os.hostname()}-${process.pid}`,
      queues: queues as QueueName[],
      concurrency: e.WORKER_CONCURRENCY,
      heartbeatMs: e.WORKER_HEARTBEAT_MS,
      lockDurationMs: e.LOCK_DURATION_MS,
      stalledIntervalMs: e.STALLED_INTERVAL_MS,
      progressIntervalMs: e.PROGRESS_INTERVAL_MS,
      attempts: e.RUN_ATTEMPTS,
      backoffMs: e.RUN_BACKOFF_MS,
      cancelGraceMs: e.CANCEL_GRACE_MS,
      allReduceTimeoutMs: e.ALLREDUCE_TIMEOUT_MS,
      allReduceHost: e.ALLREDUCE_HOST,
      allReduceAdvertiseHost: e.ALLREDUCE_ADVERTISE_HOST ?? null,
      allReducePorts,
      allReduceHeartbeatTimeoutMs: e.ALLREDUCE_HEARTBEAT_TIMEOUT_MS,
      allReduceTransport: e.ALLREDUCE_TRANSPORT,
      outcomeWriteHorizonMs: e.OUTCOME_WRITE_HORIZON_MS,
    },
    reconcileIntervalMs: e.RECONCILE_INTERVAL_MS,
    codeVersion: e.CODE_VERSION ?? detectCodeVersion(),
  };
}

function parsePortRange(raw: string): { from: number; to: number } {
  const [from, to = from] = raw.split('-').map(Number);
  if (!(from >= 1 && to <= 65535 && from <= to))
    throw new IceError('CONFIG_INVALID', `ALLREDUCE_PORTS: ${raw} is not a port or a range of ports (1-65535, low-high)`);
  return { from, to };
}

/** The embedded server's address as a connection string (what the workers use when DATABASE_URL is unset). */
export function embeddedDatabaseUrl(c: OrchestrationConfig): string {
  return `postgresql://postgres@${c.embeddedDb.host}:${c.embeddedDb.port}/postgres`;
}

export const ORCHESTRATION_CONFIG = Symbol('ORCHESTRATION_CONFIG');
