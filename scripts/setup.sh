#!/usr/bin/env bash
# Installs what the build and the tests need, and only what is missing.
#
# Idempotent: every step checks first (versions included) and prints one line, "ok" or what it
# installed. Everything comes from rustup, crates.io, npm or Debian's apt; nothing else is
# downloaded. Used by scripts/serve.sh and scripts/test.sh; safe to run by hand.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/node_modules/.bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

TRUNK_VERSION="0.21.14"          # Trunk 0.22 needs a newer rustc than the project's 1.95
APT_PACKAGES=(chromium chromium-driver mesa-vulkan-drivers)

say() { printf 'setup: %-22s %s\n' "$1" "$2"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null && command -v rustup >/dev/null \
    || die "cargo and rustup are required (https://rustup.rs)"

# --- Rust target for the browser build -------------------------------------------------------
if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "wasm32 target" "ok"
else
    rustup target add wasm32-unknown-unknown
    say "wasm32 target" "installed"
fi

# --- wasm-bindgen CLI: must equal the wasm-bindgen crate in Cargo.lock ------------------------
[[ -f Cargo.lock ]] || cargo generate-lockfile
WB_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/^version = "|"$/, ""); print; exit }' Cargo.lock)"
[[ -n "$WB_VERSION" ]] || die "no wasm-bindgen package in Cargo.lock"
have_wb="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
if [[ "$have_wb" == "$WB_VERSION" ]] && command -v wasm-bindgen-test-runner >/dev/null; then
    say "wasm-bindgen-cli" "ok ($WB_VERSION)"
else
    # No --locked: the CLI's own lock pins a crate the registry no longer serves.
    cargo install wasm-bindgen-cli --version "$WB_VERSION"
    say "wasm-bindgen-cli" "installed $WB_VERSION (was: ${have_wb:-none})"
fi

# --- Trunk ----------------------------------------------------------------------------------
have_trunk="$(trunk --version 2>/dev/null | awk '{print $2}' || true)"
if [[ "$have_trunk" == "$TRUNK_VERSION" ]]; then
    say "trunk" "ok ($TRUNK_VERSION)"
else
    cargo install trunk --version "$TRUNK_VERSION" --locked
    say "trunk" "installed $TRUNK_VERSION (was: ${have_trunk:-none})"
fi

# --- Debian packages: Chromium + ChromeDriver (browser tests), lavapipe (native wgpu tests) ---
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if (( ${#missing[@]} == 0 )); then
    say "apt packages" "ok (${APT_PACKAGES[*]})"
else
    SUDO=()
    [[ "$(id -u)" -eq 0 ]] || SUDO=(sudo)
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    say "apt packages" "installed ${missing[*]}"
fi

# --- Node packages: wasm-opt (binaryen 132) for Trunk, playwright-core for the page test ------
command -v node >/dev/null && command -v npm >/dev/null || die "node (>= 20) and npm are required"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
(( node_major >= 20 )) || die "node >= 20 is required (found $(node --version))"
lock_hash="$(sha256sum package-lock.json | cut -d' ' -f1)"
stamp="node_modules/.package-lock.sha256"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$lock_hash" && -x node_modules/.bin/wasm-opt ]]; then
    say "node_modules" "ok"
else
    npm ci --no-audit --no-fund --loglevel=error
    echo "$lock_hash" > "$stamp"
    say "node_modules" "installed from package-lock.json"
fi

# --- Crates: Trunk builds with --offline, so everything must already be on disk --------------
if cargo fetch --offline --quiet 2>/dev/null; then
    say "crates" "ok"
else
    cargo fetch --quiet
    say "crates" "fetched"
fi
