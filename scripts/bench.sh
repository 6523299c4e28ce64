#!/usr/bin/env bash
# Runs the load tool (benches/load): the real Worker and two minimal JS
# Durable Objects (bench/baseline/, in memory; bench/d1floor/, one D1 upsert
# per write) under `wrangler dev`, side by side, then D1 costs from the
# Worker's own `d1-cost` log. Prints Markdown tables and writes JSON
# (target/bench/load.json, or load-quick.json). Builds the Worker first
# (skipped when nothing changed).
#
#   scripts/bench.sh                    # full run, 10 to 15 minutes; see BENCHMARKS.md
#   scripts/bench.sh --quick            # about a minute: proves the tool works (CI)
#   scripts/bench.sh --out FILE         # write the JSON elsewhere
#   scripts/bench.sh --deep-seconds S   # most time for the deep-history setup (default 300)
#   scripts/bench.sh --records          # only the record lists of issues #12/#13, about a minute:
#                                       # one-field edits of 100/1,000/5,000-element arrays,
#                                       # by PUT and as WebSocket patch frames
#                                       # (target/bench/records.json); with --quick, about 20 s
#   scripts/bench.sh --record-edits N   # timed edits per list there (default 100; quick 5)
#   scripts/bench.sh --records-hardened # only issue #19's scenarios, about 10 minutes: insert,
#                                       # append, remove beside a one-field edit of 5,000- and
#                                       # 25,000-record lists, the 25,000-record list end to end
#                                       # (reads warm and after a restart, history, restore),
#                                       # rows read per retention run, workerd memory per held
#                                       # record, fresh vs deep keys in flight (3 runs each)
#                                       # (target/bench/records-hardened.json); with --quick, ~25 s
#   scripts/bench.sh --in-flight        # only acks/s with 16 and 64 writes in flight (issue #23): ours and
#                                       # the one-upsert floor in alternating rounds (fresh keys, then keys
#                                       # with a deep history), medians and each round, about 6 minutes
#                                       # (target/bench/in-flight.json); with --quick, ~30 s
#   scripts/bench.sh --rounds N         # rounds of each there (default 3)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SKIP_SETUP="${SKIP_SETUP:-0}" ./scripts/build.sh
for arg in "$@"; do
  if [ "$arg" = "--quick" ]; then
    # Quick mode proves the tool works: a debug build compiles faster.
    exec cargo test --bench load -- "$@"
  fi
done
exec cargo bench --bench load -- "$@"
