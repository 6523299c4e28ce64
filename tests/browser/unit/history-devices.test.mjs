// SyncManager against the fake server (fakes.mjs), for issue 5's client
// side: history and restore, export and import, the device list and
// revocation, and writes the server merged three-way by id.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeServer, devicesPerTest, loginToken, waitFor } from './fakes.mjs';
import { SyncError } from '../../../client-demo/sync-manager.js';

const j = (v) => JSON.stringify(v);
const { dev } = devicesPerTest(afterEach);
async function twoLive(server, email) {
  const token = server.seedUser(email, 'password1', 'Studio iMac');
  const a = dev(server, { token });
  const b = dev(server, { token: await loginToken(server, email, 'Laptop') });
  await Promise.all([a.sm.start(), b.sm.start()]);
  await Promise.all([a.sm.whenSynced(2000), b.sm.whenSynced(2000)]);
  return { token, a, b, uid: server.userOf(token) };
}
/** Sets a key and waits until the server acknowledged it; returns its version. */
async function put(d, key, value) {
  if (value === null) d.storage.removeItem(key);
  else d.storage.setItem(key, value);
  await d.sm.whenSynced(2000);
  return JSON.parse(d.storage.getItem('sync-state')).versions[key];
}
const settled = (...ds) => ds.every((d) => d.sm.status === 'synced' && d.sm.pendingCount === 0);
const writesOf = (server) => server.log.filter((l) => l.frame && ['put', 'delete', 'patch'].includes(l.frame.type)).map((l) => l.frame);

test('history lists retained versions newest first; historyVersion reads one', async () => {
  const server = new FakeServer();
  const { a, b } = await twoLive(server, 'hist@example.com');
  const v1 = await put(a, 'estimates', j([{ id: 1, amount: 10 }]));
  const v2 = await put(b, 'estimates', j([{ id: 1, amount: 20 }]));
  const v3 = await put(a, 'estimates', null);

  const history = await b.sm.history('estimates');
  assert.deepEqual(history.map((h) => h.version), [v3, v2, v1]);
  assert.deepEqual(history.map((h) => h.current), [true, false, false]);
  assert.deepEqual(history.map((h) => h.deviceName), ['Studio iMac', 'Laptop', 'Studio iMac']);
  assert.deepEqual(history.map((h) => h.deleted), [true, false, false]);
  assert.equal(history[2].size, j([{ id: 1, amount: 10 }]).length);
  assert.deepEqual(await a.sm.history('kanban-columns'), [], 'a key never written has no history');
  const page = await a.sm.history('estimates', { before: v3, limit: 1 });
  assert.deepEqual(page.map((h) => h.version), [v2], 'a later page');
  assert.ok(server.log.some((l) => l.path === `/api/sync/estimates/history?before=${v3}&limit=1`));

  const old = await a.sm.historyVersion('estimates', v1);
  assert.deepEqual(
    { key: old.key, version: old.version, value: old.value, deleted: old.deleted },
    { key: 'estimates', version: v1, value: j([{ id: 1, amount: 10 }]), deleted: false },
  );
  assert.equal((await a.sm.historyVersion('estimates', v3)).value, null);
  await assert.rejects(a.sm.historyVersion('estimates', 999), (e) => e instanceof SyncError && e.status === 404 && e.code === 'not_found');
  await assert.rejects(a.sm.historyVersion('estimates', 0), (e) => e.status === 400 && e.code === 'invalid_request');
  // Keys are percent-encoded in the path.
  assert.ok(server.log.some((l) => l.path === '/api/sync/kanban-columns/history'));
});

