// SyncManager against an in-memory server (fakes.mjs) through injected
// fetch and WebSocket: the storage hook, no echo, the persisted queue, first
// sign-in merges, convergence after offline edits, an honest status, the
// heartbeat, REST fallback and revocation.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeServer, MemoryStorage, devicesPerTest, loginToken, waitFor } from './fakes.mjs';
import { SyncManager } from '../../../client-demo/sync-manager.js';

const j = (v) => JSON.stringify(v);
const { dev, cleanups } = devicesPerTest(afterEach);
const queueOf = (storage) => JSON.parse(storage.getItem('sync-queue') ?? '[]');
const neverSyncedWithPending = (statuses) =>
  statuses.filter((s) => s.status === 'synced' && s.pendingCount > 0);

test('the storage hook queues tracked keys only, and keeps plain storage behaviour', () => {
  const server = new FakeServer();
  const { sm, storage } = dev(server);
  const changes = [];
  sm.on('change', (c) => changes.push(c));

  storage.setItem('unrelated', 'x');
  assert.equal(storage.getItem('unrelated'), 'x');
  assert.equal(sm.pendingCount, 0);

  storage.setItem('estimates', j([{ id: 1 }]));
  assert.equal(storage.getItem('estimates'), j([{ id: 1 }]));
  assert.equal(sm.pendingCount, 1);
  storage.setItem('estimates', j([{ id: 1 }])); // same value: not an edit
  storage.setItem('kanban-columns', 42); // stored as a string, like localStorage
  assert.equal(storage.getItem('kanban-columns'), '42');
  storage.removeItem('kanban-columns');
  assert.equal(storage.getItem('kanban-columns'), null);
  storage.removeItem('cue-tracker-sessions'); // absent: nothing to delete

  const q = queueOf(storage);
  assert.deepEqual(q.map((e) => e.key).sort(), ['estimates', 'kanban-columns']);
  for (const e of q) {
    assert.equal(typeof e.requestId, 'string');
    assert.equal(typeof e.updatedAt, 'number');
  }
  assert.deepEqual(
    changes.map((c) => [c.key, c.source]),
    [
      ['estimates', 'local'],
      ['kanban-columns', 'local'],
      ['kanban-columns', 'local'],
    ],
  );
  assert.equal(sm.status, 'offline', 'not signed in');

  sm.destroy();
  cleanups.pop();
  storage.setItem('estimates', '[]');
  assert.equal(storage.getItem('estimates'), '[]', 'destroy() restores the plain methods');
  assert.equal(Object.keys(storage).length, 0, 'no own properties left behind');
});

test('edits sync live to another device; remote changes are applied without echo', async () => {
  const server = new FakeServer();
  const token = server.seedUser('a@example.com');
  const a = dev(server, { token });
  const b = dev(server, { token: server.fetch && (await loginToken(server, 'a@example.com')) });
  await Promise.all([a.sm.start(), b.sm.start()]);
  await Promise.all([a.sm.whenSynced(2000), b.sm.whenSynced(2000)]);

  const bChanges = [];
  b.sm.on('change', (c) => bChanges.push(c));
  a.storage.setItem('estimates', j([{ id: 'e1', amount: 100 }]));
  await waitFor(() => b.storage.getItem('estimates') === j([{ id: 'e1', amount: 100 }]), { what: 'value on b' });
  assert.deepEqual(bChanges, [{ key: 'estimates', value: j([{ id: 'e1', amount: 100 }]), source: 'remote' }]);

  a.storage.removeItem('estimates');
  await waitFor(() => b.storage.getItem('estimates') === null, { what: 'removal on b' });
  await Promise.all([a.sm.whenSynced(2000), b.sm.whenSynced(2000)]);

  const puts = server.log.filter((l) => l.frame && ['put', 'delete'].includes(l.frame.type));
  assert.equal(puts.length, 2, 'only a wrote; b never echoed what it received');
  assert.equal(b.sm.pendingCount, 0);
  assert.deepEqual(neverSyncedWithPending([...a.statuses, ...b.statuses]), []);
});

