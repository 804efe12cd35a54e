/** Unit specs live next to the code; end-to-end tests live in test/. */
const swc = [
  '@swc/jest',
  {
    jsc: {
      target: 'es2022',
      parser: { syntax: 'typescript', decorators: true },
      transform: { legacyDecorator: true, decoratorMetadata: true },
      keepClassNames: true,
    },
    module: { type: 'commonjs' },
  },
];
const moduleNameMapper = {
  '^@ice/core$': '<rootDir>/libs/ice-core/src/index.ts',
  '^@ice/native-kernels$': '<rootDir>/libs/native-kernels/src/index.ts',
  '^@ice/datasets$': '<rootDir>/libs/datasets/src/index.ts',
  '^@ice/evaluation$': '<rootDir>/libs/evaluation/src/index.ts',
  '^@ice/experiments$': '<rootDir>/libs/experiments/src/index.ts',
  '^@ice/orchestration$': '<rootDir>/libs/orchestration/src/index.ts',
};
// NestJS 12 (and a few packages it loads) ship ES modules only, which Jest cannot require() on Node 20.
const esmOnly = ['@nestjs', 'file-type', 'strtok3', 'token-types', '@tokenizer', 'uint8array-extras'];
module.exports = {
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': swc, '^.+\\.m?js$': '<rootDir>/test/support/esm-to-cjs.transform.js' },
  transformIgnorePatterns: [`/node_modules/(?!(${esmOnly.join('|')})/)`],
  moduleNameMapper,
  roots: ['<rootDir>/apps', '<rootDir>/libs', '<rootDir>/test'],
  testMatch: ['**/*.spec.ts', '**/*.e2e-spec.ts'],
  testTimeout: 120000,
  maxWorkers: 2,
  reporters: ['default', '<rootDir>/test/summary.reporter.js'],
};
