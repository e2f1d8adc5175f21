import { initExperiment } from './experiment.js';
import { initPaper } from './paper.js';
import { initAttack } from './attack.js';
import { CpuPool, startWorker } from './pool.js';
import { initOffline } from './offline.js';
import { initModels } from './models.js';

// The page: DOM and messages only. All computing happens in worker.js (the Rust core) and, for
// the benchmark, in the CPU worker pool (pool.js: helper workers on the other cores), so the page
// stays responsive. Text from the user or the model is only ever set with textContent.

const $ = (id) => document.getElementById(id);
const el = {
  backend: $('backend'),
  cpu: $('cpu-workers'),
  form: $('run-form'),
  text: $('text'),
  run: $('run'),
  progress: $('progress'),
  stage: $('stage'),
  error: $('error'),
  task: $('task'),
  pairRow: $('pair-row'),
  textPair: $('text-pair'),
  result: $('result'),
  resultHeading: $('result-heading'),
  tokens: $('tokens'),
  table: $('models-table'),
  gpuNote: $('gpu-note'),
  models: $('models'),
  benchForm: $('bench-form'),
  benchN: $('bench-n'),
  benchBatch: $('bench-batch'),
  benchRun: $('bench-run'),
  benchTable: $('bench-table'),
  benchNote: $('bench-note'),
  version: $('version'),
};

let ready = false;
let running = false;
let autoRan = false;

// ---------------------------------------------------------------- errors

function describe(err) {
  if (err instanceof Error) return err.message || err.name;
  if (typeof err === 'string') return err;
  try { return JSON.stringify(err); } catch { return String(err); }
}

function showError(message) {
  el.error.textContent = message;
}

function clearError() {
  el.error.textContent = '';
}

window.addEventListener('error', (e) => showError(`Page error: ${describe(e.error ?? e.message)}`));
window.addEventListener('unhandledrejection', (e) => showError(`Page error: ${describe(e.reason)}`));

// ---------------------------------------------------------------- state of the controls

// body[data-state] = loading | ready | running | done | failed, and body[data-finished] counts
// finished runs: hooks for tests and for styling, never read by the logic here.
let finished = 0;
function setState(state) {
  document.body.dataset.state = state;
  if (state === 'done' || state === 'failed') document.body.dataset.finished = String(++finished);
}

function setBusy(busy) {
  running = busy;
  el.run.disabled = busy || !ready;
  el.benchRun.disabled = busy || !ready;
  el.result.setAttribute('aria-busy', String(busy));
}

function setProgress(stage, fraction) {
  el.stage.textContent = stage;
  if (typeof fraction === 'number' && Number.isFinite(fraction)) {
    el.progress.value = Math.min(1, Math.max(0, fraction));
  } else {
    el.progress.removeAttribute('value'); // indeterminate
  }
}

// ---------------------------------------------------------------- rendering

const backendName = (b) => (b.kind === 'webgpu' ? 'WebGPU' : 'CPU');
const pct = (p) => `${(p * 100).toFixed(2)} %`;
const sci = (x) => (x === 0 ? '0' : x.toExponential(2));

function renderStart(report) {
  const b = report.backend;
  const detail = b.kind === 'webgpu' ? b.device : (report.gpu_error || b.device);
  el.backend.textContent = `Backend: ${backendName(b)} — ${detail}`;
  el.backend.dataset.kind = b.kind;
  el.version.textContent = `trilemma ${report.version} · the core runs in a Web Worker`;
  renderModels(report.models);
}

// "CPU: K workers" or "CPU: 1 thread — why"; data-workers for tests.
function renderCpu(status) {
  el.cpu.textContent = status.text;
  el.cpu.dataset.workers = String(status.workers);
  el.cpu.dataset.settled = String(!status.text.includes('starting'));
}

function renderModels(models) {
  el.models.replaceChildren(
    ...models.map((m) => {
      const li = document.createElement('li');
      li.dataset.folder = m.folder;
      li.dataset.loaded = String(m.architecture !== null);
      if (m.architecture === null) {
        li.className = 'bad';
        li.textContent = `${m.folder}: not loaded: ${m.error}`;
      } else {
        const mb = (m.bytes / 1e6).toFixed(1);
        const where = m.on_gpu ? 'CPU and WebGPU' : 'CPU';
        li.textContent = `${m.architecture} (${m.folder}/): ${mb} MB, loaded in ${m.load_ms.toFixed(0)} ms on ${where}; ` +
          `heads: ${m.tasks.join(', ')}${m.error ? ` · ${m.error}` : ''}`;
      }
      return li;
    }),
  );
}

function cell(row, text, cls) {
  const c = row.insertCell();
  c.textContent = text;
  if (cls) c.className = cls;
  return c;
}

