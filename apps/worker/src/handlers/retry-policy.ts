import { IceError } from '@ice/core';

/**
 * Errors that another attempt cannot fix: retrying them only delays the failure. A run is
 * deterministic from its config and checkpoint (seeded data order, initialisation and
 * augmentation), so a non-finite loss comes back at the same step on every attempt, as do a
 * config or payload that does not parse and weights that do not load. What is left is
 * transient and retried: a database or Redis that is away, a thread that died (out of memory,
 * a killed process), a data-parallel rank that is gone, a backend that did not start.
 */
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
    case 'NON_FINITE_LOSS':
    case 'CANCELLED':
    case 'NO_CAPACITY':
      return false;
    case 'BACKEND_UNAVAILABLE':
    case 'RANK_TIMEOUT': // the group meets again at its common checkpoint once every rank's job is running
    case 'RANKS_APART': // handled inside the run (the rank steps back); escaping it means the rollback failed: try again
      return true;
  }
}
