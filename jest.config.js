/** Unit specs live next to the code; end-to-end tests live in test/. */
const swc = ['@swc/jest', {
  jsc: {
    target: 'es2022',
    parser: { syntax: 'typescript', decorators: true },
    transform: { legacyDecorator: true, decoratorMetadata: true },
    keepClassNames: true,
  },
  module: { type: 'commonjs' },
}];
const moduleNameMapper = {
  '^@ice/core$': '<rootDir>/libs/ice-core/src/index.ts',
  '^@ice/datasets$': '<rootDir>/libs/datasets/src/index.ts',
  '^@ice/experiments$': '<rootDir>/libs/experiments/src/index.ts',
  '^@ice/orchestration$': '<rootDir>/libs/orchestration/src/index.ts',
};
module.exports = {
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': swc },
  moduleNameMapper,
  roots: ['<rootDir>/apps', '<rootDir>/libs', '<rootDir>/test'],
  testMatch: ['**/*.spec.ts', '**/*.e2e-spec.ts'],
  testTimeout: 120000,
  maxWorkers: 2,
  reporters: ['default', '<rootDir>/test/summary.reporter.js'],
};
