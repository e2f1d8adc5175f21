// The offline service worker: after one visit the page works with the network off (README, "Offline").
//
// BUILD lists every file of this build (path, bytes, SHA-256) and a version derived from them. It is
// written into dist/sw.js by scripts/sw-manifest.mjs, a Trunk post_build hook (Trunk.toml); here in
// www/ it is null. So this script's bytes change whenever any file of the build changes, and the
// browser's update check (on every navigation) installs the new worker, which caches the new build
// under its own cache name, `trilemma-<version>`, while the old one keeps serving.
//
// Install: every file of the build is fetched, checked against its SHA-256 and cached; progress goes
// to the open pages ({type: 'trilemma-offline', state: 'caching', ...}, shown by www/offline.js).
// A file that fails or does not match (the server changed mid-way) fails the install, and the
// previous worker, if any, stays.
//
// Fetch: cache-first for everything in the build, index.html included, from this build's cache
// only; anything else goes to the network. Why index.html is not network-first: worker.js, pool.js,
// trilemma.js and trilemma_bg.wasm keep their names across builds (Trunk hashes only app.js, the css
// and the icon), so a fresh index.html with files from an older cache would mix two builds. Instead
// the whole build is revalidated at once (stale-while-revalidate at the build level): the browser
// checks sw.js on each visit, a new build is cached in the background, and the page offers a reload
// once it is ready (or it takes over when every Trilemma tab has closed).
//
// Messages in: {type: 'status'} (answered on the given port) | {type: 'skip-waiting'}.
const BUILD = null; // @build-manifest: replaced in dist/ by scripts/sw-manifest.mjs

const PREFIX = 'trilemma-';
const CACHE = BUILD ? `${PREFIX}${BUILD.version}` : null;
const SCOPE = new URL('./', self.location).href;
const FETCHES = 4; // files fetched at once while caching
const META = `${SCOPE}__trilemma-offline-meta`; // how long caching took, kept with the cache

const urlOf = (path) => new URL(path, SCOPE).href;
const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
const totalBytes = () => BUILD.files.reduce((s, f) => s + f.bytes, 0);

function describe(err) {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

async function broadcast(msg) {
  const pages = await self.clients.matchAll({ includeUncontrolled: true, type: 'window' });
  for (const page of pages) page.postMessage({ type: 'trilemma-offline', version: BUILD?.version ?? null, ...msg });
}

async function precache() {
  if (!BUILD) throw new Error('this sw.js carries no list of files: the build did not run scripts/sw-manifest.mjs');
  const t0 = Date.now();
  const cache = await caches.open(CACHE);
  const total = BUILD.files.length;
  const bytes = totalBytes();
  let done = 0;
  let got = 0;
  const queue = [...BUILD.files];
  const one = async () => {
    for (let f = queue.shift(); f; f = queue.shift()) {
      const url = urlOf(f.path);
      // An interrupted install left some files here: they were checked when they were put.
      if (!(await cache.match(url))) {
        const res = await fetch(url, { cache: 'no-store' });
        if (!res.ok) throw new Error(`${f.path}: HTTP ${res.status}`);
        const body = await res.arrayBuffer();
        const sha = hex(await crypto.subtle.digest('SHA-256', body));
        if (sha !== f.sha256) throw new Error(`${f.path} on the server is not the file of this build (it changed while caching): reload the page`);
        const type = res.headers.get('content-type');
        await cache.put(url, new Response(body, { headers: type ? { 'content-type': type } : {} }));
      }
      done++;
      got += f.bytes;
      await broadcast({ state: 'caching', done, total, bytes: got, totalBytes: bytes });
    }
  };
  await Promise.all(Array.from({ length: FETCHES }, one));
  await cache.put(META, new Response(JSON.stringify({ ms: Date.now() - t0 }), { headers: { 'content-type': 'application/json' } }));
}

self.addEventListener('install', (event) => {
  event.waitUntil(precache().catch(async (err) => {
    await broadcast({ state: 'failed', reason: describe(err) });
    throw err;
  }));
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith(PREFIX) && name !== CACHE) await caches.delete(name);
    }
    await self.clients.claim();
    await broadcast({ state: 'activated' });
  })());
});

/** What the page shows: how much of this build is cached. */
async function status() {
  if (!BUILD) return { state: 'failed', reason: 'this sw.js carries no list of files' };
  const cache = await caches.open(CACHE);
  const have = new Set((await cache.keys()).map((r) => r.url));
  const missing = BUILD.files.filter((f) => !have.has(urlOf(f.path))).map((f) => f.path);
  const meta = await cache.match(META);
  const ms = meta ? (await meta.json()).ms : null;
  return {
    state: missing.length === 0 ? 'ready' : 'incomplete',
    version: BUILD.version,
    files: BUILD.files.length,
    bytes: totalBytes(),
    missing,
    ms,
  };
}

self.addEventListener('message', (event) => {
  const msg = event.data;
  if (msg?.type === 'skip-waiting') {
    self.skipWaiting();
  } else if (msg?.type === 'status' && event.ports[0]) {
    const port = event.ports[0];
    status().then((s) => port.postMessage(s), (err) => port.postMessage({ state: 'failed', reason: describe(err) }));
  }
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (!CACHE || req.method !== 'GET') return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin || !url.href.startsWith(SCOPE)) return;
  // The query is not part of the key: worker.js?role=helper is worker.js, index.html?workers=2 is index.html.
  let path = url.pathname.slice(new URL(SCOPE).pathname.length);
  if (path === '') path = 'index.html';
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    const hit = await cache.match(urlOf(decodeURIComponent(path)));
    return hit ?? fetch(req);
  })());
});
