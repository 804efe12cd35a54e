// tfjs-core's CommonJS bundle (dist/tf-core.node.js) registers NO gradients, and its
// dist/register_all_gradients.js is extension-less ESM that Node cannot load. For the
// autodiff reference in these benchmarks, load that ESM tree through a one-off require
// hook that transpiles tfjs-core/dist/**.js to CommonJS with TypeScript. The second copy
// of tfjs-core it creates shares the engine and the gradient registry (both are
// process globals), so the official gradient configs end up registered.
'use strict';
const path = require('path');
const fs = require('fs');
const Module = require('module');
const ts = require('typescript');

const coreDist = path.dirname(require.resolve('@tensorflow/tfjs-core/dist/tf-core.node.js'));
const origJs = Module._extensions['.js'];
Module._extensions['.js'] = function (mod, filename) {
  if (filename.startsWith(coreDist + path.sep) && !/tf-core\.(node|min|es2017|fesm)/.test(filename)) {
    const src = fs.readFileSync(filename, 'utf8');
    const out = ts.transpileModule(src, {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2017, esModuleInterop: true },
    });
    mod._compile(out.outputText, filename);
    return;
  }
  return origJs(mod, filename);
};
// Node 20 may try require(esm) first; force the CJS path by loading with the hook above.
require(path.join(coreDist, 'register_all_gradients.js'));
Module._extensions['.js'] = origJs;
