// Offline use: registers the service worker (sw.js, which caches the whole build) and says in the
// backend panel whether the page is available offline, is being cached, or why not.
//
// #offline[data-state] (a hook for tests and styling): checking | caching | ready | update |
// unavailable | failed | bundle (the single-file copy, scripts/single-file.mjs: nothing to cache).
// The line is a polite live region and changes only with the state; the per-file progress is in
// the <progress> beside it, which is not announced.

const $ = (id) => document.getElementById(id);
const mb = (b) => `${(b / 1e6).toFixed(1)} MB`;

function describe(err) {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/** Asks the service worker `sw` how much of its build is cached. */
function askStatus(sw) {
  return new Promise((resolve, reject) => {
    const channel = new MessageChannel();
    const timer = setTimeout(() => reject(new Error('the service worker did not answer')), 15_000);
    channel.port1.onmessage = (e) => {
      clearTimeout(timer);
      resolve(e.data);
    };
    sw.postMessage({ type: 'status' }, [channel.port2]);
  });
}

export function initOffline() {
  const el = { line: $('offline'), bar: $('offline-progress'), reload: $('offline-reload') };
  let state = null;
  const show = (next, text) => {
    el.bar.hidden = next !== 'caching';
    if (next === state && el.line.textContent === `Offline: ${text}`) return;
    state = next;
    el.line.dataset.state = next;
    el.line.textContent = `Offline: ${text}`;
  };

  if (globalThis.trilemmaBundle) {
    show('bundle', 'this single file holds the app, its models and its data; it needs no network');
    return;
  }
  if (location.protocol === 'file:') {
    show('unavailable', 'not available from a file: serve dist/ over http(s), or use the single-file copy (README, "Offline")');
    return;
  }
  if (!window.isSecureContext) {
    show('unavailable', 'not available: service workers need https, or http on localhost');
    return;
  }
  if (!('serviceWorker' in navigator)) {
    show('unavailable', 'not available: this browser has no service workers');
    return;
  }

  const sw = navigator.serviceWorker;
  let registration = null;
  let reason = null; // why the last install failed, from the worker

  async function refresh() {
    const r = registration;
    if (!r) return;
    if (r.installing) {
      // A first install, or an update while an older build keeps serving.
      if (!r.active) show('caching', 'caching the page, its models and its data…');
      else show('caching', 'available offline; caching a newer version…');
      return;
    }
    if (r.waiting) {
      show('update', 'available offline; a newer version is cached: reload to use it');
      el.reload.hidden = false;
      return;
    }
    if (!r.active) {
      show('failed', `not available: caching failed${reason ? `: ${reason}` : ''}`);
      return;
    }
    try {
      const s = await askStatus(r.active);
      el.line.dataset.version = s.version ?? '';
      if (s.state === 'ready') {
        el.line.dataset.ms = String(s.ms ?? '');
        show('ready', `available offline — ${s.files} files, ${mb(s.bytes)} cached${s.ms ? ` in ${(s.ms / 1000).toFixed(1)} s` : ''}`);
      } else if (s.state === 'incomplete') {
        show('failed', `not available: ${s.missing.length} of ${s.files} files are missing from the cache (the browser may have evicted them): reload while online`);
      } else {
        show('failed', `not available: ${s.reason}`);
      }
    } catch (err) {
      show('failed', `not available: ${describe(err)}`);
    }
  }

  const watch = (worker) => worker?.addEventListener('statechange', () => {
    if (worker.state === 'redundant' && !registration?.active) reason ??= 'the service worker was discarded';
    refresh();
  });

  sw.addEventListener('message', (e) => {
    const msg = e.data;
    if (msg?.type !== 'trilemma-offline') return;
    if (msg.state === 'caching') {
      el.bar.max = msg.totalBytes;
      el.bar.value = msg.bytes;
      el.bar.title = `${msg.done} of ${msg.total} files, ${mb(msg.bytes)} of ${mb(msg.totalBytes)}`;
      el.bar.hidden = false;
    } else if (msg.state === 'failed') {
      reason = msg.reason;
      if (!registration?.active) show('failed', `not available: caching failed: ${msg.reason}`);
    } else if (msg.state === 'activated') {
      refresh();
    }
  });
  sw.startMessages();

  // Another tab chose "Reload" for a newer build: this one now talks to it with an older page.
  const controlledAtLoad = Boolean(sw.controller);
  sw.addEventListener('controllerchange', () => {
    if (!controlledAtLoad) return; // the first install claiming this page
    show('update', 'a newer version took over in another tab: reload to use it');
    el.reload.hidden = false;
  });

  el.reload.addEventListener('click', () => {
    const waiting = registration?.waiting;
    if (!waiting) {
      location.reload();
      return;
    }
    sw.addEventListener('controllerchange', () => location.reload(), { once: true });
    waiting.postMessage({ type: 'skip-waiting' });
  });

  show('checking', 'checking…');
  sw.register(new URL('./sw.js', import.meta.url).href).then(
    (r) => {
      registration = r;
      watch(r.installing);
      watch(r.waiting);
      r.addEventListener('updatefound', () => {
        watch(r.installing);
        refresh();
      });
      refresh();
    },
    (err) => show('unavailable', `not available: the service worker could not be registered: ${describe(err)}`),
  );
}
