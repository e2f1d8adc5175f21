// The experiment panel: the builder (www/builder.js) writes a spec (JSON), which goes to the worker; the worker runs
// it with the engine that `trilemma run` uses and sends progress after every batch; Cancel stops after the current
// batch and keeps the finished evaluations. The report is rendered here, on the main thread, by the same Rust report
// code as `trilemma report` (its charts measure text with the DOM, which a worker lacks).
//
// Share: a finished run puts the spec and its numbers in the address (`#x1.…`, experiment::share); opening such a
// link re-runs the spec on the CPU path and checks the numbers against the link's. Results files (JSON) can be
// opened to view, and two side by side to compare.
//
// Nothing from a spec, a link or a results file reaches the page as HTML except through the Rust report code, which
// escapes every text; everything else is set with textContent.
import init, { report_fragment, report_document, report_csv, share_link, open_link, compare_link, compare_results } from './trilemma.js';
import { initBuilder } from './builder.js';
import { inspect } from './inspector.js';

// What the page runs when it is opened without a link: the three bundled models on the same SST-2 examples, clean
// (the GLUE originals of the AdvGLUE examples) and adversarial (AdvGLUE), in seconds.
export const DEFAULT_SPEC = {
  name: 'The three bundled models on SST-2: clean vs AdvGLUE',
  models: ['transformer', 'gla', 'hgrn_bit'],
  tasks: ['sst2'],
  splits: ['advglue-original', 'advglue'],
  backend: 'auto',
  seed: 42,
  bootstrap: 1000,
  batch: 32,
};

const $ = (id) => document.getElementById(id);

// The wasm module on this thread, for reports and links (loaded on first use).
let reportCore = null;
export function core() {
  reportCore ??= init();
  return reportCore;
}

function download(anchor, text, type, name) {
  if (anchor.href) URL.revokeObjectURL(anchor.href);
  anchor.href = URL.createObjectURL(new Blob([text], { type }));
  anchor.download = name;
  anchor.hidden = false;
}

const describe = (err) => (err instanceof Error ? err.message : String(err?.message ?? err));
const fixed = (x) => (x == null ? '—' : (Math.round(x * 1e6) / 1e6).toString());

/** A table of compared numbers (experiment::share::Row), built with textContent only. */
function rowsTable(rows, heads, onlyDiffering) {
  const table = document.createElement('table');
  const head = table.createTHead().insertRow();
  for (const h of ['number', ...heads, '']) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = h;
    head.append(th);
  }
  const body = table.createTBody();
  for (const r of rows.filter((r) => !onlyDiffering || !r.same)) {
    const tr = body.insertRow();
    tr.dataset.same = String(r.same);
    for (const v of [r.label, fixed(r.link), fixed(r.now), r.same ? '✓' : '✗']) {
      const td = tr.insertCell();
      td.textContent = v;
    }
    tr.cells[0].className = 'l';
  }
  return table;
}

/**
 * The panel, running specs in `worker` (the main worker); `pool` (www/pool.js) runs a share of a CPU run's evaluation
 * units in its helper workers.
 */
