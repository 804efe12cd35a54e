/**
 * Read-only access to HDF5 files (MATLAB v7.3 .mat files are HDF5 behind a 512-byte text header),
 * enough to follow MATLAB cell arrays of object references.
 *
 * Library: `h5wasm` (the HDF5 C library compiled to WebAssembly, maintained at NIST; reads and
 * writes, object references included). Its Node build reads files straight from disk through
 * Emscripten's NODERAWFS, so a multi-GB .mat file is never copied into wasm memory. It is
 * ESM-only, and neither CommonJS `require` under jest nor jest's VM can load ESM, so it runs in a
 * `worker_threads` worker (plain Node, where `import()` works); the worker also keeps HDF5 reads
 * off the main thread. Calls are serialised by the worker's message queue.
 */
import { existsSync, openSync, readSync, closeSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { IceError, startThread } from '@ice/core';

export type Hdf5Array = Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array;

export interface Hdf5Data {
  /** Row-major (C order) values, as h5py would return them. */
  data: Hdf5Array;
  /** Row-major shape, as h5py reports it (MATLAB's dimensions reversed). */
  shape: number[];
  /** The MATLAB_class attribute (e.g. 'uint8', 'logical', 'cell') when present. */
  matlabClass?: string;
}

/** File URL of h5wasm's Node entry point (its package exports map only allows `import`, so resolve by hand). */
export function h5wasmEntryUrl(): string {
  const dirs = require.resolve.paths('h5wasm') ?? [];
  for (const dir of dirs) {
    const p = join(dir, 'h5wasm', 'dist', 'node', 'hdf5_hl.js');
    if (existsSync(p)) return pathToFileURL(p).href;
  }
  throw new IceError('BACKEND_UNAVAILABLE', `h5wasm is not installed (looked in ${dirs.join(', ')}); run npm install`);
}

/** The thread that holds the file open (plain JavaScript: see its header). */
const HDF5_WORKER = join(__dirname, 'hdf5.worker.js');

const HDF5_SIGNATURE = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * True if the file has an HDF5 superblock signature at offset 0, 512, 1024, … (the places the HDF5
 * library looks; MATLAB v7.3 puts it at 512).
 */
export function isHdf5File(path: string): boolean {
  const size = statSync(path).size;
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(8);
    for (let off = 0; off + 8 <= size; off = off === 0 ? 512 : off * 2) {
      if (readSync(fd, buf, 0, 8, off) === 8 && buf.equals(HDF5_SIGNATURE)) return true;
    }
    return false;
  } finally {
    closeSync(fd);
  }
}

interface Reply {
  id: number;
  ok: boolean;
  message?: string;
  data?: Hdf5Array;
  shape?: number[];
  matlabClass?: string;
  isReference?: boolean;
}

interface Pending {
  resolve: (r: Reply) => void;
  reject: (e: Error) => void;
}

/** An open HDF5 file served by a worker thread. Always `close()` it (the worker is unref'd, so a forgotten one does not keep Node alive). */
export class Hdf5Reader {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  /** HDF5's own diagnostics (it prints an error stack to stderr), kept for error messages. */
  private stderrTail = '';

  private constructor(
    readonly path: string,
    private readonly worker: Worker,
  ) {}

  /** Opens `path` read-only. FILE_NOT_FOUND if missing; INPUT_INVALID if not an HDF5 file. */
  static async open(path: string): Promise<Hdf5Reader> {
    if (!existsSync(path) || !statSync(path).isFile()) throw new IceError('FILE_NOT_FOUND', `HDF5 file not found: ${path}`, { path });
    if (!isHdf5File(path)) {
      throw new IceError(
        'INPUT_INVALID',
        `${path} is not an HDF5 file (MATLAB files must be saved with -v7.3; v5/v7 .mat files are not HDF5)`,
        { path },
      );
    }
    const worker = startThread(HDF5_WORKER, { data: { path, entryUrl: h5wasmEntryUrl() }, stderr: true, stdout: true });
    worker.unref();
    const reader = new Hdf5Reader(path, worker);
    reader.wire();
    const ready = new Promise<Reply>((resolve, reject) => reader.pending.set(0, { resolve, reject }));
    const first = await ready;
    if (!first.ok) {
      await reader.terminate();
      throw reader.fail(`cannot open ${path} as HDF5: ${first.message ?? 'unknown error'}`);
    }
    return reader;
  }

  private wire(): void {
    this.worker.on('message', (r: Reply) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      p.resolve(r);
    });
    const failAll = (err: Error): void => {
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', (err) => failAll(this.fail(`HDF5 worker for ${this.path} failed: ${err.message}`)));
    this.worker.on('exit', (code) => {
      this.closed = true;
      if (this.pending.size > 0) failAll(this.fail(`HDF5 worker for ${this.path} exited (code ${code})`));
    });
    const keepTail = (chunk: Buffer | string): void => {
      this.stderrTail = (this.stderrTail + chunk.toString()).slice(-4000);
    };
    this.worker.stderr.on('data', keepTail);
    this.worker.stdout.on('data', keepTail);
  }

  private fail(message: string): IceError {
    const diag = this.stderrTail
      .split('\n')
      .filter((l) => /minor:|error/i.test(l))
      .slice(-3)
      .map((l) => l.trim());
    return new IceError('INPUT_INVALID', diag.length > 0 ? `${message} (HDF5: ${diag.join('; ')})` : message, { path: this.path });
  }

  private async call(msg: Record<string, unknown>): Promise<Reply> {
    if (this.closed) throw new IceError('INPUT_INVALID', `HDF5 file ${this.path} is closed`, { path: this.path });
    const id = this.nextId++;
    const reply = new Promise<Reply>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.worker.postMessage({ ...msg, id });
    const r = await reply;
    if (!r.ok) throw this.fail(`${this.path}: ${r.message ?? 'unknown error'}`);
    return r;
  }

  /** Shape and MATLAB class of the dataset at `path`, and whether it holds object references. */
  async info(path: string): Promise<{ shape: number[]; matlabClass?: string; isReference: boolean }> {
    const r = await this.call({ op: 'info', path });
    return { shape: r.shape ?? [], isReference: r.isReference === true, ...(r.matlabClass ? { matlabClass: r.matlabClass } : {}) };
  }

  /** Reads a numeric dataset whole. */
  async read(path: string): Promise<Hdf5Data> {
    return toData(await this.call({ op: 'read', path }));
  }

  /**
   * Follows object references: element `chain[0]` (flat, row-major) of the reference dataset at
   * `path`, then element `chain[k]` of each reference array reached, and reads the final dataset.
   * h5py's `f[f[f['/value/gt'][i,0]][0,0]]` is `deref('/value/gt', [i * cols, 0])`.
   */
  async deref(path: string, chain: number[]): Promise<Hdf5Data> {
    if (chain.length === 0) throw new IceError('INPUT_INVALID', 'deref needs at least one index');
    return toData(await this.call({ op: 'deref', path, chain }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.call({ op: 'close' });
    } finally {
      await this.terminate();
    }
  }

  private async terminate(): Promise<void> {
    this.closed = true;
    await this.worker.terminate();
  }
}

function toData(r: Reply): Hdf5Data {
  if (!r.data || !r.shape) throw new IceError('INPUT_INVALID', 'HDF5 worker returned no data');
  return { data: r.data, shape: r.shape, ...(r.matlabClass ? { matlabClass: r.matlabClass } : {}) };
}
