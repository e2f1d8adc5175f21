// Browser benchmark (not a test): runs an experiment spec through the page's Experiment panel in
// headless Chromium — without a WebGPU adapter when the spec's backend is `cpu` (the wasm CPU path), with
// `--enable-unsafe-webgpu` (SwiftShader where there is no GPU) when it is `webgpu` or `auto` — and
// prints the wall time the page measured, each evaluation's and each attack's time and throughput, each
// compression's wall time, bytes and hemorrhage row,
// and where the results JSON was saved. While it runs, the panel's progress line is printed every
// BENCH_PROGRESS_S seconds (60).
//
//   trunk build --release && node scripts/bench-experiment.mjs [SPEC.json] [OUT.json]
//
// BENCH_WORKERS=N opens the page with `?workers=N` (N CPU workers: the helpers take a share of a CPU run's evaluation
// units) and waits for its helpers before running; unset, the page's own choice.
//
// SPEC defaults to SST-2 validation + AdvGLUE sst2 on the three bundled models; examples/attack-bench.json
// is the attack benchmark (every recipe on the three models). Compare with `trilemma run SPEC.json` natively
// (README "Measured numbers"). The run may take at most BENCH_TIMEOUT_S seconds: 1 hour, 24 hours for a spec
// with attacks (model-guided attacks query the model tens to thousands of times per example).
import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
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
const ATTACKS = (JSON.parse(SPEC).attacks ?? []).length;
const TIMEOUT_S = Number(process.env.BENCH_TIMEOUT_S ?? (ATTACKS > 0 ? 24 * 3600 : 3600));
const PROGRESS_S = Number(process.env.BENCH_PROGRESS_S ?? 60);
if (!(TIMEOUT_S > 0) || !(PROGRESS_S > 0)) throw new Error('BENCH_TIMEOUT_S and BENCH_PROGRESS_S must be positive numbers of seconds');

const { server, url } = await serveStatic(join(ROOT, 'dist'), { port: 0 });
const WEBGPU = (JSON.parse(SPEC).backend ?? 'auto') !== 'cpu';
const FLAGS = ['--disable-background-networking', '--no-first-run', ...(WEBGPU ? ['--enable-unsafe-webgpu'] : [])];
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
try {
  const page = await browser.newPage();
  const workers = process.env.BENCH_WORKERS ? Math.max(1, Math.floor(Number(process.env.BENCH_WORKERS))) : null;
  await page.goto(workers ? `${url}?workers=${workers}&autorun=0` : url);
  await page.waitForFunction(() => Number(document.body.dataset.finished) >= 1, null, { timeout: 300_000 });
  if (workers) await page.waitForFunction((n) => document.querySelector('#cpu-workers').dataset.workers === String(n), workers, { timeout: 300_000 });
  // The spec's JSON sits under "Edit the spec as JSON", below the builder form.
  await page.evaluate(() => { document.querySelector('#experiment details').open = true; });
  await page.fill('#exp-spec', SPEC);
  await page.click('#exp-run');
  // Wait in slices, printing the panel's progress line after each, until the run ends or the time is up.
  const start = Date.now();
  const ended = () => ['done', 'failed', 'cancelled'].includes(document.getElementById('experiment').dataset.state);
  for (;;) {
    const left = TIMEOUT_S * 1000 - (Date.now() - start);
    if (left <= 0) throw new Error(`the run did not finish within ${TIMEOUT_S} s (BENCH_TIMEOUT_S); last progress: ${await page.locator('#exp-stage').textContent()}`);
    const done = await page.waitForFunction(ended, null, { timeout: Math.min(left, PROGRESS_S * 1000) }).then(() => true, (err) => {
      if (err.name !== 'TimeoutError') throw err;
      return false;
    });
    if (done) break;
    const fraction = await page.evaluate(() => document.getElementById('exp-progress').value);
    console.log(`${((Date.now() - start) / 1000).toFixed(0).padStart(6)} s  ${(fraction * 100).toFixed(1).padStart(5)} %  ${await page.locator('#exp-stage').textContent()}`);
  }
  const error = await page.locator('#exp-error').textContent();
  if (error) throw new Error(error);
  const state = await page.getAttribute('#experiment', 'data-state');
  if (state !== 'done') throw new Error(`the run ended ${state}`);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#exp-json')]);
  const json = readFileSync(await download.path(), 'utf8');
  mkdirSync(dirname(resolve(OUT)), { recursive: true });
  writeFileSync(OUT, json);
  const r = JSON.parse(json);
  const seconds = await page.getAttribute('#experiment', 'data-seconds');
  const shared = await page.getAttribute('#experiment', 'data-workers');
  console.log(`page wall time (click to results): ${seconds} s on ${shared} CPU worker(s); engine: ${r.timing.seconds.toFixed(2)} s on ${r.provenance.backend.device}`);
  for (const u of r.units) {
    console.log(`${u.model.padEnd(12)} ${u.task} ${u.split.padEnd(17)} n=${String(u.n).padStart(4)}  acc ${(u.metrics[0].value * 100).toFixed(1)}  ${u.timing.seconds.toFixed(2)} s  ${u.timing.examples_per_second.toFixed(1)} ex/s`);
  }
  const pct = (x) => (x === null || x === undefined ? '—' : (x * 100).toFixed(1));
  for (const m of r.provenance.models.filter((m) => m.compression)) {
    const c = m.compression;
    console.log(`compress ${m.name.padEnd(34)} ${m.timing ? m.timing.compress_seconds.toFixed(3) : '—'} s  ${c.bytes_f32} -> ${c.bytes_compressed} B  ${c.bits_per_weight.toFixed(2)} bits/weight`);
  }
  for (const h of r.hemorrhage ?? []) {
    console.log(`hemorrhage ${h.model.padEnd(32)} ${h.task} ${h.split.padEnd(10)} acc ${pct(h.base_accuracy)} -> ${pct(h.accuracy)}  KL ${h.kl.toFixed(4)}  agreement ${pct(h.agreement)}`);
  }
  for (const a of r.attacks ?? []) {
    const s = a.summary;
    console.log(`${a.model.padEnd(12)} ${a.task} ${a.split.padEnd(17)} ${a.attack.recipe.padEnd(18)} n=${String(s.n).padStart(4)}  acc ${pct(s.original_accuracy)} -> ${pct(s.accuracy_under_attack)}`
      + `  success ${pct(s.success_rate)}  words ${pct(s.perturbed_word_share)}  queries ${s.mean_queries === null ? '—' : s.mean_queries.toFixed(1)}`
      + `  ${a.timing.seconds.toFixed(2)} s  ${a.timing.queries_per_second.toFixed(0)} q/s  ${a.timing.examples_per_second.toFixed(2)} ex/s`);
  }
  console.log(`results: ${OUT}`);
} finally {
  await browser.close();
  server.close();
}
