// Loading a checkpoint from a URL or local files (README "Loading a checkpoint"), in headless Chromium against the
// built page (dist/), on the CPU path. A second local server, on another port and with CORS headers, serves tiny
// checkpoints in Hugging Face layout made here from the bundled GLA folder (assets/models/gla): whole, sharded (an
// index and two shards), and broken ones. The test loads one by URL with progress, sees it cached, loads it again
// from the cache (no request reaches the server), runs an experiment naming it and finds its files' hashes in the
// results' provenance, opens the share link in a fresh browser (which downloads the model itself and gets the same
// numbers), checks the errors (no CORS, a 404, config.json not JSON, a safetensors of garbage, a model too large —
// refused from its index before any shard is requested), loads local files, opens a link naming local files in a
// tab that has none, and clears the cache. Screenshots in test-results/checkpoint-*.png. Run by scripts/test.sh, or:
//
//   node tests/e2e/checkpoint.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { serveStatic } from '../../scripts/static-server.mjs';
import { ROOT, DIST, RESULTS, CHROMIUM, QUIET_FLAGS, stepper } from './common.mjs';

const GLA = join(ROOT, 'assets/models/gla');
// The CPU path only (no --enable-unsafe-webgpu): faster to start, and what a share link re-runs on.
const TIMEOUT = 120_000;
const ARCHS = ['transformer', 'gla', 'hgrn_bit'];
const sha256 = (b) => createHash('sha256').update(b).digest('hex');
const fragmentOf = (obj) => `x1.${deflateRawSync(Buffer.from(JSON.stringify(obj))).toString('base64url')}`;

/** The bundled GLA's safetensors split in two shards, with the index that lists them. */
function shard(bytes) {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  const names = Object.keys(header).filter((k) => k !== '__metadata__').sort();
  const halves = [names.slice(0, names.length >> 1), names.slice(names.length >> 1)];
  const files = {};
  const weightMap = {};
  let total = 0;
  halves.forEach((part, i) => {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    const h = {};
    const data = [];
    let at = 0;
    for (const name of part) {
      const t = header[name];
      const piece = bytes.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]);
      h[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + piece.length] };
      data.push(piece);
      at += piece.length;
      weightMap[name] = file;
    }
    total += at;
    const json = Buffer.from(JSON.stringify(h));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    files[file] = Buffer.concat([len, json, ...data]);
  });
  files['model.safetensors.index.json'] = Buffer.from(JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }));
  return files;
}

/** The GLA folder as a plain language model: no `score*` tensors, a config without labels or the `trilemma` section. */
function lmOnly(files) {
  const bytes = files['model.safetensors'];
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  const h = {};
  const data = [];
  let at = 0;
  for (const name of Object.keys(header).filter((k) => k !== '__metadata__' && !k.startsWith('score')).sort()) {
    const t = header[name];
    const piece = bytes.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]);
    h[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + piece.length] };
    data.push(piece);
    at += piece.length;
  }
  const json = Buffer.from(JSON.stringify(h));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const config = JSON.parse(files['config.json'].toString('utf8'));
  for (const k of ['num_labels', 'id2label', 'label2id', 'trilemma']) delete config[k];
  return { ...files, 'config.json': Buffer.from(JSON.stringify(config)), 'model.safetensors': Buffer.concat([len, json, ...data]) };
}

