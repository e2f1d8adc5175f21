// "Load a model" in the Experiment panel: a Hugging Face-layout checkpoint from a folder URL or from local files,
// loaded by the worker (www/checkpoint.js: streamed with progress, the memory checked before the weights are read,
// cached with the Cache API). A loaded model joins the builder's models (builder.js addModel), named by its URL —
// which a spec and a share link carry, so another browser downloads it too — or `local:NAME`, which only this tab
// knows. Everything here is set with textContent.
import { addModel } from './builder.js';

const mb = (n) => (n == null ? '?' : n < 1e6 ? `${(n / 1e3).toFixed(1)} kB` : `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)} MB`);
const seconds = (ms) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;

function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') e.textContent = v;
    else if (v === true) e.setAttribute(k, '');
    else if (v !== false && v != null) e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

/** The label a model gets in the builder: `ORG/NAME` for a Hugging Face URL, else the name. */
export function shortName(name) {
  const m = /^https:\/\/huggingface\.co\/(.+?)\/resolve\/([^/]+)\/$/.exec(name);
  if (m) return `${m[1]}${m[2] === 'main' ? '' : ` @ ${m[2]}`} (Hugging Face)`;
  return name;
}

/** A folder's name from files picked with a directory picker (webkitRelativePath), or ''. */
function folderOf(files) {
  const p = files.find((f) => f.webkitRelativePath)?.webkitRelativePath ?? '';
  return p.includes('/') ? p.split('/')[0] : '';
}

