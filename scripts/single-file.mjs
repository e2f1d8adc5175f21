// The single-file offline copy: ONE html file with the page, its code, the wasm core and the bundled
// models and data, to copy onto a USB stick and open from disk (file://) in Chromium, no server.
//
//   trunk build --release && node scripts/single-file.mjs [dist=dist] [out=dist-single/trilemma.html]
//
// A page opened from a file cannot load module workers or fetch() files, so:
// - the page's modules (app.js and what it imports, trilemma.js included) are inlined in one
//   <script type="module">, each wrapped in a function (a small bundler for these files' own
//   import/export forms; anything else is an error here, not a broken page);
// - the worker is made from a Blob of the inlined trilemma.js + worker.js (pool.js's startWorker
//   asks globalThis.trilemmaBundle for it, with the role's query: the CPU pool's helpers work too);
// - the wasm and the asset files are packed (identical files once), gzipped and base64'd into a
//   non-executed <script type="application/octet-stream">; the page unpacks them with
//   DecompressionStream, compiles the wasm once and posts the module and the files to each worker,
//   whose fetch() is replaced (before the core starts) by one that answers from those files;
// - trilemma.js's default wasm URL (new URL('trilemma_bg.wasm', import.meta.url)) becomes the
//   bundle's compiled module, so init() works unchanged in the page (reports) and the workers;
// - its own Content-Security-Policy: the inline script and style by SHA-256, workers from blob:
//   only, no connection anywhere (connect-src 'none').
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

// Files under dist/assets the page never fetches (documentation of the models and the data).
const SKIP_ASSET = /(^|\/)(README\.md|scores\.json)$/;
const MIME = { '.json': 'application/json', '.jsonl': 'application/x-ndjson', '.safetensors': 'application/octet-stream' };
const WASM_URL = /new URL\('trilemma_bg\.wasm', import\.meta\.url\)/g;

const sha256 = (data) => createHash('sha256').update(data).digest('base64');

function walk(d) {
  return readdirSync(d, { withFileTypes: true }).flatMap((e) => {
    const p = join(d, e.name);
    return e.isDirectory() ? walk(p) : e.isFile() ? [p] : [];
  });
}

/**
 * One ES module as a function body: its imports from other inlined modules become destructurings of
 * `__m[file]`, its exports the returned object. Only the forms these files use are accepted.
 */
