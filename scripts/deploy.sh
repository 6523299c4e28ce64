#!/usr/bin/env bash
# Deploys the Worker to your own Cloudflare account (see README.md,
# "Deploying to your Cloudflare account", for the one-time steps before it):
#   1. installs whatever is missing (scripts/setup.sh; SKIP_SETUP=1 skips it)
#   2. checks that wrangler is logged in (`wrangler login`, or the
#      CLOUDFLARE_API_TOKEN environment variable) and that wrangler.toml has
#      your D1 database_id
#   3. builds the Worker (scripts/build.sh)
#   4. applies the D1 migrations (migrations/) to the remote database
#   5. wrangler deploy
# Extra arguments go to `wrangler deploy` (e.g. --dry-run), except
# --allow-open-registration: without it, REGISTRATION = "open" is refused.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

# A deployment is not open to strangers unless its owner says so: refuse
# REGISTRATION = "open" (in wrangler.toml or a --var) without this flag.
allow_open=0
args=()
for a in "$@"; do
  if [ "$a" = "--allow-open-registration" ]; then allow_open=1; else args+=("$a"); fi
done
set -- ${args[@]+"${args[@]}"}
registration="$(sed -nE 's/^[[:space:]]*REGISTRATION[[:space:]]*=[[:space:]]*"([^"]*)".*/\1/p' wrangler.toml | tail -1)"
prev=""
for a in "$@"; do
  if [ "$prev" = "--var" ] && [[ "$a" == REGISTRATION:* ]]; then registration="${a#REGISTRATION:}"; fi
  prev="$a"
done
registration="$(printf '%s' "${registration:-allowlist}" | tr '[:upper:]' '[:lower:]')"
if [ "$registration" = "open" ] && [ "$allow_open" -ne 1 ]; then
  printf 'deploy: REGISTRATION is "open": anyone on the internet could create an account\n'
  printf 'deploy: and write into your D1 database. Set REGISTRATION = "allowlist" with\n'
  printf 'deploy: REGISTRATION_ALLOWLIST = "you@example.com" (or "closed") in wrangler.toml,\n'
  printf 'deploy: or pass --allow-open-registration if you really mean it.\n'
  exit 1
fi
if [ "$registration" = "allowlist" ] && ! grep -Eq '^[[:space:]]*REGISTRATION_ALLOWLIST[[:space:]]*=[[:space:]]*"[^"[:space:]]' wrangler.toml; then
  printf 'deploy: note: REGISTRATION_ALLOWLIST is empty, so nobody can register yet;\n'
  printf 'deploy: put your own email there to create your account.\n'
fi

# shellcheck source=scripts/setup.sh
. "$ROOT/scripts/setup.sh"

say() { printf 'deploy: %s\n' "$*"; }
WRANGLER="$ROOT/node_modules/.bin/wrangler"

say "checking the Cloudflare login (wrangler whoami)"
whoami_rc=0
whoami_out="$("$WRANGLER" whoami 2>&1 </dev/null)" || whoami_rc=$?
if [ "$whoami_rc" -ne 0 ] || grep -qi 'not authenticated' <<<"$whoami_out"; then
  printf '%s\n' "$whoami_out"
  if [ "$whoami_rc" -ne 0 ]; then
    say "wrangler whoami failed (exit $whoami_rc, see above): a bad API token, or Cloudflare's API unreachable?"
  else
    say "not logged in to Cloudflare."
  fi
  say "Log in with:  npx wrangler login"
  say "(or set CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID), then run this again."
  exit 1
fi
grep -iE 'logged in|account' <<<"$whoami_out" | sed 's/^/  /' || true

if grep -Eq '^[[:space:]]*database_id[[:space:]]*=[[:space:]]*"0{8}-0{4}-0{4}-0{4}-0{12}"' wrangler.toml; then
  say "wrangler.toml still has the placeholder D1 database_id. Run:"
  say "  npx wrangler d1 create alternassist-sync"
  say "and paste the database_id it prints into wrangler.toml ([[d1_databases]])."
  exit 1
fi

SKIP_SETUP=1 "$ROOT/scripts/build.sh"

say "applying migrations/ to the remote D1 database"
"$WRANGLER" d1 migrations apply DB --remote

say "wrangler deploy $*"
"$WRANGLER" deploy "$@"

say "done. Point the app's SyncManager at https://<worker>.<your-subdomain>.workers.dev/api (the apiBase option);"
say "wrangler printed the Worker's address above."
