/** Shared plumbing of the file-backed loaders: existence checks with IceErrors that name the path, index-file reading. */
import { readFileSync, statSync } from 'node:fs';
import { IceError } from '@ice/core';
import type { VisionDataset, VisionSample } from '../dataset.types';

export type DatasetFormat = 'imagenet' | 'imagenet-seg' | 'voc' | 'cub';
export const DATASET_FORMATS: readonly DatasetFormat[] = ['imagenet', 'imagenet-seg', 'voc', 'cub'];

/** A dataset read from files on disk: `get` decodes lazily; `close` frees any open handle (no-op for most formats). */
export interface FileDataset<S extends VisionSample = VisionSample> extends VisionDataset<S> {
  readonly format: DatasetFormat;
  readonly root: string;
  get(i: number): Promise<S>;
  close(): Promise<void>;
}

function kindOf(path: string): 'file' | 'dir' | 'other' | undefined {
  try {
    const st = statSync(path);
    return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : 'other';
  } catch {
    return undefined;
  }
}

export function isDir(path: string): boolean {
  return kindOf(path) === 'dir';
}

export function isFile(path: string): boolean {
  return kindOf(path) === 'file';
}

/** FILE_NOT_FOUND unless `path` is a directory. */
export function requireDir(path: string, what: string): void {
  if (!isDir(path)) throw new IceError('FILE_NOT_FOUND', `${what} not found (expected a directory): ${path}`, { path });
}

/** FILE_NOT_FOUND unless `path` is a regular file. */
export function requireFile(path: string, what: string): void {
  if (!isFile(path)) throw new IceError('FILE_NOT_FOUND', `${what} not found: ${path}`, { path });
}

/** Non-empty lines of a text index file, trimmed (CRLF tolerated); FILE_NOT_FOUND if it is missing. */
export function readIndexLines(path: string, what: string): string[] {
  requireFile(path, what);
  return readFileSync(path, 'utf8')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
}

/** INPUT_INVALID naming the file and 1-based line. */
export function badLine(path: string, lineNo: number, problem: string): IceError {
  return new IceError('INPUT_INVALID', `${path}:${lineNo}: ${problem}`, { path, line: lineNo });
}

export function checkIndex(i: number, length: number, name: string): void {
  if (!Number.isInteger(i) || i < 0 || i >= length) {
    throw new IceError('INPUT_INVALID', `${name}: index ${i} out of range [0, ${length})`);
  }
}

/** Python's default str ordering (code points), which `sorted()` in torchvision uses; JS's default sort compares UTF-16 units. */
export function compareCodePoints(a: string, b: string): number {
  const ai = a[Symbol.iterator]();
  const bi = b[Symbol.iterator]();
  for (;;) {
    const x = ai.next();
    const y = bi.next();
    if (x.done || y.done) return x.done && y.done ? 0 : x.done ? -1 : 1;
    const cx = x.value.codePointAt(0) ?? 0;
    const cy = y.value.codePointAt(0) ?? 0;
    if (cx !== cy) return cx - cy;
  }
}
