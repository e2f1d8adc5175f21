// The Trilemma core in a module Web Worker, so the page never freezes while it works.
//
// Messages in:  {type: 'run', task, text, textPair} | {type: 'bench', n, batch}
//               | {type: 'experiment', spec} | {type: 'cancel-experiment'}
//               | {type: 'simulate-gpu-loss'} | {type: 'simulate-gpu-oom'} (tests of the CPU fallback)
// Messages out: {type: 'ready', report} | {type: 'progress', stage, fraction}
//               | {type: 'result', report} | {type: 'error', message}
//               | {type: 'experiment-progress', progress} | {type: 'experiment-result', json}
//               | {type: 'experiment-error', message}
import init, { start, classify, bench, simulate_gpu_loss, set_gpu_memory_headroom, run_experiment, cancel_experiment } from './trilemma.js';

/** A readable message for anything thrown by wasm, the browser or our own code. */
function describe(err) {
  if (err instanceof Error) return err.message || err.name;
  if (typeof err === 'string') return err;
  try { return JSON.stringify(err); } catch { return String(err); }
}

function fail(err, context) {
  const message = describe(err);
  postMessage({ type: 'error', message: context ? `${context}: ${message}` : message });
}

self.addEventListener('error', (e) => fail(e.error ?? e.message, 'worker error'));
self.addEventListener('unhandledrejection', (e) => fail(e.reason, 'worker error'));

// One run at a time: a run that arrives while another is going waits for it.
let queue = Promise.resolve();

const ready = (async () => {
  postMessage({ type: 'progress', stage: 'loading WebAssembly', fraction: 0 });
  await init();
  postMessage({ type: 'progress', stage: 'acquiring the GPU and loading the three models', fraction: 0 });
  const report = await start();
  postMessage({ type: 'ready', report });
  return true;
})().catch((err) => {
  fail(err, 'could not start the Trilemma core');
  return false;
});

self.addEventListener('message', (e) => {
  const msg = e.data;
  // Cancel acts at once, outside the queue: the running experiment reads it between batches.
  if (msg?.type === 'cancel-experiment') {
    cancel_experiment();
    return;
  }
  if (!msg || !['run', 'bench', 'experiment', 'simulate-gpu-loss', 'simulate-gpu-oom'].includes(msg.type)) return;
  queue = queue.then(async () => {
    if (!(await ready)) {
      fail('the Trilemma core did not start, so nothing can run');
      return;
    }
    try {
      const onProgress = (stage, fraction) => postMessage({ type: 'progress', stage, fraction });
      if (msg.type === 'simulate-gpu-loss') {
        simulate_gpu_loss();
        return;
      }
      if (msg.type === 'simulate-gpu-oom') {
        set_gpu_memory_headroom(4096);
        return;
      }
      if (msg.type === 'experiment') {
        try {
          const json = await run_experiment(String(msg.spec ?? ''), (progress) => postMessage({ type: 'experiment-progress', progress }));
          postMessage({ type: 'experiment-result', json });
        } catch (err) {
          postMessage({ type: 'experiment-error', message: describe(err) });
        }
        return;
      }
      if (msg.type === 'bench') {
        const report = await bench(Math.max(0, Math.floor(Number(msg.n) || 0)), Math.max(0, Math.floor(Number(msg.batch) || 0)), onProgress);
        postMessage({ type: 'bench-result', report });
        return;
      }
      const pair = msg.textPair ? String(msg.textPair) : undefined;
      const report = await classify(String(msg.task ?? 'sst2'), String(msg.text ?? ''), pair, onProgress);
      postMessage({ type: 'result', report });
    } catch (err) {
      fail(err);
    }
  });
});
