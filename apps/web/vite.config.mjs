// The results page (/ui): Preact + uPlot, bundled into apps/web/dist, which the API serves.
// Relative asset URLs (base './') so the bundle works under whatever prefix it is mounted at.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root,
  base: './',
  logLevel: 'warn',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: { outDir: 'dist', emptyOutDir: true, chunkSizeWarningLimit: 300 },
});
