#!/usr/bin/env bash
# Installs what the Worker needs, skipping each step that is already
# satisfied (a second run takes about a second). To build and run it
# (./scripts/setup.sh; dev.sh, build.sh and deploy.sh use this):
#   - the Rust wasm32-unknown-unknown target (rustup)
#   - worker-build 0.8.7 and the wasm-bindgen CLI matching Cargo.lock (cargo install)
#   - a Node.js that the pinned wrangler accepts (its `engines` in
#     package-lock.json): the machine's own node when new enough, otherwise a
#     pinned build from the npm registry (package node-<os>-<arch>) kept in
#     ~/.cache/alternassist-sync/ and put first on PATH by these scripts
#   - the npm packages pinned in package-lock.json (wrangler, esbuild, binaryen, ...)
# To test it as well (./scripts/setup.sh --for test; test.sh uses this):
#   - clippy and rustfmt (rustup)
#   - Chromium for the browser tests (apt-get)
#   - schemathesis (pinned) in a project-local Python venv, .venv/ (python3 -m venv, pip)
#
# Run it (./scripts/setup.sh [--for test]) or source it (. scripts/setup.sh
# [--for test]): sourcing also leaves those tools on your shell's PATH, e.g.
# for `npx wrangler login`. With SKIP_SETUP=1, sourcing only sets up PATH and
# installs nothing. AAS_SETUP_FOR=test is the same as --for test.

# ---- configuration -----------------------------------------------------------
AAS_WORKER_BUILD_VERSION="0.8.7"
AAS_NODE_VERSION="22.23.3"     # fetched from the npm registry when the machine's node is too old
AAS_SCHEMATHESIS_VERSION="4.32.5"  # PyPI, into .venv/ (scripts/schemathesis.sh)
AAS_TOOLS_DIR="${AAS_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/alternassist-sync}"
AAS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AAS_SETUP_FOR="${AAS_SETUP_FOR:-run}"
if [ "${1:-}" = "--for" ]; then AAS_SETUP_FOR="${2:-run}"; fi
case "$AAS_SETUP_FOR" in
  run | test) ;;
  *) printf 'setup: --for takes run or test, not %s\n' "$AAS_SETUP_FOR" >&2; AAS_SETUP_FOR=run ;;
esac

# ---- helpers -----------------------------------------------------------------
_aas_say() { printf 'setup: %s\n' "$*"; }

# True when `node` on PATH is at least the version the pinned wrangler asks
# for (`"engines": {"node": ">=X.Y.Z"}` in package-lock.json; 20.3.0 if none).
_aas_node_ok() {
  command -v node >/dev/null 2>&1 || return 1
  node -e '
    let min = "20.3.0";
    try {
      const lock = require(process.argv[1]);
      const m = /^>=\s*(\d+\.\d+\.\d+)/.exec(lock.packages["node_modules/wrangler"].engines.node);
      if (m) min = m[1];
    } catch (e) {}
    const want = min.split(".").map(Number);
    const have = process.versions.node.split(".").map(Number);
    for (let i = 0; i < 3; i++) {
      if (have[i] !== want[i]) process.exit(have[i] > want[i] ? 0 : 1);
    }' "$AAS_ROOT/package-lock.json" 2>/dev/null
}

_aas_node_min() {
  node -p 'try { require(process.argv[1]).packages["node_modules/wrangler"].engines.node } catch (e) { ">=20.3.0" }' \
    "$AAS_ROOT/package-lock.json" 2>/dev/null || echo '>=20.3.0'
}

# The npm package that carries a Node.js binary for this machine.
_aas_node_pkg() {
  local os arch
  case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    *) return 1 ;;
  esac
  case "$(uname -m)" in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) return 1 ;;
  esac
  printf 'node-%s-%s\n' "$os" "$arch"
}

_aas_node_bin_dir() {
  local pkg
  pkg="$(_aas_node_pkg)" || return 1
  printf '%s/node-v%s/node_modules/%s/bin\n' "$AAS_TOOLS_DIR" "$AAS_NODE_VERSION" "$pkg"
}

