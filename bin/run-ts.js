#!/usr/bin/env node
// Runs a TypeScript entry point from source: @swc-node/register compiles on the fly with
// decorator metadata (NestJS needs it) and the tsconfig path aliases (@ice/core, @ice/datasets).
'use strict';
const path = require('node:path');
process.env.SWCRC = 'true';
process.env.TS_NODE_PROJECT = process.env.TS_NODE_PROJECT || path.join(__dirname, '..', 'tsconfig.json');
require('@swc-node/register');
const [, , entry, ...rest] = process.argv;
if (!entry) {
  console.error('usage: run-ts.js <entry.ts> [args...]');
  process.exit(2);
}
process.argv = [process.argv[0], path.resolve(entry), ...rest];
require(path.resolve(entry));
