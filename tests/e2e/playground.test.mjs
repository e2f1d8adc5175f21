// The playground as a new user meets it, in headless Chromium (WebGPU on SwiftShader) against the built page (dist/):
// the default comparison that runs on opening the page, an experiment built with the form (an attack and a
// compression), its share link opened in a fresh browser context (the same numbers, checked against the link's), the
// results exported and imported again (one to view, two to compare), a broken link, and a crafted link and results
// file that try to run script, and a paper-view claim run live. Screenshots of each state in test-results/. Run by scripts/test.sh, or by hand:
//
//   node tests/e2e/playground.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { serveStatic } from '../../scripts/static-server.mjs';
import { DIST, RESULTS, CHROMIUM, WEBGPU_FLAGS, stepper } from './common.mjs';

const START_TIMEOUT = 240_000;
const RUN_TIMEOUT = 180_000;
const ARCHS = ['transformer', 'gla', 'hgrn_bit'];
// A link's fragment as experiment::share writes it: `x1.` + base64url(raw deflate(JSON)).
const fragmentOf = (obj) => `x1.${deflateRawSync(Buffer.from(JSON.stringify(obj))).toString('base64url')}`;
const XSS = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';

test('the playground: default comparison, builder, share link, export/import, crafted inputs', { timeout: 15 * 60_000 }, async (t) => {
  assert.ok(existsSync(join(DIST, 'index.html')), 'dist/ is missing: run `trunk build --release` first');
  mkdirSync(RESULTS, { recursive: true });
  const { server, url } = await serveStatic(DIST, { port: 0 });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: WEBGPU_FLAGS });
  const problems = [];
  const pages = [];
  t.after(async () => {
    await browser.close();
    server.close();
  });

  /** A page in a fresh context (no cache, no storage), watched for errors and dialogs. */
  async function fresh(name) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
    context.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`${name}: console error: ${msg.text()}`);
    });
    const page = await context.newPage();
    page.on('pageerror', (err) => problems.push(`${name}: uncaught page error: ${err.message}`));
    page.on('dialog', (d) => {
      problems.push(`${name}: a dialog opened: ${d.message()}`);
      d.dismiss().catch(() => {});
    });
    pages.push({ name, page });
    return page;
  }
  const shot = (page, file) => page.screenshot({ path: join(RESULTS, file), fullPage: true }).catch(() => {});
  const state = (page) => page.getAttribute('#experiment', 'data-state');
  async function waitDone(page, states = ['done']) {
    await page.waitForFunction(
      (s) => [...s, 'failed'].includes(document.getElementById('experiment').dataset.state),
      states,
      { timeout: RUN_TIMEOUT },
    );
    const st = await state(page);
    assert.ok(states.includes(st), `the experiment ended ${st}: ${await page.locator('#exp-error').textContent()}`);
  }
  async function downloaded(page, selector) {
    const [d] = await Promise.all([page.waitForEvent('download'), page.click(selector)]);
    return readFileSync(await d.path(), 'utf8');
  }
  const pwned = (page) => page.evaluate(() => window.__pwned);

  const step = stepper(t);

  const page = await fresh('first visit');
  let built = null; // the results JSON of the built experiment
  let shareUrl = '';

  await step('opening the page runs the default comparison: three models, SST-2 clean vs AdvGLUE', async (st) => {
    const t0 = Date.now();
    await page.goto(url);
    await page.waitForFunction(() => document.getElementById('experiment').dataset.state === 'running', null, { timeout: START_TIMEOUT });
    await waitDone(page);
    const json = await downloaded(page, '#exp-json');
    const r = JSON.parse(json);
    assert.deepEqual(r.spec.models, ARCHS);
    assert.deepEqual(r.units.map((u) => `${u.model} ${u.split}`), ARCHS.flatMap((m) => [`${m} advglue-original`, `${m} advglue`]));
    assert.ok(r.units.every((u) => u.n > 100 && u.readout === 'head sst2'));
    assert.equal(await page.locator('#exp-report svg').count() >= 3, true, 'the charts are drawn');
    // The finished run's link is in the address bar and the share field.
    const hash = await page.evaluate(() => location.hash);
    assert.match(hash, /^#x1\.[A-Za-z0-9_-]+$/);
    assert.ok((await page.inputValue('#exp-share')).endsWith(hash));
    st.diagnostic(`default comparison: ${await page.getAttribute('#experiment', 'data-seconds')} s in the worker, ${((Date.now() - t0) / 1000).toFixed(1)} s from opening the page; link ${hash.length} characters`);
    await shot(page, 'playground-default.png');
    await page.locator('#builder').screenshot({ path: join(RESULTS, 'playground-builder.png') });
  });

  await step('an experiment built with the form (an attack and a compression) runs', async (st) => {
    for (const m of ['gla', 'hgrn_bit']) await page.uncheck(`#b-models input[value="${m}"]`);
    await page.uncheck('#b-splits input[value="advglue"]');
    await page.uncheck('#b-splits input[value="advglue-original"]');
    await page.check('#b-splits input[value="validation"]');
    await page.check('#b-tasks input[value="rte"]');
    await page.selectOption('#b-attack', 'textbugger');
    await page.selectOption('#b-compression', 'magnitude');
    await page.fill('#b-levels', '0.3, 0.9');
    await page.dispatchEvent('#b-levels', 'change');
    await page.selectOption('#b-backend', 'cpu');
    await page.fill('#b-limit', '8');
    await page.dispatchEvent('#b-limit', 'change');
    const spec = JSON.parse(await page.inputValue('#exp-spec'));
    assert.deepEqual(spec.models, ['transformer']);
    assert.deepEqual(spec.tasks, ['sst2', 'rte']);
    assert.deepEqual(spec.splits, ['validation']);
    assert.deepEqual(spec.attacks, [{ recipe: 'textbugger', budget: 0.25, max_queries: 2000 }]);
    assert.deepEqual(spec.compressions, [{ method: 'magnitude', sparsity: 0.3 }, { method: 'magnitude', sparsity: 0.9 }]);
    assert.equal(spec.limit, 8);
    assert.equal(spec.backend, 'cpu');
    // By keyboard: Tab from the form's last field reaches Run (past "Edit the spec as JSON"), Enter starts it.
    await page.focus('#b-limit');
    const order = [];
    for (let i = 0; i < 6 && order.at(-1) !== 'exp-run'; i++) {
      await page.keyboard.press('Tab');
      order.push(await page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName));
    }
    assert.equal(order.at(-1), 'exp-run', `Tab order from the limit field: ${order.join(' → ')}`);
    await page.keyboard.press('Enter');
    await waitDone(page);
    built = await downloaded(page, '#exp-json');
    const r = JSON.parse(built);
    assert.equal(r.units.length, 6, 'transformer and its two copies × two tasks');
    assert.equal(r.attacks.length, 6);
    assert.equal(r.hemorrhage.length, 4);
    assert.match(await page.locator('#exp-report').textContent(), /Hemorrhage/);
    // The inspector: the attack's examples with their changes marked; the flipped filter keeps the successful ones.
    const view = await page.locator('#insp-view option').evaluateAll((os) => os.map((o) => [o.value, o.textContent]));
    const atk = view.find(([, t]) => t.startsWith('attack: transformer × textbugger on sst2'));
    assert.ok(atk, JSON.stringify(view));
    await page.selectOption('#insp-view', atk[0]);
    const a = r.attacks.find((x) => x.model === 'transformer' && x.task === 'sst2');
    assert.equal(await page.locator('#exp-inspector tbody tr').count(), a.records.length);
    await page.check('#insp-flipped');
    const wins = a.records.filter((x) => x.outcome === 'succeeded');
    assert.equal(await page.locator('#exp-inspector tbody tr').count(), wins.length);
    assert.ok(wins.length > 0, 'TextBugger wins some of the 8 (seeded: always the same)');
    {
      // The marked spans of the attacked text are the words the record says it changed.
      const marks = await page.locator('#exp-inspector tbody tr').first().locator('td').nth(2).locator('mark').allTextContents();
      assert.deepEqual(marks, wins[0].changes.map((c) => c.after));
    }
    const unit = view.find(([, t]) => t === 'evaluation: transformer + magnitude 0.9 on sst2 validation');
    await page.selectOption('#insp-view', unit[0]);
    const copy = r.units.find((u) => u.model === 'transformer + magnitude 0.9' && u.task === 'sst2');
    const orig = r.units.find((u) => u.model === 'transformer' && u.task === 'sst2' && u.split === 'validation');
    const flips = copy.predictions.filter((p, i) => p.prediction !== orig.predictions[i].prediction).length;
    assert.ok(flips > 0, '90% sparsity changes some predictions');
    assert.equal(await page.locator('#exp-inspector tbody tr').count(), flips, 'the flipped filter: predictions that changed');
    await page.locator('#exp-inspector').screenshot({ path: join(RESULTS, 'playground-inspector.png') });
    st.diagnostic(`inspector: ${wins.length} successful attacks, ${flips} flipped by magnitude 0.9`);
    shareUrl = await page.inputValue('#exp-share');
    assert.ok(shareUrl.startsWith(url), shareUrl);
    st.diagnostic(`built experiment: ${await page.getAttribute('#experiment', 'data-seconds')} s; link ${shareUrl.length - url.length} characters`);
    await shot(page, 'playground-built.png');
  });

  await step('its share link, opened in a fresh browser context, re-runs to the same numbers', async (st) => {
    const other = await fresh('share link');
    await other.goto(shareUrl);
    await other.waitForFunction(() => document.getElementById('exp-link').dataset.check, null, { timeout: START_TIMEOUT + RUN_TIMEOUT });
    assert.equal(await other.getAttribute('#exp-link', 'data-check'), 'same', await other.locator('#exp-link').textContent());
    assert.equal(await other.getAttribute('#exp-link', 'data-bit-identical'), 'true');
    assert.match(await other.locator('#exp-link').textContent(), /✓ Same numbers as the link/);
    const again = JSON.parse(await downloaded(other, '#exp-json'));
    const strip = (r) => JSON.stringify(r.units.map((u) => u.predictions));
    assert.equal(strip(again), strip(JSON.parse(built)), 'the same predictions and probabilities');
    st.diagnostic(await other.locator('#exp-link').textContent());
    await shot(other, 'playground-share-link.png');
    await other.locator('#exp-link').screenshot({ path: join(RESULTS, 'playground-link-check.png') });
    await other.context().close();
  });

  await step('results are exported and imported again: one to view, two to compare', async () => {
    const a = join(RESULTS, 'playground-built-results.json');
    writeFileSync(a, built);
    const changed = JSON.parse(built);
    changed.units[0].metrics[0].value += 0.125;
    const b = join(RESULTS, 'playground-changed-results.json');
    writeFileSync(b, JSON.stringify(changed));
    await page.setInputFiles('#exp-import', [a]);
    await page.waitForFunction(() => document.getElementById('experiment').dataset.imported === '1', null, { timeout: 30_000 });
    assert.match(await page.locator('#exp-report').textContent(), /Hemorrhage/);
    await page.setInputFiles('#exp-import', [a, b]);
    await page.waitForFunction(() => document.getElementById('exp-compare').dataset.same, null, { timeout: 30_000 });
    assert.equal(await page.getAttribute('#exp-compare', 'data-same'), 'false');
    const differing = page.locator('#exp-compare table').first().locator('tr[data-same="false"]');
    assert.equal(await differing.count(), 1);
    assert.match(await differing.textContent(), /transformer · sst2 validation · accuracy/);
    assert.equal(await page.locator('#exp-compare .side-by-side > div').count(), 2);
    await shot(page, 'playground-compare.png');
    await page.locator('#exp-compare > table').screenshot({ path: join(RESULTS, 'playground-compare-table.png') });
    // Not a results file: a clear error, and the page keeps what it showed.
    const junk = join(RESULTS, 'playground-not-results.json');
    writeFileSync(junk, '{"format": "something else"}');
    await page.setInputFiles('#exp-import', [junk]);
    await page.waitForFunction(() => document.getElementById('exp-error').textContent !== '', null, { timeout: 30_000 });
    assert.match(await page.locator('#exp-error').textContent(), /playground-not-results\.json is not a Trilemma results file/);
    assert.equal(await page.locator('#exp-compare .side-by-side > div').count(), 2);
  });

  await step('a crafted results file and a crafted link run no script', async () => {
    const evil = JSON.parse(built);
    evil.spec.name = XSS;
    evil.units[0].model = XSS;
    evil.units[0].architecture = XSS;
    const f = join(RESULTS, 'playground-crafted-results.json');
    writeFileSync(f, JSON.stringify(evil));
    await page.setInputFiles('#exp-import', [f]);
    await page.waitForFunction(() => document.getElementById('experiment').dataset.imported === '1', null, { timeout: 30_000 });
    assert.ok((await page.locator('#exp-report').textContent()).includes(XSS), 'the crafted text is shown as text');
    assert.equal(await page.locator('#exp-report img[src="x"], #exp-report script').count(), 0);
    assert.equal(await pwned(page), undefined);

    const crafted = await fresh('crafted link');
    const spec = { name: XSS, models: ['gla'], tasks: ['sst2'], splits: ['validation'], backend: 'cpu', limit: 4, bootstrap: 20 };
    await crafted.goto(`${url}#${fragmentOf({ spec })}`);
    await waitDone(crafted);
    assert.ok((await crafted.locator('#exp-link').textContent()).includes(XSS));
    assert.ok((await crafted.locator('#exp-report').textContent()).includes(XSS));
    assert.equal(await crafted.locator('img[src="x"]').count(), 0);
    assert.equal(await pwned(crafted), undefined);
    await shot(crafted, 'playground-crafted-link.png');
    // A link with a field the spec does not have, a broken one: refused with the reason, nothing runs.
    for (const [fragment, why] of [
      [fragmentOf({ spec, onload: 'window.__pwned=3' }), /unknown field `onload`/],
      ['x1.not-a-link', /this link cannot be opened/],
      [fragmentOf({ spec: { ...spec, models: ['../../etc/passwd'] } }), /bundled models only/],
    ]) {
      await crafted.goto('about:blank');
      await crafted.goto(`${url}#${fragment}`);
      await crafted.waitForFunction(() => document.getElementById('exp-link').dataset.check === 'broken', null, { timeout: START_TIMEOUT });
      assert.match(await crafted.locator('#exp-link').textContent(), why);
      assert.equal(await pwned(crafted), undefined);
    }
    // The last one, once the core is up: nothing ran (the experiment panel is idle, not running the link).
    await crafted.waitForFunction(() => document.getElementById('experiment').dataset.state === 'idle', null, { timeout: START_TIMEOUT });
    await shot(crafted, 'playground-broken-link.png');
    await crafted.context().close();
  });

  await step('the paper view runs a claim and says whether it holds here, with intervals', async (st) => {
    const card = page.locator('#claim-epr-gla');
    await card.locator('button').click();
    await page.waitForFunction(() => ['done', 'failed'].includes(document.getElementById('claim-epr-gla').dataset.state), null, { timeout: RUN_TIMEOUT });
    assert.equal(await card.getAttribute('data-state'), 'done', await card.textContent());
    assert.ok(['holds', 'does_not_hold', 'inconclusive'].includes(await card.getAttribute('data-holds')));
    const rows = card.locator('tbody tr');
    assert.equal(await rows.count(), 3, 'one row per attack level');
    for (let i = 0; i < 3; i++) assert.match(await rows.nth(i).textContent(), /gla − transformer, advglue (word|sentence|human)-level accuracy-?\d\.\d{3}\[-?\d\.\d{3}, -?\d\.\d{3}\]/);
    assert.match(await card.textContent(), /The paper: GLA is more robust than Transformer\+\+/);
    assert.equal(await page.locator('#paper .claim').count() >= 5, true, 'a claim per paper');
    st.diagnostic((await card.locator('.claim-result > p').textContent()) + ` (${await page.getAttribute('#experiment', 'data-seconds')} s)`);
    await card.screenshot({ path: join(RESULTS, 'playground-paper-view.png') });
  });

  for (const { name, page: p } of pages) await shot(p, `playground-last-${name.replace(/\W+/g, '-')}.png`);
  assert.deepEqual(problems, [], `the page reported problems:\n  ${problems.join('\n  ')}`);
});
