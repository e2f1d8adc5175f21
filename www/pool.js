// The CPU worker pool: data-parallel Web Workers for throughput work (the benchmark, and the
// evaluation and attack units of experiments on the CPU path), one wasm instance and one copy of the models each.
//
// Worker 0 is the main worker (worker.js: GPU + CPU, single-text runs). The pool adds helpers
// (worker.js?role=helper, CPU only) up to navigator.hardwareConcurrency, at most MAX_WORKERS;
// `?workers=N` forces N (1: single-threaded). A job is prepared in every worker (each computes
// the same length-sorted batch plan, eval::Plan, and the pool checks they agree); then batches
// are handed out one at a time, largest first, to whichever worker is free, and the logit rows
// are put back by example index. A batch's logits depend only on its sequences, so the result
// is bit-identical for any number of workers. A helper that fails to start is left out (the page
// says so); one that dies during a run has its batch put back for the others. The main worker's
// own errors fail the run: they would fail on any worker.
//
// Shared-memory wasm threads would need std rebuilt with atomics (nightly) and COOP/COEP headers
// on the host; separate instances need neither (README, "CPU workers").

export const MAX_WORKERS = 4;
const START_TIMEOUT_MS = 180_000;

/**
 * A worker running worker.js, its role in `query` ('' or '?role=helper...'). In the single-file copy
 * (scripts/single-file.mjs) there is no worker.js to load: `globalThis.trilemmaBundle` makes the
 * worker from the source inlined there, with the same query.
 */
export function startWorker(query, name) {
  const bundle = globalThis.trilemmaBundle;
  if (bundle) return bundle.worker(query, name);
  return new Worker(new URL(`./worker.js${query}`, import.meta.url), { type: 'module', name });
}

/** How many CPU workers to run (main included), and, when it is one, why. */
export function plannedWorkers(search, cores) {
  const forced = new URLSearchParams(search).get('workers');
  if (forced !== null) {
    const n = Math.floor(Number(forced));
    if (Number.isFinite(n) && n >= 1) {
      const count = Math.min(n, MAX_WORKERS);
      return { count, reason: count === 1 ? 'set by ?workers=1' : null };
    }
  }
  if (!Number.isFinite(cores) || cores < 1) return { count: 1, reason: 'the browser does not report its number of cores' };
  if (cores === 1) return { count: 1, reason: 'the browser reports 1 core' };
  return { count: Math.min(cores, MAX_WORKERS), reason: null };
}

function describe(err) {
  if (err instanceof Error) return err.message || err.name;
  if (typeof err === 'string') return err;
  try { return JSON.stringify(err); } catch { return String(err); }
}

/** One worker seen from the page: numbered requests and their answers. */
class Remote {
  constructor(worker, name) {
    this.worker = worker;
    this.name = name;
    this.pending = new Map();
    this.nextId = 1;
    this.dead = null; // why it stopped
    this.batches = 0; // batches it ran in the current run
  }

