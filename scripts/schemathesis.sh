#!/usr/bin/env bash
# Fuzzes the REST API against openapi.yaml with schemathesis (PyPI, pinned in
# scripts/setup.sh, installed into .venv/), using the real Worker under
# `wrangler dev`: a fresh state directory, migrations/ applied, 127.0.0.1 on a
# free port. Every check schemathesis has is on (its default): no 5xx, every
# status, header, content type and body as the spec promises, schema-valid
# input accepted and schema-invalid input refused, 405 with `Allow` for
# undocumented methods, 401 without a token.
#
#   scripts/schemathesis.sh                      # bounded for CI (about 2.5 min)
#   scripts/schemathesis.sh --long               # 10x the examples, no time cap
#   SCHEMATHESIS_MAX_EXAMPLES=500 scripts/schemathesis.sh
#   SCHEMATHESIS_SEED=123 scripts/schemathesis.sh   # replay a run
#   SCHEMATHESIS_KEEP_STATE=1 ...                # keep the state dir (logs, report)
#
# Choices, and why:
# - Requests go to the runtime (workerd) directly, as the API tests do
#   (tests/api/server.rs `Endpoint`): wrangler dev's own proxy can answer 503
#   for a write the Worker completed, and breaks for good on a body the Worker
#   refuses unread, which a fuzzer sends on purpose.
# - The caller is a user registered here; its token goes in the
#   Authorization header (set by the auth hook in scripts/schemathesis_hooks.py)
#   of every operation except the two that sign the calling device out,
#   POST /api/auth/logout and DELETE /api/devices/{id}: those get a new
#   device of their own for every request, so they are fuzzed like the
#   others without ever revoking the shared token.
# - GET /api/ws is not fuzzed: it is a WebSocket handshake, which an HTTP
#   fuzzer cannot complete; the API tests (tests/api/live.rs) cover it and
#   asyncapi.yaml (checked by tests/spec_docs.rs) describes it.
# - Strings are generated as ASCII: JSON Schema's maxLength counts
#   characters while the server's limits (key 256, requestId 128, password
#   1024) count UTF-8 bytes, and the two agree only for ASCII. Unicode keys
#   and values are covered by the API tests (tests/api/values.rs).
# - Write and registration limits are raised on this server so the fuzzer
#   reaches past the rate limiter; 429 is still documented (and checked) on
#   every operation that has it, and the API tests check the limits.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-25}"
MAX_TIME="${SCHEMATHESIS_MAX_TIME:-120}"
if [ "${1:-}" = "--long" ]; then
  MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-250}"
  MAX_TIME=""
fi
SEED="${SCHEMATHESIS_SEED:-$RANDOM$RANDOM}"

# shellcheck source=scripts/setup.sh
SKIP_SETUP=1 . "$ROOT/scripts/setup.sh"
ST="$ROOT/.venv/bin/schemathesis"
PY="$ROOT/.venv/bin/python"
WRANGLER="$ROOT/node_modules/.bin/wrangler"
[ -x "$ST" ] || { echo "schemathesis: $ST is missing: run scripts/setup.sh --for test" >&2; exit 1; }
[ -f "$ROOT/build/worker/shim.mjs" ] || { echo "schemathesis: no build/: run scripts/build.sh" >&2; exit 1; }

