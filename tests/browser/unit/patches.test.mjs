// SyncManager and record patches (issue 13), against the fake server
// (fakes.mjs): an app writing back a stale in-memory list keeps the remote
// edits; queued edits go as one coalesced patch, after a reload too; remote
// patches are applied to storage exactly, or the key is fetched whole when
// the patch does not apply to what this device holds.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeServer, devicesPerTest, loginToken, waitFor } from './fakes.mjs';

const j = (v) => JSON.stringify(v);
const { dev, cleanups } = devicesPerTest(afterEach);
const KEY = 'outstanding-payments';
const invoices = (n) => Array.from({ length: n }, (_, i) => ({ id: `inv-${i}`, client: `Client ${i}`, amount: i, updatedAt: 1000 + i }));
const settled = (...ds) => ds.every((d) => d.sm.status === 'synced' && d.sm.pendingCount === 0);
const patchesOf = (server) => server.frames('patch');
/** Storage as it is, read without counting as the app's read (which tells the manager the app has seen it). */
const peek = (d, key = KEY) => d.sm._read(key);
/** The app's way: read the list, change it, write it back. */
const edit = (d, fn) => d.storage.setItem(KEY, j(fn(JSON.parse(d.storage.getItem(KEY)))));

async function twoLive(server, email) {
  const token = server.seedUser(email);
  const a = dev(server, { token });
  const bToken = await loginToken(server, email);
  const b = dev(server, { token: bToken });
  await Promise.all([a.sm.start(), b.sm.start()]);
  await Promise.all([a.sm.whenSynced(2000), b.sm.whenSynced(2000)]);
  return { token, bToken, a, b, uid: server.userOf(token) };
}

/** Both devices hold `list` under KEY, synced. */
async function holding(server, a, b, list) {
  a.storage.setItem(KEY, j(list));
  await waitFor(() => b.storage.getItem(KEY) === j(list) && settled(a, b), { what: 'the list on both devices' });
}

for (const patches of [false, true]) {
  test(`a stale in-memory write keeps the other device's edit (${patches ? 'patch' : 'whole-value'} server)`, async () => {
    const server = new FakeServer({ patches });
    const { a, b, uid } = await twoLive(server, `stale-${patches}@example.com`);
    await holding(server, a, b, invoices(4));
    const memory = JSON.parse(a.storage.getItem(KEY)); // a's app keeps this
    const changes = [];
    a.sm.on('change', (c) => changes.push(c));
    edit(b, (l) => [...l, { id: 'from-b', client: 'Added on B', updatedAt: 5000 }]);
    await waitFor(() => peek(a).includes('from-b'), { what: 'b’s record on a' });
    // a's app edits its stale copy and writes it back.
    memory[1] = { ...memory[1], amount: 999, updatedAt: 6000 };
    a.storage.setItem(KEY, j(memory));
    const want = j([...memory, { id: 'from-b', client: 'Added on B', updatedAt: 5000 }]);
    assert.equal(peek(a), want, 'storage holds JSON.stringify of the merge at once');
    assert.deepEqual(changes.at(-1), { key: KEY, value: want, source: 'merge' }, 'the app is told to re-read');
    await waitFor(() => settled(a, b) && peek(b) === want, { what: 'the merge on b' });
    assert.equal(server.value(uid, KEY), want);
    assert.deepEqual([a.sm.conflicts, b.sm.conflicts], [[], []], 'different records: no conflict');
    // The merge was a fast-forward, not a server conflict.
    const last = server.log.filter((l) => ['put', 'patch'].includes(l.frame?.type)).at(-1).frame;
    assert.equal(last.baseVersion, JSON.parse(b.storage.getItem('sync-state')).versions[KEY] - 1);
    if (patches) assert.equal(last.type, 'patch');

    // a's app writes its stale copy again, edited once more: b's record still stays.
    memory[2] = { ...memory[2], amount: 777 };
    a.storage.setItem(KEY, j(memory));
    assert.equal(peek(a), j([...memory, { id: 'from-b', client: 'Added on B', updatedAt: 5000 }]), 'a second stale write');
    // After re-reading (getItem), the app's writes are plain again: removing b's record removes it.
    edit(a, (l) => l.filter((x) => x.id !== 'from-b'));
    assert.equal(peek(a), j(memory));
    await waitFor(() => settled(a, b) && peek(b) === j(memory), { what: 'the removal on b' });
  });
}