function renderResult(r) {
  const shown = r.text_pair ? `“${r.text}” / “${r.text_pair}”` : `“${r.text}”`;
  el.resultHeading.textContent = `${r.task.toUpperCase()}: ${shown}`;
  el.tokens.replaceChildren(
    ...r.tokens.map((t) => {
      const li = document.createElement('li');
      li.className = 'chip';
      li.textContent = t;
      return li;
    }),
  );

  const body = el.table.tBodies[0];
  body.replaceChildren();
  const notes = [];
  for (const m of r.rows) {
    const row = body.insertRow();
    row.dataset.folder = m.folder;
    const name = document.createElement('th');
    name.scope = 'row';
    name.textContent = m.architecture || m.folder;
    row.append(name);
    if (m.cpu) {
      row.dataset.cpuLabel = m.cpu.label_name;
      cell(row, m.cpu.label_name, 'label');
      const conf = row.insertCell();
      const meter = document.createElement('meter');
      meter.min = 0;
      meter.max = 1;
      meter.value = m.cpu.probs[m.cpu.label];
      meter.setAttribute('aria-hidden', 'true');
      const label = document.createElement('span');
      label.textContent = pct(m.cpu.probs[m.cpu.label]);
      conf.append(meter, ' ', label);
      cell(row, `${m.cpu.ms.toFixed(1)} ms`);
    } else {
      cell(row, '—');
      cell(row, '—');
      cell(row, '—');
    }
    if (m.gpu) {
      row.dataset.gpuLabel = m.gpu.label_name;
      cell(row, m.gpu.label_name, 'label');
      cell(row, `${m.gpu.ms.toFixed(1)} ms`);
    } else {
      cell(row, 'not run');
      cell(row, '—');
    }
    if (m.max_abs_diff === null) {
      cell(row, '—');
    } else {
      const ok = m.max_abs_diff <= m.tolerance && m.same_label;
      row.dataset.maxAbsDiff = String(m.max_abs_diff);
      row.dataset.tolerance = String(m.tolerance);
      row.dataset.withinTolerance = String(m.max_abs_diff <= m.tolerance);
      row.dataset.sameLabel = String(m.same_label);
      cell(row, `${ok ? '✓' : '✗'} ${sci(m.max_abs_diff)} (tolerance ${sci(m.tolerance)})`, ok ? 'ok' : 'bad');
    }
    if (m.error) notes.push(`${m.architecture || m.folder}: ${m.error}`);
  }
  if (r.gpu_error) notes.unshift(`GPU: ${r.gpu_error} (the CPU results stand)`);
  el.gpuNote.hidden = notes.length === 0;
  el.gpuNote.textContent = notes.join(' · ');
  el.result.hidden = false;
}

// Pair tasks take a second text; a first switch to one fills in an example pair.
const PAIR_EXAMPLES = {
  mrpc: ['The company said profits rose in the third quarter .', 'Profits increased in the third quarter , the company said .'],
  qqp: ['How do I learn to cook ?', 'What is the best way to learn cooking ?'],
  mnli: ['A man is playing a guitar on stage .', 'A man is performing music .'],
  qnli: ['What color is the sky ?', 'On a clear day the sky is blue .'],
  rte: ['The cat sat on the mat all afternoon .', 'A cat was on the mat .'],
};
const PAIR_TASKS = new Set(Object.keys(PAIR_EXAMPLES));

function syncTask() {
  const pair = PAIR_TASKS.has(el.task.value);
  el.pairRow.hidden = !pair;
  if (pair && !el.textPair.value) [el.text.value, el.textPair.value] = PAIR_EXAMPLES[el.task.value];
}
el.task.addEventListener('change', syncTask);

function renderBench(r) {
  const body = el.benchTable.tBodies[0];
  body.replaceChildren();
  const rate = (x) => (x === null ? '—' : x.toFixed(1));
  const mb = (b) => `${(b / 1e6).toFixed(2)} MB`;
  for (const m of r.rows) {
    const row = body.insertRow();
    row.dataset.folder = m.folder;
    if (m.cpu_examples_per_s !== null) row.dataset.cpu = String(m.cpu_examples_per_s);
    if (m.cpu_workers !== null) row.dataset.cpuWorkers = String(m.cpu_workers);
    if (m.batches_by_worker !== null) row.dataset.batchesByWorker = JSON.stringify(m.batches_by_worker);
    if (m.gpu_examples_per_s !== null) row.dataset.gpu = String(m.gpu_examples_per_s);
    const name = document.createElement('th');
    name.scope = 'row';
    name.textContent = m.architecture || m.folder;
    row.append(name);
    cell(row, `${m.tokens} in ${m.examples}`);
    cell(row, m.cpu_examples_per_s === null ? '—' : `${rate(m.cpu_examples_per_s)} (${m.cpu_workers === 1 ? '1 thread' : `${m.cpu_workers} workers`})`);
    cell(row, rate(m.gpu_examples_per_s));
    if (m.same_labels !== null) row.dataset.sameLabels = String(m.same_labels);
    cell(row, m.same_labels === null ? '—' : `${m.same_labels} of ${m.examples} · max Δ ${sci(m.max_abs_diff)}`);
    cell(row, mb(m.weight_bytes));
    cell(row, mb(m.weight_bytes_f32));
    if (m.error) showError(`${m.architecture || m.folder}: ${m.error}`);
  }
  el.benchTable.dataset.backend = r.backend.device;
  el.benchTable.dataset.workers = String(r.cpu.workers);
  el.benchTable.hidden = false;
  // What ran the CPU column, and any helper that stopped during the run (its batches were redone).
  el.benchNote.textContent = [`${r.cpu.text}.`, ...r.events.map((e) => `${e}.`)].join(' ');
  el.benchNote.dataset.events = String(r.events.length);
  el.benchNote.hidden = false;
  // Test hook (tests/e2e, scripts/bench-browser.mjs): the last report, with every CPU logit.
  window.trilemmaBench = r;
}

