// End-to-end test of the built page (dist/, from `trunk build --release`) in headless Chromium
// with WebGPU on SwiftShader, driven by Playwright. Run by scripts/test.sh, or by hand:
//
//   node tests/e2e/page.test.mjs
//
// Serves dist/ on a free port, waits for the worker to load the three bundled models, checks their
// predictions on WebGPU against the CPU (same label, logits within tolerance), a pair task, an
// error path (empty text), the attack panel (a TextBugger attack with its marked changes checked
// against the record, deterministic, its errors) and an experiment with an attack, that the page
// stays responsive, and that nothing logged an error; then the fallbacks (no adapter, GPU lost, GPU out of memory) and the CPU worker pool (1 vs 2
// workers bit-identical, a helper failing at start or dying mid-run). Screenshots in test-results/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { serveStatic } from '../../scripts/static-server.mjs';
import { DIST, RESULTS, CHROMIUM, QUIET_FLAGS, WEBGPU_FLAGS, stepper } from './common.mjs';

const DEFAULT_TEXT = 'a gripping , funny and ultimately moving film';
const ARCHS = ['transformer', 'gla', 'hgrn_bit'];
// Cold start in SwiftShader on 2 cores: wasm compile, tokenizer, adapter, three models.
const START_TIMEOUT = 240_000;
const RUN_TIMEOUT = 180_000;

/** Results JSON without its timings (the only part that may differ between runs). */
const withoutTiming = (json) => JSON.stringify(JSON.parse(json), (k, v) => (k === 'timing' ? undefined : v));

/**
 * `fn(page)` on a fresh page of `browser` (laptop viewport): an uncaught page error fails it, and the page is saved as
 * test-results/`shot` whatever happens. Returns what `fn` returns.
 */
async function onPage(browser, shot, fn) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  page.on('pageerror', (err) => problems.push(`uncaught page error: ${err.message}`));
  try {
    const out = await fn(page);
    assert.deepEqual(problems, [], `the page reported problems:\n  ${problems.join('\n  ')}`);
    return out;
  } finally {
    mkdirSync(RESULTS, { recursive: true });
    await page.screenshot({ path: join(RESULTS, shot), fullPage: true }).catch(() => {});
    await page.close();
  }
}

