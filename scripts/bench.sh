#!/usr/bin/env bash
# Runs the load tool (benches/load): the real Worker and a minimal JS Durable
# Object baseline (bench/baseline/) under `wrangler dev`, side by side. Prints
# a Markdown table and writes JSON (target/bench/load.json, or
# load-quick.json). Builds the Worker first (skipped when nothing changed).
#
#   scripts/bench.sh            # full run, a few minutes; see BENCHMARKS.md
#   scripts/bench.sh --quick    # seconds: proves the tool works (CI)
#   scripts/bench.sh --out FILE # write the JSON elsewhere
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SKIP_SETUP="${SKIP_SETUP:-0}" ./scripts/build.sh
if [ "${1:-}" = "--quick" ]; then
  # Quick mode proves the tool works: a debug build compiles faster.
  exec cargo test --bench load -- "$@"
fi
exec cargo bench --bench load -- "$@"
