// Compiled by `tsc -p tests/types` (scripts/test.sh): the declarations in
// client-demo/*.d.ts are valid and describe the API as an app uses it.
import SyncManagerDefault, { SyncManager, SyncError, DEFAULT_KEYS, STORAGE_KEYS, mergeById, retryDelay } from '../../client-demo/sync-manager.js';
import type { ConflictRecord, StatusSnapshot, AccountChange } from '../../client-demo/sync-manager.js';
import { timeAgo } from '../../client-demo/sync-status.js';

const sync = new SyncManager({
  apiBase: 'https://sync.example.com/api',
  keys: [...DEFAULT_KEYS, 'notes'],
  onAccountChange: (c: AccountChange) => (c.previousEmail ? 'replace' : 'merge'),
});
const same: SyncManager = new SyncManagerDefault();
void same;

const offStatus: () => void = sync.on('status', (s: StatusSnapshot) => {
  const label: 'synced' | 'syncing' | 'offline' | 'error' = s.status;
  console.log(label, s.pendingCount, s.lastSyncedAt ? timeAgo(s.lastSyncedAt) : 'never', s.error?.code);
});
offStatus();
sync.on('change', ({ key, value, source }) => console.log(key, value?.length, source));
sync.on('conflict', (c: ConflictRecord) => {
  if (c.lostElements) for (const l of c.lostElements) console.log(l.id, l.side, l.element);
  c.restore?.();
});
sync.on('signedout', ({ reason }) => console.log(reason === 'revoked'));

async function main(): Promise<void> {
  try {
    if (!sync.signedIn) await sync.login('me@example.com', 'password', 'Laptop');
  } catch (err) {
    if (err instanceof SyncError && err.code === 'account_changed') {
      await sync.login('me@example.com', 'password', { accountChange: 'merge' });
    }
  }
  await sync.start();
  await sync.whenSynced(10_000);
  const history = await sync.history('estimates', { limit: 10 });
  const v = await sync.historyVersion('estimates', history[0].version);
  console.log(v.value, sync.isLeader, sync.conflicts.length, STORAGE_KEYS.token);
  const doc = await sync.exportData();
  const res = await sync.importData(doc);
  console.log(res.synced, (await sync.devices()).map((d) => d.online));
  console.log(mergeById(null, '[]', '[]'), retryDelay(1, { retryAfterMs: 1000 }));
  // @ts-expect-error status is read-only
  sync.status = 'synced';
  // @ts-expect-error no such event
  sync.on('nonsense', () => {});
  sync.stop();
}
void main;

// The classic build's global.
const Classic = globalThis.AlternassistSync;
if (Classic) {
  const m: SyncManager = new Classic.SyncManager({ apiBase: 'https://sync.example.com/api' });
  customElements.get('sync-status');
  document.querySelector('sync-status')!.manager = m;
}
