// The Trilemma core in a module Web Worker, so the page never freezes while it works.
//
// Two roles, from the script's query string (www/pool.js starts the helpers):
//   worker.js              the main worker: acquires the GPU, loads the models on the GPU and the
//                          CPU, classifies single texts, and is CPU worker 0 of a benchmark;
//   worker.js?role=helper  a helper: its own wasm instance with the models on the CPU only
//                          (start_cpu, no GPU), runs the batches of a job the pool hands it, and
//                          its share of an experiment's evaluation units.
//   &simulate=start-fail | crash   (helpers, fallback tests) throw before starting, or die on
//                          their first batch or experiment share without answering.
//
// Messages in:  {type: 'run', task, text, textPair} | {type: 'simulate-gpu-loss'} | {type: 'simulate-gpu-oom'}
//               | {type: 'experiment', spec, helpers} | {type: 'cancel-experiment'} | {type: 'experiment-delegated', run, json}
//               | {type: 'experiment-units', id, spec, units}   (helpers: their share of a run)
//               | {type: 'attack', folder, task, text, textPair, recipe, seed, budget, maxQueries}
//               | {type: 'prepare', id, task, split, n, batch} | {type: 'batches', id, model, batches, backend, warmUp}
//               | {type: 'model-load', url} | {type: 'model-load', files, name} | {type: 'model-cache', action: 'list' | 'clear'}
//                 (checkpoints from a URL or local files: checkpoint.js)
// Messages out: {type: 'ready', report} | {type: 'progress', stage, fraction}
//               | {type: 'result', report} | {type: 'error', message}
//               | {type: 'experiment-progress', progress} | {type: 'experiment-result', json}
//               | {type: 'experiment-error', message}
//               | {type: 'experiment-delegate', run, spec, shares} | {type: 'experiment-waiting', run}
//               | {type: 'attack-result', report} | {type: 'attack-error', message}
//               | {type: 'reply', id, report} | {type: 'error', id, message}   (answers to prepare / batches)
//               | {type: 'model-progress', name, source, file, index, count, loaded, total, bytes} | {type: 'model-loaded', name, info, source, cached, bytes, ms}
//               | {type: 'model-error', name, message} | {type: 'model-cache', available, entries, cleared}
import init, {
  start, start_cpu, classify, prepare, run_batches, simulate_gpu_loss, set_gpu_memory_headroom, run_experiment, set_experiment_cancelled, attack_text,
  experiment_plan, run_experiment_units,
  model_source, model_folder_url, model_config_summary, model_index_shards, model_safetensors_header, model_check_memory, inspect_model, gpu_limits,
} from './trilemma.js';
import { createCheckpoints } from './checkpoint.js';

// In the single-file copy (scripts/single-file.mjs) the worker is a blob: its query comes with the bundle.
const params = new URLSearchParams(globalThis.trilemmaBundle?.search ?? self.location.search);
const helper = params.get('role') === 'helper';
const simulate = params.get('simulate');

/** A readable message for anything thrown by wasm, the browser or our own code. */
function describe(err) {
  if (err instanceof Error) return err.message || err.name;
  if (typeof err === 'string') return err;
  try { return JSON.stringify(err); } catch { return String(err); }
}

function fail(err, context, id) {
  const message = describe(err);
  postMessage({ type: 'error', id, message: context ? `${context}: ${message}` : message });
}

self.addEventListener('error', (e) => fail(e.error ?? e.message, 'worker error'));
self.addEventListener('unhandledrejection', (e) => fail(e.reason, 'worker error'));

// One run at a time: a run that arrives while another is going waits for it.
let queue = Promise.resolve();
let experimentRunning = false;
let cancelPending = false;
// The run whose evaluation units helpers are running, and how to hand it their results.
let delegation = null; // {run, resolve}
let runs = 0;

/**
 * An experiment's units (experiment_plan: evaluations and attacks, each with its index and work) over `workers` CPU
 * workers (this one first): largest first, each to the least loaded, so the split depends only on the spec and the
 * number of workers. Returns the unit indices per worker.
 */
function shareUnits(units, workers) {
  const load = new Array(workers).fill(0);
  const shares = Array.from({ length: workers }, () => []);
  const order = [...units].sort((a, b) => b.work - a.work || a.index - b.index);
  for (const u of order) {
    let w = 0;
    for (let k = 1; k < workers; k++) if (load[k] < load[w]) w = k;
    shares[w].push(u.index);
    load[w] += u.work;
  }
  return shares;
}

const ready = (async () => {
  postMessage({ type: 'progress', stage: 'loading WebAssembly', fraction: 0 });
  await init();
  if (helper && simulate === 'start-fail') throw new Error('simulated helper failure at start');
  postMessage({ type: 'progress', stage: helper ? 'loading the three models on the CPU' : 'acquiring the GPU and loading the three models', fraction: 0 });
  const report = helper ? await start_cpu() : await start();
  postMessage({ type: 'ready', report });
  return true;
})().catch((err) => {
  fail(err, helper ? 'the helper worker did not start' : 'could not start the Trilemma core');
  return false;
});

const TYPES = ['run', 'experiment', 'experiment-units', 'attack', 'prepare', 'batches', 'simulate-gpu-loss', 'simulate-gpu-oom', 'model-load', 'model-cache'];

const checkpoints = createCheckpoints(
  { model_source, model_folder_url, model_config_summary, model_index_shards, model_safetensors_header, model_check_memory, inspect_model, gpu_limits },
  (msg) => postMessage(msg),
);