// ---------------------------------------------------------------- the worker

const worker = startWorker('', 'trilemma');
// Helper workers for the CPU work of the benchmark and of experiments: `?workers=N` forces N CPU workers (1: one thread);
// `?simulate=helper-start-fail|helper-crash` makes helper 1 fail (the fallback tests).
const pool = new CpuPool(worker, {
  search: window.location.search,
  cores: navigator.hardwareConcurrency,
  simulate: new URLSearchParams(window.location.search).get('simulate'),
  onStatus: renderCpu,
});
renderCpu(pool.status());
initOffline();
const experiment = initExperiment(worker, pool);
// The paper view builds its cards once the wasm module is on this thread; it runs claims through the experiment panel.
const paper = initPaper(experiment).catch((err) => {
  document.getElementById('paper-claims').textContent = `The paper view could not start: ${describe(err)}`;
  return null;
});
const attack = initAttack(worker);
const models = initModels(worker); // Load a model: www/models.js, after the builder it joins

function run() {
  if (!ready || running) return;
  clearError();
  setBusy(true);
  setState('running');
  setProgress('starting', 0);
  const pair = PAIR_TASKS.has(el.task.value) ? el.textPair.value : '';
  worker.postMessage({ type: 'run', task: el.task.value, text: el.text.value, textPair: pair });
}

worker.addEventListener('message', (e) => {
  const msg = e.data;
  if (pool.handleMain(msg)) return; // an answer to the pool (benchmark batches)
  if (typeof msg?.type === 'string' && msg.type.startsWith('experiment-')) {
    experiment.onMessage(msg);
    return;
  }
  if (typeof msg?.type === 'string' && msg.type.startsWith('attack-')) {
    attack.onMessage(msg);
    return;
  }
  if (typeof msg?.type === 'string' && msg.type.startsWith('model-')) {
    models.onMessage(msg);
    return;
  }
  switch (msg?.type) {
    case 'ready':
      ready = true;
      renderStart(msg.report);
      setProgress('ready', 1);
      setBusy(false);
      setState('ready');
      experiment.ready();
      paper.then((p) => p?.ready());
      attack.ready(msg.report);
      models.ready();
      // `?simulate=gpu-lost` destroys the GPU device first, `?simulate=gpu-oom` leaves it no
      // memory for activations (the fallback tests).
      {
        const simulate = new URLSearchParams(window.location.search).get('simulate');
        if (simulate === 'gpu-lost') worker.postMessage({ type: 'simulate-gpu-loss' });
        if (simulate === 'gpu-oom') worker.postMessage({ type: 'simulate-gpu-oom' });
      }
      if (!autoRan) {
        autoRan = true;
        run();
      }
      break;
    case 'progress':
      setProgress(msg.stage, msg.fraction);
      break;
    case 'result':
      renderResult(msg.report);
      setProgress('done', 1);
      setBusy(false);
      setState('done');
      break;
    case 'error':
      showError(msg.message);
      if (!ready) el.backend.textContent = 'Backend: unavailable — the core did not start';
      setProgress('failed', 0);
      setBusy(false);
      setState('failed');
      break;
    default:
      showError(`Unexpected message from the worker: ${describe(msg)}`);
  }
});

worker.addEventListener('error', (e) => {
  // A module worker that fails to load reports no details: say what to check.
  showError(e.message
    ? `Worker error: ${e.message}`
    : 'Worker error: worker.js or trilemma.js could not be loaded.');
  el.backend.textContent = 'Backend: unavailable — the worker failed';
  setProgress('failed', 0);
  ready = false;
  setBusy(false);
  setState('failed');
  attack.unavailable();
});

worker.addEventListener('messageerror', () => showError('Worker error: a message could not be read.'));

el.benchForm.addEventListener('submit', (e) => {
  e.preventDefault();
  if (!ready || running) return;
  clearError();
  setBusy(true);
  setState('running');
  setProgress('benchmark: starting', 0);
  const n = Math.floor(Number(el.benchN.value));
  const batch = Math.floor(Number(el.benchBatch.value));
  (async () => {
    if (!(n >= 1)) throw new Error('the number of sentences must be positive');
    return pool.bench({ task: 'sst2', split: 'validation', n, batch }, setProgress);
  })().then(
    (report) => {
      renderBench(report);
      setProgress('done', 1);
      setBusy(false);
      setState('done');
    },
    (err) => {
      showError(`Benchmark: ${describe(err)}`);
      setProgress('failed', 0);
      setBusy(false);
      setState('failed');
    },
  );
});

el.form.addEventListener('submit', (e) => {
  e.preventDefault();
  run();
});