test('the same record edited by the app (stale) and by the other device: the later edit wins, the other is kept in the conflict log', async () => {
  const server = new FakeServer({ patches: true });
  const { a, b } = await twoLive(server, 'both@example.com');
  await holding(server, a, b, invoices(3));
  const memory = JSON.parse(a.storage.getItem(KEY));
  edit(b, (l) => l.map((x) => (x.id === 'inv-1' ? { ...x, client: 'B', updatedAt: 5000 } : x)));
  await waitFor(() => peek(a).includes('"B"'), { what: 'b’s edit on a' });
  memory[1] = { ...memory[1], client: 'A', updatedAt: 6000 };
  a.storage.setItem(KEY, j(memory));
  assert.equal(JSON.parse(peek(a))[1].client, 'A', 'the later edit');
  assert.equal(a.sm.conflicts.length, 1);
  assert.deepEqual(a.sm.conflicts[0].lostElements, [{ id: 'inv-1', side: 'remote', element: { id: 'inv-1', client: 'B', amount: 1, updatedAt: 5000 } }]);
  await waitFor(() => settled(a, b) && b.storage.getItem(KEY) === a.storage.getItem(KEY), { what: 'converged' });
});

test('ten edits of one record while offline go as one patch with that one record; a reload keeps them', async () => {
  const server = new FakeServer({ patches: true });
  const { a, b, token } = await twoLive(server, 'coalesce@example.com');
  await holding(server, a, b, invoices(50));
  const sentBefore = patchesOf(server).length;
  a.goOffline();
  for (let n = 1; n <= 10; n++) edit(a, (l) => l.map((x) => (x.id === 'inv-7' ? { ...x, amount: n * 100, updatedAt: 2000 + n } : x)));
  edit(a, (l) => l.map((x) => (x.id === 'inv-8' ? { ...x, amount: -8 } : x)));
  edit(a, (l) => l.map((x) => (x.id === 'inv-8' ? { ...x, amount: 8 } : x))); // back as it was: not sent
  assert.equal(a.sm.pendingCount, 1);
  // The page is closed and opened again, still offline.
  const storage = a.storage;
  a.sm.destroy();
  storage.removeItem('sync-token'); // dev() puts the token back
  const again = dev(server, { token, storage });
  assert.equal(again.sm.pendingCount, 1, 'the queued edit survived the reload');
  await again.sm.start();
  await waitFor(() => settled(again, b) && b.storage.getItem(KEY) === storage.getItem(KEY), { what: 'the edit on b' });
  const sent = patchesOf(server).slice(sentBefore);
  assert.equal(sent.length, 1, 'one patch frame');
  assert.deepEqual(sent[0].upserts, [{ id: 'inv-7', client: 'Client 7', amount: 1000, updatedAt: 2010 }]);
  assert.deepEqual([sent[0].removed, sent[0].after], [[], undefined]);
  assert.ok(!server.frames('put').some((f) => f.key === KEY && f.value.includes('"amount":1000')), 'no whole put');
});

test('a remote patch is applied to storage exactly; a patch on a version this device does not hold makes it fetch the key whole', async () => {
  const server = new FakeServer({ patches: true });
  const { a, b, bToken, uid } = await twoLive(server, 'recv@example.com');
  b.storage.setItem('estimates', j([{ id: 'e', n: 0 }])); // another key, to see what b fetches
  await holding(server, a, b, invoices(40));
  const gets = () => server.log.filter((l) => l.method === 'GET' && l.path.startsWith('/api/sync')).length;
  const getsBefore = gets();
  const bChanges = [];
  b.sm.on('change', (c) => bChanges.push(c));
  edit(a, (l) => [{ id: 'first', n: 1 }, ...l.filter((x) => x.id !== 'inv-3').map((x) => (x.id === 'inv-30' ? { ...x, amount: 3 } : x))]);
  await waitFor(() => settled(a, b) && b.storage.getItem(KEY) === a.storage.getItem(KEY), { what: 'the patch on b' });
  assert.equal(gets(), getsBefore, 'applied from the frame, nothing fetched');
  assert.deepEqual(bChanges.map((c) => [c.key, c.source, c.value === a.storage.getItem(KEY)]), [[KEY, 'remote', true]]);
  assert.equal(patchesOf(server).length, 1);

  // b misses one change (its socket hears nothing of it), then gets a patch on top of it.
  server.mute(bToken);
  edit(a, (l) => l.map((x) => (x.id === 'inv-31' ? { ...x, amount: -31 } : x)));
  await waitFor(() => settled(a), { what: 'a synced' });
  server.muted.clear();
  edit(a, (l) => l.map((x) => (x.id === 'inv-32' ? { ...x, amount: -32 } : x)));
  await waitFor(() => settled(a, b) && b.storage.getItem(KEY) === server.value(uid, KEY), { what: 'b fetched the key whole' });
  assert.ok(gets() > getsBefore, 'fetched over REST');
  assert.equal(b.storage.getItem(KEY), a.storage.getItem(KEY));
  assert.equal(JSON.parse(b.storage.getItem('sync-state')).versions[KEY], JSON.parse(a.storage.getItem('sync-state')).versions[KEY]);
});

