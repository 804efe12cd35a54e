export * from './run.contract';
export * from './run-data';
export * from './run-executor';
export * from './run-evaluation';
export * from './sweep';
export * from './sweep-axes';
export * from './ablation-table';
export * from './run-once';