test('restore makes an old version current here and on the other devices, with no conflict', async () => {
  const server = new FakeServer();
  const { a, b, uid } = await twoLive(server, 'restore@example.com');
  const first = j([{ id: 'e1', amount: 100 }]);
  const v1 = await put(a, 'estimates', first);
  await put(a, 'estimates', j([{ id: 'e1', amount: 150 }]));
  await put(a, 'estimates', j([{ id: 'e1', amount: 150 }, { id: 'e2', amount: 5 }]));
  await waitFor(() => b.storage.getItem('estimates')?.includes('e2'), { what: 'b has the latest' });
  const changes = [];
  a.sm.on('change', (c) => changes.push(c));

  const res = await a.sm.restore('estimates', v1);
  assert.equal(a.storage.getItem('estimates'), first, 'the local value is the restored one as soon as restore() resolves');
  assert.equal(res.value, first);
  assert.ok(res.version > v1);
  assert.equal(server.value(uid, 'estimates'), first);
  assert.deepEqual(changes.map((c) => [c.key, c.value]), [['estimates', first]]);
  await waitFor(() => b.storage.getItem('estimates') === first, { what: 'b follows' });
  await waitFor(() => settled(a, b), { what: 'both synced' });
  assert.deepEqual([a.sm.conflicts, b.sm.conflicts], [[], []], 'a restore is not a conflict');
  assert.equal(JSON.parse(a.storage.getItem('sync-state')).versions.estimates, res.version);

  // The next edit builds on the restored version: a fast-forward, no conflict.
  const before = writesOf(server).length;
  await put(a, 'estimates', j([{ id: 'e1', amount: 100 }, { id: 'e3', amount: 7 }]));
  const sent = writesOf(server).slice(before);
  assert.equal(sent.length, 1);
  assert.equal(sent[0].baseVersion, res.version);
  await waitFor(() => b.storage.getItem('estimates')?.includes('e3'));
  await waitFor(() => settled(a, b));
  assert.deepEqual([a.sm.conflicts, b.sm.conflicts], [[], []]);
});

test('restore sends a queued edit first; an edit made while it runs builds on the restored value', async () => {
  const server = new FakeServer();
  const { a, b, uid } = await twoLive(server, 'restore2@example.com');
  const v1 = await put(a, 'kanban-columns', j([{ id: 'c1', title: 'Inquiry' }]));
  await put(a, 'kanban-columns', j([{ id: 'c1', title: 'Writing' }]));

  // Not yet sent when restore() is called: it reaches the server's history first.
  a.storage.setItem('kanban-columns', j([{ id: 'c1', title: 'Pending edit' }]));
  const during = j([{ id: 'c1', title: 'Inquiry' }, { id: 'c2', title: 'Typed during the restore' }]);
  server.onRequest = (method, path) => {
    if (path.endsWith('/restore')) {
      server.onRequest = null;
      a.storage.setItem('kanban-columns', during);
    }
  };
  const res = await a.sm.restore('kanban-columns', v1);
  const history = await a.sm.history('kanban-columns');
  const values = await Promise.all(history.map((h) => a.sm.historyVersion('kanban-columns', h.version).then((x) => x.value)));
  assert.ok(values.includes(j([{ id: 'c1', title: 'Pending edit' }])), 'the queued edit was sent before the restore');
  assert.equal(a.storage.getItem('kanban-columns'), during, 'the newer local edit is kept');
  await waitFor(() => settled(a, b) && b.storage.getItem('kanban-columns') === during, { what: 'the newer edit reaches b' });
  assert.equal(server.value(uid, 'kanban-columns'), during);
  const last = writesOf(server).at(-1);
  assert.equal(last.baseVersion, res.version, 'the newer edit was sent on top of the restored version');
  assert.deepEqual([a.sm.conflicts, b.sm.conflicts], [[], []]);
});