test('register and login through the manager keep the token in storage', async () => {
  const server = new FakeServer();
  const a = dev(server);
  await a.sm.register('new@example.com', 'password1', 'Laptop');
  assert.equal(a.sm.signedIn, true);
  assert.equal(a.storage.getItem('sync-token').startsWith('tok-'), true);
  assert.equal(a.sm.email, 'new@example.com');
  await assert.rejects(a.sm.login('new@example.com', 'wrong-password'), (e) => e.code === 'invalid_credentials');
  await assert.rejects(dev(server).sm.register('new@example.com', 'password1'), (e) => e.code === 'email_taken');

  // A reload (a new manager on the same storage) is still signed in.
  a.sm.destroy();
  cleanups.length = 0;
  const again = dev(server, { storage: a.storage });
  assert.equal(again.sm.signedIn, true);
  assert.equal(again.sm.email, 'new@example.com');
});

test('offline edits are queued in storage, survive a reload, and flush with baseVersion and requestId', async () => {
  const server = new FakeServer();
  const token = server.seedUser('q@example.com');
  const a = dev(server, { token });
  await a.sm.start();
  await a.sm.whenSynced(2000);
  a.storage.setItem('kanban-columns', j([{ id: 'todo', title: 'To do' }]));
  await a.sm.whenSynced(2000);
  const v1 = server.frames('put').at(-1);
  assert.equal(v1.baseVersion, undefined, 'a new key has no base version');

  a.goOffline();
  assert.equal(a.sm.status, 'offline');
  a.storage.setItem('kanban-columns', j([{ id: 'todo', title: 'Later' }]));
  a.storage.setItem('estimates', j([{ id: 'e1' }]));
  assert.equal(a.sm.pendingCount, 2);
  assert.equal(a.sm.status, 'offline');
  const queued = queueOf(a.storage);
  assert.deepEqual(queued.map((e) => e.key).sort(), ['estimates', 'kanban-columns']);
  const col = queued.find((e) => e.key === 'kanban-columns');
  assert.equal(col.baseVersion, 1);

  // The window closes while offline; a new one opens on the same storage.
  a.sm.destroy();
  cleanups.length = 0;
  const framesBefore = server.frames('put').length;
  const b = dev(server, { storage: a.storage });
  assert.equal(b.sm.pendingCount, 2, 'the queue came back from storage');
  await b.sm.start();
  await b.sm.whenSynced(2000);
  const sent = server.frames('put').slice(framesBefore);
  const colPut = sent.find((f) => f.key === 'kanban-columns');
  assert.equal(colPut.baseVersion, 1);
  assert.equal(colPut.requestId, col.requestId, 'the persisted requestId is reused: a retry applies once');
  const uid = server.userOf(token);
  assert.equal(server.value(uid, 'kanban-columns'), j([{ id: 'todo', title: 'Later' }]));
  assert.equal(server.value(uid, 'estimates'), j([{ id: 'e1' }]));
  assert.equal(a.storage.getItem('sync-queue'), null, 'queue emptied once acknowledged');
  assert.ok(JSON.parse(a.storage.getItem('sync-state')).cursor >= 3, 'cursor persisted');
});

test('status is never synced while an edit is unacknowledged', async () => {
  const server = new FakeServer();
  const token = server.seedUser('s@example.com');
  const a = dev(server, { token });
  await a.sm.start();
  await a.sm.whenSynced(2000);
  server.holdAcks = true;
  a.storage.setItem('estimates', j([{ id: 1 }]));
  assert.equal(a.sm.status, 'syncing');
  await waitFor(() => server.held.length === 1, { what: 'the put to reach the server' });
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(a.sm.status, 'syncing', 'written on the server, but not acknowledged yet');
  assert.equal(a.sm.pendingCount, 1);
  server.holdAcks = false;
  server.release();
  await a.sm.whenSynced(2000);
  assert.equal(a.sm.pendingCount, 0);
  assert.ok(a.sm.lastSyncedAt > 0);

  // A dropped connection with an edit in flight: still not synced until resent and acknowledged.
  server.holdAcks = true;
  a.storage.setItem('estimates', j([{ id: 2 }]));
  await waitFor(() => server.held.length === 1);
  server.held = []; // that ack is lost with the connection
  server.dropAll();
  server.holdAcks = false;
  await a.sm.whenSynced(3000);
  assert.equal(server.value(server.userOf(token), 'estimates'), j([{ id: 2 }]));
  assert.deepEqual(neverSyncedWithPending(a.statuses), []);
  assert.ok(a.statuses.some((s) => s.status === 'syncing' && s.pendingCount === 1));
});