export function initModels(worker) {
  const builder = document.getElementById('builder');
  const urlInput = h('input', { id: 'lm-url', type: 'url', spellcheck: 'false', autocomplete: 'off', placeholder: 'https://huggingface.co/ORG/NAME/resolve/main/', 'aria-describedby': 'lm-help' });
  const loadButton = h('button', { id: 'lm-load', type: 'submit', disabled: true, text: 'Load' });
  const form = h('form', { id: 'lm-form', autocomplete: 'off', novalidate: true },
    h('label', { for: 'lm-url', text: 'Model folder URL' }),
    h('div', { class: 'row' }, urlInput, loadButton));
  const files = h('input', { id: 'lm-files', type: 'file', multiple: true, accept: '.json,.safetensors', disabled: true });
  const folder = h('input', { id: 'lm-folder', type: 'file', webkitdirectory: true, disabled: true });
  const localName = h('input', { id: 'lm-name', type: 'text', spellcheck: 'false', placeholder: 'the folder name', 'aria-describedby': 'lm-help' });
  const progress = h('progress', { id: 'lm-progress', max: '1', value: '0', 'aria-labelledby': 'lm-stage' });
  const stage = h('span', { id: 'lm-stage', 'aria-live': 'polite' });
  const error = h('div', { id: 'lm-error', role: 'alert' });
  const list = h('ul', { id: 'lm-list', 'aria-label': 'Loaded models' });
  const cacheLine = h('span', { id: 'lm-cache', 'aria-live': 'polite', text: 'Model cache: …' });
  const clear = h('button', { id: 'lm-clear', type: 'button', disabled: true, text: 'Clear the model cache' });
  const part = h('div', { id: 'load-model', role: 'group', 'aria-labelledby': 'lm-heading', 'data-state': 'loading' },
    h('h3', { id: 'lm-heading', text: 'Load a model (a URL or local files)' }),
    h('p', { id: 'lm-help', class: 'muted', text:
      'A Hugging Face-layout folder — config.json (model_type transformer, gla or hgrn_bit), model.safetensors (or '
      + 'model.safetensors.index.json and its shards) and tokenizer.json — from its URL (the server must allow this page to '
      + 'read it: CORS) or from your disk. It is checked against the memory the page has before the weights are '
      + 'downloaded, cached in this browser, and added to the models below: a spec names it by its URL (a share link '
      + 'then downloads it too) or local:NAME (only in this tab). Without a task head it is read zero-shot through its LM head.' }),
    form,
    h('div', { class: 'row fields' },
      h('div', { class: 'field' }, h('label', { for: 'lm-name', text: 'Name for local files (optional)' }), localName),
      h('div', { class: 'field' }, h('label', { class: 'file', for: 'lm-files', text: 'Local files' }), files),
      h('div', { class: 'field' }, h('label', { class: 'file', for: 'lm-folder', text: 'A local folder' }), folder)),
    h('div', { class: 'progress-row' }, progress, stage),
    error,
    list,
    h('div', { class: 'row' }, cacheLine, clear));
  builder.before(part);

  let ready = false;
  let busy = false;
  let localCount = 0;
  const setState = (state) => {
    part.dataset.state = state;
    busy = state === 'loading-model';
    loadButton.disabled = busy || !ready;
    files.disabled = busy || !ready;
    folder.disabled = busy || !ready;
    clear.disabled = busy || !ready;
  };

  function begin(what) {
    error.textContent = '';
    progress.value = 0;
    stage.textContent = what;
    setState('loading-model');
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!ready || busy) return;
    const url = urlInput.value.trim();
    if (!url) {
      error.textContent = 'Type the address of a model folder, e.g. https://huggingface.co/ORG/NAME/resolve/main/';
      return;
    }
    begin(`Loading ${url}…`);
    worker.postMessage({ type: 'model-load', url });
  });

  function loadLocal(input) {
    const picked = [...input.files];
    input.value = '';
    if (!picked.length || !ready || busy) return;
    // Only the folder's own files (not those of its subfolders).
    const top = picked.filter((f) => (f.webkitRelativePath || f.name).split('/').length <= 2);
    localCount += 1;
    const name = localName.value.trim() || folderOf(picked) || `files-${localCount}`;
    begin(`Reading ${top.length} local file${top.length === 1 ? '' : 's'} as local:${name}…`);
    worker.postMessage({ type: 'model-load', files: top, name });
  }
  files.addEventListener('change', () => loadLocal(files));
  folder.addEventListener('change', () => loadLocal(folder));
  clear.addEventListener('click', () => {
    if (!ready || busy) return;
    worker.postMessage({ type: 'model-cache', action: 'clear' });
  });

  // One list item per loaded model (replaced when loaded again).
  function show(r) {
    const i = r.info;
    const heads = i.tasks.length ? `task heads: ${i.tasks.join(', ')}` : 'no task head: read zero-shot through its LM head';
    const where = r.source === 'cache' ? `read from the cache in ${seconds(r.ms)}`
      : r.source === 'local' ? `read from local files in ${seconds(r.ms)}` : `downloaded in ${seconds(r.ms)}`;
    const item = h('li', { 'data-name': r.name, 'data-source': r.source, 'data-cached': String(Boolean(r.cached)), 'data-ms': String(Math.round(r.ms)) },
      h('strong', { class: 'lm-name', text: r.name }),
      ` — ${i.architecture}, ${i.layers} layers, hidden ${i.hidden}, ${(i.parameters / 1e6).toFixed(2)} M parameters; ${mb(r.bytes)} of files, ${where}`,
      r.cached ? h('span', { class: 'lm-cached', text: ' · cached ✓' }) : (r.source === 'local' ? ' · this tab only' : ' · not cached'),
      `; ${heads}.`,
      r.gpu ? ` On the GPU: ${i.gpu_fits ? 'fits' : i.gpu_note} (one storage binding holds ${mb(r.gpu.max_storage_buffer_binding_size)}, one buffer ${mb(r.gpu.max_buffer_size)}: `
        + 'larger weight matrices are uploaded in row blocks, any other tensor must fit one binding).' : '',
      h('br'),
      h('span', { class: 'muted lm-files', text: i.files.map((f) => `${f.path} ${mb(f.bytes)} sha256 ${f.sha256.slice(0, 12)}…`).join(' · ') }));
    const old = [...list.children].find((li) => li.dataset.name === r.name);
    if (old) old.replaceWith(item);
    else list.append(item);
    addModel(r.name, shortName(r.name));
  }

  function showCache(c) {
    if (!c.available) {
      cacheLine.textContent = 'Model cache: not available in this browser (models load, but are not kept).';
      cacheLine.dataset.count = '0';
      return;
    }
    const bytes = c.entries.reduce((s, e) => s + e.bytes, 0);
    cacheLine.dataset.count = String(c.entries.length);
    cacheLine.textContent = c.entries.length
      ? `Model cache: ${c.entries.length} model${c.entries.length === 1 ? '' : 's'}, ${mb(bytes)} (${c.entries.map((e) => shortName(e.base)).join(', ')})`
      : `Model cache: empty${c.cleared ? ' (cleared)' : ''}`;
  }

  return {
    ready() {
      ready = true;
      setState('idle');
      worker.postMessage({ type: 'model-cache', action: 'list' });
    },
    onMessage(msg) {
      if (msg.type === 'model-progress') {
            if (msg.stage) {
          stage.textContent = `${msg.name}: ${msg.stage}…`;
          progress.removeAttribute('value');
          return;
        }
        const verb = msg.source === 'cache' ? 'Reading from the cache' : msg.source === 'local' ? 'Reading' : 'Downloading';
        if (msg.total) progress.value = Math.min(1, msg.loaded / msg.total);
        else progress.removeAttribute('value');
        stage.textContent = `${verb} ${msg.file} (file ${msg.index} of ${msg.count}): ${mb(msg.loaded)} of ${mb(msg.total)}`;
        part.dataset.source = msg.source;
      } else if (msg.type === 'model-loaded') {
        progress.value = 1;
        stage.textContent = `Loaded ${msg.name} (${msg.source === 'cache' ? 'from the cache' : msg.source === 'local' ? 'local files' : 'downloaded'}, ${seconds(msg.ms)}).`;
        show(msg);
        part.dataset.loaded = String(list.children.length);
        setState('loaded');
      } else if (msg.type === 'model-error') {
        progress.value = 0;
        stage.textContent = 'failed';
        error.textContent = `Could not load ${msg.name ?? 'the model'}: ${msg.message}`;
        setState('failed');
      } else if (msg.type === 'model-cache') {
        showCache(msg);
        if (part.dataset.state === 'loading') setState('idle');
        else setState(part.dataset.state === 'loading-model' ? 'idle' : part.dataset.state);
      }
    },
  };
}
