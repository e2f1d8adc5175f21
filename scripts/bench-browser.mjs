// Browser benchmark (not a test): the page's "Benchmark" panel in headless Chromium, with
// WebGPU (SwiftShader where there is no GPU) and again without an adapter (the wasm CPU path),
// the CPU part once per number of CPU workers asked for.
//
//   trunk build --release && node scripts/bench-browser.mjs [N] [BATCH] [WORKERS]
//
// N sentences (default 128), BATCH sentences per batch (default 32), WORKERS a comma-separated
// list of CPU worker counts for the no-adapter runs (`?workers=W`; default: the page's own
// choice, navigator.hardwareConcurrency up to 4). BENCH_GPU=0 (or BENCH_CPU_ONLY=1) skips the WebGPU run.
// Prints examples/s per model for the wasm CPU path and WebGPU, the device, the CPU workers,
// weight bytes, and the load average before each run.
import { chromium } from 'playwright-core';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serveStatic } from './static-server.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const N = Number(process.argv[2] ?? 128);
const BATCH = Number(process.argv[3] ?? 32);
const WORKERS = process.argv[4] ? process.argv[4].split(',').map((w) => `?workers=${Number(w)}`) : [''];
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = ['--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'];

async function run(flags, query = '') {
  const { server, url } = await serveStatic(join(ROOT, 'dist'), { port: 0 });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: flags });
  try {
    const page = await browser.newPage();
    await page.goto(`${url}${query}`);
    // The page classifies its default text once on start; wait for that, then benchmark.
    await page.waitForFunction(() => Number(document.body.dataset.finished) >= 1, null, { timeout: 300_000 });
    await page.fill('#bench-n', String(N));
    await page.fill('#bench-batch', String(BATCH));
    await page.click('#bench-run');
    await page.waitForFunction(() => Number(document.body.dataset.finished) >= 2, null, { timeout: 1_800_000 });
    const error = await page.locator('#error').textContent();
    if (error) throw new Error(error);
    return await page.evaluate(() => ({
      backend: document.querySelector('#backend').textContent,
      note: document.querySelector('#bench-note').textContent,
      rows: [...document.querySelectorAll('#bench-table tbody tr')].map((r) => ({
        folder: r.dataset.folder,
        cells: [...r.cells].map((c) => c.textContent),
      })),
    }));
  } finally {
    await browser.close();
    server.close();
  }
}

const load = () => `load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`;
function print(title, r) {
  console.log(`${title} — ${r.backend}`);
  console.log(`  ${r.note}`);
  for (const row of r.rows) console.log(`  ${row.cells.join(' | ')}`);
}

if (process.env.BENCH_GPU !== '0' && !process.env.BENCH_CPU_ONLY) {
  const before = load();
  print(`WebGPU run (${before})`, await run(FLAGS));
}
for (const query of WORKERS) {
  const before = load();
  print(`no-adapter run${query ? ` ${query}` : ''} (${before})`, await run(FLAGS.filter((f) => f !== '--enable-unsafe-webgpu'), query));
}