test('restore over REST only fetches the value; restoring a deletion removes the key; errors keep their code', async () => {
  const server = new FakeServer();
  const token = server.seedUser('rest-restore@example.com');
  const a = dev(server, { token, live: false });
  a.storage.setItem('estimates', j([{ id: 1 }]));
  await a.sm.fullSync();
  a.storage.removeItem('estimates');
  await a.sm.syncUp();
  a.storage.setItem('estimates', j([{ id: 2 }]));
  await a.sm.syncUp();
  const versions = (await a.sm.history('estimates')).map((h) => h.version); // [v3, v2 (deletion), v1]
  assert.equal(versions.length, 3);

  const r1 = await a.sm.restore('estimates', versions[2]);
  assert.equal(a.storage.getItem('estimates'), j([{ id: 1 }]));
  assert.equal(r1.value, j([{ id: 1 }]));
  const r2 = await a.sm.restore('estimates', versions[1]);
  assert.equal(a.storage.getItem('estimates'), null, 'the restored version was a deletion');
  assert.equal(r2.value, null);
  assert.equal(server.value(server.userOf(token), 'estimates'), null);
  assert.equal(a.sm.pendingCount, 0);
  assert.deepEqual(a.sm.conflicts, []);

  const before = server.data.get(server.userOf(token)).cursor;
  await assert.rejects(a.sm.restore('estimates', 999), (e) => e instanceof SyncError && e.status === 404 && e.code === 'not_found');
  await assert.rejects(a.sm.restore('estimates', 0), (e) => e.status === 400 && e.code === 'invalid_request');
  assert.equal(server.data.get(server.userOf(token)).cursor, before, 'nothing written');
  assert.equal(a.storage.getItem('estimates'), null);
  assert.equal(a.sm.pendingCount, 0);
});

test('a refused restore lets changes that arrived meanwhile through', async () => {
  const server = new FakeServer();
  const { a, b } = await twoLive(server, 'refused@example.com');
  await put(a, 'estimates', j([{ id: 1 }]));
  let heldBack = false;
  server.onRequest = async (method, path) => {
    if (!path.endsWith('/restore')) return;
    server.onRequest = null;
    // b edits while a's restore request is on its way; the answer waits for the change to reach a.
    b.storage.setItem('estimates', j([{ id: 1 }, { id: 'from-b' }]));
    await waitFor(() => a.sm._holds.size === 1 && [...a.sm._holds][0].changes.size === 1, { what: 'the change held back on a' });
    heldBack = a.storage.getItem('estimates') === j([{ id: 1 }]);
  };
  await assert.rejects(a.sm.restore('estimates', 999), (e) => e.code === 'not_found');
  assert.ok(heldBack, 'not applied while the restore ran');
  await waitFor(() => a.storage.getItem('estimates') === j([{ id: 1 }, { id: 'from-b' }]), { what: 'the held change applied' });
  await waitFor(() => settled(a));
  assert.deepEqual(a.sm.conflicts, []);
});

test('a write the server merged three-way: the writer fetches and adopts the merge', async () => {
  const server = new FakeServer();
  const { token, a, b, uid } = await twoLive(server, 'merge@example.com');
  const start = [{ id: 'p1', title: 'Score', updatedAt: 1 }, { id: 'p2', title: 'Mix', updatedAt: 1 }];
  const v1 = await put(a, 'kanban-projects', j(start));
  await waitFor(() => b.storage.getItem('kanban-projects') === j(start));
  // a misses b's edit (as the Worker's writer misses the broadcast of its own merge).
  server.mute(token);
  await put(b, 'kanban-projects', j([start[0], { id: 'p2', title: 'Mix (B)', updatedAt: 2 }]));
  const conflicts = [];
  a.sm.on('conflict', (c) => conflicts.push(c));
  a.storage.setItem('kanban-projects', j([{ id: 'p1', title: 'Score (A)', updatedAt: 3 }, start[1]]));
  await waitFor(() => a.sm.conflicts.length === 1 && settled(a), { what: 'a adopts the merge' });

  const merged = j([{ id: 'p1', title: 'Score (A)', updatedAt: 3 }, { id: 'p2', title: 'Mix (B)', updatedAt: 2 }]);
  const ack = server.log.find((l) => ['put', 'patch'].includes(l.frame?.type) && l.frame.baseVersion === v1 && l.frame.key === 'kanban-projects');
  assert.ok(ack, 'a wrote on the old base');
  assert.equal(server.value(uid, 'kanban-projects'), merged);
  assert.equal(a.storage.getItem('kanban-projects'), merged, 'neither side sent this value: a fetched it');
  assert.ok(server.log.some((l) => l.method === 'GET' && l.path.startsWith('/api/sync?since=')));
  assert.equal(conflicts[0].resolution, 'merged');
  assert.equal(conflicts[0].server.winner, 'merged');
  await waitFor(() => b.storage.getItem('kanban-projects') === merged, { what: 'b gets the merge as a change' });
  const state = JSON.parse(a.storage.getItem('sync-state'));
  assert.equal(state.versions['kanban-projects'], conflicts[0].version);

  // a's next edit is a fast-forward on the merged version.
  const before = writesOf(server).length;
  await put(a, 'kanban-projects', j([...JSON.parse(merged), { id: 'p3', title: 'New', updatedAt: 4 }]));
  assert.equal(writesOf(server).slice(before)[0].baseVersion, conflicts[0].version);
  assert.equal(a.sm.conflicts.length, 1);
});

