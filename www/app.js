// The page: DOM and messages only. All computing happens in worker.js (the Rust core), so the
// page stays responsive. Text from the user or the model is only ever set with textContent.

const $ = (id) => document.getElementById(id);
const el = {
  backend: $('backend'),
  form: $('run-form'),
  text: $('text'),
  run: $('run'),
  progress: $('progress'),
  stage: $('stage'),
  error: $('error'),
  result: $('result'),
  resultHeading: $('result-heading'),
  tokens: $('tokens'),
  ids: $('ids'),
  diff: $('diff'),
  gpuNote: $('gpu-note'),
  cpuInfo: $('cpu-info'),
  gpuInfo: $('gpu-info'),
  cpuTop5: $('cpu-top5'),
  gpuTop5: $('gpu-top5'),
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
}

function renderTop5(table, run) {
  const body = table.tBodies[0];
  body.replaceChildren();
  table.hidden = !run;
  if (!run) return;
  for (const { class: cls, prob } of run.top5) {
    const row = body.insertRow();
    const name = row.insertCell();
    name.textContent = `class ${cls}`;
    const value = row.insertCell();
    const meter = document.createElement('meter');
    meter.min = 0;
    meter.max = 1;
    meter.value = prob;
    meter.setAttribute('aria-hidden', 'true');
    const label = document.createElement('span');
    label.textContent = pct(prob);
    value.append(meter, ' ', label);
  }
}

function runInfo(run) {
  return `${run.backend.device} · ${run.ms.toFixed(1)} ms`;
}

function renderResult(r) {
  el.resultHeading.textContent = `Result for “${r.text}”`;

  el.tokens.replaceChildren(
    ...r.tokens.map((t) => {
      const li = document.createElement('li');
      li.className = 'chip';
      li.textContent = t;
      return li;
    }),
  );
  el.ids.textContent = r.ids.join(' ');

  el.cpuInfo.textContent = runInfo(r.cpu);
  renderTop5(el.cpuTop5, r.cpu);
  el.gpuInfo.textContent = r.gpu ? runInfo(r.gpu) : 'not run (see above)';
  renderTop5(el.gpuTop5, r.gpu);

  const d = el.diff;
  d.dataset.tolerance = String(r.tolerance);
  if (r.max_abs_diff === null || r.within_tolerance === null) {
    delete d.dataset.maxAbsDiff;
    delete d.dataset.withinTolerance;
    d.className = 'diff';
    d.textContent = 'No GPU result to compare with the CPU.';
  } else {
    const ok = r.within_tolerance;
    d.dataset.maxAbsDiff = String(r.max_abs_diff);
    d.dataset.withinTolerance = String(ok);
    d.className = ok ? 'diff ok' : 'diff bad';
    d.textContent =
      `${ok ? '✓' : '✗'} max |GPU − CPU| = ${sci(r.max_abs_diff)} ` +
      `${ok ? '≤' : '>'} tolerance ${sci(r.tolerance)} ` +
      `(${ok ? 'within' : 'outside'} tolerance) · ${r.classes} classes, mean over ${r.ids.length} tokens`;
  }
  el.gpuNote.hidden = !r.gpu_error;
  el.gpuNote.textContent = r.gpu_error ? `GPU: ${r.gpu_error}` : '';

  el.result.hidden = false;
}

// ---------------------------------------------------------------- the worker

const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'trilemma' });

function run() {
  if (!ready || running) return;
  clearError();
  setBusy(true);
  setState('running');
  setProgress('starting', 0);
  worker.postMessage({ type: 'run', text: el.text.value });
}

worker.addEventListener('message', (e) => {
  const msg = e.data;
  switch (msg?.type) {
    case 'ready':
      ready = true;
      renderStart(msg.report);
      setProgress('ready', 1);
      setBusy(false);
      setState('ready');
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
});

worker.addEventListener('messageerror', () => showError('Worker error: a message could not be read.'));

el.form.addEventListener('submit', (e) => {
  e.preventDefault();
  run();
});
