// Checkpoints the page loads itself, in the worker (README "Loading a checkpoint"): a Hugging Face-layout folder from
// a URL or from local files — config.json, tokenizer.json, and model.safetensors or model.safetensors.index.json with
// its shards. Each file is streamed with progress; before the weights are read, their size (Content-Length, the
// index's total_size, a file's size) and then their safetensors header are checked against the worker's wasm32
// memory (io::source::check_memory, with the numbers); the Rust loader then loads the whole folder once
// (inspect_model) and only then are the files put in the Cache API, so a second load — in this tab or another,
// or a share link naming the URL — reads them from there.
//
// A URL model is named by its folder URL in a spec; local files by `local:NAME`, known only to the tab that loaded
// them. The cache is `checkpoints-v1`, not `trilemma-…`: sw.js deletes those when a new build activates.

const CACHE = 'checkpoints-v1';
// The key of a folder's manifest (its files and sizes) in the cache, after the folder URL.
const MANIFEST = '?trilemma-checkpoint';
const PROGRESS_MS = 100; // at most this often, a progress message

export class LoadError extends Error {}

const sum = (xs) => xs.reduce((a, b) => a + b, 0);
const message = (err) => (err instanceof Error ? err.message || err.name : String(err));

function concat(chunks, length) {
  const out = new Uint8Array(length);
  let at = 0;
  for (const c of chunks) {
    out.set(c.subarray(0, Math.min(c.length, length - at)), at);
    at += c.length;
    if (at >= length) break;
  }
  return out;
}

/** The model cache; `create`: make it when there is none (only storing does, so that looking leaves no trace). */
async function openCache(create) {
  try {
    if (!globalThis.caches) return null;
    if (!create && !(await caches.has(CACHE))) return undefined;
    return await caches.open(CACHE);
  } catch {
    return null; // no Cache API here (a file:// page, storage blocked): loads still work, uncached
  }
}

/**
 * The checkpoint loader. `core`: the wasm exports it uses; `post`: the worker's postMessage.
 */
