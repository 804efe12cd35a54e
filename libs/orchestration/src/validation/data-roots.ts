import * as fs from 'node:fs';
import * as path from 'node:path';
import { IceError } from '@ice/core';

/** Resolves symlinks where the path exists, so a link inside a root cannot point outside it. */
function real(p: string): string {
  const abs = path.resolve(p);
  try {
    return fs.realpathSync(abs);
  } catch {
    return abs;
  }
}

export function isInside(root: string, candidate: string): boolean {
  const rel = path.relative(real(root), real(candidate));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * Throws INPUT_INVALID naming `field` when `p` lies outside every allowed root. The message does
 * not list the roots: they are the server's directory layout, which a client has no business
 * learning by sending wrong paths (the operator knows DATA_ROOTS).
 */
export function assertInsideRoots(field: string, p: string, roots: readonly string[]): void {
  if (!roots.some((r) => isInside(r, p))) {
    throw new IceError('INPUT_INVALID', `${field}: ${p} is outside the configured data roots`);
  }
}

/**
 * Throws INPUT_INVALID naming `field` when `p` is not an existing file (`kind` 'file') or
 * directory ('dir'): a submission that names a missing weights file or data set is refused at
 * once, not by a worker after queueing (where it could only fail). Call after assertInsideRoots.
 */
export function assertExists(field: string, p: string, kind: 'file' | 'dir'): void {
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(p);
  } catch {
    st = undefined;
  }
  if (!st) throw new IceError('INPUT_INVALID', `${field}: ${p} does not exist`);
  if (kind === 'file' && !st.isFile()) throw new IceError('INPUT_INVALID', `${field}: ${p} is not a file`);
  if (kind === 'dir' && !st.isDirectory()) throw new IceError('INPUT_INVALID', `${field}: ${p} is not a directory`);
}
