#!/usr/bin/env bash
# Installs whatever is missing, builds the Worker, applies the D1 migrations to
# a local database under .state/, and runs the Worker locally with
# `wrangler dev` (workerd, local D1 and Durable Objects, fully offline).
#
#   PORT=9000 ./scripts/dev.sh     # default 8787; a busy port is replaced by a free one
#   SKIP_SETUP=1 ./scripts/dev.sh  # skip the install checks
#   REGISTRATION=closed ./scripts/dev.sh  # default open here (wrangler.toml: allowlist)
#
# Data stays in .state/ between runs; delete that folder for a clean start.
# The Worker is built once at start: stop (Ctrl-C) and rerun after editing src/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

# shellcheck source=scripts/setup.sh
. "$ROOT/scripts/setup.sh"

say() { printf 'dev: %s\n' "$*"; }

SKIP_SETUP=1 "$ROOT/scripts/build.sh"

STATE_DIR=".state"
WRANGLER="$ROOT/node_modules/.bin/wrangler"

say "applying migrations/ to the local D1 database in $STATE_DIR/"
# Without a terminal (and with CI=true) wrangler skips its confirmation prompt.
CI=true "$WRANGLER" d1 migrations apply DB --local --persist-to "$STATE_DIR" </dev/null

port_free() {
  node -e '
    const s = require("net").createServer();
    s.once("error", () => process.exit(1));
    s.listen(Number(process.argv[1]), "127.0.0.1", () => s.close(() => process.exit(0)));
  ' "$1"
}
free_port() {
  node -e '
    const s = require("net").createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => console.log(p)); });
  '
}

PORT="${PORT:-8787}"
if ! port_free "$PORT"; then
  busy="$PORT"
  PORT="$(free_port)"
  say "port $busy is busy; using free port $PORT instead"
fi

say "starting wrangler dev at http://127.0.0.1:$PORT (demo page at /, API under /api)"
# wrangler.toml keeps a deployment closed to strangers; locally anyone may
# sign up unless REGISTRATION says otherwise (e.g. REGISTRATION=allowlist).
exec "$WRANGLER" dev --ip 127.0.0.1 --port "$PORT" --persist-to "$STATE_DIR" \
  --var "REGISTRATION:${REGISTRATION:-open}"