export function initExperiment(worker, pool = null) {
  const el = {
    panel: $('experiment'),
    spec: $('exp-spec'),
    run: $('exp-run'),
    cancel: $('exp-cancel'),
    progress: $('exp-progress'),
    stage: $('exp-stage'),
    error: $('exp-error'),
    report: $('exp-report'),
    json: $('exp-json'),
    html: $('exp-html'),
    csv: $('exp-csv'),
    shareRow: $('exp-share-row'),
    share: $('exp-share'),
    copy: $('exp-copy'),
    link: $('exp-link'),
    importer: $('exp-import'),
    compare: $('exp-compare'),
    inspector: $('exp-inspector'),
  };
  let ready = false;
  let running = false;
  let started = 0;
  // The link this run was opened from (its fragment), checked when the run finishes.
  let fromLink = null;
  // Who asked for this run through `run` (the paper view): told the results JSON, or why there is none.
  let onResult = null;
  const answer = (json, error) => {
    const cb = onResult;
    onResult = null;
    cb?.(json, error);
  };
  const builder = initBuilder({ textarea: el.spec, onChange: () => { el.error.textContent = ''; } });
  el.spec.value = JSON.stringify(DEFAULT_SPEC, null, 2);
  builder.show(DEFAULT_SPEC);
  // On input, not change: a change event fires on blur, and the note it may show would move the Run button under
  // the pointer that is clicking it.
  el.spec.addEventListener('input', () => {
    try {
      builder.show(JSON.parse(el.spec.value));
    } catch {
      // Shown as an error when run.
    }
  });

  const setState = (state) => {
    el.panel.dataset.state = state;
    running = state === 'running';
    el.run.disabled = running || !ready;
    el.cancel.disabled = !running;
  };
  setState('loading');

  // Helpers' notes on the current run (a helper lost mid-run), shown with its end.
  let helperEvents = [];

  async function start() {
    if (!ready || running) return;
    el.error.textContent = '';
    try {
      JSON.parse(el.spec.value);
    } catch (err) {
      el.error.textContent = `The spec is not valid JSON: ${err.message}`;
      return;
    }
    setState('running');
    started = performance.now();
    el.progress.value = 0;
    el.stage.textContent = 'loading models and data';
    el.shareRow.hidden = true;
    el.panel.dataset.workers = '1';
    helperEvents = [];
    // Helpers still loading their models (the page just opened) are given a moment to join.
    if (pool) await pool.settle(3000);
    worker.postMessage({ type: 'experiment', spec: el.spec.value, helpers: pool ? pool.helperCount() : 0 });
  }

  async function show(json) {
    await core();
    el.report.innerHTML = report_fragment(json);
    el.compare.replaceChildren();
    const r = JSON.parse(json);
    inspect(el.inspector, r);
    const name = (r.spec.name || 'trilemma').replace(/[^A-Za-z0-9_-]+/g, '-').slice(0, 60);
    download(el.json, json, 'application/json', `${name}-results.json`);
    download(el.html, report_document(json), 'text/html', `${name}-report.html`);
    download(el.csv, report_csv(json), 'text/csv', `${name}-predictions.csv`);
    return r;
  }

  // A finished run: its link (spec and numbers) into the address and the share field.
  function share(json) {
    try {
      const fragment = share_link(json);
      const url = `${location.href.split('#')[0]}#${fragment}`;
      history.replaceState(null, '', `#${fragment}`);
      el.share.value = url;
      el.shareRow.hidden = false;
    } catch (err) {
      el.share.value = '';
      el.shareRow.hidden = true;
      el.link.textContent = `No share link: ${describe(err)}`;
    }
  }

  // The numbers of a run opened from a link against the link's.
  function check(fragment, json) {
    const c = compare_link(fragment, json);
    const differ = c.rows.filter((r) => !r.same).length;
    el.link.dataset.check = c.same ? 'same' : 'differ';
    el.link.dataset.bitIdentical = String(c.bit_identical);
    const p = document.createElement('p');
    p.className = c.same ? 'check ok' : 'check bad';
    const bits = c.bit_identical === true ? ', bit-identical results'
      : c.bit_identical === false ? ' (the predictions differ in the last bits)'
        : ` (the link's numbers came from ${c.link_backend}, this run from ${c.backend})`;
    p.textContent = c.same
      ? `✓ Same numbers as the link: all ${c.rows.length} equal${bits}.`
      : `✗ ${differ} of ${c.rows.length} numbers differ from the link's${bits}:`;
    el.link.replaceChildren(p);
    if (!c.same) el.link.append(rowsTable(c.rows, ['in the link', 'this run'], true));
  }

  el.run.addEventListener('click', () => {
    fromLink = null;
    el.link.replaceChildren();
    delete el.link.dataset.check;
    start();
  });
  el.cancel.addEventListener('click', () => {
    if (!running) return;
    el.stage.textContent = 'cancelling after the current batch…';
    worker.postMessage({ type: 'cancel-experiment' });
    pool?.cancelExperiment();
  });
  el.copy.addEventListener('click', async () => {
    el.share.select();
    try {
      await navigator.clipboard.writeText(el.share.value);
      el.copy.textContent = 'Copied';
    } catch {
      el.copy.textContent = 'Select and copy';
    }
    setTimeout(() => { el.copy.textContent = 'Copy link'; }, 2000);
  });

  // Results files: one is shown as a report; two side by side with their numbers compared.
  el.importer.addEventListener('change', async () => {
    const files = [...el.importer.files].slice(0, 2);
    el.importer.value = '';
    if (!files.length) return;
    el.error.textContent = '';
    await core();
    const opened = [];
    for (const f of files) {
      if (f.size > 64 * 1024 * 1024) {
        el.error.textContent = `${f.name}: ${(f.size / 1048576).toFixed(0)} MB is too large for a results file (64 MB at most)`;
        return;
      }
      const json = await f.text();
      try {
        opened.push({ name: f.name, json, html: report_fragment(json) });
      } catch (err) {
        el.error.textContent = `${f.name} is not a Trilemma results file: ${describe(err)}`;
        return;
      }
    }
    el.panel.dataset.imported = String(opened.length);
    if (opened.length === 1) {
      el.compare.replaceChildren();
      el.report.innerHTML = opened[0].html;
      inspect(el.inspector, JSON.parse(opened[0].json));
      el.stage.textContent = `showing ${opened[0].name}`;
      return;
    }
    const c = compare_results(opened[0].json, opened[1].json);
    const summary = document.createElement('p');
    summary.className = c.same ? 'check ok' : 'check bad';
    summary.textContent = c.same
      ? `✓ ${opened[0].name} and ${opened[1].name} have the same ${c.rows.length} numbers${c.bit_identical ? ', bit-identical' : ''}.`
      : `${c.rows.filter((r) => !r.same).length} of ${c.rows.length} numbers differ between ${opened[0].name} and ${opened[1].name}.`;
    const h = document.createElement('h2');
    h.textContent = 'Compared';
    const grid = document.createElement('div');
    grid.className = 'side-by-side';
    for (const o of opened) {
      const col = document.createElement('div');
      const title = document.createElement('h2');
      title.textContent = o.name;
      const body = document.createElement('div');
      body.innerHTML = o.html;
      col.append(title, body);
      grid.append(col);
    }
    el.report.replaceChildren();
    el.inspector.replaceChildren();
    el.compare.dataset.same = String(c.same);
    el.compare.replaceChildren(h, summary, rowsTable(c.rows, [opened[0].name, opened[1].name], false), grid);
    el.stage.textContent = `comparing ${opened[0].name} and ${opened[1].name}`;
  });

  // Opened from a link: its spec replaces the default, on the CPU path (the one that reproduces bit for bit).
  async function openLink(fragment) {
    await core();
    let link;
    try {
      link = JSON.parse(open_link(fragment));
    } catch (err) {
      el.link.dataset.check = 'broken';
      const p = document.createElement('p');
      p.className = 'check bad';
      p.textContent = describe(err);
      el.link.replaceChildren(p);
      return false;
    }
    const spec = { ...link.spec, backend: 'cpu' };
    el.spec.value = JSON.stringify(spec, null, 2);
    builder.show(spec);
    fromLink = link.numbers ? fragment : null;
    const p = document.createElement('p');
    p.textContent = `Opened a shared experiment${spec.name ? `: ${spec.name}` : ''}. Re-running it on the CPU path${link.numbers ? ' to check its numbers' : ''}…`;
    el.link.replaceChildren(p);
    return true;
  }
  const params = new URLSearchParams(location.search);
  const hash = location.hash.slice(1);
  const opening = hash ? openLink(hash) : Promise.resolve(params.get('autorun') !== '0');

  return {
    /** Runs `spec` (an object) here, as if built in the form; `done(json, error)` when it ends. */
    run(spec, done) {
      if (!ready || running) {
        done(null, running ? 'another experiment is running: wait for it or cancel it' : 'the core is still loading');
        return;
      }
      el.spec.value = JSON.stringify(spec, null, 2);
      builder.show(spec);
      fromLink = null;
      el.link.replaceChildren();
      delete el.link.dataset.check;
      onResult = done;
      start();
      el.panel.scrollIntoView({ behavior: 'smooth', block: 'start' });
    },
    ready() {
      ready = true;
      if (el.panel.dataset.state === 'loading') setState('idle');
      // With no link, the default comparison; with a link, its spec (unless the link is broken).
      opening.then((go) => { if (go) start(); });
    },
    onMessage(msg) {
      if (msg.type === 'experiment-delegate') {
        // The main worker's plan: these evaluation and attack units run in the helpers, their results go back to it.
        const helpers = msg.shares.filter((s) => s.length).length;
        el.panel.dataset.workers = String(1 + helpers);
        const answer = pool ? pool.experimentUnits(msg.spec, msg.shares) : Promise.resolve({ json: '{"units": [], "attacks": []}', events: [] });
        answer.then(({ json, events }) => {
          helperEvents = events;
          // A helper that failed delivered nothing: its units ran in the main worker.
          if (events.length) el.panel.dataset.workers = String(Math.max(1, 1 + helpers - events.length));
          worker.postMessage({ type: 'experiment-delegated', run: msg.run, json });
        });
        return;
      }
      if (msg.type === 'experiment-waiting') {
        el.stage.textContent = `waiting for the other CPU workers' evaluations (${el.panel.dataset.workers} workers)`;
        return;
      }
      if (msg.type === 'experiment-progress') {
        const p = msg.progress;
        el.progress.value = p.fraction;
        // An attack unit names its recipe (its count is of attacked examples); the repair and perplexity stages name
        // themselves (their counts are optimiser steps and models).
        const stage = p.attack === 'repair' || p.attack === 'perplexity (LM head)';
        const what = p.attack ? (stage ? ` · ${p.attack}` : ` · attack ${p.attack}`) : '';
        const left = p.fraction > 0.02 ? ` · about ${Math.ceil(((performance.now() - started) / 1000) * (1 - p.fraction) / p.fraction)} s left` : '';
        el.stage.textContent = `${p.unit + 1}/${p.units}: ${p.model} · ${p.task} ${p.split}${what} · ${p.done}/${p.total}${left}`;
      } else if (msg.type === 'experiment-result') {
        const seconds = ((performance.now() - started) / 1000).toFixed(1);
        const status = JSON.parse(msg.json).status;
        el.panel.dataset.seconds = seconds;
        el.panel.dataset.unitsDone = String(status.units_done);
        const workers = Number(el.panel.dataset.workers) > 1 ? ` on ${el.panel.dataset.workers} CPU workers` : '';
        const notes = helperEvents.length ? ` (${helperEvents.join('; ')})` : '';
        el.stage.textContent = status.cancelled
          ? `cancelled after ${seconds} s: ${status.units_done} of ${status.units_total} evaluations kept${notes}`
          : `done in ${seconds} s${workers}${notes}`;
        el.progress.value = status.cancelled ? el.progress.value : 1;
        show(msg.json)
          .then(() => {
            if (!status.cancelled) share(msg.json);
            if (fromLink && !status.cancelled) check(fromLink, msg.json);
            fromLink = null;
            setState(status.cancelled ? 'cancelled' : 'done');
            answer(status.cancelled ? null : msg.json, status.cancelled ? 'cancelled' : null);
          })
          .catch((err) => {
            el.error.textContent = `The report could not be drawn: ${describe(err)}`;
            setState('failed');
            answer(null, describe(err));
          });
      } else if (msg.type === 'experiment-error') {
        pool?.cancelExperiment();
        el.error.textContent = msg.message;
        el.stage.textContent = 'failed';
        fromLink = null;
        setState('failed');
        answer(null, msg.message);
      }
    },
  };
}
