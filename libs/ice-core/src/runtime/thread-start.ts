/**
 * The one way the project starts a worker thread: `startThread(entry)` runs a module file (a .ts
 * source through @swc-node/register, or compiled .js) in a new thread via thread.bootstrap.js,
 * and piscina pools use the same bootstrap (`threadWorkerData`). The module reads what it was given
 * with `threadData()`. No JavaScript is kept in strings and nothing is evaluated.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker, workerData } from 'node:worker_threads';
import { IceError } from '../errors';

/** The file every thread starts from; it loads the entry module (see thread.bootstrap.js). */
export const THREAD_BOOTSTRAP = path.join(__dirname, 'thread.bootstrap.js');

/** What the bootstrap receives: the module to load, and the caller's data for it. */
export interface ThreadBoot {
  entry: string;
  data: unknown;
}

const MODULE_EXTENSIONS = ['.ts', '.js', '.cjs'];

/**
 * The module `baseName` in the directory of `callerFile`, with the caller's own extension: the .ts
 * source when running from source (tests, bin/run-ts.js), the .js file in a compiled build.
 */
export function moduleBeside(callerFile: string, baseName: string): string {
  return path.join(path.dirname(callerFile), `${baseName}${path.extname(callerFile)}`);
}

/** workerData for a thread (or a piscina pool) that starts from THREAD_BOOTSTRAP and loads `entry`. */
export function threadWorkerData(entry: string, data?: unknown): ThreadBoot {
  if (!path.isAbsolute(entry)) throw new IceError('INPUT_INVALID', `thread entry must be an absolute path, got ${entry}`);
  if (!MODULE_EXTENSIONS.includes(path.extname(entry)))
    throw new IceError('INPUT_INVALID', `thread entry ${entry} is not a module file (${MODULE_EXTENSIONS.join(', ')})`);
  if (!fs.existsSync(entry)) throw new IceError('FILE_NOT_FOUND', `thread entry ${entry} does not exist`);
  return { entry, data };
}

export interface StartThreadOptions {
  /** Handed to the module, structured-cloned (read it with threadData()). */
  data?: unknown;
  /** The thread's environment (default: a copy of this process's). */
  env?: NodeJS.ProcessEnv;
  /** Pipe the thread's stdout/stderr to the Worker's streams instead of this process's. */
  stdout?: boolean;
  stderr?: boolean;
}

/** Starts the module `entry` (absolute path of a .ts or .js file) in a new worker thread. */
export function startThread(entry: string, opts: StartThreadOptions = {}): Worker {
  return new Worker(THREAD_BOOTSTRAP, {
    workerData: threadWorkerData(entry, opts.data),
    ...(opts.env ? { env: opts.env } : {}),
    stdout: opts.stdout ?? false,
    stderr: opts.stderr ?? false,
  });
}

/** Inside a thread started by startThread: the data it was given. */
export function threadData<T>(): T {
  return (workerData as ThreadBoot | null)?.data as T;
}
