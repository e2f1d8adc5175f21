// End-to-end test of offline use (README, "Offline"), in headless Chromium driven by Playwright. Run
// by scripts/test.sh after `trunk build --release`, or by hand:
//
//   node tests/e2e/offline.test.mjs
//
// (a) The service worker: serve dist/, wait until the page says it is available offline, then cut
//     the network (Playwright's offline mode, and the server stopped) and reload: the three models
//     load from the cache and classify the default text. (b) The single file
//     (scripts/single-file.mjs, built here from dist/): opened from file:// in a fresh browser, the
//     three models give the same labels as the served page, a small experiment renders its report,
//     and nothing logs an error. Both on the CPU (no --enable-unsafe-webgpu: faster; the page says
//     why there is no GPU). Screenshots in test-results/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { serveStatic } from '../../scripts/static-server.mjs';
import { ROOT, DIST, RESULTS, CHROMIUM, QUIET_FLAGS } from './common.mjs';
import { buildSingleFile } from '../../scripts/single-file.mjs';

// page.test.mjs's flags without --enable-unsafe-webgpu: the CPU path only.
const ARCHS = ['transformer', 'gla', 'hgrn_bit'];
const START_TIMEOUT = 240_000;

/** Everything the page (and its workers) reports as wrong, in `problems`. */
function watch(context, page, problems) {
  context.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error${msg.worker() ? ' in a worker' : ''}: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`uncaught page error: ${err.message}`));
  page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()} (${req.failure()?.errorText})`));
  page.on('response', (res) => {
    if (res.status() >= 400) problems.push(`HTTP ${res.status()} for ${res.url()}`);
  });
  page.on('crash', () => problems.push('the page crashed'));
}

/** Waits for the automatic first run; returns the CPU label of each bundled model. */
async function firstRun(page) {
  await page.waitForFunction(() => Number(document.body.dataset.finished) >= 1, null, { timeout: START_TIMEOUT });
  assert.equal(await page.getAttribute('body', 'data-state'), 'done', `the first run failed: ${await page.locator('#error').textContent()}`);
  const rows = page.locator('#models-table tbody tr');
  assert.equal(await rows.count(), ARCHS.length, 'one row per bundled model');
  const labels = {};
  for (let i = 0; i < ARCHS.length; i++) {
    assert.equal(await rows.nth(i).getAttribute('data-folder'), ARCHS[i]);
    labels[ARCHS[i]] = await rows.nth(i).getAttribute('data-cpu-label');
  }
  assert.match(await page.locator('#backend').textContent(), /^Backend: CPU — /);
  // The helper workers started too (or the page says why it runs on one thread).
  await page.waitForFunction(() => document.getElementById('cpu-workers').dataset.settled === 'true', null, { timeout: START_TIMEOUT });
  const cpu = await page.locator('#cpu-workers').textContent();
  assert.doesNotMatch(cpu, /failed|stopped|could not/, cpu);
  return labels;
}

// The served page's labels, for (b).
let servedLabels = null;

test('(a) after one visit the page works with the network off (service worker)', { timeout: 10 * 60_000 }, async (t) => {
  for (const f of ['index.html', 'sw.js', 'offline.js', 'trilemma_bg.wasm']) {
    assert.ok(existsSync(join(DIST, f)), `dist/${f} is missing: run \`trunk build --release\` first`);
  }
  // A copy of dist/, so that a newer build can be made (below) without touching dist/.
  const site = mkdtempSync(join(tmpdir(), 'trilemma-offline-'));
  cpSync(DIST, site, { recursive: true });
  const { server, url } = await serveStatic(site, { port: 0 });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: QUIET_FLAGS });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  t.after(async () => {
    mkdirSync(RESULTS, { recursive: true });
    await page.screenshot({ path: join(RESULTS, 'offline-reload.png'), fullPage: true }).catch(() => {});
    await browser.close();
    server.close();
    rmSync(site, { recursive: true, force: true });
  });
  let problems = [];
  watch(context, page, problems);

  const t0 = Date.now();
  await page.goto(url);
  assert.equal(await page.getAttribute('#offline', 'role'), 'status', 'the offline line is a status region');
  // Caching runs beside the first start; wait for both.
  await page.waitForFunction(() => ['ready', 'failed', 'unavailable'].includes(document.getElementById('offline').dataset.state), null, { timeout: START_TIMEOUT });
  const cachedAfter = Date.now() - t0;
  const line = await page.locator('#offline').textContent();
  assert.equal(await page.getAttribute('#offline', 'data-state'), 'ready', line);
  assert.match(line, /^Offline: available offline — \d+ files, [\d.]+ MB cached in [\d.]+ s$/);
  servedLabels = await firstRun(page);
  assert.equal(await page.evaluate(() => Boolean(navigator.serviceWorker.controller)), true, 'the service worker controls the page');
  assert.deepEqual(problems, [], `problems online:\n  ${problems.join('\n  ')}`);
  t.diagnostic(`online: ${line} (the page saw it ${(cachedAfter / 1000).toFixed(1)} s after opening); labels ${JSON.stringify(servedLabels)}`);

  // A newer build on the server (one file changed, its list rewritten as the build's hook does): the
  // page keeps running the cached build, caches the new one and offers a reload, which switches.
  const oldVersion = await page.getAttribute('#offline', 'data-version');
  appendFileSync(join(site, 'attack.js'), '\n// a newer build (tests/e2e/offline.test.mjs)\n');
  execFileSync(process.execPath, [join(ROOT, 'scripts', 'sw-manifest.mjs'), site]);
  await page.reload();
  await firstRun(page);
  await page.waitForFunction(() => document.getElementById('offline').dataset.state === 'update', null, { timeout: 60_000 });
  assert.match(await page.locator('#offline').textContent(), /a newer version is cached: reload to use it/);
  await Promise.all([page.waitForEvent('load'), page.click('#offline-reload')]);
  await page.waitForFunction(() => document.getElementById('offline').dataset.state === 'ready', null, { timeout: 60_000 });
  const newVersion = await page.getAttribute('#offline', 'data-version');
  assert.notEqual(newVersion, oldVersion, 'the reload switched to the newer build');
  assert.deepEqual(await page.evaluate(() => caches.keys()), [`trilemma-${newVersion}`], 'the older build\'s cache is gone');
  servedLabels = await firstRun(page);
  assert.deepEqual(problems, [], `problems while updating:\n  ${problems.join('\n  ')}`);
  t.diagnostic(`update: build ${oldVersion} -> ${newVersion}`);

  // The network off: Playwright's offline mode, and no server behind it either; and no HTTP cache
  // to fall back on, so whatever loads comes from the service worker's cache.
  await context.setOffline(true);
  server.closeAllConnections();
  await new Promise((done) => server.close(done));
  await (await context.newCDPSession(page)).send('Network.clearBrowserCache');
  problems = [];
  watch(context, page, problems);
  const served = [];
  page.on('response', (res) => served.push([res.url().replace(url, ''), res.fromServiceWorker()]));
  const t1 = Date.now();
  await page.reload();
  const labels = await firstRun(page);
  const offlineMs = Date.now() - t1;
  assert.deepEqual(labels, servedLabels, 'the same labels offline');
  // The page's files and the worker's (wasm, tokenizer, models) all came from the cache.
  const paths = served.map(([p]) => p);
  for (const p of ['', 'worker.js', 'trilemma_bg.wasm', 'assets/tokenizer/tokenizer.json', ...ARCHS.map((a) => `assets/models/${a}/model.safetensors`)]) {
    assert.ok(paths.includes(p), `no response for ${p || 'index.html'} after the reload: ${paths.join(', ')}`);
  }
  const notFromCache = served.filter(([, sw]) => !sw).map(([p]) => p);
  assert.deepEqual(notFromCache, [], 'every response came from the service worker');
  await page.waitForFunction(() => document.getElementById('offline').dataset.state !== 'checking', null, { timeout: 30_000 });
  assert.equal(await page.getAttribute('#offline', 'data-state'), 'ready', await page.locator('#offline').textContent());
  assert.deepEqual(problems, [], `problems offline:\n  ${problems.join('\n  ')}`);
  t.diagnostic(`offline reload to the first result: ${(offlineMs / 1000).toFixed(1)} s`);
});

