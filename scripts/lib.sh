# Sourced by the project's scripts: paths, pinned tool versions, and phase timing.
# shellcheck shell=bash
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
export PATH="$HOME/.cargo/bin:$ROOT/node_modules/.bin:$PATH"

WORKER_BUILD_VERSION="0.8.7"
CARGO_FUZZ_VERSION="0.13.2"
# The wasm-bindgen CLI must match the library exactly: read it from Cargo.lock.
WASM_BINDGEN_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock")"

# worker-build downloads its tools from GitHub unless told where they are (no network here).
export WASM_BINDGEN_BIN="$HOME/.cargo/bin/wasm-bindgen"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
# Wrangler must not phone home from tests or CI.
export WRANGLER_SEND_METRICS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false

# phase NAME CMD...: runs CMD, then prints how long it took. The totals are printed by `phase_summary`.
PHASES=()
phase() {
  local name="$1"; shift
  local start end
  start=$(date +%s.%N)
  echo "==> $name"
  "$@"
  end=$(date +%s.%N)
  local secs
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  PHASES+=("$name: ${secs}s")
  echo "<== $name: ${secs}s"
}

phase_summary() {
  echo "---- phase durations ----"
  local p
  for p in "${PHASES[@]}"; do echo "  $p"; done
}
