#!/usr/bin/env node
// Builds the native kernels addon (libs/native-kernels/build/Release/ice_native.node) with node-gyp.
// Run by the root package's postinstall, so it must never fail `npm ci`: whatever goes wrong
// (no compiler, no python, no Node headers) it prints one line saying why it skipped and exits 0;
// the wasm backend then keeps its stock kernels. The BLAS libraries are not needed to build
// (they are opened at run time); the line says whether they are present.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const rel = (p) => path.relative(process.cwd(), p) || '.';
const say = (msg) => console.log(`native-kernels: ${msg}`);

function findNodeGyp() {
  const candidates = [];
  // npm puts its bundled node-gyp here for lifecycle scripts.
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  if (process.env.npm_execpath)
    candidates.push(path.join(path.dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  candidates.push(path.join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(path.join(prefix, 'share', 'nodejs', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  try {
    candidates.push(require.resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed as a package: fine
  }
  return candidates.find((c) => c && fs.existsSync(c));
}

/** Node's own headers next to the binary (Debian: /usr/include/node), so node-gyp needs no download. */
function findNodeDir() {
  if (process.env.npm_config_nodedir && fs.existsSync(path.join(process.env.npm_config_nodedir, 'include', 'node', 'node_api.h')))
    return process.env.npm_config_nodedir;
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  return fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined;
}

/** An executable on PATH (or an absolute path), like `command -v`. */
function onPath(name) {
  if (!name) return false;
  if (path.isAbsolute(name)) return fs.existsSync(name);
  return (process.env.PATH || '').split(path.delimiter).some((d) => d && fs.existsSync(path.join(d, name)));
}

function missingTools() {
  const cc = process.env.CC ? process.env.CC.split(' ')[0] : undefined;
  const missing = [];
  if (!(cc ? onPath(cc) : ['cc', 'gcc', 'clang'].some(onPath))) missing.push(cc ? `the C compiler ${cc}` : 'a C compiler (cc)');
  if (!onPath('make')) missing.push('make');
  if (!(process.env.PYTHON ? onPath(process.env.PYTHON) : ['python3', 'python'].some(onPath))) missing.push('python3 (for node-gyp)');
  return missing;
}

function librariesPresent() {
  const dirs = [
    '/usr/lib/x86_64-linux-gnu',
    '/usr/lib/aarch64-linux-gnu',
    '/usr/lib64',
    '/usr/lib',
    '/usr/local/lib',
    '/lib/x86_64-linux-gnu',
  ];
  const found = (names) => dirs.some((d) => names.some((n) => fs.existsSync(path.join(d, n))));
  const libs = [];
  if (found(['libdnnl.so.2', 'libdnnl.so.3', 'libdnnl.so'])) libs.push('oneDNN');
  if (found(['libopenblas.so.0', 'libopenblas.so'])) libs.push('OpenBLAS');
  return libs.length
    ? `found ${libs.join(' and ')}`
    : 'but neither libdnnl.so.2 nor libopenblas.so.0 was found, so the stock kernels will run (Debian: apt-get install libdnnl2 libopenblas0)';
}

function main() {
  if (process.env.ICE_NATIVE_KERNELS === 'off') return say('skipped (ICE_NATIVE_KERNELS=off)');
  if (process.platform !== 'linux') return say(`skipped (${process.platform}: only Linux is supported; the stock wasm kernels will run)`);
  const gyp = findNodeGyp();
  if (!gyp) return say('skipped (node-gyp not found; it comes with npm); the stock wasm kernels will run');
  const missing = missingTools();
  if (missing.length) return say(`skipped (missing ${missing.join(', ')}); the stock wasm kernels will run`);
  const args = [gyp, 'rebuild', '--loglevel=error'];
  const nodedir = findNodeDir();
  if (nodedir) args.push(`--nodedir=${nodedir}`);
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', timeout: 300_000 });
  const addon = path.join(root, 'build', 'Release', 'ice_native.node');
  if (r.status !== 0 || !fs.existsSync(addon)) {
    const out = `${r.stderr || ''}\n${r.stdout || ''}${r.error ? `\n${r.error.message}` : ''}`;
    const line = out
      .split('\n')
      .find((l) => /error|not found|No such file/i.test(l) && !/gyp ERR! (stack|System|command|cwd|node -v|node-gyp -v|not ok)/.test(l));
    const why = `node-gyp failed: ${(line || `exit ${r.status}`)
      .replace(/^gyp ERR! /, '')
      .trim()
      .slice(0, 200)}`;
    if (process.argv.includes('--verbose')) console.log(out);
    return say(
      `skipped (${why}); the stock wasm kernels will run (details: node ${rel(path.join(root, 'scripts', 'build.js'))} --verbose)`,
    );
  }
  say(`built ${rel(addon)}; ${librariesPresent()}`);
}

try {
  main();
} catch (e) {
  say(`skipped (${e && e.message ? e.message.split('\n')[0] : String(e)}); the stock wasm kernels will run`);
}
process.exitCode = 0;
