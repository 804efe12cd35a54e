/**
 * Test helpers: write small data sets in the REAL on-disk formats (JPEG/PNG via sharp, palette PNGs
 * via fast-png, VOC XML, CUB text files). Used by the specs only; ImageNet-Segmentation .mat files
 * are written with the exported `writeImageNetSegMat` (imagenet-seg.writer.ts).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { encode as encodePng } from 'fast-png';
import sharp from 'sharp';
import { IceError } from '@ice/core';
import { vocColormap } from '../export/voc-export';

export function makeTempDir(prefix = 'ice-ds-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** What `fn` throws: `CODE: message` for an IceError, `other: …` for anything else; undefined if it returns. */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof IceError ? `${e.code}: ${e.message}` : `other: ${String(e)}`;
  }
  return undefined;
}

function ensureDir(path: string): void {
  mkdirSync(dirname(path), { recursive: true });
}

export function writeText(path: string, text: string): void {
  ensureDir(path);
  writeFileSync(path, text);
}

/** H×W×3 uint8 image of one colour. */
export function solidRgb(height: number, width: number, rgb: [number, number, number]): Uint8Array {
  const out = new Uint8Array(height * width * 3);
  for (let i = 0; i < height * width; i++) out.set(rgb, i * 3);
  return out;
}

/** Left half `left`, right half `right` (orientation checks). */
export function splitRgb(height: number, width: number, left: [number, number, number], right: [number, number, number]): Uint8Array {
  const out = new Uint8Array(height * width * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) out.set(x < width / 2 ? left : right, (y * width + x) * 3);
  return out;
}

export interface WriteImageOptions {
  format?: 'jpeg' | 'png';
  /** EXIF orientation tag to store (JPEG). */
  orientation?: number;
  /** Store as 1-channel greyscale or as CMYK (JPEG). */
  colourspace?: 'b-w' | 'cmyk';
  /** Add an alpha channel of this value (PNG). */
  alpha?: number;
}

/** Writes an H×W×3 uint8 image with sharp. */
export async function writeImage(
  path: string,
  rgb: Uint8Array,
  height: number,
  width: number,
  opts: WriteImageOptions = {},
): Promise<void> {
  ensureDir(path);
  let img = sharp(Buffer.from(rgb), { raw: { width, height, channels: 3 } });
  if (opts.alpha !== undefined) {
    const rgba = new Uint8Array(height * width * 4);
    for (let i = 0; i < height * width; i++) {
      rgba.set(rgb.subarray(i * 3, i * 3 + 3), i * 4);
      rgba[i * 4 + 3] = opts.alpha;
    }
    img = sharp(Buffer.from(rgba), { raw: { width, height, channels: 4 } });
  }
  if (opts.colourspace) img = img.toColourspace(opts.colourspace);
  if (opts.orientation !== undefined) img = img.withMetadata({ orientation: opts.orientation });
  if ((opts.format ?? 'jpeg') === 'jpeg') await img.jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).toFile(path);
  else await img.png().toFile(path);
}

/** Writes an 8-bit (or lower) palette PNG holding `indices` (H×W). */
export function writePalettePng(
  path: string,
  indices: Uint8Array,
  height: number,
  width: number,
  depth: 1 | 2 | 4 | 8 = 8,
  palette = vocColormap(),
): void {
  let data = indices;
  if (depth < 8) {
    const rowBytes = Math.ceil((width * depth) / 8);
    data = new Uint8Array(rowBytes * height);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const bitPos = x * depth;
        data[y * rowBytes + (bitPos >> 3)] |= indices[y * width + x] << (8 - depth - (bitPos & 7));
      }
    }
  }
  ensureDir(path);
  writeFileSync(path, encodePng({ width, height, data, depth, channels: 1, palette: palette.slice(0, 2 ** depth) }));
}

export interface VocObjectSpec {
  name: string;
  /** 1-based, as written in VOC XML. */
  box: [number, number, number, number];
  difficult?: boolean;
  truncated?: boolean;
}

export function vocXml(filename: string, width: number, height: number, objects: VocObjectSpec[]): string {
  const objs = objects
    .map(
      (o) => `  <object>
    <name>${o.name}</name>
    <pose>Unspecified</pose>
    <truncated>${o.truncated ? 1 : 0}</truncated>
    <difficult>${o.difficult ? 1 : 0}</difficult>
    <bndbox>
      <xmin>${o.box[0]}</xmin>
      <ymin>${o.box[1]}</ymin>
      <xmax>${o.box[2]}</xmax>
      <ymax>${o.box[3]}</ymax>
    </bndbox>
  </object>
`,
    )
    .join('');
  return `<annotation>
  <folder>VOC2012</folder>
  <filename>${filename}</filename>
  <source><database>The VOC2007 Database</database></source>
  <size><width>${width}</width><height>${height}</height><depth>3</depth></size>
  <segmented>1</segmented>
${objs}</annotation>
`;
}