  call(msg) {
    if (this.dead) return Promise.reject(new Error(`${this.name} stopped: ${this.dead}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...msg, id });
    });
  }

  /** An answer to one of our calls: settles it and returns true. */
  handle(msg) {
    if (msg?.id === undefined || msg.id === null) return false;
    const p = this.pending.get(msg.id);
    if (!p) return false;
    this.pending.delete(msg.id);
    if (msg.type === 'reply') p.resolve(msg.report);
    else p.reject(new Error(msg.message ?? 'the worker failed'));
    return true;
  }

  stop(reason) {
    if (this.dead) return;
    this.dead = reason;
    try { this.worker.terminate(); } catch { /* already gone */ }
    for (const p of this.pending.values()) p.reject(new Error(`${this.name} stopped: ${reason}`));
    this.pending.clear();
  }
}

export class CpuPool {
  /**
   * `mainWorker`: the page's worker.js (its answers reach the pool through handleMain); `onStatus`
   * is called with status() whenever the pool changes. `simulate` (from the page's URL):
   * 'helper-start-fail' or 'helper-crash' make helper 1 fail at start or on its first batch.
   */
  constructor(mainWorker, { search = '', cores = 1, simulate = null, onStatus = () => {} } = {}) {
    this.main = new Remote(mainWorker, 'the main worker');
    this.onStatus = onStatus;
    this.plan = plannedWorkers(search, cores);
    this.helpers = [];
    this.lost = []; // helpers that failed, with why
    this.pendingStarts = 0;
    const starts = [];
    for (let i = 1; i < this.plan.count; i++) {
      const name = `helper ${i}`;
      const sim = i === 1 && simulate === 'helper-start-fail' ? '&simulate=start-fail'
        : i === 1 && simulate === 'helper-crash' ? '&simulate=crash' : '';
      let worker;
      try {
        worker = startWorker(`?role=helper${sim}`, `trilemma-${name.replace(' ', '-')}`);
      } catch (err) {
        this.lost.push(`${name} could not be created: ${describe(err)}`);
        continue;
      }
      const h = new Remote(worker, name);
      this.pendingStarts++;
      starts.push(new Promise((settle) => {
        let started = false;
        const lose = (why) => {
          if (h.dead) return;
          h.stop(why);
          this.lost.push(started ? `${name} stopped: ${why}` : `${name} failed to start: ${why}`);
          if (!started) {
            started = true;
            this.pendingStarts--;
            settle();
          }
          this.onStatus(this.status());
        };
        worker.addEventListener('message', (e) => {
          const msg = e.data;
          if (h.handle(msg)) return;
          if (msg?.type === 'ready' && !started) {
            started = true;
            this.pendingStarts--;
            this.helpers.push(h);
            this.onStatus(this.status());
            settle();
          } else if (msg?.type === 'error') {
            lose(msg.message);
          }
        });
        // A helper that neither starts nor fails (a hung fetch) would hold every run up.
        setTimeout(() => { if (!started) lose(`it did not start within ${START_TIMEOUT_MS / 1000} s`); }, START_TIMEOUT_MS);
        worker.addEventListener('error', (e) => {
          e.preventDefault();
          lose(e.message ? `worker error: ${e.message}` : 'the worker script could not be loaded');
        });
      }));
    }
    this.started = Promise.all(starts);
  }

  /** Helpers running now (started, not lost). */
  helperCount() {
    return this.helpers.filter((h) => !h.dead).length;
  }

  /** Waits for the helpers to start, at most `ms` (a helper still starting then is not waited for). */
  settle(ms) {
    return Promise.race([this.started, new Promise((r) => setTimeout(r, ms))]);
  }

  /**
   * An experiment's units in the helpers: `shares[i]` (unit indices of `spec`, evaluations and attacks) to the i-th
   * live helper. Resolves to {json: every delivered result as one JSON {units, attacks}, events}; never rejects: a
   * helper that fails or dies delivers nothing, and the main worker runs its units itself.
   */
  async experimentUnits(spec, shares) {
    const helpers = this.helpers.filter((h) => !h.dead);
    const events = [];
    const empty = JSON.stringify({ units: [], attacks: [] });
    const answers = await Promise.allSettled(shares.map((units, i) =>
      units.length && helpers[i] ? helpers[i].call({ type: 'experiment-units', spec, units }) : Promise.resolve(empty)));
    const units = [];
    const attacks = [];
    answers.forEach((a, i) => {
      let why = a.status === 'rejected' ? describe(a.reason).replace(/^helper \d+ stopped: /, '') : null;
      if (why === null) {
        try {
          const got = JSON.parse(a.value);
          units.push(...got.units);
          attacks.push(...got.attacks);
          return;
        } catch (err) {
          why = `its answer was not unit results (${describe(err)})`;
        }
      }
      const h = helpers[i];
      if (!h) return;
      if (!h.dead) this.lose(h, why);
      events.push(`${h.name} stopped during the run (${h.dead}); its evaluations ran in the main worker`);
    });
    return { json: JSON.stringify({ units, attacks }), events };
  }

  /** Asks every helper to stop its share of an experiment after its current batch. */
  cancelExperiment() {
    for (const h of this.helpers) if (!h.dead) h.worker.postMessage({ type: 'cancel-experiment' });
  }

  /** Routes the main worker's answers to the pool's calls; true when `msg` was one. */
  handleMain(msg) {
    return this.main.handle(msg);
  }

  live() {
    return [this.main, ...this.helpers.filter((h) => !h.dead)];
  }

  /** {workers, text, reason, lost}: the page's "CPU: …" line. */
  status() {
    const n = this.live().length;
    if (this.pendingStarts > 0) {
      return { workers: n, text: `CPU: starting ${this.pendingStarts} helper worker${this.pendingStarts > 1 ? 's' : ''}…`, reason: null, lost: [...this.lost] };
    }
    if (n > 1) {
      const extra = this.lost.length ? ` (${this.lost.join('; ')})` : '';
      return { workers: n, text: `CPU: ${n} workers${extra}`, reason: null, lost: [...this.lost] };
    }
    const reason = this.plan.count === 1 ? this.plan.reason : this.lost.join('; ') || 'no helper worker is running';
    return { workers: 1, text: `CPU: 1 thread — ${reason}`, reason, lost: [...this.lost] };
  }

  /**
   * Benchmark: the first `n` sentences of `task`/`split` in batches of up to `batch`, per model on
   * the CPU over every live worker (wall clock from the first batch handed out to the last row
   * back; preparing the job is not timed), then on WebGPU in the main worker when the model is
   * there. Returns the report the page renders, with every model's CPU logits by example index.
   */
  async bench({ task = 'sst2', split = 'validation', n, batch }, onProgress = () => {}) {
    onProgress('benchmark: waiting for the helper workers', 0);
    await this.started;
    const job = await this.prepareAll({ task, split, n, batch }, onProgress);
    const rows = [];
    const events = [];
    const total = job.models.length || 1;
    for (const [m, info] of job.models.entries()) {
      const row = {
        folder: info.folder,
        architecture: info.architecture,
        examples: info.examples,
        tokens: info.tokens,
        batches: info.batches.length,
        cpu_examples_per_s: null,
        cpu_workers: null,
        batches_by_worker: null,
        gpu_examples_per_s: null,
        weight_bytes: info.weight_bytes,
        weight_bytes_f32: info.weight_bytes_f32,
        same_labels: null,
        max_abs_diff: null,
        logits: null,
        error: info.error,
      };
      rows.push(row);
      if (info.error) continue;
      const label = info.architecture;
      const t0 = performance.now();
      const cpu = await this.distribute(m, info, (done, workers) =>
        onProgress(`${label}: CPU, ${done} of ${info.batches.length} batches on ${workers} worker${workers > 1 ? 's' : ''}`, (m + 0.5 * done / info.batches.length) / total));
      row.cpu_examples_per_s = info.examples / (Math.max(performance.now() - t0, 1e-6) / 1000);
      row.cpu_workers = cpu.workers;
      row.batches_by_worker = cpu.byWorker;
      row.logits = cpu.logits;
      events.push(...cpu.events.map((e) => `${label}: ${e}`));
      if (!info.on_gpu) continue;
      onProgress(`${label}: WebGPU`, (m + 0.5) / total);
      try {
        const all = info.batches.map((_, b) => b);
        const r = await this.main.call({ type: 'batches', model: m, batches: all, backend: 'webgpu', warmUp: true });
        const gpu = rowsByIndex(r, info.examples);
        row.gpu_examples_per_s = info.examples / (Math.max(r.ms, 1e-6) / 1000);
        let same = 0;
        let maxAbs = 0;
        for (let i = 0; i < gpu.length; i++) {
          if (argmax(gpu[i]) === argmax(cpu.logits[i])) same++;
          for (let c = 0; c < gpu[i].length; c++) maxAbs = Math.max(maxAbs, Math.abs(gpu[i][c] - cpu.logits[i][c]));
        }
        row.same_labels = same;
        row.max_abs_diff = maxAbs;
      } catch (err) {
        // The CPU numbers stand; the row says why the GPU ones are missing.
        row.error = describe(err);
      }
    }
    onProgress('done', 1);
    return { task: job.task, split: job.split, examples: job.examples, backend: job.backend, cpu: this.status(), events, rows };
  }

  /** Prepares the job in every live worker; a helper that fails or plans differently is left out. */
  async prepareAll(spec, onProgress) {
    onProgress('preparing the batches in every worker', 0);
    const helpers = this.helpers.filter((h) => !h.dead);
    const [main, ...rest] = await Promise.allSettled([this.main, ...helpers].map((w) => w.call({ type: 'prepare', ...spec })));
    if (main.status === 'rejected') throw main.reason;
    const plan = JSON.stringify(main.value.models.map((m) => m.batches));
    rest.forEach((r, i) => {
      const h = helpers[i];
      if (r.status === 'rejected') this.lose(h, `could not prepare the job: ${describe(r.reason)}`);
      else if (JSON.stringify(r.value.models.map((m) => m.batches)) !== plan) this.lose(h, 'it planned different batches');
    });
    return main.value;
  }

  lose(h, why) {
    if (h.dead) return;
    h.stop(why);
    this.lost.push(`${h.name} stopped: ${why}`);
    this.onStatus(this.status());
  }

  /**
   * Runs every batch of model `m` on the CPU over the live workers: largest batches first, one at
   * a time to whichever worker is free. Resolves to {logits (by example index), workers (that
   * took part), byWorker, events}.
   */
  distribute(m, info, progress) {
    const queue = info.batches.map((_, b) => b).sort((a, b) => info.batch_tokens[b] - info.batch_tokens[a] || a - b);
    const total = queue.length;
    const logits = new Array(info.examples);
    const events = [];
    const workers = this.live();
    const byWorker = new Map(workers.map((w) => [w.name, 0]));
    const idle = new Set();
    let done = 0;
    return new Promise((resolve, reject) => {
      let over = false;
      const finish = () => {
        over = true;
        resolve({ logits, workers: workers.length, byWorker: Object.fromEntries(byWorker), events });
      };
      const give = (w) => {
        if (over || w.dead) return;
        const b = queue.shift();
        if (b === undefined) {
          idle.add(w);
          return;
        }
        idle.delete(w);
        w.call({ type: 'batches', model: m, batches: [b], backend: 'cpu', warmUp: false }).then(
          (r) => {
            if (over) return;
            const rows = rowsByIndex(r, null);
            for (const [i, row] of rows) logits[i] = row;
            byWorker.set(w.name, byWorker.get(w.name) + 1);
            done++;
            progress(done, this.live().length);
            if (done === total) finish();
            else give(w);
          },
          (err) => {
            if (over) return;
            if (w === this.main) {
              over = true;
              reject(err);
              return;
            }
            // A helper failed: it is stopped, and its batch goes back to the front of the queue.
            this.lose(w, describe(err).replace(/^helper \d+ stopped: /, ''));
            events.push(`${w.name} stopped during the run (${w.dead}); its batch was redone on the other workers`);
            queue.unshift(b);
            for (const v of [...idle]) give(v);
          },
        );
      };
      if (total === 0) finish();
      else for (const w of workers) give(w);
    });
  }
}

/** A batches report as rows: an array by example index (`n` given) or [index, row] pairs. */
function rowsByIndex(r, n) {
  const c = r.classes;
  const pairs = r.indices.map((i, k) => [i, r.logits.slice(k * c, (k + 1) * c)]);
  if (n === null) return pairs;
  const out = new Array(n);
  for (const [i, row] of pairs) out[i] = row;
  return out;
}

/** The first maximum, as the core's argmax. */
function argmax(row) {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}
