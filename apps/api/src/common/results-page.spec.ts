import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter, type NestExpressApplication } from '@nestjs/platform-express';
import { mountResultsPage } from './results-page';

@Module({})
class EmptyModule {}

/** The page's mount on a bare Nest app: where / and /ui lead, the files, and a bundle never built. */
describe('results page mount', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  async function serve(dir: string): Promise<{ url: string; close: () => Promise<void> }> {
    const app = await NestFactory.create<NestExpressApplication>(EmptyModule, new ExpressAdapter(), { logger: false });
    mountResultsPage(app, dir);
    await app.listen(0, '127.0.0.1');
    const { port } = app.getHttpServer().address() as { port: number };
    return { url: `http://127.0.0.1:${port}`, close: () => app.close() };
  }

  it('serves the built files under /ui/ and sends / and /ui there', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-ui-'));
    dirs.push(dir);
    fs.mkdirSync(path.join(dir, 'assets'));
    fs.writeFileSync(path.join(dir, 'index.html'), '<!doctype html><title>ICE results</title>');
    fs.writeFileSync(path.join(dir, 'assets', 'app.js'), 'console.log(1)');
    const s = await serve(dir);
    try {
      const root = await fetch(`${s.url}/`, { redirect: 'manual' });
      expect(root.status).toBe(302);
      expect(root.headers.get('location')).toBe('/ui/');
      const bare = await fetch(`${s.url}/ui`, { redirect: 'manual' });
      expect(bare.status).toBe(301);
      expect(bare.headers.get('location')).toBe('/ui/');
      const index = await fetch(`${s.url}/ui/`);
      expect(index.status).toBe(200);
      expect(index.headers.get('content-type')).toMatch(/text\/html/);
      expect(await index.text()).toContain('ICE results');
      const js = await fetch(`${s.url}/ui/assets/app.js`);
      expect(js.status).toBe(200);
      expect(js.headers.get('content-type')).toMatch(/javascript/);
      expect((await fetch(`${s.url}/ui/assets/missing.js`)).status).toBe(404);
      expect((await fetch(`${s.url}/ui/..%2F..%2Fetc%2Fpasswd`)).status).toBe(404);
    } finally {
      await s.close();
    }
  });

  it('answers 503 with the command that builds the page when the bundle is missing', async () => {
    const s = await serve(path.join(os.tmpdir(), 'ice-ui-never-built'));
    try {
      const res = await fetch(`${s.url}/ui/`);
      expect(res.status).toBe(503);
      expect(await res.text()).toMatch(/not built .*npm run build:web/);
    } finally {
      await s.close();
    }
  });
});
