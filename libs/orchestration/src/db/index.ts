export * from './base.entity';
export * from './entities';
export * from './embedded-postgres';
export * from './orchestration.database';
export * from './repositories';
export { MIGRATIONS } from './migrations';
export * from './retry-write';
