/**
 * Figure-3-style pictures: each image with each method's map as a jet overlay at 50% alpha, and a
 * contact sheet (rows = images, columns = the input and then the methods). PNGs are written with
 * sharp; small inputs are enlarged by pixel repetition so that a 32² digit stays legible.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import type { SavedMaps } from './evaluation.types';
import { type MethodMap, upsampleGrid } from './explain.runner';
import { isMaskMethod, minMax } from './map-masks.util';

/** Matplotlib-like jet: v ∈ [0, 1] → RGB 0..255 (dark blue → cyan → yellow → dark red). */
export function jet(v: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, Number.isFinite(v) ? v : 0));
  const ch = (c: number): number => Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * x - c))));
  return [ch(3), ch(2), ch(1)];
}

/**
 * The map shown for a method, every one upsampled bilinearly from its patch grid into the same [0, 1]
 * jet scale: ICE's 0/1 mask as it is (min-maxing it would turn an all-foreground map into an empty
 * one, hiding a collapse), the other maps min-maxed.
 */
export function displayMap(m: MethodMap, size: number): Float32Array {
  const up = upsampleGrid(m.grid, m.g, size, 'bilinear');
  return Float32Array.from(isMaskMethod(m.method) ? up : minMax(up));
}

/** RGB HWC [0, 1] (S×S) with the [0, 1] map blended in at `alpha`, enlarged ×scale → 8-bit RGB. */
export function overlayRgb(rgb: Float32Array, map: Float32Array | null, size: number, scale: number, alpha = 0.5): Uint8Array {
  const W = size * scale;
  const out = new Uint8Array(W * W * 3);
  for (let y = 0; y < W; y++) {
    const sy = Math.floor(y / scale);
    for (let x = 0; x < W; x++) {
      const s = sy * size + Math.floor(x / scale);
      const c = map ? jet(map[s]) : null;
      for (let k = 0; k < 3; k++) {
        const base = 255 * rgb[s * 3 + k];
        out[(y * W + x) * 3 + k] = Math.round(c ? (1 - alpha) * base + alpha * c[k] : base);
      }
    }
  }
  return out;
}

/** Enlargement factor so that a tile is at least ~128 px wide. */
export function displayScale(size: number): number {
  return Math.max(1, Math.ceil(128 / size));
}

async function writeRgbPng(file: string, data: Uint8Array, height: number, width: number): Promise<void> {
  await sharp(Buffer.from(data.buffer, data.byteOffset, data.byteLength), { raw: { width, height, channels: 3 } })
    .png()
    .toFile(file);
}

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c] ?? c);
}

export interface SavedImageMaps {
  index: number;
  id: string;
  /** S×S×3 in [0, 1]. */
  rgb: Float32Array;
  /** Per method, in column order: the S×S display map. */
  maps: Float32Array[];
}

function safeName(s: string): string {
  return s.replace(/[^\w.-]+/g, '_').slice(0, 60);
}

/**
 * Writes one overlay PNG per image and method (`<index>-<method>.png`) and the contact sheet
 * (`contact-sheet.png`, columns headed by `labels`).
 */
export async function writeSavedMaps(
  dir: string,
  size: number,
  methods: readonly { name: string; label: string }[],
  images: readonly SavedImageMaps[],
): Promise<SavedMaps> {
  const labels = methods.map((m) => m.label);
  fs.mkdirSync(dir, { recursive: true });
  const scale = displayScale(size);
  const tile = size * scale;
  const files: string[] = [];
  const gap = 4;
  const header = 22;
  const cols = labels.length + 1;
  const sheetW = cols * tile + (cols + 1) * gap;
  const sheetH = header + images.length * tile + (images.length + 1) * gap;
  const sheet = new Uint8Array(sheetW * sheetH * 3).fill(255);
  const blit = (rgb: Uint8Array, row: number, col: number): void => {
    const top = header + gap + row * (tile + gap);
    const left = gap + col * (tile + gap);
    for (let y = 0; y < tile; y++) sheet.set(rgb.subarray(y * tile * 3, (y + 1) * tile * 3), ((top + y) * sheetW + left) * 3);
  };
  for (const [row, img] of images.entries()) {
    blit(overlayRgb(img.rgb, null, size, scale), row, 0);
    for (const k of labels.keys()) {
      const rgb = overlayRgb(img.rgb, img.maps[k], size, scale);
      const file = path.join(dir, `${String(img.index).padStart(4, '0')}-${safeName(methods[k].name)}.png`);
      await writeRgbPng(file, rgb, tile, tile);
      files.push(file);
      blit(rgb, row, k + 1);
    }
  }
  const fontSize = Math.min(13, Math.max(8, Math.floor(tile / 10)));
  const texts = ['image', ...labels]
    .map(
      (t, c) =>
        `<text x="${gap + c * (tile + gap) + tile / 2}" y="${header - 6}" text-anchor="middle" font-family="DejaVu Sans, ` +
        `sans-serif" font-size="${fontSize}" fill="#000">${escapeXml(t)}</text>`,
    )
    .join('');
  const svg = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${sheetW}" height="${header}">${texts}</svg>`);
  const contactSheet = path.join(dir, 'contact-sheet.png');
  await sharp(Buffer.from(sheet.buffer), { raw: { width: sheetW, height: sheetH, channels: 3 } })
    .composite([{ input: svg, top: 0, left: 0 }])
    .png()
    .toFile(contactSheet);
  return { dir, files, contactSheet };
}