test('a server without patches gets whole puts; the patch server gets patches only for record lists with a known base', async () => {
  const server = new FakeServer({ patches: true });
  const { a, b } = await twoLive(server, 'kinds@example.com');
  a.storage.setItem('estimates', 'plain text');
  a.storage.setItem(KEY, j(invoices(30))); // new key: no base yet
  await waitFor(() => settled(a, b) && b.storage.getItem(KEY) === a.storage.getItem(KEY), { what: 'on b' });
  a.storage.setItem('estimates', 'other text');
  edit(a, (l) => l.slice(1));
  await waitFor(() => settled(a, b) && b.storage.getItem(KEY) === a.storage.getItem(KEY), { what: 'edits on b' });
  assert.deepEqual(patchesOf(server).map((f) => [f.key, f.upserts.length, f.removed]), [[KEY, 0, ['inv-0']]]);
  assert.deepEqual(server.frames('put').map((f) => f.key), ['estimates', KEY, 'estimates']);
});

test('the persisted queue holds the records an offline edit changed, not a copy of the list; a reload puts the base back together', async () => {
  const server = new FakeServer({ patches: true });
  const { a, b, token } = await twoLive(server, 'queue-size@example.com');
  const list = Array.from({ length: 5000 }, (_, i) => ({ id: `inv-${i}`, client: `Client ${i}`, amount: i, notes: 'x'.repeat(40), updatedAt: 1000 + i }));
  await holding(server, a, b, list);
  const sentBefore = patchesOf(server).length;
  a.goOffline();
  for (let n = 1; n <= 10; n++) edit(a, (l) => l.map((x) => (x.id === 'inv-2500' ? { ...x, amount: -n } : x)));
  edit(a, (l) => [...l.slice(1), l[0]]); // and a move
  const queued = peek(a, 'sync-queue');
  assert.ok(queued.length < 2048, `sync-queue is ${queued.length} characters for a ${peek(a).length}-character list`);
  const [entry] = JSON.parse(queued);
  assert.deepEqual(entry.baseDelta.upserts.map((t) => JSON.parse(t).id), ['inv-2500'], 'one record, however often it was edited');
  assert.ok(!('base' in entry));
  // Reload: the base comes back from the stored value and the delta; the edit goes as one patch.
  const storage = a.storage;
  a.sm.destroy();
  storage.removeItem('sync-token');
  const again = dev(server, { token, storage });
  assert.equal(again.sm._queue.get(KEY).base, j(list), 'the base, byte for byte');
  await again.sm.start();
  await waitFor(() => settled(again, b) && peek(b) === peek(again), { what: 'the edit on b' });
  const sent = patchesOf(server).slice(sentBefore);
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0].upserts.map((u) => [u.id, u.amount]), [['inv-2500', -10]]);
  assert.deepEqual(sent[0].after, [['inv-0', 'inv-4999']]);
  assert.ok(Buffer.byteLength(JSON.stringify(sent[0])) < 2048);
});

test('a queued base whose list changed while the library was not loaded is dropped: the edit goes whole', async () => {
  const server = new FakeServer({ patches: true });
  const { a, b, token } = await twoLive(server, 'queue-drift@example.com');
  await holding(server, a, b, invoices(40));
  a.goOffline();
  edit(a, (l) => l.map((x) => (x.id === 'inv-1' ? { ...x, amount: -1 } : x)));
  const storage = a.storage;
  a.sm.destroy();
  // Written while no SyncManager was loaded.
  storage.setItem(KEY, j(JSON.parse(storage.getItem(KEY)).map((x) => (x.id === 'inv-2' ? { ...x, amount: -2 } : x))));
  storage.removeItem('sync-token');
  const again = dev(server, { token, storage });
  assert.ok(!('base' in again.sm._queue.get(KEY)), 'no base that does not fit the value');
  const putsBefore = server.frames('put').length;
  await again.sm.start();
  await waitFor(() => settled(again, b) && peek(b) === peek(again), { what: 'on b' });
  assert.ok(peek(b).includes('"amount":-1') && peek(b).includes('"amount":-2'));
  assert.equal(server.frames('put').length, putsBefore + 1, 'a whole put');
});