test('a merge answer while a newer local edit waits: the newer edit goes on top of the merge', async () => {
  const server = new FakeServer();
  const { token, a, b, uid } = await twoLive(server, 'merge2@example.com');
  const p = (id, title, updatedAt) => ({ id, title, updatedAt });
  await put(a, 'kanban-projects', j([p('p1', 'Score', 1), p('p2', 'Mix', 1)]));
  server.mute(token);
  await put(b, 'kanban-projects', j([p('p1', 'Score', 1), p('p2', 'Mix (B)', 2)]));
  server.holdAcks = true;
  a.storage.setItem('kanban-projects', j([p('p1', 'Score (A)', 3), p('p2', 'Mix', 1)]));
  await waitFor(() => server.held.length === 1, { what: 'the put reaches the server' });
  a.storage.setItem('kanban-projects', j([p('p1', 'Score (A)', 3), p('p2', 'Mix', 1), p('p3', 'Added meanwhile', 4)]));
  server.holdAcks = false;
  server.release();
  const want = j([p('p1', 'Score (A)', 3), p('p2', 'Mix (B)', 2), p('p3', 'Added meanwhile', 4)]);
  await waitFor(() => settled(a) && server.value(uid, 'kanban-projects') === want, { what: 'all three edits on the server' });
  assert.equal(a.storage.getItem('kanban-projects'), want);
  await waitFor(() => b.storage.getItem('kanban-projects') === want && settled(b), { what: 'b converges' });
});

test('export returns the account data; importing it writes it back and every device follows', async () => {
  const server = new FakeServer();
  const { a, b, uid } = await twoLive(server, 'export@example.com');
  const estimates = j([{ id: 'e1', client: 'Halcyon', amount: 1500 }]);
  const columns = j([{ id: 'c1', title: 'Inquiry' }]);
  await put(a, 'estimates', estimates);
  await put(a, 'kanban-columns', columns);
  const doc = await a.sm.exportData();
  assert.equal(doc.format, 'alternassist-sync-export');
  assert.equal(doc.formatVersion, 1);
  assert.ok(!Number.isNaN(Date.parse(doc.exportedAt)));
  assert.deepEqual(doc.data, { estimates, 'kanban-columns': columns });
  assert.deepEqual(Object.keys(doc.versions).sort(), ['estimates', 'kanban-columns']);
  assert.equal('success' in doc, false);

  // After the export: a key removed on b, a new key added on b.
  await put(b, 'estimates', null);
  await put(b, 'cue-tracker-sessions', j([{ id: 'cue1' }]));
  await waitFor(() => a.storage.getItem('estimates') === null && a.storage.getItem('cue-tracker-sessions') !== null);

  const res = await a.sm.importData(JSON.stringify(doc)); // as read from the file
  assert.deepEqual(res.synced, ['estimates']);
  assert.deepEqual(Object.keys(res.versions).sort(), ['estimates', 'kanban-columns']);
  assert.equal(a.storage.getItem('estimates'), estimates, 'restored here as soon as importData() resolves');
  assert.equal(server.value(uid, 'estimates'), estimates);
  await waitFor(() => b.storage.getItem('estimates') === estimates, { what: 'b follows' });
  assert.equal(a.storage.getItem('cue-tracker-sessions'), j([{ id: 'cue1' }]), 'keys not in the export are untouched');
  await waitFor(() => settled(a, b));
  assert.deepEqual([a.sm.conflicts, b.sm.conflicts], [[], []]);

  // An object works too; importing the same data again changes nothing.
  const cursor = server.data.get(uid).cursor;
  const again = await a.sm.importData(doc);
  assert.deepEqual(again.synced, []);
  assert.equal(server.data.get(uid).cursor, cursor);
});