test('both devices edit different elements of one array while one is offline: both edits survive', async () => {
  const server = new FakeServer();
  const token = server.seedUser('m@example.com');
  const a = dev(server, { token });
  const b = dev(server, { token: await loginToken(server, 'm@example.com') });
  await Promise.all([a.sm.start(), b.sm.start()]);
  const start = [
    { id: 'p1', title: 'Score', updatedAt: 1 },
    { id: 'p2', title: 'Mix', updatedAt: 1 },
  ];
  a.storage.setItem('kanban-projects', j(start));
  await waitFor(() => b.storage.getItem('kanban-projects') === j(start));

  b.goOffline();
  b.storage.setItem('kanban-projects', j([start[0], { id: 'p2', title: 'Mix (B)', updatedAt: 3 }, { id: 'p3', title: 'New on B', updatedAt: 3 }]));
  a.storage.setItem('kanban-projects', j([{ id: 'p1', title: 'Score (A)', updatedAt: 2 }, start[1]]));
  await a.sm.whenSynced(2000);
  b.goOnline();
  await waitFor(() => a.storage.getItem('kanban-projects') === b.storage.getItem('kanban-projects') && b.sm.status === 'synced' && a.sm.status === 'synced', { what: 'convergence' });
  const titles = JSON.parse(a.storage.getItem('kanban-projects')).map((p) => p.title);
  assert.deepEqual(titles, ['Score (A)', 'Mix (B)', 'New on B']);
  assert.equal(server.value(server.userOf(token), 'kanban-projects'), a.storage.getItem('kanban-projects'));
  assert.ok(b.sm.conflicts.some((c) => c.resolution === 'merged' && c.key === 'kanban-projects'));
});

test('opaque values edited on both sides: last write wins, the loser is reported with a restore', async () => {
  const server = new FakeServer();
  const token = server.seedUser('o@example.com');
  const a = dev(server, { token });
  const b = dev(server, { token: await loginToken(server, 'o@example.com'), keys: ['notes'] });
  cleanups.push(() => {});
  a.sm.destroy();
  const a2 = dev(server, { token, keys: ['notes'], storage: new MemoryStorage() });
  a2.storage.setItem('sync-token', token);
  await Promise.all([a2.sm.start(), b.sm.start()]);
  a2.storage.setItem('notes', 'v1');
  await waitFor(() => b.storage.getItem('notes') === 'v1');
  b.goOffline();
  b.storage.setItem('notes', 'older edit on b');
  await new Promise((r) => setTimeout(r, 5));
  a2.storage.setItem('notes', 'newer edit on a');
  await a2.sm.whenSynced(2000);
  const conflicts = [];
  b.sm.on('conflict', (c) => conflicts.push(c));
  b.goOnline();
  await waitFor(() => b.sm.status === 'synced' && b.storage.getItem('notes') === 'newer edit on a', { what: 'b takes the winner' });
  assert.equal(conflicts.length, 1);
  assert.equal(conflicts[0].winner, 'remote');
  assert.equal(conflicts[0].lost, 'older edit on b');
  conflicts[0].restore();
  await waitFor(() => a2.storage.getItem('notes') === 'older edit on b', { what: 'restored value reaches a' });
  void a;
});