/** The model server: folders under /org/NAME/resolve/main/, CORS on unless the folder says; every request logged. */
function serveModels() {
  const gla = Object.fromEntries(['config.json', 'model.safetensors', 'tokenizer.json'].map((f) => [f, readFileSync(join(GLA, f))]));
  const { 'model.safetensors': weights, ...small } = gla;
  const folders = {
    tiny: { files: gla, slow: true },
    'tiny-nocors': { files: gla, cors: false },
    missing: { files: {} },
    badjson: { files: { ...gla, 'config.json': Buffer.from('this is { not JSON') } },
    garbage: { files: { ...small, 'model.safetensors': Buffer.from('this is not a safetensors file, only some text '.repeat(100)) } },
    sharded: { files: { ...small, ...shard(weights) } },
    lmonly: { files: lmOnly(gla) },
    // 6 GB of weights declared by the index: refused before any shard is requested (none is served).
    huge: {
      files: {
        ...small,
        'model.safetensors.index.json': Buffer.from(JSON.stringify({
          metadata: { total_size: 6_000_000_000 },
          weight_map: { 'model.embeddings.weight': 'model-00001-of-00002.safetensors', 'lm_head.weight': 'model-00002-of-00002.safetensors' },
        })),
      },
    },
  };
  const requests = [];
  const server = createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    requests.push(`${req.method} ${path}`);
    const m = /^\/org\/([^/]+)\/resolve\/main\/([^/]+)$/.exec(path);
    const folder = m && folders[m[1]];
    const cors = folder?.cors === false ? {} : { 'access-control-allow-origin': '*' };
    const body = folder?.files[m[2]];
    if (!body) {
      res.writeHead(404, { 'content-type': 'text/plain', ...cors });
      res.end('not found\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, ...cors });
    if (req.method === 'HEAD') return res.end();
    if (!(folder.slow && m[2] === 'model.safetensors')) return res.end(body);
    // Slowly enough for the progress bar to be seen: 256 KiB every 15 ms (~0.35 s for 5.5 MB).
    for (let at = 0; at < body.length; at += 256 * 1024) {
      if (!res.write(body.subarray(at, at + 256 * 1024))) await new Promise((ok) => res.once('drain', ok));
      await new Promise((ok) => setTimeout(ok, 15));
    }
    res.end();
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok({ server, url: `http://127.0.0.1:${server.address().port}/`, requests, gla })));
}