test('import refuses a document that is not an export, and nothing changes', async () => {
  const server = new FakeServer();
  const { a, uid } = await twoLive(server, 'badimport@example.com');
  await put(a, 'estimates', j([{ id: 1 }]));
  const cursor = server.data.get(uid).cursor;
  const bad = { format: 'something-else', formatVersion: 1, data: { estimates: '[]' } };
  await assert.rejects(a.sm.importData(bad), (e) => e instanceof SyncError && e.status === 400 && e.code === 'invalid_request');
  await assert.rejects(a.sm.importData('{"format": not json'), (e) => e.status === 400 && e.code === 'invalid_json');
  await assert.rejects(
    a.sm.importData({ format: 'alternassist-sync-export', formatVersion: 1, data: { estimates: 5 } }),
    (e) => e.code === 'invalid_request',
  );
  assert.equal(server.data.get(uid).cursor, cursor);
  assert.equal(a.storage.getItem('estimates'), j([{ id: 1 }]));
  assert.equal(a.sm.pendingCount, 0);
  await a.sm.whenSynced(2000);
});

test('devices lists the signed-in devices; revoking another signs it out; revoking this one signs out here', async () => {
  const server = new FakeServer();
  const a = dev(server);
  await a.sm.register('dev@example.com', 'password1', 'Studio iMac');
  const b = dev(server);
  await b.sm.login('dev@example.com', 'password1', 'Laptop');
  await Promise.all([a.sm.start(), b.sm.start()]);
  await Promise.all([a.sm.whenSynced(2000), b.sm.whenSynced(2000)]);
  a.storage.setItem('estimates', j([{ id: 1 }]));
  await a.sm.whenSynced(2000);

  const list = await a.sm.devices();
  assert.deepEqual(list.map((d) => [d.name, d.current, d.online]), [['Studio iMac', true, true], ['Laptop', false, true]]);
  assert.deepEqual(list.map((d) => d.id), [a.sm.deviceId, b.sm.deviceId]);
  for (const d of list) assert.equal(typeof d.createdAt, 'number');

  const bToken = b.storage.getItem('sync-token');
  const signedout = [];
  b.sm.on('signedout', (e) => signedout.push(e.reason));
  await a.sm.revokeDevice(b.sm.deviceId);
  await waitFor(() => signedout.length === 1, { what: 'b signed out' });
  assert.deepEqual(signedout, ['revoked']);
  assert.equal(b.sm.signedIn, false);
  const res = await server.fetch('http://sync.test/api/sync', { headers: { authorization: `Bearer ${bToken}` } });
  assert.equal(res.status, 401);
  assert.deepEqual((await a.sm.devices()).map((d) => d.name), ['Studio iMac']);
  await assert.rejects(a.sm.revokeDevice(b.sm.deviceId ?? 'gone'), (e) => e.status === 404 && e.code === 'not_found');
  await assert.rejects(a.sm.revokeDevice('dev-unknown'), (e) => e.code === 'not_found');

  const aOut = [];
  a.sm.on('signedout', (e) => aOut.push(e.reason));
  await a.sm.revokeDevice(a.sm.deviceId);
  assert.deepEqual(aOut, ['logout'], 'like logout: not reported as a revocation');
  assert.equal(a.sm.signedIn, false);
  assert.equal(a.sm.status, 'offline');
  assert.equal(a.storage.getItem('sync-token'), null);
  assert.equal(a.storage.getItem('estimates'), j([{ id: 1 }]), 'local data kept');
  await assert.rejects(a.sm.devices(), (e) => e.code === 'unauthorized');
});
