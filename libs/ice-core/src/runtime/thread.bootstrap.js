'use strict';
// The entry point of every worker thread the project starts (see thread-start.ts): it loads the
// module named in workerData.entry and exports it (a piscina pool calls its default export). A
// worker thread starts with a fresh module system, without the TypeScript compiler its parent
// registered (bin/run-ts.js, bin/ice.js, or jest's transform): a .ts entry registers
// @swc-node/register first, with the repository's tsconfig for the @ice/* path aliases. A compiled
// .js entry is loaded as is. No code travels as a string and nothing is evaluated.
const path = require('node:path');
const { workerData } = require('node:worker_threads');

const entry = workerData && workerData.entry;
if (typeof entry !== 'string' || !path.isAbsolute(entry)) {
  throw new Error(`thread bootstrap: workerData.entry must be an absolute module path, got ${JSON.stringify(entry)}`);
}
if (entry.endsWith('.ts')) {
  process.env.TS_NODE_PROJECT = process.env.TS_NODE_PROJECT || path.join(__dirname, '..', '..', '..', '..', 'tsconfig.json');
  require('@swc-node/register');
}
module.exports = require(entry);