test('first sign-in with local data: merge by id, upload what the account lacks, take what it has', async () => {
  const server = new FakeServer();
  const token = server.seedUser('f@example.com');
  server.write(token, 'kanban-projects', j([
    { id: 1, title: 'server newer', updatedAt: 300 },
    { id: 2, title: 'server only', updatedAt: 10 },
  ]));
  server.write(token, 'estimates', j([{ id: 'e', amount: 1 }]));
  server.write(token, 'kanban-columns', 'server opaque', { updatedAt: 500 });

  // The desktop app has been used for months before sync existed.
  const storage = new MemoryStorage();
  storage.setItem('kanban-projects', j([
    { id: 1, title: 'local older', updatedAt: 100 },
    { id: 3, title: 'local only', updatedAt: 20 },
  ]));
  storage.setItem('alternatone-payments', j([{ id: 'pay1', amount: 5 }]));
  storage.setItem('kanban-columns', 'local opaque');
  const d = dev(server, { storage });
  const conflicts = [];
  d.sm.on('conflict', (c) => conflicts.push(c));
  await d.sm.login('f@example.com', 'password1');
  await d.sm.start();
  await d.sm.whenSynced(3000);

  const uid = server.userOf(token);
  const projects = JSON.parse(storage.getItem('kanban-projects'));
  assert.deepEqual(projects.map((p) => p.title).sort(), ['local only', 'server newer', 'server only']);
  assert.equal(server.value(uid, 'kanban-projects'), storage.getItem('kanban-projects'), 'merge uploaded');
  assert.equal(server.value(uid, 'alternatone-payments'), j([{ id: 'pay1', amount: 5 }]), 'local-only key uploaded');
  assert.equal(storage.getItem('estimates'), j([{ id: 'e', amount: 1 }]), 'server-only key downloaded');
  // Opaque on both sides: no blind overwrite: the local value went to the
  // server (kept in its history) and is offered for restore.
  assert.equal(storage.getItem('kanban-columns'), 'server opaque');
  assert.ok(server.data.get(uid).history.some((h) => h.key === 'kanban-columns' && h.value === 'local opaque'));
  const lww = conflicts.find((c) => c.key === 'kanban-columns');
  assert.equal(lww.lost, 'local opaque');
  assert.equal(typeof lww.restore, 'function');
});

test('the heartbeat notices a silent connection and reconnects', async () => {
  const server = new FakeServer();
  const token = server.seedUser('h@example.com');
  // connectTimeoutMs also bounds the wait for the answer to hello.
  const a = dev(server, { token, pingMs: 20, deadMs: 80, connectTimeoutMs: 300 });
  await a.sm.start();
  await a.sm.whenSynced(2000);
  await waitFor(() => server.frames('ping').length >= 2, { what: 'pings' });
  const hellos = server.frames('hello').length;
  server.silent = true;
  await waitFor(() => a.sm.status !== 'synced', { what: 'the dead link to be noticed' });
  server.silent = false;
  await waitFor(() => server.frames('hello').length > hellos && a.sm.status === 'synced', { what: 'a new connection' });
});

test('without a socket, REST keeps syncing; edits are pushed promptly', async () => {
  const server = new FakeServer();
  server.wsRefused = true;
  const token = server.seedUser('r@example.com');
  const a = dev(server, { token, autoSyncMs: 50 });
  await a.sm.start();
  await a.sm.whenSynced(2000);
  a.storage.setItem('estimates', j([{ id: 1 }]));
  assert.equal(a.sm.status, 'syncing');
  await a.sm.whenSynced(2000);
  const uid = server.userOf(token);
  assert.equal(server.value(uid, 'estimates'), j([{ id: 1 }]));
  server.write(token, 'estimates', j([{ id: 1 }, { id: 2 }]));
  await waitFor(() => a.storage.getItem('estimates') === j([{ id: 1 }, { id: 2 }]), { what: 'polling pulls' });
  server.wsRefused = false;
  await waitFor(() => a.sm._link === 'live', { what: 'back to live mode', timeoutMs: 3000 });
  assert.deepEqual(neverSyncedWithPending(a.statuses), []);
});

test('live: false uses REST only, and the seed API works: syncUp, syncDown, fullSync, auto sync', async () => {
  const server = new FakeServer();
  const token = server.seedUser('seed@example.com');
  const a = dev(server, { token, live: false, autoSyncMs: 40 });
  a.storage.setItem('estimates', j([{ id: 'x' }]));
  await a.sm.fullSync();
  const uid = server.userOf(token);
  assert.equal(server.value(uid, 'estimates'), j([{ id: 'x' }]));
  server.write(token, 'cue-tracker-sessions', j([{ id: 'c' }]));
  await a.sm.syncDown();
  assert.equal(a.storage.getItem('cue-tracker-sessions'), j([{ id: 'c' }]));
  a.sm.stop();
  a.storage.setItem('estimates', j([{ id: 'y' }]));
  await a.sm.syncUp();
  assert.equal(server.value(uid, 'estimates'), j([{ id: 'y' }]));
  assert.equal(server.frames('hello').length, 0, 'no socket in REST mode');
  a.sm.startAutoSync(40);
  server.write(token, 'estimates', j([{ id: 'z' }]));
  await waitFor(() => a.storage.getItem('estimates') === j([{ id: 'z' }]), { what: 'auto sync' });
  a.sm.stopAutoSync();
});

