'use strict';
// The worker thread of hdf5.reader.ts, started with startThread (@ice/core). Plain CommonJS
// JavaScript: h5wasm is ESM-only and is loaded with a native import(), which compiling TypeScript
// to CommonJS would turn into a require(). Kept to data access only; calls are serialised by the
// thread's message queue.
const { parentPort, workerData } = require('node:worker_threads');

// What hdf5.reader.ts passed to startThread: the file and h5wasm's entry point.
const { path, entryUrl } = workerData.data;
const refCache = new Map();
function refsOf(ds, key) {
  let refs = refCache.get(key);
  if (!refs) {
    refs = ds.value;
    refCache.set(key, refs);
  }
  return refs;
}
function matlabClass(ds) {
  try {
    const a = ds.attrs['MATLAB_class'];
    return a ? String(a.value) : undefined;
  } catch {
    return undefined;
  }
}
function deref(f, ref, what) {
  const ent = f.dereference(ref);
  if (!ent || ent.shape === undefined) throw new Error(what + ' does not refer to a dataset');
  return ent;
}
(async () => {
  let h5, f;
  try {
    h5 = await import(entryUrl);
    await h5.ready;
    f = new h5.File(path, 'r');
  } catch (e) {
    parentPort.postMessage({ id: 0, ok: false, message: String((e && e.message) || e) });
    return;
  }
  parentPort.postMessage({ id: 0, ok: true });
  parentPort.on('message', (msg) => {
    try {
      if (msg.op === 'close') {
        f.close();
        parentPort.postMessage({ id: msg.id, ok: true });
        parentPort.close();
        return;
      }
      const ds = f.get(msg.path);
      if (!ds || ds.shape === undefined) throw new Error('no dataset at ' + msg.path);
      if (msg.op === 'info') {
        parentPort.postMessage({
          id: msg.id,
          ok: true,
          shape: ds.shape,
          matlabClass: matlabClass(ds),
          isReference: ds.dtype === 'Reference',
        });
        return;
      }
      if (msg.op === 'read') {
        parentPort.postMessage({ id: msg.id, ok: true, data: ds.value, shape: ds.shape, matlabClass: matlabClass(ds) });
        return;
      }
      if (msg.op === 'deref') {
        // msg.chain: flat indices; the first indexes the reference dataset at msg.path, each next one
        // the reference array reached so far.
        if (ds.dtype !== 'Reference') throw new Error(msg.path + ' does not hold object references');
        const refs = refsOf(ds, msg.path);
        let what = msg.path + '[' + msg.chain[0] + ']';
        if (msg.chain[0] >= refs.length) throw new Error(what + ' is out of range (' + refs.length + ' references)');
        let cur = deref(f, refs[msg.chain[0]], what);
        for (let k = 1; k < msg.chain.length; k++) {
          if (cur.dtype !== 'Reference') throw new Error(what + ' is not an array of references');
          const inner = cur.value;
          what = what + '->[' + msg.chain[k] + ']';
          if (msg.chain[k] >= inner.length) throw new Error(what + ' is out of range (' + inner.length + ' references)');
          cur = deref(f, inner[msg.chain[k]], what);
        }
        const value = cur.value;
        if (!ArrayBuffer.isView(value)) throw new Error(what + ' is not a numeric array (dtype ' + JSON.stringify(cur.dtype) + ')');
        parentPort.postMessage({ id: msg.id, ok: true, data: value, shape: cur.shape, matlabClass: matlabClass(cur) });
        return;
      }
      throw new Error('unknown op ' + msg.op);
    } catch (e) {
      parentPort.postMessage({ id: msg.id, ok: false, message: String((e && e.message) || e) });
    }
  });
})();