test('the built page runs the three bundled models on WebGPU and on the CPU', { timeout: 10 * 60_000 }, async (t) => {
  for (const f of ['index.html', 'trilemma.js', 'trilemma_bg.wasm', 'worker.js']) {
    assert.ok(existsSync(join(DIST, f)), `dist/${f} is missing: run \`trunk build --release\` first`);
  }

  const { server, url } = await serveStatic(DIST, { port: 0 });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: WEBGPU_FLAGS });
  let page;
  t.after(async () => {
    // A screenshot whatever happened: on failure it shows what the page said.
    if (page) {
      mkdirSync(RESULTS, { recursive: true });
      await page.screenshot({ path: join(RESULTS, 'e2e-page.png'), fullPage: true }).catch(() => {});
    }
    await browser.close();
    server.close();
  });

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  // The context's console events include the worker's.
  context.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error${msg.worker() ? ' in the worker' : ''}: ${msg.text()}`);
  });
  page = await context.newPage();
  page.on('pageerror', (err) => problems.push(`uncaught page error: ${err.message}`));
  page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()} (${req.failure()?.errorText})`));
  page.on('response', (res) => {
    if (res.status() >= 400) problems.push(`HTTP ${res.status()} for ${res.url()}`);
  });
  page.on('crash', () => problems.push('the page crashed'));

  const text = (selector) => page.locator(selector).textContent();
  const finished = async () => Number(await page.getAttribute('body', 'data-finished'));

  /** Waits until `count` runs have finished; fails with the page's own error text if any. */
  async function waitForRun(count, { expectError = false } = {}) {
    // Every finished run (and a failed start) bumps body[data-finished].
    await page.waitForFunction(
      (n) => Number(document.body.dataset.finished) >= n,
      count,
      { timeout: RUN_TIMEOUT },
    );
    const state = await page.getAttribute('body', 'data-state');
    const error = await text('#error');
    if (expectError) {
      assert.equal(state, 'failed', 'the run should have failed');
    } else {
      assert.equal(state, 'done', `the run failed; the page says: ${error}`);
      assert.equal(error, '', 'a successful run leaves the error area empty');
    }
  }

  /** Checks the result table: one row per bundled model, GPU and CPU agreeing; returns the rows. */
  async function checkResult({ labels }) {
    const rows = page.locator('#models-table tbody tr');
    assert.equal(await rows.count(), ARCHS.length, 'one row per bundled model');
    const out = [];
    for (let i = 0; i < ARCHS.length; i++) {
      const row = rows.nth(i);
      const note = (await text('#gpu-note')).trim();
      assert.equal(await row.getAttribute('data-folder'), ARCHS[i]);
      const cpu = await row.getAttribute('data-cpu-label');
      const gpu = await row.getAttribute('data-gpu-label');
      assert.ok(labels.includes(cpu), `${ARCHS[i]}: CPU label ${cpu} is not one of ${labels}`);
      assert.equal(gpu, cpu, `${ARCHS[i]}: WebGPU says ${gpu}, CPU says ${cpu}${note ? `\n${note}` : ''}`);
      assert.equal(await row.getAttribute('data-same-label'), 'true');
      const tolerance = Number(await row.getAttribute('data-tolerance'));
      assert.ok(Number.isFinite(tolerance) && tolerance > 0, `bad tolerance ${tolerance}`);
      const maxAbsDiff = Number(await row.getAttribute('data-max-abs-diff'));
      assert.ok(Number.isFinite(maxAbsDiff) && maxAbsDiff <= tolerance,
        `${ARCHS[i]}: max |GPU - CPU| ${maxAbsDiff} > tolerance ${tolerance}`);
      assert.match(await row.textContent(), /\d+(\.\d+)? ms.*\d+(\.\d+)? ms/, 'CPU and GPU timings shown');
      out.push({ arch: ARCHS[i], cpu, maxAbsDiff });
    }
    assert.ok(await page.locator('#tokens .chip').count() > 0, 'no token chips');
    return out;
  }

  const step = stepper(t);

  // ?autorun=0: not the default comparison a new user's visit runs (tests/e2e/playground.test.mjs checks that).
  await page.goto(`${url}?autorun=0`);

  await step('the worker starts and picks WebGPU', async () => {
    await page.waitForFunction(
      () => document.body.dataset.state !== 'loading',
      null,
      { timeout: START_TIMEOUT },
    );
    assert.equal(await text('#error'), '', 'no error while starting');
    assert.equal(await page.getAttribute('#backend', 'data-kind'), 'webgpu');
    assert.match(await text('#backend'), /^Backend: WebGPU — \S/);
    assert.equal(await page.locator('h1').textContent(), 'Trilemma');
    const models = page.locator('#models li');
    assert.equal(await models.count(), ARCHS.length, 'three bundled models listed');
    for (let i = 0; i < ARCHS.length; i++) {
      assert.equal(await models.nth(i).getAttribute('data-loaded'), 'true', await models.nth(i).textContent());
      assert.match(await models.nth(i).textContent(), /CPU and WebGPU/, 'uploaded to the GPU too');
    }
  });

  await step('the automatic first run: three models, the same label on GPU and CPU', async (st) => {
    await waitForRun(1);
    assert.equal(await page.locator('#result-heading').textContent(), `SST2: “${DEFAULT_TEXT}”`);
    const rows = await checkResult({ labels: ['positive'] });
    st.diagnostic(rows.map((r) => `${r.arch}: ${r.cpu}, max |GPU - CPU| = ${r.maxAbsDiff}`).join('; '));
  });

  await step('a pair task (MNLI) takes a second text', async (st) => {
    const before = await finished();
    await page.selectOption('#task', 'mnli');
    assert.equal(await page.isVisible('#text-pair'), true, 'the second text appears');
    await page.fill('#text', 'A man is playing a guitar on stage .');
    await page.fill('#text-pair', 'Nobody is playing music .');
    await page.click('#run');
    await waitForRun(before + 1);
    const rows = await checkResult({ labels: ['entailment', 'neutral', 'contradiction'] });
    st.diagnostic(rows.map((r) => `${r.arch}: ${r.cpu}`).join('; '));
    await page.selectOption('#task', 'sst2');
    assert.equal(await page.isVisible('#text-pair'), false, 'single-text tasks hide it again');
  });

  await step('empty text shows a readable error and the page stays usable', async () => {
    const before = await finished();
    await page.fill('#text', '');
    await page.press('#text', 'Enter'); // the keyboard path submits the form too
    await waitForRun(before + 1, { expectError: true });
    const error = await text('#error');
    assert.match(error, /empty/i, `#error should explain the empty text, got: ${JSON.stringify(error)}`);
    assert.equal(await page.getAttribute('#error', 'role'), 'alert');
    assert.ok(await page.isEnabled('#run'), 'the run button is enabled again');
    await page.fill('#text', 'still typing');
    assert.equal(await page.inputValue('#text'), 'still typing');
  });

  // The "Attack a text" panel: the core's attack_text in the worker, on the CPU path. The record
  // (window.trilemmaAttack) is what the page drew from; its spans are UTF-8 byte offsets.
  const ATTACK_TEXT = "it 's a charming and often affecting journey . "; // SST-2 validation, idx 0
  const attackFinished = async () => Number(await page.getAttribute('#attack', 'data-finished'));
  /** Clicks Attack (or presses Enter in the text box) and waits for the panel to finish; returns its state. */
  async function attackOnce({ enter = false } = {}) {
    const before = await attackFinished();
    // Every state the panel passes through, with whether Attack was disabled then.
    await page.evaluate(() => {
      window.__attackStates = [];
      window.__attackObserver?.disconnect();
      const panel = document.getElementById('attack');
      window.__attackObserver = new MutationObserver(() => window.__attackStates.push(`${panel.dataset.state}:${document.getElementById('atk-run').disabled}`));
      window.__attackObserver.observe(panel, { attributes: true, attributeFilter: ['data-state'] });
    });
    if (enter) await page.press('#atk-text', 'Enter');
    else await page.click('#atk-run');
    await page.waitForFunction((n) => Number(document.getElementById('attack').dataset.finished) > n, before, { timeout: RUN_TIMEOUT });
    return page.getAttribute('#attack', 'data-state');
  }
  const utf8 = (s, span) => Buffer.from(s, 'utf8').subarray(span.start, span.end).toString('utf8');
  let firstAttack;

  await step('attack panel: TextBugger on an SST-2 sentence, each change marked, predictions before and after', async (st) => {
    assert.equal(await page.getAttribute('#attack', 'data-state'), 'idle');
    const models = await page.locator('#atk-model option').evaluateAll((os) => os.map((o) => o.value));
    assert.deepEqual(models, ARCHS, 'the loaded models are offered');
    const recipes = await page.locator('#atk-recipe optgroup').evaluateAll((gs) => gs.map((g) => [g.label, [...g.children].map((o) => o.value)]));
    assert.equal(recipes.length, 2, 'model-guided and random groups');
    assert.equal(recipes.flatMap(([, r]) => r).length, 10, 'all ten recipes');
    assert.match(await page.locator('#atk-recipe option[value="stress_test"]').textContent(), /sentence level/);
    await page.selectOption('#atk-model', 'hgrn_bit');
    await page.selectOption('#atk-task', 'sst2');
    await page.selectOption('#atk-recipe', 'textbugger');
    assert.equal(await page.isVisible('#atk-text-pair'), false, 'SST-2 takes one text');
    await page.fill('#atk-text', ATTACK_TEXT);
    assert.equal(await attackOnce(), 'done', `the attack failed: ${await text('#atk-error')}`);
    assert.deepEqual(await page.evaluate(() => window.__attackStates), ['running:true', 'done:false'], 'Attack is disabled while it runs');
    assert.equal(await text('#atk-error'), '');
    const r = await page.evaluate(() => window.trilemmaAttack);
    const rec = r.record;
    assert.equal(r.folder, 'hgrn_bit');
    assert.equal(r.recipe, 'textbugger');
    assert.deepEqual(r.label_names, ['negative', 'positive']);
    assert.equal(rec.original.a, ATTACK_TEXT);
    assert.equal(rec.segment, 'first');
    assert.ok(['succeeded', 'failed'].includes(rec.outcome), `outcome ${rec.outcome}: the label is the model's own prediction, so never skipped`);
    assert.equal(await page.getAttribute('#attack', 'data-outcome'), rec.outcome);
    assert.match(await text('#atk-outcome'), rec.outcome === 'succeeded' ? /^Succeeded: / : /^Failed: /);
    // The texts side by side, the changed spans marked: each mark is exactly the changed token.
    assert.equal(await text('#atk-original'), rec.original.a);
    assert.equal(await text('#atk-attacked'), rec.perturbed.a);
    assert.ok(rec.changes.length >= 1, 'at least one change');
    const marks = (sel) => page.locator(sel).evaluateAll((ms) => ms.map((m) => ({ text: m.textContent, title: m.title, kind: m.dataset.kind })));
    const attacked = await marks('#atk-attacked mark');
    const original = await marks('#atk-original mark');
    assert.equal(attacked.length, rec.changes.length, 'one mark per change');
    assert.equal(original.length, rec.changes.length);
    rec.changes.forEach((c, i) => {
      assert.match(c.kind, /^textbugger_/);
      assert.equal(utf8(rec.perturbed.a, c.new), c.after, 'the record: new span = after');
      assert.equal(utf8(rec.original.a, c.original), c.before, 'the record: original span = before');
      assert.notEqual(c.after, c.before);
      assert.equal(attacked[i].text, c.after, `mark ${i} in the attacked text`);
      assert.equal(original[i].text, c.before, `mark ${i} in the original text`);
      assert.equal(attacked[i].kind, c.kind);
      assert.ok(attacked[i].title.startsWith('TextBugger '), `title names the transformation: ${attacked[i].title}`);
    });
    // The prediction with its label name and confidence, before and after.
    const rows = page.locator('#atk-predictions tbody tr');
    assert.equal(await rows.count(), 2);
    for (const [i, v] of [rec.before, rec.after].entries()) {
      assert.equal(await rows.nth(i).getAttribute('data-label'), r.label_names[v.prediction]);
      assert.equal(Number(await rows.nth(i).getAttribute('data-confidence')), v.probs[v.prediction]);
      assert.match(await rows.nth(i).textContent(), new RegExp(`${r.label_names[v.prediction]} \\d+\\.\\d %`));
    }
    if (rec.outcome === 'succeeded') assert.notEqual(rec.after.prediction, rec.before.prediction);
    const stats = await text('#atk-stats');
    assert.match(stats, new RegExp(`^${rec.words_changed} of ${rec.words} words changed · ${rec.queries} model queries · \\d+ ms`));
    assert.ok(rec.words_changed >= 1 && rec.words_changed <= Math.ceil(0.25 * rec.words));
    mkdirSync(RESULTS, { recursive: true });
    await page.locator('#attack').screenshot({ path: join(RESULTS, 'e2e-attack.png') });
    firstAttack = rec;
    st.diagnostic(`${rec.outcome}: “${rec.perturbed.a.trim()}” (${rec.changes.map((c) => `${c.before}→${c.after} ${c.kind}`).join(', ')}); ` +
      `${r.label_names[rec.before.prediction]} ${rec.before.probs[rec.before.prediction].toFixed(3)} → ${r.label_names[rec.after.prediction]} ${rec.after.probs[rec.after.prediction].toFixed(3)}; ${rec.queries} queries, ${r.ms.toFixed(0)} ms`);
  });

  await step('attack panel: an empty text or a bad budget is a visible error; the panel stays usable', async () => {
    await page.fill('#atk-text', '   ');
    assert.equal(await attackOnce({ enter: true }), 'failed', 'Enter in the text box submits too');
    const error = await text('#atk-error');
    assert.match(error, /empty/i, `#atk-error should explain the empty text, got: ${JSON.stringify(error)}`);
    assert.equal(await page.getAttribute('#atk-error', 'role'), 'alert');
    assert.ok(await page.isVisible('#atk-error'));
    assert.equal(await page.isHidden('#atk-result'), true, 'no stale result next to the error');
    assert.ok(await page.isEnabled('#atk-run'), 'Attack is enabled again');
    await page.fill('#atk-text', ATTACK_TEXT);
    await page.fill('#atk-budget', '1.5');
    assert.equal(await attackOnce(), 'failed');
    assert.match(await text('#atk-error'), /budget/i);
    await page.fill('#atk-budget', '0.25');
  });

  await step('attack panel: the same attack again gives the identical attacked text', async () => {
    assert.equal(await attackOnce(), 'done', `the attack failed: ${await text('#atk-error')}`);
    assert.equal(await text('#atk-error'), '', 'the error is cleared');
    const again = await page.evaluate(() => window.trilemmaAttack.record);
    assert.equal(again.perturbed.a, firstAttack.perturbed.a);
    assert.equal(await text('#atk-attacked'), firstAttack.perturbed.a);
    assert.deepEqual(again, firstAttack, 'the whole record (changes, queries, probabilities) is the same');
  });

  await step('the benchmark panel times the three models on both backends', async () => {
    const before = await finished();
    await page.fill('#bench-n', '3');
    await page.click('#bench-run');
    await waitForRun(before + 1);
    const rows = page.locator('#bench-table tbody tr');
    assert.equal(await rows.count(), ARCHS.length);
    for (let i = 0; i < ARCHS.length; i++) {
      for (const attr of ['data-cpu', 'data-gpu']) {
        const v = Number(await rows.nth(i).getAttribute(attr));
        assert.ok(Number.isFinite(v) && v > 0, `${ARCHS[i]} ${attr} = ${v}`);
      }
      assert.equal(await rows.nth(i).getAttribute('data-same-labels'), '3', `${ARCHS[i]}: GPU and CPU labels agree`);
    }
  });

  // The experiment panel: the engine of `trilemma run`, in the worker; the report drawn on the
  // main thread by the same Rust code as `trilemma report`.
  const expState = () => page.getAttribute('#experiment', 'data-state');
  // The spec's JSON sits under "Edit the spec as JSON" (the builder form is above it).
  const openJson = () => page.evaluate(() => { document.querySelector('#experiment details').open = true; });
  async function runExperiment(spec, { until = ['done'], onRunning } = {}) {
    await openJson();
    await page.fill('#exp-spec', JSON.stringify(spec));
    await page.click('#exp-run');
    await page.waitForFunction(() => document.getElementById('experiment').dataset.state === 'running', null, { timeout: 10_000 });
    if (onRunning) await onRunning();
    await page.waitForFunction(
      (states) => states.includes(document.getElementById('experiment').dataset.state) || document.getElementById('experiment').dataset.state === 'failed',
      until,
      { timeout: RUN_TIMEOUT },
    );
    const state = await expState();
    assert.ok(until.includes(state), `experiment ended ${state}: ${await text('#exp-error')}`);
    return downloaded('#exp-json');
  }
  // What a download link gives the user.
  async function downloaded(selector) {
    const [download] = await Promise.all([page.waitForEvent('download'), page.click(selector)]);
    return readFileSync(await download.path(), 'utf8');
  }

  await step('an experiment spec runs to a report; run twice it gives identical results', async (st) => {
    const spec = { name: 'e2e', models: ARCHS, tasks: ['sst2', 'rte'], splits: ['validation', 'advglue'], backend: 'cpu', limit: 12, bootstrap: 100, batch: 8 };
    const a = await runExperiment(spec);
    const r = JSON.parse(a);
    assert.equal(r.units.length, 12);
    assert.equal(r.provenance.target, 'wasm32 (browser)');
    assert.equal(r.provenance.backend.kind, 'cpu');
    assert.ok(r.units.every((u) => u.n === 12 && u.metrics[0].name === 'accuracy'));
    assert.ok(r.provenance.data.every((f) => /^[0-9a-f]{64}$/.test(f.sha256)));
    assert.equal(await page.locator('#exp-report svg').count(), 3, 'three charts');
    assert.ok((await page.locator('#exp-report table').count()) >= 4);
    const csv = await downloaded('#exp-csv');
    assert.equal(csv.trim().split('\n').length, 1 + 12 * 12);
    const html = await downloaded('#exp-html');
    assert.match(html, /^<!doctype html>/);
    const b = await runExperiment(spec);
    assert.equal(withoutTiming(b), withoutTiming(a), 'the same spec gives the same results');
    st.diagnostic(`experiment: ${await page.getAttribute('#experiment', 'data-seconds')} s`);
  });

  await step('the same experiment on WebGPU gives the same labels', async () => {
    const spec = { models: ARCHS, tasks: ['sst2'], splits: ['advglue'], backend: 'webgpu', limit: 6, bootstrap: 50, batch: 8 };
    const g = JSON.parse(await runExperiment(spec));
    assert.equal(g.provenance.backend.kind, 'webgpu');
    assert.ok(g.units.every((u) => u.backend === 'webgpu' && u.timing.peak_gpu_bytes > 0));
    const c = JSON.parse(await runExperiment({ ...spec, backend: 'cpu' }));
    for (let i = 0; i < g.units.length; i++) {
      assert.deepEqual(g.units[i].predictions.map((p) => p.prediction), c.units[i].predictions.map((p) => p.prediction), g.units[i].model);
    }
  });

  await step('an experiment with an attack shows its progress and the report\'s Attacks section', async (st) => {
    const spec = { name: 'e2e attack', models: ['transformer'], tasks: ['sst2'], splits: ['advglue-original'], backend: 'cpu', limit: 6, bootstrap: 50,
      attacks: [{ recipe: 'random_checklist' }] };
    // Every progress line the panel shows.
    await page.evaluate(() => {
      window.__stages = [];
      new MutationObserver((ms) => ms.forEach((m) => m.addedNodes.forEach((n) => window.__stages.push(n.textContent))))
        .observe(document.getElementById('exp-stage'), { childList: true });
    });
    const r = JSON.parse(await runExperiment(spec));
    assert.equal(r.status.cancelled, false);
    assert.equal(r.units.length, 1);
    assert.equal(r.attacks.length, 1);
    const a = r.attacks[0];
    assert.equal(a.model, 'transformer');
    assert.equal(a.split, 'advglue-original');
    assert.deepEqual(a.attack, { recipe: 'random_checklist', budget: 0.25, max_queries: 2000 });
    assert.equal(a.summary.n, 6);
    assert.equal(a.records.length, 6);
    assert.ok(a.records.every((rec) => rec.outcome === 'skipped' || rec.queries === 2), 'a random attack asks the model before and after only');
    const stages = await page.evaluate(() => window.__stages);
    assert.ok(stages.some((s) => /^2\/2: transformer · sst2 advglue-original · attack random_checklist · [1-6]\/6( · about \d+ s left)?$/.test(s)), `progress names the attack: ${stages.join(' | ')}`);
    const headings = await page.locator('#exp-report h2').allTextContents();
    assert.ok(headings.includes('Attacks'), `the report has an Attacks section: ${headings.join(', ')}`);
    assert.match(await page.locator('#exp-report').textContent(), /random_checklist/);
    st.diagnostic(`attack: success rate ${a.summary.success_rate}, ${a.timing.seconds.toFixed(2)} s; experiment ${await page.getAttribute('#experiment', 'data-seconds')} s`);
  });

  await step('an experiment with compressions shows the compressed copies and their hemorrhage', async (st) => {
    const spec = { name: 'e2e compression', models: ['gla'], tasks: ['sst2'], splits: ['validation'], backend: 'cpu', limit: 24, bootstrap: 50,
      compressions: [{ method: 'svd', rank_fraction: 0.5 }, { method: 'int4', group: 32 }] };
    const r = JSON.parse(await runExperiment(spec));
    assert.deepEqual(r.units.map((u) => u.model), ['gla', 'gla + svd ρ=0.5', 'gla + int4 g32']);
    assert.equal(r.hemorrhage.length, 2);
    for (const h of r.hemorrhage) {
      assert.equal(h.base, 'gla');
      assert.equal(h.n, 24);
      assert.ok(h.kl > 0 && h.agreement > 0.5 && h.agreement <= 1, JSON.stringify(h));
    }
    const int4 = r.provenance.models.find((m) => m.name === 'gla + int4 g32');
    assert.equal(int4.compressed_from, 'gla');
    assert.equal(int4.compression.bits_per_weight, 5);
    const report = await page.locator('#exp-report').textContent();
    assert.match(report, /Hemorrhage/);
    assert.match(report, /gla \+ svd ρ=0\.5/);
    st.diagnostic(`svd: KL ${r.hemorrhage[0].kl.toFixed(4)}, agreement ${r.hemorrhage[0].agreement}; int4: KL ${r.hemorrhage[1].kl.toFixed(4)}`);
  });

  await step('a bad spec is refused naming the field', async () => {
    await openJson();
    await page.fill('#exp-spec', JSON.stringify({ models: ['gla'], tasks: ['sst2'], limit: -1 }));
    await page.click('#exp-run');
    await page.waitForFunction(() => document.getElementById('experiment').dataset.state === 'failed', null, { timeout: 30_000 });
    assert.match(await text('#exp-error'), /`limit`/);
    await page.fill('#exp-spec', '{"models": ["gla"],');
    await page.click('#exp-run');
    assert.match(await text('#exp-error'), /not valid JSON/);
  });

  await step('Cancel stops a long run and keeps the finished evaluations', async () => {
    const spec = { models: ARCHS, tasks: ['sst2'], splits: ['validation'], backend: 'cpu', bootstrap: 100 };
    const json = await runExperiment(spec, {
      until: ['cancelled'],
      onRunning: async () => {
        // Cancel once the main worker has started its second unit (with a helper, the helper has one of the three).
        await page.waitForFunction(() => /^[23]\/3/.test(document.getElementById('exp-stage').textContent), null, { timeout: RUN_TIMEOUT });
        await page.click('#exp-cancel');
      },
    });
    const r = JSON.parse(json);
    assert.equal(r.status.cancelled, true);
    // The main worker's first unit, and the helper's if it finished before the cancel reached it.
    const kept = await page.getAttribute('#experiment', 'data-workers') === '1' ? [1] : [1, 2];
    assert.ok(kept.includes(r.status.units_done), `${r.status.units_done} units kept`);
    assert.ok(r.units.every((u) => u.n === 872), 'only whole evaluations are kept');
    assert.match(await text('#exp-report'), /Cancelled/);
  });

  await step('a second run recovers, and the main thread never stalls', async (st) => {
    // Longest gap between 20 ms timer ticks on the main thread while the worker computes.
    await page.evaluate(() => {
      let last = performance.now();
      window.__maxGap = 0;
      window.__ticker = setInterval(() => {
        const now = performance.now();
        window.__maxGap = Math.max(window.__maxGap, now - last);
        last = now;
      }, 20);
    });
    const before = await finished();
    await page.fill('#text', DEFAULT_TEXT);
    await page.click('#run');
    await waitForRun(before + 1);
    await checkResult({ labels: ['positive'] });
    const maxGap = await page.evaluate(() => {
      clearInterval(window.__ticker);
      return window.__maxGap;
    });
    st.diagnostic(`longest main-thread stall during a run: ${maxGap.toFixed(0)} ms`);
    assert.ok(maxGap < 1000, `the main thread stalled for ${maxGap.toFixed(0)} ms during a run`);
  });

  assert.deepEqual(problems, [], `the page reported problems:\n  ${problems.join('\n  ')}`);
});