test('a revoked device stops reconnecting, reports signedout and keeps its data', async () => {
  const server = new FakeServer();
  const token = server.seedUser('v@example.com');
  const a = dev(server, { token });
  await a.sm.start();
  a.storage.setItem('estimates', j([{ id: 1 }]));
  await a.sm.whenSynced(2000);
  const signedout = [];
  a.sm.on('signedout', (e) => signedout.push(e));
  const hellos = server.frames('hello').length;
  server.revoke(token);
  await waitFor(() => signedout.length === 1, { what: 'signedout' });
  assert.equal(signedout[0].reason, 'revoked');
  assert.equal(a.sm.signedIn, false);
  assert.equal(a.sm.status, 'error');
  assert.equal(a.storage.getItem('estimates'), j([{ id: 1 }]), 'local data kept');
  assert.equal(a.storage.getItem('sync-token'), null);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(server.frames('hello').length, hellos, 'no reconnect attempts');
  a.storage.setItem('estimates', j([{ id: 2 }]));
  assert.equal(a.sm.pendingCount, 1, 'edits are still tracked for a later sign-in');
});

test('a 401 over REST also signs out; logout revokes this device only', async () => {
  const server = new FakeServer();
  const token = server.seedUser('l@example.com');
  const a = dev(server, { token, live: false });
  const b = dev(server, { token: await loginToken(server, 'l@example.com') });
  await b.sm.start();
  await b.sm.whenSynced(2000);
  server.tokens.get(token).revoked = true;
  const out = [];
  a.sm.on('signedout', (e) => out.push(e.reason));
  await assert.rejects(a.sm.fullSync());
  assert.deepEqual(out, ['revoked']);

  const bOut = [];
  b.sm.on('signedout', (e) => bOut.push(e.reason));
  b.storage.setItem('estimates', '[]');
  await b.sm.whenSynced(2000);
  await b.sm.logout();
  assert.deepEqual(bOut, ['logout']);
  assert.equal(b.sm.signedIn, false);
  assert.equal(b.storage.getItem('estimates'), '[]');
  assert.equal(b.sm.status, 'offline');
});

test('another tab writing the same storage is announced, and (as leader) synced', async () => {
  const server = new FakeServer();
  const token = server.seedUser('t@example.com');
  const a = dev(server, { token });
  await a.sm.start();
  await a.sm.whenSynced(2000);
  const changes = [];
  a.sm.on('change', (c) => changes.push(c));
  // What a browser does when another tab calls localStorage.setItem:
  const raw = new MemoryStorage();
  raw.setItem('estimates', '[{"id":"from-tab"}]');
  a.sm._raw.setItem('estimates', '[{"id":"from-tab"}]');
  const ev = new Event('storage');
  Object.assign(ev, { key: 'estimates', oldValue: null, newValue: '[{"id":"from-tab"}]', storageArea: a.storage });
  a.win.dispatchEvent(ev);
  assert.deepEqual(changes, [{ key: 'estimates', value: '[{"id":"from-tab"}]', source: 'tab' }]);
  await a.sm.whenSynced(2000);
  assert.equal(server.value(server.userOf(token), 'estimates'), '[{"id":"from-tab"}]');
});

test('a SyncManager refuses a second hook on the same storage', () => {
  const server = new FakeServer();
  const { storage } = dev(server);
  assert.throws(() => new SyncManager({ storage, fetch: server.fetch, lock: false }), /already tracks/);
});