STATE="$(mktemp -d "${TMPDIR:-/tmp}/alternassist-schemathesis.XXXXXX")"
PROJECT="$STATE/project"
PGID=""
stop_server() {
  if [ -n "$PGID" ]; then
    kill -TERM -- "-$PGID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 -- "-$PGID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$PGID" 2>/dev/null || true
    PGID=""
  fi
}
cleanup() {
  local rc=$?
  stop_server
  if [ "$rc" -ne 0 ] && [ -f "$STATE/wrangler-dev.log" ]; then
    echo "schemathesis: wrangler dev log tail:" >&2
    tail -n 20 "$STATE/wrangler-dev.log" >&2 || true
  fi
  if [ "${SCHEMATHESIS_KEEP_STATE:-0}" = "1" ]; then
    echo "schemathesis: state kept in $STATE" >&2
  else
    rm -rf "$STATE"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A copy of what wrangler serves, so a rebuild during the run changes nothing.
mkdir -p "$PROJECT"
cp -r wrangler.toml migrations client-demo build "$PROJECT/"
export WRANGLER_SEND_METRICS=false WRANGLER_LOG_PATH="$STATE/wrangler-logs" \
  WRANGLER_REGISTRY_PATH="$STATE/registry" NO_COLOR=1 FORCE_COLOR=0 CI=1

(cd "$PROJECT" && "$WRANGLER" d1 migrations apply DB --local --persist-to "$STATE/data" \
  </dev/null >"$STATE/schema.log" 2>&1) ||
  { cat "$STATE/schema.log" >&2; exit 1; }

read -r PORT INSPECTOR < <("$PY" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')

# setsid: the server leads its own process group, stopped as a whole above.
(cd "$PROJECT" && exec setsid "$WRANGLER" dev --ip 127.0.0.1 --port "$PORT" \
  --inspector-port "$INSPECTOR" --persist-to "$STATE/data" \
  --show-interactive-dev-session=false --log-level warn \
  --var WRITE_BURST:100000 --var WRITES_PER_MINUTE:100000 \
  --var REGISTRATIONS_PER_IP:100000 \
  </dev/null >"$STATE/wrangler-dev.log" 2>&1) &
PGID=$!

# Ready once the proxy answers; then find the runtime's own address.
for i in $(seq 450); do
  if curl -s -o /dev/null "http://127.0.0.1:$PORT/api/does-not-exist"; then break; fi
  kill -0 "$PGID" 2>/dev/null || { echo "schemathesis: wrangler dev exited" >&2; exit 1; }
  [ "$i" -lt 450 ] || { echo "schemathesis: wrangler dev did not start in 90 s" >&2; exit 1; }
  sleep 0.2
done
DIRECT="$("$PY" - "$STATE/wrangler-logs" <<'EOF'
# The last reloadComplete message in wrangler's debug logs names the runtime's
# address and the header its proxy adds; print "URL<TAB>NAME:VALUE...".
import glob, json, sys, time
marker = '{"type":"reloadComplete"'
for _ in range(75):
    last = None
    for f in sorted(glob.glob(sys.argv[1] + "/*.log")):
        for line in open(f, errors="replace"):
            if marker in line:
                last = line[line.index(marker):]
    if last:
        data = json.JSONDecoder().raw_decode(last)[0]["proxyData"]
        u = data["userWorkerUrl"]
        headers = [f"{k}:{v}" for k, v in data.get("headers", {}).items()]
        print("\t".join([f'{u["protocol"]}//{u["hostname"]}:{u["port"]}', *headers]))
        break
    time.sleep(0.2)
EOF
)"
[ -n "$DIRECT" ] || { echo "schemathesis: runtime address not found in wrangler's logs" >&2; exit 1; }
IFS=$'\t' read -r -a direct_parts <<<"$DIRECT"
BASE="${direct_parts[0]}"
HEADER_ARGS=()
for h in "${direct_parts[@]:1}"; do HEADER_ARGS+=(-H "$h"); done
export SCHEMATHESIS_BASE_URL="$BASE"
export SCHEMATHESIS_EXTRA_HEADERS="${direct_parts[*]:1}"

# The fuzzing user.
TOKEN="$(curl -sS --fail-with-body -X POST "$BASE/api/auth/register" "${HEADER_ARGS[@]}" \
  -H 'content-type: application/json' \
  --data "{\"email\":\"fuzz-$$-$RANDOM@example.com\",\"password\":\"fuzz-password\",\"deviceName\":\"schemathesis\"}" |
  "$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"])')"

common=(
  --url "$BASE"
  --checks all
  --generation-codec ascii
  --max-examples "$MAX_EXAMPLES"
  --seed "$SEED"
  --request-timeout 30
  --exclude-path /api/ws
  --report junit --report-dir "$STATE/report"
  --generation-database none
  --no-color
  "${HEADER_ARGS[@]}"
)
[ -n "$MAX_TIME" ] && common+=(--max-time "$MAX_TIME")

echo "schemathesis: Worker at $BASE (proxy :$PORT), seed $SEED, max examples $MAX_EXAMPLES${MAX_TIME:+, max time ${MAX_TIME}s}"
t0=$SECONDS
# FORCE_COLOR (set above for wrangler) would make rich draw live progress
# into logs. Run in the state dir: schemathesis keeps a .schemathesis/ in its
# working directory.
(cd "$STATE" && SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH="$ROOT/scripts" \
  PYTHONDONTWRITEBYTECODE=1 SCHEMATHESIS_TOKEN="$TOKEN" \
  env -u FORCE_COLOR "$ST" run "$ROOT/openapi.yaml" "${common[@]}")
echo "schemathesis: done in $((SECONDS - t0))s"
