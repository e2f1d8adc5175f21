#!/usr/bin/env bash
# README command 2 (and .ci/run): every test layer, each under its own banner, then a summary.
# A failing layer does not stop the later ones; the script fails if any layer failed.
#
#   1. native   cargo test: unit tests, naga validation of shaders/*.wgsl, wgpu parity on lavapipe
#   2. wasm     tests/web.rs in headless Chromium with WebGPU on SwiftShader; tests/node.rs under Node
#   3. page     trunk build --release (dist/)
#   4. e2e      Playwright drives the built page in headless Chromium (tests/e2e/page.test.mjs), and
#               its offline use: service worker, single file from file:// (tests/e2e/offline.test.mjs)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/node_modules/.bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# wgpu/Vulkan and Chromium complain when XDG_RUNTIME_DIR is unset or unusable.
XDG_RUNTIME_DIR="$(mktemp -d)"
chmod 700 "$XDG_RUNTIME_DIR"
export XDG_RUNTIME_DIR
trap 'rm -rf "$XDG_RUNTIME_DIR"' EXIT

names=() results=() times=()
failed=0

banner() {
    printf '\n==================== %s ====================\n' "$*"
}

# run_layer NAME FUNCTION: runs FUNCTION with errexit on, records PASS/FAIL and the time.
run_layer() {
    local name="$1" fn="$2" start=$SECONDS rc
    banner "$name"
    set +e
    ( set -e; "$fn" )
    rc=$?
    set -e
    names+=("$name") times+=($((SECONDS - start)))
    if (( rc == 0 )); then
        results+=(PASS)
    else
        results+=("FAIL (exit $rc)")
        failed=1
    fi
    printf -- '---- %s: %s in %ss\n' "$name" "${results[-1]}" "${times[-1]}"
}

skip_layer() {
    banner "$1"
    echo "skipped: $2"
    names+=("$1") results+=("SKIP ($2)") times+=(0)
    failed=1
}

layer_setup() {
    "$ROOT/scripts/setup.sh"
}

layer_native() {
    # setup.sh installs lavapipe, so a missing Vulkan adapter is a failure here, not a skip.
    TRILEMMA_REQUIRE_GPU=1 cargo test
}

layer_wasm() {
    # TRILEMMA_REQUIRE_WEBGPU is read at compile time (option_env!): no adapter is a failure.
    CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_TIMEOUT=300 TRILEMMA_REQUIRE_WEBGPU=1 \
        cargo test --target wasm32-unknown-unknown --test web
    # The same core under Node: no WebGPU there, so acquiring the GPU must be a clean error.
    cargo test --target wasm32-unknown-unknown --test node
}

layer_page() {
    trunk build --release
    ls -l dist/trilemma_bg.wasm dist/trilemma.js
}

layer_e2e() {
    # Every Playwright file, one at a time (each starts its own Chromium): the page, the playground as a new user
    # meets it, and offline (the service worker's cache, update and reload offline; the single file from file://).
    node --test --test-concurrency=1 --test-reporter=spec "$ROOT"/tests/e2e/*.test.mjs
}

total_start=$SECONDS
run_layer "setup" layer_setup
if [[ "${results[-1]}" != PASS ]]; then
    echo "setup failed: the test layers need its tools" >&2
    exit 1
fi
run_layer "native: cargo test (CPU, shaders, wgpu on lavapipe)" layer_native
run_layer "wasm: cargo test --target wasm32 in Chromium (WebGPU) and Node" layer_wasm
run_layer "page: trunk build --release" layer_page
if [[ "${results[-1]}" == PASS ]]; then
    run_layer "e2e: Playwright against dist/" layer_e2e
else
    skip_layer "e2e: Playwright against dist/" "the page did not build"
fi

banner "summary"
for i in "${!names[@]}"; do
    printf '%-56s %-32s %5ss\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
done
printf '%-56s %-32s %5ss\n' "total" "$( ((failed)) && echo FAILED || echo PASSED )" $((SECONDS - total_start))
exit "$failed"
