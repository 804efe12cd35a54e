import * as path from 'node:path';
import { loadOrchestrationConfig } from './orchestration.config';

describe('loadOrchestrationConfig', () => {
  const base = { CODE_VERSION: 'test' };

  it('defaults to local Redis and the embedded database', () => {
    const c = loadOrchestrationConfig('worker', base);
    expect(c.redisUrl).toBe('redis://127.0.0.1:6379');
    expect(c.databaseUrl).toBeNull();
    expect(c.artifactDir).toBe(path.resolve('artifacts'));
  });

  it('requires API keys for the API, not for workers', () => {
    expect(() => loadOrchestrationConfig('api', base)).toThrow(/API_KEYS/);
    expect(loadOrchestrationConfig('api', { ...base, API_KEYS: 'a, b' }).apiKeys).toEqual(['a', 'b']);
  });

  it('names the variable that is wrong', () => {
    expect(() => loadOrchestrationConfig('worker', { ...base, LOCK_DURATION_MS: 'soon' })).toThrow(/LOCK_DURATION_MS/);
    expect(() => loadOrchestrationConfig('worker', { ...base, DATABASE_URL: 'mysql://x/y' })).toThrow(/DATABASE_URL/);
  });

  it('resolves data roots', () => {
    expect(loadOrchestrationConfig('worker', { ...base, DATA_ROOTS: '/data/a,/data/b' }).dataRoots).toEqual(['/data/a', '/data/b']);
  });
});