test('(b) the single file runs from file:// with the same labels', { timeout: 10 * 60_000 }, async (t) => {
  const t0 = Date.now();
  const single = buildSingleFile(DIST, join(ROOT, 'dist-single', 'trilemma.html'));
  t.diagnostic(`built ${single.out} (${(single.bytes / 1e6).toFixed(1)} MB) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: QUIET_FLAGS });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  t.after(async () => {
    mkdirSync(RESULTS, { recursive: true });
    await page.screenshot({ path: join(RESULTS, 'single-file.png'), fullPage: true }).catch(() => {});
    await browser.close();
  });
  const problems = [];
  watch(context, page, problems);
  // Nothing may be asked of a network: the file holds everything.
  const requests = [];
  page.on('request', (req) => {
    if (!/^(file|blob|data):/.test(req.url())) requests.push(req.url());
  });

  const t1 = Date.now();
  await page.goto(pathToFileURL(single.out).href);
  const labels = await firstRun(page);
  t.diagnostic(`file:// open to the first result: ${((Date.now() - t1) / 1000).toFixed(1)} s; labels ${JSON.stringify(labels)}; ${await page.locator('#cpu-workers').textContent()}`);
  if (servedLabels) assert.deepEqual(labels, servedLabels, 'the same labels as the served page');
  else assert.ok(Object.values(labels).every((l) => l === 'positive'), JSON.stringify(labels));
  assert.equal(await page.getAttribute('#offline', 'data-state'), 'bundle');
  assert.equal(await page.locator('#gpu-note').isHidden(), false, 'the page says why there is no GPU result');

  // The default comparison runs on opening the file too (the worker reads the bundled data through the fetch shim,
  // the page draws the report with the wasm core on the main thread); then an experiment typed as JSON.
  await page.waitForFunction(() => ['done', 'failed'].includes(document.getElementById('experiment').dataset.state), null, { timeout: START_TIMEOUT });
  assert.equal(await page.getAttribute('#experiment', 'data-state'), 'done', await page.locator('#exp-error').textContent());
  assert.match(await page.locator('#exp-report').textContent(), /hgrn_bit/);
  await page.evaluate(() => { document.querySelector('#experiment details').open = true; });
  await page.fill('#exp-spec', JSON.stringify({ models: ['gla'], tasks: ['sst2'], splits: ['validation'], backend: 'cpu', limit: 8, bootstrap: 20, batch: 8 }));
  await page.click('#exp-run');
  await page.waitForFunction(() => ['done', 'failed'].includes(document.getElementById('experiment').dataset.state), null, { timeout: START_TIMEOUT });
  assert.equal(await page.getAttribute('#experiment', 'data-state'), 'done', await page.locator('#exp-error').textContent());
  assert.ok(await page.locator('#exp-report table').count() >= 1, 'the report is drawn');

  assert.deepEqual(requests, [], 'no network request');
  assert.deepEqual(problems, [], `the single file reported problems:\n  ${problems.join('\n  ')}`);
});
