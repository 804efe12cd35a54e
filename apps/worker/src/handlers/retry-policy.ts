import { IceError } from '@ice/core';

/** Errors that another attempt cannot fix: retrying them only delays the failure. */
export function isRetryable(e: unknown): boolean {
  if (!(e instanceof IceError)) return true;
  switch (e.code) {
    case 'CONFIG_INVALID':
    case 'INPUT_INVALID':
    case 'FILE_NOT_FOUND':
    case 'WEIGHTS_FORMAT':
    case 'WEIGHTS_MISMATCH':
    case 'CHECKPOINT_INVALID':
    case 'IMAGE_CORRUPT':
    case 'CANCELLED':
      return false;
    case 'NON_FINITE_LOSS':
    case 'BACKEND_UNAVAILABLE':
    case 'RANK_TIMEOUT': // the group meets again at its common checkpoint once every rank's job is running
      return true;
  }
}
