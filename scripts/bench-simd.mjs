// Matmul kernel benchmark (not a test): the release page build's `bench_matmul` export in
// headless Chromium (and, for comparison, the same wasm under Node), single-threaded on the main
// thread of a blank page (the app, its worker and its models are not loaded).
//
//   trunk build --release && node scripts/bench-simd.mjs [SAMPLE_MS=50] [SAMPLES=5]
//   (env: BENCH_ONLY=<part of a shape name>, BENCH_NO_NODE=1 for Chromium only)
//
// Prints the SIMD128 peak of the build (f32x4 mul+add on 12 independent chains x = x*m + c,
// operands in registers), then GFLOP/s of the matmul kernels (weights packed
// once, as the CPU backend caches them) and of candle's stock matmul per shape, the kernels' share
// of the peak and their speed-up over candle.
// The native side: `RAYON_NUM_THREADS=1 trilemma bench --kernels`.
import { chromium } from 'playwright-core';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { serveStatic } from './static-server.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DIST = join(ROOT, 'dist');
const SAMPLE_MS = Number(process.argv[2] ?? 50);
const SAMPLES = Number(process.argv[3] ?? 5);
const ONLY = process.env.BENCH_ONLY ?? ''; // keep the shapes whose name contains this
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = ['--disable-background-networking', '--disable-component-update', '--no-first-run'];

async function inChromium() {
  const { server, url } = await serveStatic(DIST, { port: 0 });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
  try {
    const page = await browser.newPage();
    const blank = new URL('bench-simd.html', url).href;
    await page.route(blank, (r) => r.fulfill({ contentType: 'text/html', body: '<!doctype html><title>bench-simd</title>' }));
    await page.goto(blank);
    return await page.evaluate(async ([ms, n, only]) => {
      const m = await import('./trilemma.js');
      await m.default();
      return { agent: navigator.userAgent, report: m.bench_matmul(ms, n, only) };
    }, [SAMPLE_MS, SAMPLES, ONLY]);
  } finally {
    await browser.close();
    server.close();
  }
}

async function inNode() {
  const m = await import(pathToFileURL(join(DIST, 'trilemma.js')).href);
  await m.default({ module_or_path: await readFile(join(DIST, 'trilemma_bg.wasm')) });
  return { agent: `Node ${process.version}`, report: m.bench_matmul(SAMPLE_MS, SAMPLES, ONLY) };
}

function print({ agent, report }) {
  const peak = report.peak_gflops;
  console.log(`${agent}\n  kernel: ${report.kernel}; SIMD128 peak (f32x4 mul+add, 12 chains): ${peak?.toFixed(1)} GFLOP/s; ${report.method}`);
  console.log('  | shape | kernel GFLOP/s | % of peak | candle GFLOP/s | kernel / candle |');
  console.log('  |---|---|---|---|---|');
  for (const r of report.rows) {
    const pct = peak ? `${((100 * r.kernel_gflops) / peak).toFixed(0)}%` : 'n/a';
    console.log(`  | ${r.shape} | ${r.kernel_gflops.toFixed(1)} | ${pct} | ${r.candle_gflops.toFixed(1)} | ${(r.kernel_gflops / r.candle_gflops).toFixed(2)}x |`);
  }
}

const results = [await inChromium()];
if (!process.env.BENCH_NO_NODE) {
  try {
    results.push(await inNode());
  } catch (e) {
    console.error(`(Node run skipped: ${e.message})`);
  }
}
for (const r of results) print(r);
if (process.env.BENCH_JSON) console.log(JSON.stringify(results));
