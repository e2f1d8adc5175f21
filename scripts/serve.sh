#!/usr/bin/env bash
# README command 1: build the page (release) and serve it at http://127.0.0.1:8080
# (PORT=... to change the port); also writes the single-file offline copy, dist-single/trilemma.html.
#
# Served by scripts/static-server.mjs rather than `trunk serve`: `trunk serve --release` would
# run the whole release pipeline (cargo, wasm-bindgen, ~25 s of wasm-opt) a second time and
# inject a live-reload script, while a plain static server serves exactly what was built, with
# the right MIME types (application/wasm), fully offline. It is the server the e2e test uses;
# Debian's `python3 -m http.server` would also do (it maps .wasm via /etc/mime.types), but Node
# is required anyway.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/node_modules/.bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
PORT="${PORT:-8080}"

"$ROOT/scripts/setup.sh"

echo "serve: trunk build --release"
start=$SECONDS
trunk build --release
wasm_bytes="$(stat -c %s dist/trilemma_bg.wasm)"
wasm_gzip="$(gzip -9 -c dist/trilemma_bg.wasm | wc -c)"
awk -v t=$((SECONDS - start)) -v raw="$wasm_bytes" -v gz="$wasm_gzip" 'BEGIN {
    printf "serve: built in %ds; dist/trilemma_bg.wasm is %.2f MB (%.2f MB gzipped)\n", t, raw / 1e6, gz / 1e6 }'

# The single-file offline copy (README, "Offline"): dist-single/trilemma.html, about a second.
node "$ROOT/scripts/single-file.mjs"

exec node "$ROOT/scripts/static-server.mjs" dist "$PORT" 127.0.0.1
