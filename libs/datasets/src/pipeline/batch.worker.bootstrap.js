'use strict';
// Entry point of the pipeline's worker threads (see batch.loader.ts). A worker thread starts with
// a fresh module system: the TypeScript on-the-fly compiler the main thread registered (bin/run-ts.js,
// bin/ice.js, or jest's transform) is not there, so register @swc-node/register here, with the
// repository's tsconfig for the @ice/* path aliases, then load the TypeScript handler. A compiled
// build (batch.worker.js next to this file) is used as is.
const fs = require('node:fs');
const path = require('node:path');

const compiled = path.join(__dirname, 'batch.worker.js');
if (fs.existsSync(compiled)) {
  module.exports = require(compiled);
} else {
  process.env.TS_NODE_PROJECT = process.env.TS_NODE_PROJECT || path.join(__dirname, '..', '..', '..', '..', 'tsconfig.json');
  require('@swc-node/register');
  module.exports = require('./batch.worker.ts');
}
