'use strict';
// The worker thread of imagenet-seg.writer.ts, started with startThread (@ice/core): writes the
// HDF5 part of a gtsegs_ijcv.mat file with h5wasm. Plain CommonJS JavaScript for the reason given
// in hdf5.worker.js (h5wasm is ESM-only, loaded with a native import()).
const { parentPort, workerData } = require('node:worker_threads');

// What writeImageNetSegMat passed to startThread.
const { path, entryUrl, samples, omitGt } = workerData.data;
(async () => {
  try {
    const h5 = await import(entryUrl);
    await h5.ready;
    const f = new h5.File(path, 'w');
    const refs = f.create_group('#refs#');
    const value = f.create_group('value');
    value.create_attribute('MATLAB_class', 'struct');
    const imgRefs = [];
    const gtRefs = [];
    samples.forEach((s, i) => {
      const img = refs.create_dataset({ name: 'img' + i, data: s.img, shape: [3, s.w, s.h] });
      img.create_attribute('MATLAB_class', 'uint8');
      const m = refs.create_dataset({ name: 'gt' + i, data: s.mask, shape: [s.w, s.h] });
      m.create_attribute('MATLAB_class', 'uint8');
      const cell = refs.create_dataset({ name: 'gtcell' + i, data: [m.create_reference()], shape: [1, 1] });
      cell.create_attribute('MATLAB_class', 'cell');
      imgRefs.push(img.create_reference());
      gtRefs.push(cell.create_reference());
    });
    const n = samples.length;
    value.create_dataset({ name: 'img', data: imgRefs, shape: [n, 1] }).create_attribute('MATLAB_class', 'cell');
    if (!omitGt) value.create_dataset({ name: 'gt', data: gtRefs, shape: [n, 1] }).create_attribute('MATLAB_class', 'cell');
    f.close();
    parentPort.postMessage({ ok: true });
  } catch (e) {
    parentPort.postMessage({ ok: false, message: String((e && e.message) || e) });
  }
})();
