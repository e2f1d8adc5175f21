// Browser benchmark (not a test): the page's "Benchmark" panel in headless Chromium, with
// WebGPU (SwiftShader where there is no GPU) and again without an adapter (the wasm CPU path).
//
//   trunk build --release && node scripts/bench-browser.mjs [N] [BATCH]   (N sentences, default 128;
//                                                                      BATCH sentences per batch, default 32)
//   BENCH_CPU_ONLY=1 node scripts/bench-browser.mjs [N]              (only the no-adapter run)
//
// Prints examples/s per model for the wasm CPU path and WebGPU, the device, and weight bytes.
import { chromium } from 'playwright-core';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serveStatic } from './static-server.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const N = Number(process.argv[2] ?? 128);
const BATCH = Number(process.argv[3] ?? 32);
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = ['--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'];

async function run(flags) {
  const { server, url } = await serveStatic(join(ROOT, 'dist'), { port: 0 });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: flags });
  try {
    const page = await browser.newPage();
    await page.goto(url);
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

if (!process.env.BENCH_CPU_ONLY) {
  const gpu = await run(FLAGS);
  console.log(`WebGPU run — ${gpu.backend}`);
  for (const r of gpu.rows) console.log(`  ${r.cells.join(' | ')}`);
}
const cpu = await run(FLAGS.filter((f) => f !== '--enable-unsafe-webgpu'));
console.log(`no-adapter run — ${cpu.backend}`);
for (const r of cpu.rows) console.log(`  ${r.cells.join(' | ')}`);