self.addEventListener('message', (e) => {
  const msg = e.data;
  // Cancel acts at once, outside the queue: the running experiment reads it between batches;
  // one still waiting in the queue starts cancelled (and returns no evaluations).
  if (msg?.type === 'cancel-experiment') {
    if (experimentRunning) set_experiment_cancelled(true);
    else cancelPending = true;
    return;
  }
  // The helpers' units arrive while the run waits for them: outside the queue, like Cancel.
  if (msg?.type === 'experiment-delegated') {
    if (delegation && delegation.run === msg.run) delegation.resolve(String(msg.json ?? ''));
    return;
  }
  if (!msg || !TYPES.includes(msg.type)) return;
  queue = queue.then(async () => {
    if (!(await ready)) {
      if (msg.type === 'attack') postMessage({ type: 'attack-error', message: 'the Trilemma core did not start, so nothing can run' });
      else if (msg.type === 'model-load') postMessage({ type: 'model-error', message: 'the Trilemma core did not start, so nothing can be loaded' });
      else if (msg.type === 'model-cache') postMessage({ type: 'model-cache', available: false, entries: [] });
      else fail('the Trilemma core did not start, so nothing can run', undefined, msg.id);
      return;
    }
    try {
      const onProgress = (stage, fraction) => postMessage({ type: 'progress', stage, fraction });
      switch (msg.type) {
        case 'simulate-gpu-loss':
          simulate_gpu_loss();
          return;
        case 'simulate-gpu-oom':
          set_gpu_memory_headroom(4096);
          return;
        case 'experiment': {
          set_experiment_cancelled(cancelPending);
          cancelPending = false;
          experimentRunning = true;
          try {
            const spec = String(msg.spec ?? '');
            // URL models are downloaded (or read from the cache) first; local ones must have been loaded in this tab.
            const models = await checkpoints.filesFor(spec);
            // On the CPU path, with bundled models, the helper workers take a share of the evaluation and attack units
            // (experiment_plan says when and which); the engine awaits their results after its own and runs whatever is
            // missing.
            let delegated = new Uint32Array(0);
            let results;
            const helpers = Math.max(0, Math.floor(Number(msg.helpers) || 0));
            let plan = null;
            try {
              if (helpers > 0) plan = experiment_plan(spec);
            } catch {
              // A bad spec: run_experiment says why.
            }
            if (plan?.cpu && plan.bundled && plan.units.length > 1) {
              const shares = shareUnits(plan.units, Math.min(helpers + 1, plan.units.length)).slice(1);
              delegated = Uint32Array.from(shares.flat());
              const run = ++runs;
              const answer = new Promise((resolve) => { delegation = { run, resolve }; });
              results = () => {
                postMessage({ type: 'experiment-waiting', run });
                return answer;
              };
              postMessage({ type: 'experiment-delegate', run, spec, shares });
            }
            const json = await run_experiment(spec, models, (progress) => postMessage({ type: 'experiment-progress', progress }), delegated, results);
            postMessage({ type: 'experiment-result', json });
          } catch (err) {
            postMessage({ type: 'experiment-error', message: describe(err) });
          } finally {
            experimentRunning = false;
            delegation = null;
          }
          return;
        }
        case 'experiment-units': {
          // A helper's share of the main worker's run (bundled models, the CPU path).
          if (helper && simulate === 'crash') {
            setTimeout(() => { throw new Error('simulated helper crash'); });
            await new Promise(() => {});
          }
          set_experiment_cancelled(cancelPending);
          cancelPending = false;
          experimentRunning = true;
          try {
            const json = await run_experiment_units(String(msg.spec ?? ''), Uint32Array.from(msg.units ?? []), () => {});
            postMessage({ type: 'reply', id: msg.id, report: json });
          } finally {
            experimentRunning = false;
          }
          return;
        }
        case 'model-load':
        case 'model-cache':
          await checkpoints.handle(msg);
          return;
        case 'attack': {
          // Errors are the attack panel's to show, not the classify panel's.
          try {
            const pair = msg.textPair == null ? undefined : String(msg.textPair);
            const report = await attack_text(String(msg.folder ?? ''), String(msg.task ?? ''), String(msg.text ?? ''), pair, String(msg.recipe ?? ''),
              Number(msg.seed), Number(msg.budget), Number(msg.maxQueries));
            postMessage({ type: 'attack-result', report });
          } catch (err) {
            postMessage({ type: 'attack-error', message: describe(err) });
          }
          return;
        }
        case 'prepare': {
          const n = Math.max(0, Math.floor(Number(msg.n) || 0));
          const batch = Math.max(0, Math.floor(Number(msg.batch) || 0));
          postMessage({ type: 'reply', id: msg.id, report: await prepare(String(msg.task), String(msg.split), n, batch) });
          return;
        }
        case 'batches': {
          if (helper && simulate === 'crash') {
            // Dies as a crashed worker does: an uncaught error, and no answer.
            setTimeout(() => { throw new Error('simulated helper crash'); });
            await new Promise(() => {});
          }
          const ids = Uint32Array.from(msg.batches ?? []);
          postMessage({ type: 'reply', id: msg.id, report: await run_batches(msg.model, ids, String(msg.backend), Boolean(msg.warmUp)) });
          return;
        }
        default: {
          const pair = msg.textPair ? String(msg.textPair) : undefined;
          const report = await classify(String(msg.task ?? 'sst2'), String(msg.text ?? ''), pair, onProgress);
          postMessage({ type: 'result', report });
        }
      }
    } catch (err) {
      fail(err, undefined, msg.id);
    }
  });
});