_aas_path_prepend() {
  case ":$PATH:" in
    *":$1:"*) ;;
    *) PATH="$1:$PATH" ;;
  esac
}

# PATH for cargo-installed tools and, when needed, the pinned Node.js.
_aas_env() {
  _aas_path_prepend "${CARGO_HOME:-$HOME/.cargo}/bin"
  if ! _aas_node_ok; then
    local nb
    if nb="$(_aas_node_bin_dir)" && [ -x "$nb/node" ]; then
      _aas_path_prepend "$nb"
    fi
  fi
  export PATH
  # wrangler: no usage metrics (and no network attempt for them).
  export WRANGLER_SEND_METRICS="${WRANGLER_SEND_METRICS:-false}"
}

_aas_sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    cat "$@" | sha256sum | cut -d' ' -f1
  else
    cat "$@" | shasum -a 256 | cut -d' ' -f1
  fi
}

# The wasm-bindgen version Cargo.lock pins.
_aas_lock_wasm_bindgen_version() {
  awk '
    /^\[\[package\]\]/ { name = "" }
    /^name = /         { name = $3 }
    /^version = / && name == "\"wasm-bindgen\"" { gsub(/"/, "", $3); print $3; exit }
  ' Cargo.lock
}

_aas_setup() {
  set -euo pipefail
  cd "$AAS_ROOT"
  _aas_env
  local t0=$SECONDS

  command -v cargo >/dev/null || { _aas_say "cargo not found: install Rust with rustup (https://rustup.rs)"; return 1; }
  command -v rustup >/dev/null || { _aas_say "rustup not found: install Rust with rustup (https://rustup.rs)"; return 1; }
  command -v npm >/dev/null || { _aas_say "npm not found: install Node.js (with npm)"; return 1; }

  # 1. Rust target.
  if rustup target list --installed | grep -qx 'wasm32-unknown-unknown'; then
    _aas_say "ok   rust target wasm32-unknown-unknown"
  else
    _aas_say "run  rustup target add wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
  fi

  # 2. worker-build.
  if command -v worker-build >/dev/null 2>&1 &&
    worker-build --version 2>/dev/null | grep -qw -- "$AAS_WORKER_BUILD_VERSION"; then
    _aas_say "ok   worker-build $AAS_WORKER_BUILD_VERSION"
  else
    _aas_say "run  cargo install worker-build --version $AAS_WORKER_BUILD_VERSION --locked (about 3 min)"
    cargo install worker-build --version "$AAS_WORKER_BUILD_VERSION" --locked --force
  fi

  # 3. wasm-bindgen CLI, exactly the version of the wasm-bindgen crate in Cargo.lock.
  if [ ! -f Cargo.lock ]; then
    _aas_say "run  cargo generate-lockfile (no Cargo.lock)"
    cargo generate-lockfile
  fi
  local wbv
  wbv="$(_aas_lock_wasm_bindgen_version)"
  if [ -z "$wbv" ]; then
    _aas_say "no wasm-bindgen entry in Cargo.lock"
    return 1
  fi
  if command -v wasm-bindgen >/dev/null 2>&1 &&
    [ "$(wasm-bindgen --version 2>/dev/null)" = "wasm-bindgen $wbv" ]; then
    _aas_say "ok   wasm-bindgen-cli $wbv"
  else
    _aas_say "run  cargo install wasm-bindgen-cli --version $wbv --locked (about 2.5 min)"
    if ! cargo install wasm-bindgen-cli --version "$wbv" --locked --force; then
      _aas_say "     --locked failed (its lock file can name a crate version the registry lacks); retrying without --locked"
      cargo install wasm-bindgen-cli --version "$wbv" --force
    fi
  fi

  # 4. Node.js new enough for wrangler.
  if _aas_node_ok; then
    _aas_say "ok   node $(node --version) at $(command -v node) (wrangler wants $(_aas_node_min))"
  else
    local pkg prefix
    pkg="$(_aas_node_pkg)" || {
      _aas_say "wrangler wants node $(_aas_node_min) and none is packaged for $(uname -sm): install it yourself"
      return 1
    }
    prefix="$AAS_TOOLS_DIR/node-v$AAS_NODE_VERSION"
    _aas_say "run  npm install $pkg@$AAS_NODE_VERSION into $prefix (wrangler wants node $(_aas_node_min); the machine has $(node --version 2>/dev/null || echo none))"
    rm -rf "$prefix"
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --no-save --no-package-lock --no-audit --no-fund \
      "$pkg@$AAS_NODE_VERSION"
    _aas_env
    _aas_node_ok || { _aas_say "node $AAS_NODE_VERSION does not run or is still too old: raise AAS_NODE_VERSION in scripts/setup.sh"; return 1; }
    _aas_say "     now using node $(node --version) at $(command -v node)"
  fi

  # 5. npm packages, exactly as package-lock.json pins them.
  local want_hash stamp=node_modules/.setup-lock-hash
  want_hash="$(_aas_sha256 package.json package-lock.json)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_hash" ] && [ -f node_modules/.package-lock.json ]; then
    _aas_say "ok   npm packages (package-lock.json unchanged since the last npm ci)"
  else
    _aas_say "run  npm ci --no-audit --no-fund"
    npm ci --no-audit --no-fund
    printf '%s\n' "$want_hash" >"$stamp"
  fi

  if [ "$AAS_SETUP_FOR" != "test" ]; then
    _aas_say "done in $((SECONDS - t0))s (what running the Worker needs; ./scripts/setup.sh --for test adds the test tools)"
    return 0
  fi

  # 6. Rust components for the checks.
  local installed_components missing=()
  installed_components="$(rustup component list --installed)"
  local c
  for c in clippy rustfmt; do
    if grep -q "^$c\(-\|$\)" <<<"$installed_components"; then
      _aas_say "ok   rust component $c"
    else
      missing+=("$c")
    fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    _aas_say "run  rustup component add ${missing[*]}"
    rustup component add "${missing[@]}"
  fi

  # 7. Debian's Chromium for the browser tests (playwright-core drives it;
  # Playwright's own browser download is not used).
  if [ -x /usr/bin/chromium ]; then
    _aas_say "ok   chromium ($(/usr/bin/chromium --version 2>/dev/null | head -n 1))"
  else
    local sudo=""
    [ "$(id -u)" = "0" ] || sudo="sudo"
    if [ -n "$sudo" ] && ! command -v sudo >/dev/null 2>&1; then
      _aas_say "chromium is missing and this user cannot install it: run apt-get install -y chromium as root"
      return 1
    fi
    _aas_say "run  apt-get update && apt-get install -y chromium"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
  fi

  # 8. schemathesis (API fuzzing, scripts/schemathesis.sh) in a project-local
  # venv, .venv/, from PyPI at a pinned version.
  if [ -x .venv/bin/schemathesis ] &&
    [ "$(.venv/bin/schemathesis --version 2>/dev/null)" = "schemathesis, version $AAS_SCHEMATHESIS_VERSION" ]; then
    _aas_say "ok   schemathesis $AAS_SCHEMATHESIS_VERSION (.venv/)"
  else
    command -v python3 >/dev/null || { _aas_say "python3 not found: install Python 3.9+ (with venv)"; return 1; }
    _aas_say "run  python3 -m venv .venv && pip install schemathesis==$AAS_SCHEMATHESIS_VERSION"
    [ -x .venv/bin/pip ] || python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check "schemathesis==$AAS_SCHEMATHESIS_VERSION"
  fi

  _aas_say "done in $((SECONDS - t0))s"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  # Run as a program.
  set -euo pipefail
  _aas_setup
else
  # Sourced: install in a subshell, so that neither `set -e` nor `cd` leaks
  # into the caller, then set up the caller's PATH.
  if [ "${SKIP_SETUP:-0}" != "1" ]; then
    (_aas_setup)
    _aas_rc=$?
    if [ "$_aas_rc" -ne 0 ]; then
      printf 'setup: FAILED (exit %s)\n' "$_aas_rc" >&2
      return "$_aas_rc"
    fi
    unset _aas_rc
  fi
  _aas_env
fi