test('simultaneous edits of one array on two live devices: a change arriving while our write travels is merged in', async () => {
  const server = new FakeServer();
  const token = server.seedUser('sim@example.com');
  const a = dev(server, { token });
  const b = dev(server, { token: await loginToken(server, 'sim@example.com') });
  await Promise.all([a.sm.start(), b.sm.start()]);
  await Promise.all([a.sm.whenSynced(2000), b.sm.whenSynced(2000)]);
  a.storage.setItem('estimates', j([{ id: 1, v: 0, updatedAt: 1 }, { id: 2, v: 0, updatedAt: 1 }]));
  await waitFor(() => b.storage.getItem('estimates') !== null);
  await Promise.all([a.sm.whenSynced(2000), b.sm.whenSynced(2000)]);
  // Same tick: both writes leave before either hears of the other.
  a.storage.setItem('estimates', j([{ id: 1, v: 'a', updatedAt: 10 }, { id: 2, v: 0, updatedAt: 1 }]));
  b.storage.setItem('estimates', j([{ id: 1, v: 0, updatedAt: 1 }, { id: 2, v: 'b', updatedAt: 10 }, { id: 3, v: 'b', updatedAt: 10 }]));
  const expected = j([{ id: 1, v: 'a', updatedAt: 10 }, { id: 2, v: 'b', updatedAt: 10 }, { id: 3, v: 'b', updatedAt: 10 }]);
  await waitFor(
    () => a.storage.getItem('estimates') === expected && b.storage.getItem('estimates') === expected && a.sm.status === 'synced' && b.sm.status === 'synced',
    { what: 'convergence with both edits' },
  );
  assert.equal(server.value(server.userOf(token), 'estimates'), expected);
  assert.deepEqual(neverSyncedWithPending([...a.statuses, ...b.statuses]), []);
});

test('edits made while nothing tracked the storage are found and synced at start', async () => {
  const server = new FakeServer();
  const token = server.seedUser('drift@example.com');
  const a = dev(server, { token });
  await a.sm.start();
  a.storage.setItem('estimates', j([{ id: 1 }]));
  await a.sm.whenSynced(2000);
  a.sm.destroy();
  cleanups.length = 0;
  // e.g. the app wrote before the library loaded, or another tab before it took over syncing
  a.storage.setItem('estimates', j([{ id: 1 }, { id: 2 }]));
  a.storage.setItem('kanban-columns', j([{ id: 'c' }]));
  const again = dev(server, { storage: a.storage });
  await again.sm.start();
  await again.sm.whenSynced(2000);
  const uid = server.userOf(token);
  assert.equal(server.value(uid, 'estimates'), j([{ id: 1 }, { id: 2 }]));
  assert.equal(server.value(uid, 'kanban-columns'), j([{ id: 'c' }]));
});

test('values too big for one WebSocket frame go over REST PUT', async () => {
  const server = new FakeServer();
  const token = server.seedUser('big@example.com');
  const a = dev(server, { token });
  await a.sm.start();
  await a.sm.whenSynced(2000);
  const big = j([{ id: 1, notes: 'x'.repeat(1100 * 1024) }]);
  a.storage.setItem('estimates', big);
  a.storage.setItem('kanban-columns', '[]');
  await a.sm.whenSynced(3000);
  const uid = server.userOf(token);
  assert.equal(server.value(uid, 'estimates'), big);
  assert.ok(server.log.some((l) => l.method === 'PUT' && l.path === '/api/sync/estimates'));
  assert.ok(server.frames('put').some((f) => f.key === 'kanban-columns'), 'small ones still use the socket');
  assert.ok(!server.frames('put').some((f) => f.key === 'estimates'));
});

test('a rate-limited write waits and is sent again', async () => {
  const server = new FakeServer();
  server.rateLimitWrites = 2;
  const token = server.seedUser('rl@example.com');
  const a = dev(server, { token, retryMs: 30 });
  await a.sm.start();
  await a.sm.whenSynced(2000);
  a.storage.setItem('estimates', '[]');
  await waitFor(() => server.rateLimitWrites === 0, { what: 'the refusals' });
  assert.notEqual(a.sm.status, 'synced');
  await a.sm.whenSynced(2000);
  assert.equal(server.value(server.userOf(token), 'estimates'), '[]');
});
