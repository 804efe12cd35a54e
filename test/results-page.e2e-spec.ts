/* eslint-disable @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-return --
   response bodies are untyped JSON of the API under test */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { RESULTS_PAGE_DIR } from '../apps/api/src/common/results-page';
import { cellText, degeneracyText } from '../apps/web/src/view-model';
import type { AblationTable } from '../apps/web/src/types';
import {
  API_KEY,
  createTestEnv,
  http,
  spawnWorker,
  startApi,
  TINY_RUN,
  waitFor,
  type TestApi,
  type TestEnv,
  type TestWorker,
} from './support/harness';

/**
 * The results page (/ui) end to end in Debian's Chromium: the API and a real worker process on the
 * machine's Redis and PostgreSQL, a small α × λ_class sweep submitted over HTTP and watched until it
 * finishes in the page (live, over SSE), a table cell read and compared with the API's table, the
 * metric-against-α plot and a run's loss curves drawn, and an evaluation's map gallery shown.
 * Screenshots go to test/artifacts/ui/, and their paths are printed.
 */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = path.resolve(__dirname, 'artifacts', 'ui');
const ROOT = path.resolve(__dirname, '..');

describe('results page in Chromium (e2e)', () => {
  let t: TestEnv;
  let api: TestApi;
  let worker: TestWorker;
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  const pageErrors: string[] = [];

  const shot = async (name: string): Promise<void> => {
    const file = path.join(SHOTS, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    process.stdout.write(`results page screenshot: ${file}\n`);
  };

  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)`);
    // The API serves the bundle that `npm ci` built; build it if this checkout never did.
    if (!fs.existsSync(path.join(RESULTS_PAGE_DIR, 'index.html')))
      execFileSync('npm', ['run', 'build:web'], { cwd: ROOT, stdio: 'inherit' });
    fs.mkdirSync(SHOTS, { recursive: true });
    // Reads need the key (READ_AUTH=on, where the API has it): the page sends the one typed into its key field.
    t = await createTestEnv('ui', { READ_AUTH: 'on' });
    api = await startApi(t);
    worker = spawnWorker(t);
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-ui-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1600, height: 1000 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    await context.addInitScript({ content: `localStorage.setItem('ice.apiKey', ${JSON.stringify(API_KEY)});` });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(`${m.text()} (${m.location().url})`);
    });
    await worker.ready;
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    await worker?.stop();
    await api?.close();
    await t?.cleanup();
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
  });

  it('shows a sweep finishing live, its ablation table, plots and an evaluation gallery', async () => {
    // `/` leads to the page, which links to the API docs and the queue dashboard.
    await page.goto(`${api.url}/`);
    expect(new URL(page.url()).pathname).toBe('/ui/');
    expect(await page.locator('header a', { hasText: 'API docs' }).getAttribute('href')).toBe('/docs');
    expect(await page.locator('header a', { hasText: 'queues' }).getAttribute('href')).toBe('/queues');

    const submitted = await http(api.url, 'POST', '/sweeps', {
      name: 'ui-alpha-lambda',
      base: TINY_RUN,
      grid: { alpha: [0.5, 1], lambda_class: [0.5, 0.975] },
    });
    expect(submitted.status).toBe(201);
    const sweepId = submitted.body.id as string;

    // The overview picks the new sweep up by itself (it re-reads its lists).
    const row = page.locator(`tr[data-sweep-id="${sweepId}"]`);
    await row.waitFor({ timeout: 15_000 });
    await shot('overview');
    await row.locator('a').click();
    expect(page.url()).toContain(`#/sweeps/${sweepId}`);

    // Live: the page was opened before the runs finished and is never reloaded.
    const status = page.locator('[data-testid="sweep-summary"] .status');
    expect(['queued', 'running']).toContain(await status.getAttribute('data-status'));
    await page.locator('[data-testid="sweep-summary"] .status[data-status="succeeded"]').waitFor({ timeout: 180_000 });
    await page.locator('[data-testid="sweep-done"]', { hasText: '4 of 4 runs finished' }).waitFor({ timeout: 10_000 });
    const runStatuses = await page
      .locator('[data-testid="sweep-runs"] tbody .status')
      .evaluateAll((els) => els.map((e) => e.getAttribute('data-status')));
    expect(runStatuses).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded']);

    // The table the page shows is the API's: every line, its cells as mean ± std, its marks.
    const apiTable = (await http<AblationTable>(api.url, 'GET', `/sweeps/${sweepId}/table`)).body;
    expect(apiTable.lines).toHaveLength(4);
    // The table names the axes as the API does (the grid's names or their canonical run-config paths).
    const [alpha, lambda] = apiTable.rows;
    expect(alpha).toMatch(/alpha/i);
    expect(lambda).toMatch(/lambda/i);
    const lines = page.locator('[data-testid="ablation-table"] tbody tr');
    await waitFor(
      'the table to show 4 finished cells',
      async () => (await lines.locator('td[data-col="runs"]', { hasText: /^1\/1$/ }).count()) === 4,
      15_000,
    );
    expect(await lines.count()).toBe(4);
    const metric = apiTable.metrics.includes('iou_fg') ? 'iou_fg' : apiTable.metrics[0];
    for (const [i, line] of apiTable.lines.entries()) {
      const tr = lines.nth(i);
      for (const axis of [alpha, lambda]) expect(await tr.locator(`td[data-axis="${axis}"]`).textContent()).toBe(String(line.key[axis]));
      const text = await tr.locator(`td[data-metric="${metric}"]`).textContent();
      expect(text).toBe(cellText(line.cells[metric]));
      expect(text).toMatch(/^-?\d/);
      expect(await tr.getAttribute('data-degenerate')).toBe(line.degenerate ? 'true' : null);
      if (line.degenerate !== undefined) expect((await tr.locator('td.flag').textContent()) ?? '').toBe(degeneracyText(line));
    }
    process.stdout.write(
      `results page table: ${metric} at ${alpha}=${apiTable.lines[0].key[alpha]} ${lambda}=${apiTable.lines[0].key[lambda]} reads "${await lines.nth(0).locator(`td[data-metric="${metric}"]`).textContent()}"\n`,
    );
    for (const note of apiTable.notes)
      await page.locator('[data-testid="ablation"] .note', { hasText: note.slice(0, 40) }).waitFor({ timeout: 5_000 });
    await shot('sweep');

    // Metric against α (one line per λ_class), then against λ_class.
    const plot = page.locator('[data-testid="axis-plot"]');
    await plot.locator('[data-testid="axis-chart"] canvas').waitFor({ timeout: 10_000 });
    expect(await plot.locator('[data-testid="plot-axis"]').inputValue()).toBe(alpha);
    await plot.locator('[data-testid="plot-metric"]').selectOption(metric);
    await plot.locator('.u-legend', { hasText: `${lambda}=0.975` }).waitFor({ timeout: 5_000 });
    await plot.locator('[data-testid="plot-axis"]').selectOption(lambda);
    await plot.locator('.u-legend', { hasText: `${alpha}=0.5` }).waitFor({ timeout: 5_000 });
    await plot.scrollIntoViewIfNeeded();
    await shot('sweep-plot');

    // A run's curves: its loss per step from the metric series.
    const runLink = page.locator('[data-testid="sweep-runs"] tbody tr').first().locator('a').first();
    const runId = (await runLink.getAttribute('href'))!.split('/').pop()!;
    await runLink.click();
    const lossChart = page.locator('[data-testid="loss-chart"]');
    await lossChart.locator('canvas').waitFor({ timeout: 15_000 });
    await lossChart.locator('.u-legend', { hasText: 'loss' }).waitFor({ timeout: 5_000 });
    const series = (await http(api.url, 'GET', `/runs/${runId}/metrics?names=loss`)).body.series.loss as unknown[];
    expect(series.length).toBeGreaterThan(0);
    await page.locator('[data-testid="run-facts"] .status[data-status="succeeded"]').waitFor({ timeout: 5_000 });
    await shot('run');

    // An evaluation of that run with saved overlays: the gallery shows image × method.
    const ev = await http(api.url, 'POST', '/evaluations', {
      protocol: 'segmentation',
      format: 'digits',
      runId,
      methods: ['ice', 'rollout'],
      limit: 4,
      saveMaps: 2,
    });
    expect(ev.status).toBe(201);
    await page.goto(`${api.url}/ui/#/evaluations/${ev.body.id}`);
    await page.locator('.summary .status[data-status="succeeded"]').waitFor({ timeout: 120_000 });
    const images = page.locator('[data-testid="gallery-grid"] img[data-testid="gallery-image"]');
    await waitFor('4 gallery images', async () => (await images.count()) === 4, 15_000);
    await waitFor(
      'the gallery images to load',
      async () =>
        (await images.evaluateAll((els) =>
          els.every((e) => {
            const img = e as unknown as { complete: boolean; naturalWidth: number };
            return img.complete && img.naturalWidth > 0;
          }),
        )) || null,
      10_000,
    );
    expect(await page.locator('[data-testid="gallery-grid"] thead th').allTextContents()).toEqual([
      'image',
      ...(await methodLabels(ev.body.id)),
    ]);
    const scoreRows = page.locator('[data-testid="evaluation-scores"] tbody tr');
    expect(await scoreRows.count()).toBe(2);
    await shot('evaluation-gallery');

    // The docs link works from the page.
    await page.goto(`${api.url}/ui/`);
    const [docs] = await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname.startsWith('/docs')),
      page.locator('header a', { hasText: 'API docs' }).click(),
    ]);
    expect(docs.status()).toBeLessThan(400);

    expect(pageErrors).toEqual([]);
  }, 400_000);

  async function methodLabels(evaluationId: string): Promise<string[]> {
    const e = await http(api.url, 'GET', `/evaluations/${evaluationId}`);
    return e.body.result.rows.map((r: { label: string }) => r.label);
  }
});