export function createCheckpoints(core, post) {
  // name -> { files: {file: Uint8Array}, info, source }: what this worker has loaded (local files only live here).
  const loaded = new Map();

  /** Sizes and headers seen so far, checked against the memory the worker has, before any weights are read. */
  class Budget {
    constructor() {
      this.small = 0; // config.json, tokenizer.json, the index
      this.sizes = new Map(); // weights file -> declared bytes
      this.headers = new Map(); // weights file -> safetensors header
      this.indexTotal = null;
    }
    check() {
      let stored = 0;
      let f32 = 0;
      let largestFile = ['', 0];
      let largestTensor = ['', 0];
      for (const [f, size] of this.sizes) {
        const h = this.headers.get(f);
        const bytes = h ? h.header_bytes + h.data_bytes : size ?? 0;
        stored += bytes;
        f32 += h ? h.f32_bytes : bytes; // at least its size until its header says
        if (bytes > largestFile[1]) largestFile = [f, bytes];
        if (h && h.largest_bytes > largestTensor[1]) largestTensor = [`${h.largest} (${f})`, h.largest_bytes];
      }
      if (this.indexTotal != null) {
        stored = Math.max(stored, this.indexTotal);
        f32 = Math.max(f32, this.indexTotal);
      }
      try {
        return core.model_check_memory(this.small + stored, f32, largestFile[0], largestFile[1], largestTensor[0], largestTensor[1]);
      } catch (err) {
        throw new LoadError(message(err));
      }
    }
  }

  /** A progress reporter for one model, throttled. */
  function reporter(name, source) {
    let last = 0;
    let before = 0; // bytes of the files done
    return {
      file(file, index, count, got, total, force) {
        const now = performance.now();
        if (!force && now - last < PROGRESS_MS) return;
        last = now;
        post({ type: 'model-progress', name, source, file, index, count, loaded: got, total, bytes: before + got });
      },
      done(bytes) {
        before += bytes;
      },
    };
  }

  async function get(url, file) {
    let res;
    try {
      res = await fetch(url);
    } catch {
      throw new LoadError(`${file}: the server at ${new URL(url).origin} does not let this page read it (CORS), or is unreachable (${url})`);
    }
    return res;
  }

  function httpError(res, file, url) {
    const why = res.status === 404 ? ' (not found)'
      : res.status === 401 || res.status === 403 ? ' (a private or gated repository? the page sends no credentials)'
        : res.statusText ? ` ${res.statusText}` : '';
    return new LoadError(`${file}: HTTP ${res.status}${why} at ${url}`);
  }

  /**
   * Reads a response body in chunks, reporting progress; `weights`: check the safetensors header (and the memory
   * with it) as soon as its bytes are in, cancelling the download when refused.
   */
  async function read(res, file, total, progress, weights) {
    const reader = res.body.getReader();
    const chunks = [];
    let got = 0;
    let need = weights ? 8 : null;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        got += value.length;
        progress(got, total, false);
        while (need != null && got >= need) {
          // Not checked against the Content-Length, which counts compressed bytes when the server compresses; the
          // Rust loader checks the whole file once it is in.
          const h = header(file, concat(chunks, need), null);
          if (h.need != null) need = h.need;
          else {
            weights.headers.set(file, h);
            weights.check();
            need = null;
          }
        }
        if (weights && total == null) {
          // No Content-Length: count the bytes as they come.
          weights.sizes.set(file, got);
          if (need != null) weights.check();
        }
      }
    } catch (err) {
      reader.cancel().catch(() => {});
      throw err;
    }
    if (need != null) header(file, concat(chunks, got), got); // too short to hold its header: says why
    progress(got, total, true);
    return concat(chunks, got);
  }

  function header(file, prefix, total) {
    try {
      return core.model_safetensors_header(file, prefix, total ?? undefined);
    } catch (err) {
      throw new LoadError(message(err));
    }
  }

  /** Fetches `base + file` whole (small files) or streamed with the checks (`weights`). */
  async function fetchFile(base, file, progress, weights, optional, response) {
    const url = base + file;
    const res = response ?? (await get(url, file));
    if (!res.ok) {
      if (optional && res.status === 404) return null;
      throw httpError(res, file, url);
    }
    const length = res.headers.get('content-length');
    const total = length != null && /^\d+$/.test(length) ? Number(length) : null;
    if (weights) {
      weights.sizes.set(file, total);
      // The declared size first: refused here, nothing of the weights is downloaded.
      try {
        weights.check();
      } catch (err) {
        res.body?.cancel().catch(() => {});
        throw err;
      }
    }
    return read(res, file, total, progress, weights);
  }

  function summary(bytes) {
    try {
      return core.model_config_summary(bytes);
    } catch (err) {
      throw new LoadError(message(err));
    }
  }

  function inspect(name, files) {
    try {
      return core.inspect_model(name, files);
    } catch (err) {
      throw new LoadError(message(err));
    }
  }

  /** A URL folder from the network: the files, checked as they come. */
  async function download(name, base) {
    const r = reporter(name, 'network');
    const budget = new Budget();
    const files = {};
    const step = (file, index, count) => (got, total, force) => r.file(file, index, count, got, total, force);
    files['config.json'] = await fetchFile(base, 'config.json', step('config.json', 1, 3));
    summary(files['config.json']);
    budget.small += files['config.json'].length;
    r.done(files['config.json'].length);
    files['tokenizer.json'] = await fetchFile(base, 'tokenizer.json', step('tokenizer.json', 2, 3));
    budget.small += files['tokenizer.json'].length;
    r.done(files['tokenizer.json'].length);
    // model.safetensors, or (when the server has none) the index and its shards.
    const single = base + 'model.safetensors';
    const res = await get(single, 'model.safetensors');
    if (res.ok) {
      files['model.safetensors'] = await fetchFile(base, 'model.safetensors', step('model.safetensors', 3, 3), budget, false, res);
    } else if (res.status === 404) {
      const index = await fetchFile(base, 'model.safetensors.index.json', step('model.safetensors.index.json', 3, 3), null, true);
      if (!index) throw new LoadError(`${base} has neither model.safetensors nor model.safetensors.index.json (HTTP 404 for both)`);
      files['model.safetensors.index.json'] = index;
      budget.small += index.length;
      r.done(index.length);
      let shards;
      try {
        shards = core.model_index_shards(index);
      } catch (err) {
        throw new LoadError(message(err));
      }
      budget.indexTotal = shards.total_size ?? null;
      for (const f of shards.files) budget.sizes.set(f, null);
      budget.check(); // the declared total, before any shard
      const count = 3 + shards.files.length;
      for (const [i, f] of shards.files.entries()) {
        files[f] = await fetchFile(base, f, step(f, 4 + i, count), budget);
        r.done(files[f].length);
      }
    } else {
      throw httpError(res, 'model.safetensors', single);
    }
    return files;
  }

  /** A URL folder from the cache, when all of it is there; null otherwise. */
  async function fromCache(name, base, cache) {
    const hit = cache && (await cache.match(base + MANIFEST));
    if (!hit) return null;
    const manifest = await hit.json();
    const r = reporter(name, 'cache');
    const files = {};
    for (const [i, f] of manifest.files.entries()) {
      const res = await cache.match(base + f.name);
      if (!res) return null;
      files[f.name] = await read(res, f.name, f.bytes, (got, total, force) => r.file(f.name, i + 1, manifest.files.length, got, total, force), null);
      r.done(files[f.name].length);
    }
    return files;
  }

  async function store(base, files, cache) {
    if (!cache) return false;
    try {
      const list = Object.entries(files).map(([n, b]) => ({ name: n, bytes: b.length }));
      for (const [n, b] of Object.entries(files)) {
        await cache.put(base + n, new Response(b, { headers: { 'content-type': 'application/octet-stream', 'content-length': String(b.length) } }));
      }
      const manifest = { base, files: list, bytes: sum(list.map((f) => f.bytes)), at: new Date().toISOString() };
      await cache.put(base + MANIFEST, new Response(JSON.stringify(manifest), { headers: { 'content-type': 'application/json' } }));
      return true;
    } catch {
      return false; // quota: the model is loaded, just not cached
    }
  }

  async function loadUrl(base) {
    const t0 = performance.now();
    const cache = await openCache(false);
    let files = null;
    let source = 'cache';
    try {
      files = await fromCache(base, base, cache);
    } catch {
      files = null;
    }
    if (!files) {
      source = 'network';
      files = await download(base, base);
    }
    post({ type: 'model-progress', name: base, source, stage: 'checking the model' });
    const info = inspect(base, files);
    const cached = source === 'cache' ? true : await store(base, files, cache === null ? null : await openCache(true));
    return remember(base, files, info, source, cached, t0);
  }

  /** Local files: `list` of File, `name` for `local:NAME`. */
  async function loadFiles(list, name) {
    const t0 = performance.now();
    const full = `local:${name}`;
    try {
      core.model_source(full);
    } catch (err) {
      throw new LoadError(message(err));
    }
    const byName = new Map();
    for (const f of list) byName.set(f.name, f);
    const need = (n) => {
      const f = byName.get(n);
      if (!f) throw new LoadError(`the files have no ${n} (a model folder has config.json, tokenizer.json and model.safetensors or model.safetensors.index.json with its shards)`);
      return f;
    };
    const budget = new Budget();
    const files = {};
    files['config.json'] = new Uint8Array(await need('config.json').arrayBuffer());
    summary(files['config.json']);
    files['tokenizer.json'] = new Uint8Array(await need('tokenizer.json').arrayBuffer());
    budget.small += files['config.json'].length + files['tokenizer.json'].length;
    let weights;
    if (byName.has('model.safetensors')) weights = ['model.safetensors'];
    else if (byName.has('model.safetensors.index.json')) {
      files['model.safetensors.index.json'] = new Uint8Array(await byName.get('model.safetensors.index.json').arrayBuffer());
      budget.small += files['model.safetensors.index.json'].length;
      try {
        weights = core.model_index_shards(files['model.safetensors.index.json']).files;
      } catch (err) {
        throw new LoadError(message(err));
      }
    } else need('model.safetensors');
    // Every size is known: the memory check, then each header from the file's first bytes, before reading any.
    for (const w of weights) budget.sizes.set(w, need(w).size);
    budget.check();
    for (const w of weights) {
      const f = byName.get(w);
      let h = header(w, new Uint8Array(await f.slice(0, 8).arrayBuffer()), f.size);
      if (h.need != null) h = header(w, new Uint8Array(await f.slice(0, h.need).arrayBuffer()), f.size);
      budget.headers.set(w, h);
    }
    budget.check();
    const r = reporter(full, 'local');
    for (const [i, w] of weights.entries()) {
      const f = byName.get(w);
      files[w] = await read(new Response(f), w, f.size, (got, total, force) => r.file(w, i + 1, weights.length, got, total, force), null);
      r.done(f.size);
    }
    post({ type: 'model-progress', name: full, source: 'local', stage: 'checking the model' });
    const info = inspect(full, files);
    return remember(full, files, info, 'local', false, t0);
  }

  function remember(name, files, info, source, cached, t0) {
    loaded.set(name, { files, info, source });
    const bytes = sum(Object.values(files).map((b) => b.length));
    let gpu = null; // the GPU's buffer limits, when there is one
    try {
      gpu = core.gpu_limits();
    } catch {
      gpu = null;
    }
    return { name, info, source, cached, bytes, gpu, ms: performance.now() - t0 };
  }

  /** The model named `name` (a folder URL or local:NAME), loaded now if it is not yet. */
  async function ensure(name) {
    const have = loaded.get(name);
    if (have) return have.files;
    let src;
    try {
      src = core.model_source(name);
    } catch (err) {
      throw new LoadError(message(err));
    }
    if (src.kind === 'local') {
      throw new LoadError(`model ${name}: load the files ${src.name} first (Load a model → local files): files from a disk are known only to the tab that loaded them`);
    }
    let r;
    try {
      r = await loadUrl(src.base);
    } catch (err) {
      post({ type: 'model-error', name, message: message(err) });
      throw new LoadError(`model ${name}: ${message(err)}`);
    }
    post({ type: 'model-loaded', ...r });
    return loaded.get(name).files;
  }

  async function cacheList() {
    const cache = await openCache(false);
    if (cache === null) return { available: false, entries: [] };
    if (!cache) return { available: true, entries: [] };
    const entries = [];
    for (const req of await cache.keys()) {
      if (!req.url.endsWith(MANIFEST)) continue;
      const res = await cache.match(req);
      try {
        const m = await res.json();
        entries.push({ base: m.base, bytes: m.bytes, files: m.files.length, at: m.at });
      } catch {
        // a manifest that does not parse: ignored (Clear removes it)
      }
    }
    return { available: true, entries };
  }

  return {
    /** A page message of type model-load / model-cache; answers with posts. */
    async handle(msg) {
      if (msg.type === 'model-cache') {
        if (msg.action === 'clear') {
          await globalThis.caches?.delete(CACHE);
          for (const [n, m] of loaded) if (m.source !== 'local') loaded.delete(n);
        }
        post({ type: 'model-cache', cleared: msg.action === 'clear', ...(await cacheList()) });
        return;
      }
      const name = msg.url != null ? String(msg.url) : `local:${msg.name ?? ''}`;
      try {
        let r;
        if (msg.url != null) {
          let base;
          try {
            base = core.model_folder_url(String(msg.url));
          } catch (err) {
            throw new LoadError(message(err));
          }
          loaded.delete(base); // loading again reads the cache (or the network), not this worker's copy
          r = await loadUrl(base);
        } else {
          r = await loadFiles([...(msg.files ?? [])], String(msg.name ?? '').trim());
        }
        post({ type: 'model-loaded', ...r });
        post({ type: 'model-cache', ...(await cacheList()) });
      } catch (err) {
        post({ type: 'model-error', name, message: message(err) });
      }
    },
    /** The files of every URL and local model a spec names (`{name: {file: bytes}}`), loading URL ones as needed. */
    async filesFor(specJson) {
      let spec;
      try {
        spec = JSON.parse(specJson);
      } catch {
        return {}; // the core says why
      }
      const out = {};
      for (const m of Array.isArray(spec?.models) ? spec.models : []) {
        if (typeof m !== 'string') continue;
        let src;
        try {
          src = core.model_source(m);
        } catch {
          continue; // refused by the spec's validation, with the field named
        }
        if (src.kind !== 'bundled') out[m] = await ensure(m);
      }
      return out;
    },
  };
}
