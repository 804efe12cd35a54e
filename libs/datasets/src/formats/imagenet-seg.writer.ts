/**
 * Writes small ImageNet-Segmentation files (`gtsegs_ijcv.mat`) in the real MATLAB v7.3 layout that
 * `ImageNetSegDataset` reads: for fixtures, tests and hand-made evaluation sets. Not used when
 * reading or training; h5wasm runs in a worker thread started by each call (see hdf5.reader.ts for
 * why), so nothing is loaded until the function is called.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Worker } from 'node:worker_threads';
import { IceError } from '@ice/core';
import { h5wasmEntryUrl } from './hdf5.reader';

export interface ImageNetSegMatSample {
  /** H×W×3 uint8, row-major. */
  rgb: Uint8Array;
  /** H×W, 0 background, anything else foreground (stored as 0/1). */
  mask: Uint8Array;
  height: number;
  width: number;
}

export interface WriteImageNetSegMatOptions {
  /** Leave out `/value/gt` (a file the reader must reject). */
  omitGt?: boolean;
}

/** The worker: plain CommonJS JavaScript (run with `eval`), as in hdf5.reader.ts. */
const MAT_WRITER = String.raw`
const { parentPort, workerData } = require('node:worker_threads');
(async () => {
  try {
    const h5 = await import(workerData.entryUrl);
    await h5.ready;
    const f = new h5.File(workerData.path, 'w');
    const refs = f.create_group('#refs#');
    const value = f.create_group('value');
    value.create_attribute('MATLAB_class', 'struct');
    const imgRefs = [];
    const gtRefs = [];
    workerData.samples.forEach((s, i) => {
      const img = refs.create_dataset({ name: 'img' + i, data: s.img, shape: [3, s.w, s.h] });
      img.create_attribute('MATLAB_class', 'uint8');
      const m = refs.create_dataset({ name: 'gt' + i, data: s.mask, shape: [s.w, s.h] });
      m.create_attribute('MATLAB_class', 'uint8');
      const cell = refs.create_dataset({ name: 'gtcell' + i, data: [m.create_reference()], shape: [1, 1] });
      cell.create_attribute('MATLAB_class', 'cell');
      imgRefs.push(img.create_reference());
      gtRefs.push(cell.create_reference());
    });
    const n = workerData.samples.length;
    value.create_dataset({ name: 'img', data: imgRefs, shape: [n, 1] }).create_attribute('MATLAB_class', 'cell');
    if (!workerData.omitGt) value.create_dataset({ name: 'gt', data: gtRefs, shape: [n, 1] }).create_attribute('MATLAB_class', 'cell');
    f.close();
    parentPort.postMessage({ ok: true });
  } catch (e) {
    parentPort.postMessage({ ok: false, message: String((e && e.message) || e) });
  }
})();
`;

/**
 * Writes `samples` as `gtsegs_ijcv.mat` is stored: `/value/img` and `/value/gt` are (N, 1) cells of
 * object references; images stored (3, W, H) uint8 and masks (W, H) (MATLAB's H×W×3 and H×W in
 * column-major order), each mask wrapped in a 1×1 cell; and, as MATLAB does, a 512-byte text header
 * before the HDF5 superblock.
 */
export async function writeImageNetSegMat(
  path: string,
  samples: readonly ImageNetSegMatSample[],
  opts: WriteImageNetSegMatOptions = {},
): Promise<void> {
  const stored = samples.map(({ rgb, mask, height: h, width: w }, i) => {
    if (rgb.length !== h * w * 3 || mask.length !== h * w) {
      throw new IceError(
        'INPUT_INVALID',
        `sample ${i}: a ${h}×${w} sample needs ${h * w * 3} rgb and ${h * w} mask values, got ${rgb.length} and ${mask.length}`,
      );
    }
    const img = new Uint8Array(3 * w * h);
    const m = new Uint8Array(w * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        for (let c = 0; c < 3; c++) img[c * w * h + x * h + y] = rgb[(y * w + x) * 3 + c];
        m[x * h + y] = mask[y * w + x] !== 0 ? 1 : 0;
      }
    }
    return { img, mask: m, w, h };
  });
  mkdirSync(dirname(path), { recursive: true });
  const plain = `${path}.h5tmp`;
  try {
    const worker = new Worker(MAT_WRITER, {
      eval: true,
      workerData: { path: plain, entryUrl: h5wasmEntryUrl(), samples: stored, omitGt: opts.omitGt === true },
    });
    try {
      const reply = await new Promise<{ ok: boolean; message?: string }>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
      if (!reply.ok) throw new Error(`writing ${path} with h5wasm failed: ${reply.message ?? '?'}`);
    } finally {
      await worker.terminate();
    }
    const header = Buffer.alloc(512);
    header.write(
      'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .'.padEnd(116, ' '),
      'latin1',
    );
    header.writeUInt16LE(0x0200, 124);
    header.write('IM', 126, 'latin1');
    writeFileSync(path, Buffer.concat([header, readFileSync(plain)]));
  } finally {
    rmSync(plain, { force: true });
  }
}
