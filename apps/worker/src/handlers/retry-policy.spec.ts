import { IceError } from '@ice/core';
import { isRetryable } from './retry-policy';

describe('retry policy', () => {
  it('does not retry deterministic failures: non-finite loss, bad weights, schema errors, missing files', () => {
    for (const code of [
      'NON_FINITE_LOSS',
      'WEIGHTS_FORMAT',
      'WEIGHTS_MISMATCH',
      'CONFIG_INVALID',
      'INPUT_INVALID',
      'FILE_NOT_FOUND',
    ] as const)
      expect([code, isRetryable(new IceError(code, 'x'))]).toEqual([code, false]);
  });

  it('retries transient ones: a lost rank, a backend that did not start, and anything not a domain error (a database away)', () => {
    expect(isRetryable(new IceError('RANK_TIMEOUT', 'x'))).toBe(true);
    expect(isRetryable(new IceError('BACKEND_UNAVAILABLE', 'x'))).toBe(true);
    expect(isRetryable(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isRetryable(new Error('task thread exited with code 134 before reporting a result'))).toBe(true);
  });
});
