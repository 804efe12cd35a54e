export * from './base.entity';
export * from './entities';
export * from './embedded-postgres';
export * from './orchestration.store';
export { MIGRATIONS } from './migrations';