function wrapModule(file, src) {
  const exports = [];
  let out = src.replace(/^import\s+([\s\S]*?)\s+from\s+(['"])\.\/([\w.-]+)\2;?[ \t]*$/gm, (_, clause, __, dep) => {
    const m = /^(?:(\w+)\s*,?\s*)?(?:\{([\s\S]*)\})?$/.exec(clause.trim());
    if (!m) throw new Error(`${file}: unsupported import ${clause}`);
    const names = [];
    if (m[1]) names.push(`default: ${m[1]}`);
    for (const part of (m[2] ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
      const [name, as] = part.split(/\s+as\s+/);
      names.push(as ? `${name}: ${as}` : name);
    }
    return `const { ${names.join(', ')} } = __m[${JSON.stringify(dep)}];`;
  });
  out = out.replace(/^export\s+((?:async\s+)?function\*?|class|const|let|var)\s+(\w+)/gm, (_, kind, name) => {
    exports.push(name);
    return `${kind} ${name}`;
  });
  out = out.replace(/^export\s*\{([^}]*)\};?[ \t]*$/gm, (_, list) => {
    for (const part of list.split(',').map((s) => s.trim()).filter(Boolean)) {
      const [name, as] = part.split(/\s+as\s+/);
      exports.push(as ? `${as}: ${name}` : name);
    }
    return '';
  });
  const left = /^\s*(import|export)\b(?!\s*\()/m.exec(out);
  if (left) throw new Error(`${file}: an import/export form the bundler does not handle: ${out.slice(left.index, left.index + 80)}`);
  return `__m[${JSON.stringify(file)}] = (() => {\n${out}\nreturn { ${exports.join(', ')} };\n})();\n`;
}

/** The inlined modules reachable from `entry`, dependencies first. */
function moduleGraph(dist, entry) {
  const order = [];
  const seen = new Set();
  const visit = (file) => {
    if (seen.has(file)) return;
    seen.add(file);
    let src = readFileSync(join(dist, file), 'utf8');
    if (file === 'trilemma.js') {
      const n = src.match(WASM_URL)?.length ?? 0;
      if (n !== 1) throw new Error(`trilemma.js: expected one default wasm URL, found ${n} (the wasm-bindgen glue changed)`);
      src = src.replace(WASM_URL, 'globalThis.trilemmaBundle.wasm()');
    }
    for (const [, dep] of src.matchAll(/^import\s+[\s\S]*?\s+from\s+['"]\.\/([\w.-]+)['"]/gm)) visit(dep);
    order.push({ file, src });
  };
  visit(entry);
  return order;
}

// Runs in the page before the modules: unpacks the files, compiles the wasm, makes the workers.
const PAGE_PRELUDE = `
const __m = Object.create(null);
globalThis.trilemmaBundle = (() => {
  const ready = (async () => {
    const text = document.getElementById('trilemma-data').textContent.trim();
    const packed = typeof Uint8Array.fromBase64 === 'function' ? Uint8Array.fromBase64(text)
      : Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
    const raw = await new Response(new Blob([packed]).stream().pipeThrough(new DecompressionStream('gzip'))).arrayBuffer();
    const n = new DataView(raw).getUint32(0, true);
    const header = JSON.parse(new TextDecoder().decode(new Uint8Array(raw, 4, n)));
    const base = 4 + n;
    const module = await WebAssembly.compile(new Uint8Array(raw, base + header.wasm[0], header.wasm[1]));
    return { raw, base, files: header.files, module };
  })();
  const urls = new Map();
  return {
    wasm: () => ready.then((b) => b.module),
    worker(query, name) {
      if (!urls.has(query)) {
        const head = 'self.trilemmaBundle = { search: ' + JSON.stringify(query) + ' };\\n';
        urls.set(query, URL.createObjectURL(new Blob([head, WORKER_SOURCE], { type: 'text/javascript' })));
      }
      const w = new Worker(urls.get(query), { name });
      ready.then(
        ({ raw, base, files, module }) => w.postMessage({ type: 'trilemma-bundle', raw, base, files, module }),
        (err) => w.postMessage({ type: 'trilemma-bundle', error: 'the single file could not be unpacked: ' + (err?.message ?? err) }),
      );
      return w;
    },
  };
})();
`;

// Runs first in every worker: waits for the files, then answers fetch() from them.
const WORKER_PRELUDE = `'use strict';
(() => {
  const bundle = self.trilemmaBundle;
  const got = new Promise((resolve, reject) => {
    self.addEventListener('message', (e) => {
      const m = e.data;
      if (m?.type !== 'trilemma-bundle') return;
      if (m.error) reject(new Error(m.error));
      else resolve(m);
    });
  });
  const MIME = ${JSON.stringify(MIME)};
  got.then(({ raw, base, files }) => {
    self.fetch = async (input) => {
      const url = String(input instanceof Request ? input.url : input);
      const f = files[url.replace(/^\\.\\//, '')];
      if (!f) throw new TypeError(url + ' is not in this single-file copy of Trilemma (it holds the bundled models and data only)');
      const type = MIME[/\\.[^.\\/]*$/.exec(url)?.[0]] ?? 'application/octet-stream';
      return new Response(new Uint8Array(raw, base + f[0], f[1]).slice(), { headers: { 'content-type': type } });
    };
  }, () => {});
  bundle.wasm = () => got.then((m) => m.module);
})();
const __m = Object.create(null);
`;

/** Builds the single file; returns {out, bytes, files, rawBytes, packedBytes}. */
export function buildSingleFile(dist = join(ROOT, 'dist'), out = join(ROOT, 'dist-single', 'trilemma.html')) {
  let html = readFileSync(join(dist, 'index.html'), 'utf8');
  const take = (re, what) => {
    const m = re.exec(html);
    if (!m) throw new Error(`dist/index.html: no ${what} (run \`trunk build --release\` first)`);
    html = html.replace(m[0], '');
    return m;
  };
  const css = take(/[ \t]*<link rel="stylesheet" href="\.\/([\w.-]+\.css)"[^>]*>\n?/, 'stylesheet')[1];
  const icon = take(/[ \t]*<link rel="icon" href="\.\/([\w.-]+\.svg)"[^>]*>\n?/, 'icon')[1];
  const app = take(/[ \t]*<script src="\.\/([\w.-]+\.js)"[^>]*type="module"[^>]*><\/script>\n?/, 'app script')[1];
  take(/[ \t]*<!-- No inline script[\s\S]*?-->\n?/, 'CSP comment');
  take(/[ \t]*<meta http-equiv="Content-Security-Policy"[^>]*>\n?/, 'CSP meta');
  const leftover = /<(?:script|link)\b[^>]*(?:src|href)="[^"#]/.exec(html);
  if (leftover) throw new Error(`dist/index.html: a file reference the single file does not handle: ${leftover[0]}`);

  // The page's modules, and the worker's (trilemma.js + worker.js).
  const pageModules = moduleGraph(dist, app);
  const workerModules = moduleGraph(dist, 'worker.js');
  const workerSource = WORKER_PRELUDE + workerModules.map((m) => wrapModule(m.file, m.src)).join('\n');
  if (/import\.meta/.test(workerSource)) throw new Error('the worker source still uses import.meta (a classic worker cannot)');
  // In a JSON string "<" can be \u003c, so the text never closes the <script> element.
  const workerString = JSON.stringify(workerSource).replace(/</g, '\\u003c');
  const script = `${PAGE_PRELUDE}const WORKER_SOURCE = ${workerString};\n${pageModules.map((m) => wrapModule(m.file, m.src)).join('\n')}`;
  if (/<\/script|<!--/i.test(script)) throw new Error('a page module contains "</script" or "<!--", which would end the inline script');

  // The files the worker fetches (relative URLs, as src/web.rs asks for them) and the wasm, packed.
  const assets = walk(join(dist, 'assets'))
    .map((p) => relative(dist, p).split(sep).join('/'))
    .filter((p) => !SKIP_ASSET.test(p))
    .sort();
  const chunks = [];
  const byHash = new Map();
  let offset = 0;
  let rawBytes = 0;
  const add = (bytes) => {
    rawBytes += bytes.length;
    const h = sha256(bytes);
    if (!byHash.has(h)) {
      byHash.set(h, [offset, bytes.length]);
      chunks.push(bytes);
      offset += bytes.length;
    }
    return byHash.get(h);
  };
  const files = {};
  for (const p of assets) files[p] = add(readFileSync(join(dist, p)));
  const wasm = add(readFileSync(join(dist, 'trilemma_bg.wasm')));
  const header = Buffer.from(JSON.stringify({ files, wasm }));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length);
  const packed = Buffer.concat([len, header, ...chunks]);
  const data = gzipSync(packed, { level: 9 }).toString('base64');

  const style = readFileSync(join(dist, css), 'utf8');
  const iconUrl = `data:image/svg+xml;base64,${readFileSync(join(dist, icon)).toString('base64')}`;
  const csp = [
    "default-src 'none'",
    `script-src 'sha256-${sha256(script)}' 'wasm-unsafe-eval'`,
    'worker-src blob:',
    `style-src 'sha256-${sha256(style)}'`,
    "style-src-attr 'unsafe-inline'",
    'img-src data:',
    "connect-src 'none'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');
  const head = `  <!-- The single-file copy of Trilemma (scripts/single-file.mjs): the page, the wasm core and the
       bundled models and data in one file, for use from disk. Its one script and one style element
       are allowed by their SHA-256; workers come from blob: URLs; nothing is fetched. -->
  <meta http-equiv="Content-Security-Policy" content="${csp}">
  <link rel="icon" href="${iconUrl}">
  <style>${style}</style>
  <script type="module">${script}</script>
`;
  html = html.replace(/<\/head>/, `${head}</head>`);
  html = html.replace(/<\/body>/, `<script type="application/octet-stream" id="trilemma-data">${data}</script>\n</body>`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, html);
  return { out, bytes: statSync(out).size, files: assets.length, rawBytes, packedBytes: packed.length, gzipBase64Bytes: data.length };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [dist = join(ROOT, 'dist'), out = join(ROOT, 'dist-single', 'trilemma.html')] = process.argv.slice(2);
  const t0 = Date.now();
  const r = buildSingleFile(resolve(dist), resolve(out));
  console.log(`single-file: ${r.out}: ${(r.bytes / 1e6).toFixed(1)} MB (${r.files} asset files and the wasm, ${(r.rawBytes / 1e6).toFixed(1)} MB raw, ` +
    `${(r.packedBytes / 1e6).toFixed(1)} MB with identical files once, gzip + base64 ${(r.gzipBase64Bytes / 1e6).toFixed(1)} MB) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}
