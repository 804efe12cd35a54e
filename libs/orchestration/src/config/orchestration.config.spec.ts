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

  it('reads READ_AUTH as on or off (default off) and refuses anything else', () => {
    expect(loadOrchestrationConfig('api', { ...base, API_KEYS: 'a' }).readAuth).toBe(false);
    expect(loadOrchestrationConfig('api', { ...base, API_KEYS: 'a', READ_AUTH: 'on' }).readAuth).toBe(true);
    expect(() => loadOrchestrationConfig('api', { ...base, API_KEYS: 'a', READ_AUTH: 'yes' })).toThrow(/READ_AUTH: on or off/);
  });

  it('names the variable that is wrong', () => {
    expect(() => loadOrchestrationConfig('worker', { ...base, LOCK_DURATION_MS: 'soon' })).toThrow(/LOCK_DURATION_MS/);
    expect(() => loadOrchestrationConfig('worker', { ...base, DATABASE_URL: 'mysql://x/y' })).toThrow(/DATABASE_URL/);
  });

  it('resolves data roots', () => {
    expect(loadOrchestrationConfig('worker', { ...base, DATA_ROOTS: '/data/a,/data/b' }).dataRoots).toEqual(['/data/a', '/data/b']);
  });

  it('reads the all-reduce bind address, advertised address, port range and heartbeat', () => {
    const d = loadOrchestrationConfig('worker', base).worker;
    expect(d).toMatchObject({
      allReduceHost: '127.0.0.1',
      allReduceAdvertiseHost: null,
      allReducePorts: null,
      allReduceHeartbeatTimeoutMs: 10_000,
      allReduceTransport: 'auto',
    });
    const c = loadOrchestrationConfig('worker', {
      ...base,
      ALLREDUCE_HOST: '0.0.0.0',
      ALLREDUCE_ADVERTISE_HOST: 'gpu-node-3.cluster',
      ALLREDUCE_PORTS: '29400-29407',
      ALLREDUCE_HEARTBEAT_TIMEOUT_MS: '5000',
    }).worker;
    expect(c).toMatchObject({
      allReduceHost: '0.0.0.0',
      allReduceAdvertiseHost: 'gpu-node-3.cluster',
      allReducePorts: { from: 29400, to: 29407 },
    });
    expect(c.allReduceHeartbeatTimeoutMs).toBe(5000);
    expect(loadOrchestrationConfig('worker', { ...base, ALLREDUCE_PORTS: '29400' }).worker.allReducePorts).toEqual({
      from: 29400,
      to: 29400,
    });
    expect(() => loadOrchestrationConfig('worker', { ...base, ALLREDUCE_PORTS: '29407-29400' })).toThrow(/ALLREDUCE_PORTS: 29407-29400/);
    expect(() => loadOrchestrationConfig('worker', { ...base, ALLREDUCE_PORTS: '70000' })).toThrow(/ALLREDUCE_PORTS/);
    expect(() => loadOrchestrationConfig('worker', { ...base, ALLREDUCE_PORTS: 'any' })).toThrow(/ALLREDUCE_PORTS/);
  });
});
