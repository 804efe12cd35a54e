#!/usr/bin/env node
'use strict';
// The `ice` command: runs apps/cli from source (see run-ts.js for why no build step is needed).
const path = require('node:path');
process.env.TS_NODE_PROJECT = process.env.TS_NODE_PROJECT || path.join(__dirname, '..', 'tsconfig.json');
require('@swc-node/register');
void require(path.join(__dirname, '..', 'apps', 'cli', 'src', 'main.ts')).main(process.argv);
