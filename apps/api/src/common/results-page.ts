import * as fs from 'node:fs';
import * as path from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { NextFunction, Request, Response } from 'express';

/** Where `npm run build:web` (run by `npm ci`'s prepare step) writes the results page. */
export const RESULTS_PAGE_DIR = path.resolve(__dirname, '..', '..', '..', 'web', 'dist');

export const RESULTS_PAGE_PATH = '/ui';

/**
 * Serves the results page (apps/web, a static bundle that reads the API from the browser) at /ui,
 * and sends `/` there. The page is plain files: it needs no key to load; its reads go through the
 * API's own rules. A checkout whose bundle was never built answers 503 saying how to build it.
 */
export function mountResultsPage(app: NestExpressApplication, dir: string = RESULTS_PAGE_DIR): void {
  const index = path.join(dir, 'index.html');
  // The bundle's asset URLs are relative, so the page must be read as /ui/, not /ui.
  app.use((req: Request, res: Response, next: NextFunction) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return next();
    if (req.path === '/') return res.redirect(302, `${RESULTS_PAGE_PATH}/`);
    if (req.path === RESULTS_PAGE_PATH) return res.redirect(301, `${RESULTS_PAGE_PATH}/`);
    next();
  });
  app.useStaticAssets(dir, { prefix: RESULTS_PAGE_PATH, index: 'index.html', fallthrough: true, maxAge: 0 });
  app.use(RESULTS_PAGE_PATH, (_req: Request, res: Response, next: NextFunction) => {
    if (fs.existsSync(index)) return next();
    res
      .status(503)
      .type('text/plain')
      .send(`The results page is not built in ${dir}: run \`npm run build:web\` (\`npm ci\` runs it), then reload.\n`);
  });
}
