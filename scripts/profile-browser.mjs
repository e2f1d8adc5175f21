// Where the wasm CPU path spends its time (a measurement, not a test): V8's sampling profiler
// (`--js-flags=--prof`) on the page's benchmark in headless Chromium, one CPU worker, no
// adapter, then `node --prof-process` on the log with the most ticks (the worker's isolate).
//
//   trunk build --release && node scripts/profile-browser.mjs [N=872] [BATCH=32] [TOP=25]
//
// The page's wasm has no function names after wasm-opt, so this serves a copy of dist/ whose
// wasm is wasm-bindgen's output of the same cargo build (target/wasm32-unknown-unknown/release,
// names kept, not wasm-opt'ed: a little slower, the same code). Needs wasm-bindgen on PATH
// (scripts/setup.sh installs it). Prints the examples/s of that run and the TOP functions by ticks.
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serveStatic } from './static-server.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const N = Number(process.argv[2] ?? 872);
const BATCH = Number(process.argv[3] ?? 32);
const TOP = Number(process.argv[4] ?? 25);
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

const work = mkdtempSync(join(tmpdir(), 'trilemma-profile-'));
try {
  const dist = join(work, 'dist');
  cpSync(join(ROOT, 'dist'), dist, { recursive: true });
  execFileSync('wasm-bindgen', ['--target', 'web', '--no-typescript', '--out-dir', dist, join(ROOT, 'target/wasm32-unknown-unknown/release/trilemma.wasm')], { stdio: 'inherit' });
  const logs = join(work, 'logs');
  const { server, url } = await serveStatic(dist, { port: 0 });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // The renderer writes its log itself: without the sandbox, one file per process.
    args: ['--no-sandbox', `--js-flags=--prof --logfile=${logs}-%p.log`, '--disable-background-networking', '--no-first-run'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(`${url}?workers=1&autorun=0`);
    await page.waitForFunction(() => Number(document.body.dataset.finished) >= 1, null, { timeout: 300_000 });
    await page.fill('#bench-n', String(N));
    await page.fill('#bench-batch', String(BATCH));
    await page.click('#bench-run');
    await page.waitForFunction(() => Number(document.body.dataset.finished) >= 2, null, { timeout: 1_800_000 });
    const rows = await page.evaluate(() => [...document.querySelectorAll('#bench-table tbody tr')].map((r) => [...r.cells].slice(0, 3).map((c) => c.textContent).join(' | ')));
    console.log(rows.join('\n'));
  } finally {
    await browser.close();
    server.close();
  }
  // V8 writes one log per isolate (`isolate-<address>-<pid>-logs-<pid>.log`): the benchmark's
  // worker is the one with the most ticks.
  const ticks = (f) => readFileSync(f, 'latin1').split('\ntick,').length - 1;
  const files = readdirSync(work).filter((f) => f.includes('logs-') && f.endsWith('.log')).map((f) => join(work, f));
  if (!files.length) throw new Error(`V8 wrote no profile log into ${work}`);
  const biggest = files.map((f) => [f, ticks(f)]).sort((a, b) => b[1] - a[1])[0][0];
  const out = execFileSync(process.execPath, ['--prof-process', biggest], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 28 });
  const lines = out.split('\n');
  const js = lines.findIndex((l) => l.includes('[JavaScript]'));
  console.log(lines.find((l) => l.startsWith('Statistical profiling result')) ?? '');
  console.log(lines.slice(js, js + 2 + TOP).join('\n'));
} finally {
  rmSync(work, { recursive: true, force: true });
}
