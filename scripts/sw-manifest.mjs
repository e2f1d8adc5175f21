// Writes the list of the build's files into the service worker (www/sw.js, copied to dist/sw.js):
// every file's path, size and SHA-256, and a version (the first 16 hex digits of the SHA-256 of
// that list). Run by Trunk as a post_build hook (Trunk.toml), on the staging folder before it
// becomes dist/; by hand on a finished build:
//
//   node scripts/sw-manifest.mjs [dir=$TRUNK_STAGING_DIR or dist]
//
// Why at build time: the browser installs a new service worker only when sw.js's bytes change, so
// the list (and so the cache name) has to be in sw.js itself, and only the build knows the hashed
// names Trunk gives app.js, the css and the icon. Idempotent: a sw.js that has a list gets a new one.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';

const dir = process.argv[2] ?? process.env.TRUNK_STAGING_DIR ?? 'dist';
const SW = 'sw.js';
// Not cached: the worker itself (the browser keeps it), and what the page never asks for.
const SKIP = new Set([SW]);

function walk(d) {
  return readdirSync(d, { withFileTypes: true }).flatMap((e) => {
    const p = join(d, e.name);
    if (e.isDirectory()) return walk(p);
    return e.isFile() ? [p] : [];
  });
}

const files = walk(dir)
  .map((p) => relative(dir, p).split(sep).join('/'))
  .filter((p) => !SKIP.has(p) && !p.startsWith('.'))
  .sort()
  .map((path) => {
    const bytes = readFileSync(join(dir, path));
    return { path, bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
  });
if (!files.some((f) => f.path === 'index.html')) throw new Error(`sw-manifest: ${dir} has no index.html`);

const version = createHash('sha256').update(JSON.stringify(files)).digest('hex').slice(0, 16);
const swPath = join(dir, SW);
const source = readFileSync(swPath, 'utf8');
const line = /^const BUILD = .*; \/\/ @build-manifest.*$/m;
if (!line.test(source)) throw new Error(`sw-manifest: ${swPath} has no "const BUILD = ...; // @build-manifest" line`);
const manifest = JSON.stringify({ version, files });
writeFileSync(swPath, source.replace(line, () => `const BUILD = ${manifest}; // @build-manifest: written by scripts/sw-manifest.mjs`));
const mb = files.reduce((s, f) => s + f.bytes, 0) / 1e6;
console.log(`sw-manifest: ${files.length} files, ${mb.toFixed(2)} MB, version ${version} -> ${swPath} (${statSync(swPath).size} bytes)`);
