'use strict';
// Jest transformer for the ES-module-only packages (NestJS 12 and the few ESM packages it loads):
// Jest cannot require() ES modules on Node 20, so they are compiled to CommonJS with swc, the
// same compiler as our sources. `import.meta.url` has no CommonJS meaning; it becomes the file URL (built without require, which the ESM code may shadow).
const { transformSync } = require('@swc/core');
const crypto = require('node:crypto');

module.exports = {
  process(source, filename) {
    const code = source.replace(/\bimport\.meta\.url\b/g, '("file://" + __filename)');
    const out = transformSync(code, {
      filename,
      sourceMaps: 'inline',
      swcrc: false,
      jsc: { target: 'es2022', parser: { syntax: 'ecmascript' } },
      module: { type: 'commonjs', ignoreDynamic: false },
    });
    return { code: out.code };
  },
  getCacheKey(source, filename) {
    return crypto.createHash('sha1').update('esm-to-cjs-3').update(filename).update(source).digest('hex');
  },
};
