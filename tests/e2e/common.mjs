// What every Playwright file under tests/e2e shares: the paths, the browser and its flags, and the step helper.
// (Not a test file itself: scripts/test.sh runs tests/e2e/*.test.mjs.)
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const DIST = join(ROOT, 'dist');
export const RESULTS = join(ROOT, 'test-results');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
// toolchain.md: these keep Chromium quiet on a closed network (Playwright adds --headless and --no-sandbox);
// --enable-unsafe-webgpu gives headless Chromium a SwiftShader WebGPU adapter.
export const QUIET_FLAGS = ['--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
export const WEBGPU_FLAGS = ['--enable-unsafe-webgpu', ...QUIET_FLAGS];

/** Subtests of `t` that run in order; once one fails the rest are skipped (they would only time out). */
export function stepper(t) {
  let broken = false;
  return (name, fn) =>
    t.test(name, { skip: broken && 'an earlier step failed' }, async (st) => {
      try {
        await fn(st);
      } catch (err) {
        broken = true;
        throw err;
      }
    });
}