test('checkpoints from a URL and from local files: progress, cache, run, share, errors', { timeout: 5 * 60_000 }, async (t) => {
  assert.ok(existsSync(join(DIST, 'models.js')) && existsSync(join(DIST, 'checkpoint.js')), 'dist/ has no models.js: run `trunk build --release` first');
  mkdirSync(RESULTS, { recursive: true });
  const t0 = Date.now();
  const { server, url } = await serveStatic(DIST, { port: 0 });
  const models = await serveModels();
  const base = (name) => `${models.url}org/${name}/resolve/main/`;
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: QUIET_FLAGS });
  t.after(async () => {
    await browser.close();
    server.close();
    models.server.close();
  });

  // Console errors the browser logs for the failures this test provokes, and only those.
  const expected = [
    (text, at) => at.startsWith(base('tiny-nocors')) || text.includes(base('tiny-nocors')), // blocked by CORS
    (text, at) => /status of 404/.test(text) && [base('missing'), `${base('sharded')}model.safetensors`, `${base('huge')}model.safetensors`].some((u) => at.startsWith(u)),
  ];
  const problems = [];
  const expectedSeen = [];
  async function fresh(name) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, acceptDownloads: true });
    context.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const at = msg.location()?.url ?? '';
      if (expected.some((f) => f(msg.text(), at))) expectedSeen.push(msg.text());
      else problems.push(`${name}: console error${msg.worker() ? ' in a worker' : ''}: ${msg.text()} (${at})`);
    });
    const page = await context.newPage();
    page.on('pageerror', (err) => problems.push(`${name}: uncaught page error: ${err.message}`));
    page.on('crash', () => problems.push(`${name}: the page crashed`));
    return page;
  }
  const shot = (page, file) => page.screenshot({ path: join(RESULTS, `checkpoint-${file}.png`), fullPage: true }).catch(() => {});
  const count = (what) => models.requests.filter((r) => r === what).length;

  const step = stepper(t);

  const page = await fresh('first tab');
  /** Loads `url` through the form; resolves when the load ends (its list item, or the error). */
  async function loadUrl(p, u) {
    await p.fill('#lm-url', u);
    await p.click('#lm-load');
    await p.waitForFunction(() => ['loaded', 'failed'].includes(document.getElementById('load-model').dataset.state), null, { timeout: TIMEOUT });
    return p.getAttribute('#load-model', 'data-state');
  }
  async function loadFails(p, u, pattern, file) {
    const state = await loadUrl(p, u);
    const error = await p.locator('#lm-error').textContent();
    assert.equal(state, 'failed', `${u} loaded`);
    assert.match(error, pattern);
    await shot(p, file);
    return error;
  }
  const tiny = base('tiny');
  let results = null;
  let shareUrl = '';

  await step('the page opens with a "Load a model" part', async () => {
    await page.goto(`${url}?autorun=0`);
    await page.waitForFunction(() => document.getElementById('load-model')?.dataset.state === 'idle', null, { timeout: TIMEOUT });
    assert.equal(await page.getAttribute('#lm-url', 'type'), 'url');
    assert.match(await page.locator('label[for="lm-url"]').textContent(), /Model folder URL/);
    assert.match(await page.locator('#lm-cache').textContent(), /Model cache: empty/);
  });

  await step('a folder URL: downloaded with progress, checked, cached', async (st) => {
    // Every text the stage line shows, and the progress bar's values, as they change.
    await page.evaluate(() => {
      window.__stages = [];
      const stage = document.getElementById('lm-stage');
      const bar = document.getElementById('lm-progress');
      new MutationObserver(() => window.__stages.push([stage.textContent, bar.hasAttribute('value') ? bar.value : null]))
        .observe(stage, { childList: true, characterData: true, subtree: true });
    });
    const state = await loadUrl(page, tiny);
    assert.equal(state, 'loaded', await page.locator('#lm-error').textContent());
    const stages = await page.evaluate(() => window.__stages);
    const downloading = stages.filter(([s]) => /^Downloading model\.safetensors \(file 3 of 3\): [\d.]+ (kB|MB) of 5\.5\d MB$/.test(s));
    assert.ok(downloading.length >= 2, `progress shown while downloading: ${JSON.stringify(stages)}`);
    assert.ok(downloading.some(([, v]) => v > 0 && v < 1), 'the bar moved between 0 and 1');
    const item = page.locator(`#lm-list li[data-name="${tiny}"]`);
    assert.equal(await item.getAttribute('data-source'), 'network');
    assert.equal(await item.getAttribute('data-cached'), 'true');
    assert.match(await item.textContent(), /GLA, 2 layers.*downloaded in .* cached ✓; task heads: sst2/);
    await page.waitForFunction(() => document.getElementById('lm-cache').dataset.count === '1');
    assert.match(await page.locator('#lm-cache').textContent(), /Model cache: 1 model, 6\.10 MB/);
    for (const f of ['config.json', 'tokenizer.json', 'model.safetensors']) assert.equal(count(`GET /org/tiny/resolve/main/${f}`), 1, f);
    // It joined the builder's models.
    assert.equal(await page.locator(`#b-models input[value="${tiny}"]`).count(), 1);
    st.diagnostic(`downloaded and loaded in ${await item.getAttribute('data-ms')} ms (${stages.length} progress updates)`);
    await shot(page, 'url-loaded');
  });

  await step('loading it again reads the cache: nothing reaches the server', async (st) => {
    const before = models.requests.length;
    assert.equal(await loadUrl(page, tiny), 'loaded', await page.locator('#lm-error').textContent());
    const item = page.locator(`#lm-list li[data-name="${tiny}"]`);
    assert.equal(await item.getAttribute('data-source'), 'cache');
    assert.match(await item.textContent(), /read from the cache in .* cached ✓/);
    assert.deepEqual(models.requests.slice(before), [], 'no request for a cached model');
    assert.equal(await page.locator('#lm-list li').count(), 1, 'one item per model');
    st.diagnostic(`from the cache in ${await item.getAttribute('data-ms')} ms`);
    await shot(page, 'url-cached');
  });

  await step('an experiment naming it by its URL runs; its provenance has the files and their hashes', async (st) => {
    for (const m of ARCHS) await page.uncheck(`#b-models input[value="${m}"]`);
    await page.check(`#b-models input[value="${tiny}"]`);
    await page.selectOption('#b-backend', 'cpu');
    await page.fill('#b-limit', '6');
    await page.dispatchEvent('#b-limit', 'change');
    const spec = JSON.parse(await page.inputValue('#exp-spec'));
    assert.deepEqual(spec.models, [tiny]);
    await page.click('#exp-run');
    await page.waitForFunction(() => ['done', 'failed'].includes(document.getElementById('experiment').dataset.state), null, { timeout: TIMEOUT });
    assert.equal(await page.getAttribute('#experiment', 'data-state'), 'done', await page.locator('#exp-error').textContent());
    const [d] = await Promise.all([page.waitForEvent('download'), page.click('#exp-json')]);
    results = JSON.parse(readFileSync(await d.path(), 'utf8'));
    assert.deepEqual(results.units.map((u) => u.model), [tiny, tiny]);
    assert.ok(results.units.every((u) => u.n === 6 && u.readout === 'head sst2'));
    const rec = results.provenance.models.find((m) => m.name === tiny);
    assert.deepEqual(
      rec.files.map((f) => [f.path, f.bytes, f.sha256]),
      Object.entries(models.gla).sort(([a], [b]) => a.localeCompare(b)).map(([f, b]) => [f, b.length, sha256(b)]),
    );
    shareUrl = await page.inputValue('#exp-share');
    st.diagnostic(`run in ${await page.getAttribute('#experiment', 'data-seconds')} s; accuracy ${results.units.map((u) => `${u.split} ${u.metrics.find((x) => x.name === 'accuracy')?.value}`).join(', ')}`);
    await shot(page, 'run');
  });

  await step('its share link in a fresh browser downloads the model and gets the same numbers', async (st) => {
    const before = count('GET /org/tiny/resolve/main/model.safetensors');
    const other = await fresh('share link');
    const t1 = Date.now();
    await other.goto(shareUrl);
    await other.waitForFunction(() => document.getElementById('exp-link').dataset.check, null, { timeout: TIMEOUT });
    assert.equal(await other.getAttribute('#exp-link', 'data-check'), 'same', await other.locator('#exp-link').textContent());
    assert.equal(await other.getAttribute('#exp-link', 'data-bit-identical'), 'true');
    assert.equal(count('GET /org/tiny/resolve/main/model.safetensors'), before + 1, 'the other browser downloaded it');
    assert.equal(await other.getAttribute(`#lm-list li[data-name="${tiny}"]`, 'data-source'), 'network');
    st.diagnostic(`${((Date.now() - t1) / 1000).toFixed(1)} s from opening the link to the check`);
    await shot(other, 'share-link');
    await other.context().close();
  });

  await step('errors: no CORS, 404, not JSON, not a safetensors file, too large', async (st) => {
    const cors = await loadFails(page, base('tiny-nocors'), /config\.json: the server at http:\/\/127\.0\.0\.1:\d+ does not let this page read it \(CORS\), or is unreachable/, 'error-cors');
    await loadFails(page, base('missing'), /config\.json: HTTP 404 \(not found\) at http:.*\/org\/missing\/resolve\/main\/config\.json/, 'error-404');
    await loadFails(page, base('badjson'), /config\.json is not JSON/, 'error-json');
    await loadFails(page, base('garbage'), /model\.safetensors is not a safetensors file/, 'error-garbage');
    const huge = await loadFails(page, base('huge'), /too large for the page: .*6\.00 GB of weights as f32 need about .* more than the 4\.29 GB \(4 GiB\) a wasm32 module can address/, 'error-too-large');
    assert.equal(models.requests.filter((r) => r.includes('/org/huge/') && r.includes('-of-')).length, 0, 'no shard of the huge model was requested');
    await loadFails(page, 'ftp://example.org/model/', /only https:\/\/ addresses/, 'error-address');
    // A spec naming a folder that is not there: the run fails before it starts, naming the model and the file.
    await page.click('details:has(#exp-spec) > summary');
    await page.fill('#exp-spec', JSON.stringify({ models: [base('missing')], tasks: ['sst2'], splits: ['advglue'], backend: 'cpu', limit: 2 }));
    await page.click('#exp-run');
    await page.waitForFunction(() => ['done', 'failed'].includes(document.getElementById('experiment').dataset.state), null, { timeout: TIMEOUT });
    assert.equal(await page.getAttribute('#experiment', 'data-state'), 'failed');
    assert.match(await page.locator('#exp-error').textContent(), /^model http:.*\/org\/missing\/resolve\/main\/: config\.json: HTTP 404/);
    await page.click('details:has(#exp-spec) > summary');
    // Nothing that failed was cached.
    await page.waitForFunction(() => document.getElementById('lm-cache').dataset.count === '1');
    st.diagnostic(cors);
    st.diagnostic(huge);
  });

  await step('a sharded checkpoint (index and two shards) loads', async () => {
    assert.equal(await loadUrl(page, base('sharded')), 'loaded', await page.locator('#lm-error').textContent());
    const item = page.locator(`#lm-list li[data-name="${base('sharded')}"]`);
    assert.match(await item.textContent(), /model-00001-of-00002\.safetensors .* model-00002-of-00002\.safetensors/);
    await page.waitForFunction(() => document.getElementById('lm-cache').dataset.count === '2');
  });

  await step('a language model without any task head loads and is read zero-shot through its LM head', async (st) => {
    const lm = base('lmonly');
    assert.equal(await loadUrl(page, lm), 'loaded', await page.locator('#lm-error').textContent());
    const item = page.locator(`#lm-list li[data-name="${lm}"]`);
    await page.evaluate(() => { document.querySelector('#experiment details').open = true; });
    await page.fill('#exp-spec', JSON.stringify({ models: [lm], tasks: ['sst2'], splits: ['validation'], backend: 'cpu', limit: 6, bootstrap: 20 }));
    await page.click('#exp-run');
    await page.waitForFunction(() => ['done', 'failed'].includes(document.getElementById('experiment').dataset.state), null, { timeout: TIMEOUT });
    assert.equal(await page.getAttribute('#experiment', 'data-state'), 'done', await page.locator('#exp-error').textContent());
    const [d] = await Promise.all([page.waitForEvent('download'), page.click('#exp-json')]);
    const r = JSON.parse(readFileSync(await d.path(), 'utf8'));
    assert.equal(r.units[0].readout, 'prompt 0: "review: {a} sentiment:" → negative | positive');
    assert.match(await page.locator('#exp-report').textContent(), /Read zero-shot through the LM head/);
    await page.click('details:has(#exp-spec) > summary');
    st.diagnostic(`${await item.textContent()}; zero-shot accuracy on 6: ${r.units[0].metrics[0].value}`);
  });

  await step('local files: loaded as local:NAME, run; a link naming local files elsewhere says to load them first', async (st) => {
    await page.fill('#lm-name', 'gla-copy');
    const files = ['config.json', 'model.safetensors', 'tokenizer.json', 'README.md'].map((f) => join(GLA, f));
    await page.setInputFiles('#lm-files', files);
    await page.waitForFunction(() => ['loaded', 'failed'].includes(document.getElementById('load-model').dataset.state) && document.querySelector('#lm-list li[data-name="local:gla-copy"]') || document.getElementById('load-model').dataset.state === 'failed', null, { timeout: TIMEOUT });
    const item = page.locator('#lm-list li[data-name="local:gla-copy"]');
    assert.equal(await item.count(), 1, await page.locator('#lm-error').textContent());
    assert.equal(await item.getAttribute('data-source'), 'local');
    assert.match(await item.textContent(), /this tab only/);
    st.diagnostic(`local files read and loaded in ${await item.getAttribute('data-ms')} ms`);
    await shot(page, 'local');
    await page.locator('#load-model').screenshot({ path: join(RESULTS, 'checkpoint-part.png') }).catch(() => {});
    // A link naming them, opened in another browser: refused with what to do.
    const spec = { models: ['local:gla-copy'], tasks: ['sst2'], splits: ['advglue'], backend: 'cpu', limit: 2 };
    const other = await fresh('local link');
    await other.goto(`${url}#${fragmentOf({ spec })}`);
    await other.waitForFunction(() => document.getElementById('experiment').dataset.state === 'failed', null, { timeout: TIMEOUT });
    assert.match(await other.locator('#exp-error').textContent(), /model local:gla-copy: load the files gla-copy first/);
    await shot(other, 'local-link');
    await other.context().close();
  });

  await step('clearing the cache', async () => {
    await page.click('#lm-clear');
    await page.waitForFunction(() => document.getElementById('lm-cache').dataset.count === '0');
    assert.match(await page.locator('#lm-cache').textContent(), /empty \(cleared\)/);
    await shot(page, 'cleared');
  });

  await step('no unexpected console error', async (st) => {
    assert.deepEqual(problems, []);
    st.diagnostic(`${expectedSeen.length} expected console errors (CORS, 404s); ${((Date.now() - t0) / 1000).toFixed(1)} s in all`);
  });
});
