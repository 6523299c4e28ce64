#!/usr/bin/env bash
# The operator's command line: accounts, reset codes, the registration
# allow-list, per-person quotas, disabling, deleting and exporting, on the
# local Worker (scripts/dev.sh) or, with --remote, the deployed one. A thin
# client of the Worker's admin API (ADMIN_TOKEN); `scripts/admin.sh help`
# lists the commands, README "Operating it: scripts/admin.sh" explains them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v node >/dev/null 2>&1; then
  # The pinned Node.js that setup.sh may have fetched (PATH only, no installs).
  # shellcheck source=scripts/setup.sh
  SKIP_SETUP=1 . "$ROOT/scripts/setup.sh" >/dev/null
fi
exec node "$ROOT/scripts/admin.mjs" "$@"
