// What the status indicator shows, from the manager's state: pure
// functions, so "never 'synced' while an edit is unacknowledged" is one
// place to read.

/**
 * The status of the tab that syncs:
 * 'synced' | 'syncing' | 'offline' | 'error'.
 */
export function leaderStatus(s) {
  if (!s.signedIn) return s.revoked ? 'error' : 'offline';
  if (!s.online || !s.running) return 'offline';
  if (s.error || s.anyFailed) return 'error';
  if (s.link === 'down') return (s.connecting || s.busy > 0) && !s.unreachable ? 'syncing' : 'offline';
  const idle = s.pending === 0 && s.inflight === 0 && s.busy === 0 && !s.catchingUp;
  return idle ? 'synced' : 'syncing';
}

/**
 * The status of a tab that follows the syncing tab: the leader's, except
 * that this tab's own edits the leader has not taken yet keep it from
 * 'synced'. `mirror` is the leader's last snapshot (null: none heard).
 */
export function followerStatus(s) {
  if (!s.signedIn) return s.revoked ? 'error' : 'offline';
  if (!s.mirror) return s.wantRunning && s.online ? 'syncing' : 'offline';
  const status = s.mirror.status;
  return status === 'synced' && s.ownPending > 0 ? 'syncing' : status;
}
