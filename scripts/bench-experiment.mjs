// Browser benchmark (not a test): runs an experiment spec through the page's Experiment panel in
// headless Chromium without a WebGPU adapter (the wasm CPU path, as `"backend": "cpu"`), and
// prints the wall time the page measured, each evaluation's time and throughput, and where the
// results JSON was saved.
//
//   trunk build --release && node scripts/bench-experiment.mjs [SPEC.json] [OUT.json]
//
// SPEC defaults to SST-2 validation + AdvGLUE sst2 on the three bundled models. Compare with
// `trilemma run SPEC.json` natively (README "Measured numbers").
import { chromium } from 'playwright-core';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serveStatic } from './static-server.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SPEC = process.argv[2]
  ? readFileSync(process.argv[2], 'utf8')
  : JSON.stringify({
    name: 'SST-2 validation + AdvGLUE sst2',
    models: ['transformer', 'gla', 'hgrn_bit'],
    tasks: ['sst2'],
    splits: ['validation', 'advglue'],
    backend: 'cpu',
    bootstrap: 1000,
  });
const OUT = process.argv[3] ?? join(ROOT, 'target', 'bench-experiment-results.json');

const { server, url } = await serveStatic(join(ROOT, 'dist'), { port: 0 });
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--disable-background-networking', '--no-first-run'] });
try {
  const page = await browser.newPage();
  await page.goto(url);
  await page.waitForFunction(() => Number(document.body.dataset.finished) >= 1, null, { timeout: 300_000 });
  await page.fill('#exp-spec', SPEC);
  await page.click('#exp-run');
  await page.waitForFunction(() => ['done', 'failed', 'cancelled'].includes(document.getElementById('experiment').dataset.state)
    && document.getElementById('experiment').dataset.state !== 'running', null, { timeout: 3_600_000 });
  const error = await page.locator('#exp-error').textContent();
  if (error) throw new Error(error);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#exp-json')]);
  const json = readFileSync(await download.path(), 'utf8');
  writeFileSync(OUT, json);
  const r = JSON.parse(json);
  const seconds = await page.getAttribute('#experiment', 'data-seconds');
  console.log(`page wall time (click to results): ${seconds} s; engine: ${r.timing.seconds.toFixed(2)} s on ${r.provenance.backend.device}`);
  for (const u of r.units) {
    console.log(`${u.model.padEnd(12)} ${u.task} ${u.split.padEnd(17)} n=${String(u.n).padStart(4)}  acc ${(u.metrics[0].value * 100).toFixed(1)}  ${u.timing.seconds.toFixed(2)} s  ${u.timing.examples_per_second.toFixed(1)} ex/s`);
  }
  console.log(`results: ${OUT}`);
} finally {
  await browser.close();
  server.close();
}