test('without a WebGPU adapter the page runs on the CPU and says why', { timeout: 10 * 60_000 }, async (t) => {
  const { server, url } = await serveStatic(DIST, { port: 0 });
  // Same flags minus --enable-unsafe-webgpu: navigator.gpu exists but no adapter is given.
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: QUIET_FLAGS,
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  page.on('pageerror', (err) => problems.push(`uncaught page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
  });
  t.after(async () => {
    mkdirSync(RESULTS, { recursive: true });
    await page.screenshot({ path: join(RESULTS, 'e2e-cpu-fallback.png'), fullPage: true }).catch(() => {});
    await browser.close();
    server.close();
  });

  await page.goto(`${url}?autorun=0`);
  await page.waitForFunction(() => Number(document.body.dataset.finished) >= 1, null, { timeout: RUN_TIMEOUT });
  const backend = await page.locator('#backend').textContent();
  assert.match(backend, /^Backend: CPU — .*(GPU|adapter)/i, `backend line: ${backend}`);
  assert.equal(await page.getAttribute('body', 'data-state'), 'done', `the CPU run failed: ${await page.locator('#error').textContent()}`);
  const rows = page.locator('#models-table tbody tr');
  assert.equal(await rows.count(), ARCHS.length, 'one row per bundled model');
  for (let i = 0; i < ARCHS.length; i++) {
    assert.equal(await rows.nth(i).getAttribute('data-cpu-label'), 'positive', `${ARCHS[i]} on the CPU`);
    assert.equal(await rows.nth(i).getAttribute('data-gpu-label'), null, 'no GPU result without an adapter');
  }
  const note = page.locator('#gpu-note');
  assert.equal(await note.isHidden(), false, 'the page says why there is no GPU result');
  assert.match(await note.textContent(), /GPU/);
  assert.deepEqual(problems, [], `the page reported problems:\n  ${problems.join('\n  ')}`);
});

for (const [mode, what, why] of [
  ['gpu-lost', 'a GPU device lost after loading', /WebGPU/],
  ['gpu-oom', 'the GPU out of memory after loading', /out of GPU memory/],
]) {
  test(`${what}: the runs complete on the CPU and say why`, { timeout: 10 * 60_000 }, async (t) => {
    const { server, url } = await serveStatic(DIST, { port: 0 });
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: WEBGPU_FLAGS });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems = [];
    page.on('pageerror', (err) => problems.push(`uncaught page error: ${err.message}`));
    t.after(async () => {
      mkdirSync(RESULTS, { recursive: true });
      await page.screenshot({ path: join(RESULTS, `e2e-${mode}.png`), fullPage: true }).catch(() => {});
      await browser.close();
      server.close();
    });
    await page.goto(`${url}?simulate=${mode}&autorun=0`);
    await page.waitForFunction(() => Number(document.body.dataset.finished) >= 1, null, { timeout: RUN_TIMEOUT });
    assert.equal(await page.getAttribute('body', 'data-state'), 'done', `the run failed: ${await page.locator('#error').textContent()}`);
    const rows = page.locator('#models-table tbody tr');
    assert.equal(await rows.count(), ARCHS.length);
    for (let i = 0; i < ARCHS.length; i++) {
      assert.equal(await rows.nth(i).getAttribute('data-cpu-label'), 'positive', `${ARCHS[i]} on the CPU`);
      assert.equal(await rows.nth(i).getAttribute('data-gpu-label'), null, `${ARCHS[i]}: no GPU result (${mode})`);
    }
    const note = await page.locator('#gpu-note').textContent();
    assert.match(note, why, `the page says why the GPU results are missing: ${note}`);
    t.diagnostic(note.slice(0, 200));
    assert.deepEqual(problems, [], `the page reported problems:\n  ${problems.join('\n  ')}`);
  });
}

// The CPU worker pool (www/pool.js) sharing an experiment's units: the same results with 1 and 2 CPU workers, and
// with a helper that dies on its share. No adapter, so only the CPU path runs.
test('CPU workers share an experiment: 1 vs 2 give identical results; a dying helper\'s evaluations run in the main worker', { timeout: 15 * 60_000 }, async (t) => {
  const { server, url } = await serveStatic(DIST, { port: 0 });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: QUIET_FLAGS });
  t.after(async () => {
    await browser.close();
    server.close();
  });
  // Six evaluation units (three models × SST-2 validation and AdvGLUE) and an attack, on the CPU path.
  const spec = { name: 'e2e-workers', models: ARCHS, tasks: ['sst2'], splits: ['validation', 'advglue'], backend: 'cpu', limit: 16, bootstrap: 50, batch: 8,
    attacks: [{ recipe: 'random_checklist', budget: 0.2 }] };

  /** Opens the page with `query` (its helpers started when `workers` > 1), runs the spec, returns the results and what the panel says. */
  function experiment(query, workers, shot) {
    return onPage(browser, `e2e-workers-experiment-${shot}.png`, async (page) => {
      await page.goto(`${url}${query}&autorun=0`);
      await page.waitForFunction(() => Number(document.body.dataset.finished) >= 1, null, { timeout: RUN_TIMEOUT });
      await page.waitForFunction((n) => document.querySelector('#cpu-workers').dataset.workers === String(n), workers, { timeout: RUN_TIMEOUT });
      await page.evaluate(() => { document.querySelector('#experiment details').open = true; });
      await page.fill('#exp-spec', JSON.stringify(spec));
      await page.click('#exp-run');
      await page.waitForFunction(() => ['done', 'failed'].includes(document.getElementById('experiment').dataset.state), null, { timeout: RUN_TIMEOUT });
      assert.equal(await page.getAttribute('#experiment', 'data-state'), 'done', `the experiment failed: ${await page.locator('#exp-error').textContent()}`);
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#exp-json')]);
      return {
        json: readFileSync(await download.path(), 'utf8'),
        workers: await page.getAttribute('#experiment', 'data-workers'),
        stage: await page.locator('#exp-stage').textContent(),
        cpuLine: await page.locator('#cpu-workers').textContent(),
        link: await page.evaluate(() => location.hash),
      };
    });
  }

  const one = await experiment('?workers=1', 1, '1');
  assert.equal(one.workers, '1');
  const r = JSON.parse(one.json);
  assert.equal(r.units.length, 6);
  assert.ok(r.status.complete, 'the run completed');

  const two = await experiment('?workers=2', 2, '2');
  assert.equal(two.workers, '2', 'the helper took a share of the evaluations');
  assert.match(two.stage, /^done in [\d.]+ s on 2 CPU workers$/);
  // Bit-identical apart from timings: the same units through the same code, wherever they ran.
  assert.equal(withoutTiming(two.json), withoutTiming(one.json), '2 workers give the same results as 1');
  assert.equal(two.link, one.link, 'and the same share link');

  const crash = await experiment('?workers=2&simulate=helper-crash', 2, 'crash');
  assert.equal(withoutTiming(crash.json), withoutTiming(one.json), 'the dying helper\'s evaluations were run by the main worker: same results');
  assert.match(crash.stage, /helper 1 stopped during the run \(.*simulated helper crash.*\); its evaluations ran in the main worker/);
  assert.match(crash.cpuLine, /^CPU: 1 thread — helper 1 stopped: .*simulated helper crash/);
  t.diagnostic(`1 worker: ${one.stage}; 2 workers: ${two.stage}; crash: ${crash.stage}`);
});

// The CPU worker pool (www/pool.js): the same benchmark with 1 and 2 CPU workers gives
// bit-identical logits, the single-thread fallback says why, and a helper that fails to start or
// dies mid-run is left out (its batches redone) with the same logits. No adapter, so only the
// CPU path runs; 48 sentences in batches of 4 are 12 batches to share.
test('CPU workers: 1 vs 2 give identical logits; a failed or dying helper is recovered and labelled', { timeout: 15 * 60_000 }, async (t) => {
  const { server, url } = await serveStatic(DIST, { port: 0 });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: QUIET_FLAGS });
  t.after(async () => {
    await browser.close();
    server.close();
  });

  /** Opens the page with `query`, runs the benchmark, returns what the page shows and the report. */
  function bench(query, shot) {
    return onPage(browser, `e2e-workers-${shot}.png`, async (page) => {
      await page.goto(`${url}${query}${query ? '&' : '?'}autorun=0`);
      await page.waitForFunction(() => Number(document.body.dataset.finished) >= 1, null, { timeout: RUN_TIMEOUT });
      await page.fill('#bench-n', '48');
      await page.fill('#bench-batch', '4');
      // Longest gap between 20 ms timer ticks on the main thread while the workers compute.
      await page.evaluate(() => {
        let last = performance.now();
        window.__maxGap = 0;
        window.__ticker = setInterval(() => {
          const now = performance.now();
          window.__maxGap = Math.max(window.__maxGap, now - last);
          last = now;
        }, 20);
      });
      await page.click('#bench-run');
      await page.waitForFunction(() => Number(document.body.dataset.finished) >= 2, null, { timeout: RUN_TIMEOUT });
      assert.equal(await page.getAttribute('body', 'data-state'), 'done', `the benchmark failed: ${await page.locator('#error').textContent()}`);
      return page.evaluate(() => ({
        maxGap: (clearInterval(window.__ticker), window.__maxGap),
        cpuLine: document.querySelector('#cpu-workers').textContent,
        cpuWorkers: Number(document.querySelector('#cpu-workers').dataset.workers),
        note: document.querySelector('#bench-note').textContent,
        report: window.trilemmaBench,
      }));
    });
  }

  const logitsOf = (r) => r.report.rows.map((row) => ({ folder: row.folder, logits: row.logits }));
  const checkRows = (r, workers) => {
    assert.equal(r.report.rows.length, ARCHS.length);
    for (const row of r.report.rows) {
      assert.equal(row.error, null, `${row.folder}: ${row.error}`);
      assert.equal(row.examples, 48);
      assert.equal(row.batches, 12);
      assert.equal(row.logits.length, 48);
      assert.ok(row.logits.every((l) => Array.isArray(l) && l.length === 2 && l.every(Number.isFinite)), `${row.folder}: a missing or bad row`);
      assert.ok(row.cpu_examples_per_s > 0);
      if (workers !== undefined) assert.equal(row.cpu_workers, workers, `${row.folder}: ${JSON.stringify(row.batches_by_worker)}`);
    }
  };

  const one = await bench('?workers=1', '1');
  assert.equal(one.cpuLine, 'CPU: 1 thread — set by ?workers=1');
  assert.match(one.note, /^CPU: 1 thread — set by \?workers=1\./);
  checkRows(one, 1);
  const reference = logitsOf(one);

  const two = await bench('?workers=2', '2');
  assert.equal(two.cpuLine, 'CPU: 2 workers');
  assert.equal(two.cpuWorkers, 2);
  checkRows(two, 2);
  for (const row of two.report.rows) {
    const by = Object.values(row.batches_by_worker);
    assert.equal(by.length, 2);
    assert.ok(by.every((n) => n > 0), `${row.folder}: both workers ran batches: ${JSON.stringify(row.batches_by_worker)}`);
  }
  // Bit-identical, not within a tolerance: the same batches went through the same code.
  assert.deepEqual(logitsOf(two), reference, '2 workers give the same logits as 1');
  assert.ok(two.maxGap < 1000, `the main thread stalled for ${two.maxGap.toFixed(0)} ms during the 2-worker benchmark`);
  t.diagnostic(`2 workers: longest main-thread stall ${two.maxGap.toFixed(0)} ms; ${two.report.rows.map((r) => `${r.folder} ${r.cpu_examples_per_s.toFixed(0)} ex/s ${JSON.stringify(r.batches_by_worker)}`).join('; ')}`);

  const noStart = await bench('?workers=2&simulate=helper-start-fail', 'start-fail');
  assert.match(noStart.cpuLine, /^CPU: 1 thread — helper 1 failed to start: .*simulated helper failure at start/);
  assert.equal(noStart.cpuWorkers, 1);
  checkRows(noStart, 1);
  assert.deepEqual(logitsOf(noStart), reference, 'the single-thread fallback gives the same logits');

  const crash = await bench('?workers=2&simulate=helper-crash', 'crash');
  checkRows(crash);
  assert.deepEqual(logitsOf(crash), reference, 'the batches of the dying helper were redone: same logits');
  assert.match(crash.note, /helper 1 stopped during the run \(.*simulated helper crash.*\); its batch was redone on the other workers/);
  assert.match(crash.cpuLine, /^CPU: 1 thread — helper 1 stopped: .*simulated helper crash/, 'the page now says it runs on one thread, and why');
  assert.equal(crash.cpuWorkers, 1);
  t.diagnostic(crash.note);
});
