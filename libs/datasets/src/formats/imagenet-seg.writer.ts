/**
 * Writes small ImageNet-Segmentation files (`gtsegs_ijcv.mat`) in the real MATLAB v7.3 layout that
 * `ImageNetSegDataset` reads: for fixtures, tests and hand-made evaluation sets. Not used when
 * reading or training; h5wasm runs in a worker thread started by each call (see hdf5.reader.ts for
 * why), so nothing is loaded until the function is called.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { IceError, startThread } from '@ice/core';
import { h5wasmEntryUrl } from './hdf5.reader';

/** The thread that writes the HDF5 file (plain JavaScript: see its header). */
const MAT_WRITER = join(__dirname, 'mat-writer.worker.js');

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
    const worker = startThread(MAT_WRITER, {
      data: { path: plain, entryUrl: h5wasmEntryUrl(), samples: stored, omitGt: opts.omitGt === true },
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
