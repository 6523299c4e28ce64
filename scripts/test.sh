#!/usr/bin/env bash
# Installs whatever is missing, then runs every check, stopping at the first
# failure:
#   1. cargo fmt --check
#   2. cargo clippy, host (all targets) and wasm32 (the Worker), warnings denied
#   3. scripts/build.sh (the release Worker into build/worker/)
#   4. cargo test: host unit and property tests, the spec checks, the `api`
#      integration tests and the short soak test, which start their own
#      `wrangler dev` servers on the build
#   5. the load tool in quick mode (proves it runs; asserts no timing)
#   6. the client: bundle (esbuild), types (tsc), unit tests (node), the
#      npm package (pack and install), browser tests (Chromium); schemathesis
#
#   QUICK=1 ./scripts/test.sh      # skip clippy
#   SKIP_SETUP=1 ./scripts/test.sh # skip the install checks
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

t_start=$SECONDS
step="setup"
done_steps=()
run() {
  step="$1"
  shift
  printf '\n== test: %s\n' "$step"
  local t0=$SECONDS
  "$@"
  done_steps+=("$step ($((SECONDS - t0))s)")
}
on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    printf '\n== test.sh: FAILED at step "%s" (exit %s) after %ss\n' "$step" "$rc" "$((SECONDS - t_start))"
  fi
}
trap on_exit EXIT

# Everything, the test tools (Chromium, schemathesis, clippy) included.
# shellcheck source=scripts/setup.sh
. "$ROOT/scripts/setup.sh" --for test

run "cargo fmt --check" cargo fmt --check
if [ "${QUICK:-0}" = "1" ]; then
  printf '\n== test: clippy skipped (QUICK=1)\n'
else
  run "clippy (host)" cargo clippy --all-targets -- -D warnings
  run "clippy (wasm32)" cargo clippy --target wasm32-unknown-unknown --lib -- -D warnings
fi
run "build" env SKIP_SETUP=1 "$ROOT/scripts/build.sh"
run "cargo test" cargo test
# (cargo test includes the short soak test, tests/soak.) The load tool in
# quick mode proves it works; it asserts no timing.
run "bench (quick)" cargo test --bench load -- --quick
run "client bundle" node scripts/build-client.mjs
run "client types (tsc)" node_modules/.bin/tsc -p tests/types
run "client unit tests" node --test tests/browser/unit/
run "client package (npm pack)" node --test tests/browser/package.test.mjs
run "browser tests" node --test tests/browser/e2e.test.mjs
run "schemathesis" "$ROOT/scripts/schemathesis.sh"

summary="$(printf '%s, ' "${done_steps[@]}")"
printf '\n== test.sh: OK in %ss: %s\n' "$((SECONDS - t_start))" "${summary%, }"
