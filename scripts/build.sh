#!/usr/bin/env bash
# Builds the Rust Worker into build/, and the client bundles into
# client-demo/dist/ (scripts/build-client.mjs). worker-build 0.8.7 writes index.js (the
# bundled JS glue) and index_bg.wasm there, plus build/worker/shim.mjs, which
# re-exports index.js and is what wrangler.toml's `main` points at. Runs scripts/setup.sh first unless
# SKIP_SETUP=1. Extra arguments go to worker-build (default: --release).
#
# worker-build would download wasm-bindgen, esbuild and wasm-opt from the
# internet; here it uses local ones instead: the wasm-bindgen CLI that
# setup.sh installed with cargo, and esbuild and wasm-opt (npm package
# binaryen) from node_modules. worker-build reads them from <NAME>_BIN and,
# should one not resolve, silently falls back to a download, so each is
# checked first.
#
# When nothing that goes into the build has changed since the last successful
# one (src/, Cargo.toml, Cargo.lock, .cargo/, package-lock.json, the tools'
# versions, the arguments), the build is skipped; FORCE_BUILD=1 builds anyway.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

# shellcheck source=scripts/setup.sh
. "$ROOT/scripts/setup.sh"

say() { printf 'build: %s\n' "$*"; }

export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-wasm-bindgen}"
export ESBUILD_BIN="${ESBUILD_BIN:-$ROOT/node_modules/.bin/esbuild}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$ROOT/node_modules/.bin/wasm-opt}"
for var in WASM_BINDGEN_BIN ESBUILD_BIN WASM_OPT_BIN; do
  if ! command -v "${!var}" >/dev/null 2>&1; then
    say "$var=${!var} not found: run ./scripts/setup.sh"
    exit 1
  fi
done

args=("$@")
[ "${#args[@]}" -gt 0 ] || args=(--release)

wasm="build/index_bg.wasm"
outputs=(build/worker/shim.mjs build/index.js "$wasm")
stamp="build/.inputs-hash"

inputs_hash() {
  local files p present=()
  for p in src Cargo.toml Cargo.lock .cargo build.rs package-lock.json; do
    [ -e "$p" ] && present+=("$p")
  done
  files="$(find "${present[@]}" -type f | LC_ALL=C sort)"
  {
    printf '%s\n' "${args[*]}" "$WASM_BINDGEN_BIN" "$ESBUILD_BIN" "$WASM_OPT_BIN" "$files"
    rustc --version
    worker-build --version
    "$WASM_BINDGEN_BIN" --version
    # shellcheck disable=SC2086 # one path per line, none with spaces
    cat $files
  } | _aas_sha256
}

all_outputs() {
  local f
  for f in "${outputs[@]}"; do [ -f "$f" ] || return 1; done
}

want="$(inputs_hash)"
if [ "${FORCE_BUILD:-0}" != "1" ] && all_outputs && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  say "up to date: nothing that goes into the build changed since the last one (FORCE_BUILD=1 rebuilds)"
else
  rm -f "$stamp"
  say "worker-build ${args[*]}"
  t0=$SECONDS
  worker-build "${args[@]}"
  say "built in $((SECONDS - t0))s"
  for f in "${outputs[@]}"; do
    [ -f "$f" ] || { say "expected $f is missing"; exit 1; }
  done
  # worker-build keeps the wasm names section (it passes --debuginfo to
  # wasm-opt); the deployed Worker does not need it.
  "$WASM_OPT_BIN" "$wasm" -o "$wasm.stripped" --strip-debug --strip-producers \
    --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int \
    --enable-bulk-memory --enable-multivalue --enable-reference-types --enable-exception-handling
  mv "$wasm.stripped" "$wasm"
  printf '%s\n' "$want" >"$stamp"
fi
# The client bundles the Worker serves (client-demo/dist/, not committed): about a second.
node "$ROOT/scripts/build-client.mjs"
bytes=$(wc -c <"$wasm" | tr -d ' ')
gz=$(gzip -9 -c "$wasm" | wc -c | tr -d ' ')
say "$wasm: $bytes bytes, $gz bytes gzip -9 (free plan limit: 3 MB gzip for the whole Worker)"
