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

/** Throws INPUT_INVALID naming `field` when `p` lies outside every allowed root. */
export function assertInsideRoots(field: string, p: string, roots: readonly string[]): void {
  if (!roots.some((r) => isInside(r, p))) {
    throw new IceError('INPUT_INVALID', `${field}: ${p} is outside the configured data roots (${roots.join(', ')})`);
  }
}
