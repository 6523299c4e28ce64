// Issue 14: the edges a real app meets. Each test here failed before its fix:
// a full storage, tabs that do not hold the connection, edits after stop(),
// edge errors (HTML 502/503, Retry-After), a first sign-in that changed one
// element on both sides, localStorage.clear() and a different account,
// "last synced" on an idle live device, and throttled background timers.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeBrowser, FakeServer, MemoryStorage, devicesPerTest, loginToken, waitFor } from './fakes.mjs';
import * as lib from '../../../client-demo/sync-manager.js';

const j = (v) => JSON.stringify(v);
const { dev, cleanups } = devicesPerTest(afterEach);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const stateOf = (storage) => JSON.parse(storage.getItem('sync-state') ?? '{}');
let lockSeq = 0;
const lockName = () => `edges-test-${process.pid}-${++lockSeq}`;

// ------------------------------------------------------------ storage full

test('storage full: a remote value that does not fit is not taken as synced, the status says so, and a local edit does not fast-forward over it', async () => {
  const server = new FakeServer();
  const token = server.seedUser('quota@example.com');
  const keys = ['notes', 'other'];
  const a = dev(server, { token, keys });
  const bStorage = new MemoryStorage({ quota: 3000 });
  const b = dev(server, { token: await loginToken(server, 'quota@example.com'), storage: bStorage, keys, retryMs: 30 });
  await Promise.all([a.sm.start(), b.sm.start()]);
  a.storage.setItem('notes', 'small v1');
  await waitFor(() => b.storage.getItem('notes') === 'small v1', { what: 'v1 on b' });
  const v1 = stateOf(b.storage).versions.notes;

  const big = 'x'.repeat(5000); // more than b's storage holds
  a.storage.setItem('notes', big);
  await waitFor(() => b.sm.status === 'error', { what: 'b to report the full storage' });
  assert.equal(b.storage.getItem('notes'), 'small v1', 'the old value stays');
  assert.equal(stateOf(b.storage).versions.notes, v1, 'the key is not recorded at the version b could not store');
  assert.equal(b.sm.error?.code, 'storage_full');

  // Another key's acknowledged edit does not turn the status back to synced.
  b.storage.setItem('other', 'o');
  await waitFor(() => server.value(server.userOf(token), 'other') === 'o', { what: 'other synced' });
  await sleep(60);
  assert.equal(b.sm.status, 'error', 'still not synced: one remote value is missing here');

  // b's next edit of the key is based on what b really has: the server sees a conflict, not a fast-forward.
  const conflicts = [];
  b.sm.on('conflict', (c) => conflicts.push(c));
  b.storage.setItem('notes', 'edit on b');
  await waitFor(() => server.frames('put').some((f) => f.key === 'notes' && f.value === 'edit on b'), { what: 'b writes' });
  const put = server.frames('put').find((f) => f.key === 'notes' && f.value === 'edit on b');
  assert.equal(put.baseVersion, v1, 'based on the version b holds');
  await waitFor(() => conflicts.length > 0, { what: 'the conflict to be reported' });
  assert.equal(conflicts[0].key, 'notes');
  assert.equal(conflicts[0].lost, big, "the value b could not store is named as the loser, and kept in the server's history");
  assert.ok(server.data.get(server.userOf(token)).history.some((h) => h.key === 'notes' && h.value === big));
});

test('storage full: the remote value is retried and taken once it fits', async () => {
  const server = new FakeServer();
  const token = server.seedUser('quota2@example.com');
  const keys = ['notes'];
  const a = dev(server, { token, keys });
  const bStorage = new MemoryStorage({ quota: 3000 });
  const b = dev(server, { token: await loginToken(server, 'quota2@example.com'), storage: bStorage, keys, retryMs: 30 });
  await Promise.all([a.sm.start(), b.sm.start()]);
  const big = 'y'.repeat(5000);
  a.storage.setItem('notes', big);
  await waitFor(() => b.sm.error?.code === 'storage_full', { what: 'storage_full on b' });
  bStorage.quota = Infinity; // the app freed space
  await waitFor(() => b.storage.getItem('notes') === big && b.sm.status === 'synced', { what: 'the value to be taken' });
  assert.equal(stateOf(b.storage).versions.notes, server.data.get(server.userOf(token)).keys.get('notes').version);
});

// Issue 19 item 1: a record list this device could not store must not be
// overwritten by its next edit of the list it still holds.
for (const patches of [false, true]) {
  test(`storage full: an edit of the list this device still holds keeps the records it could not store (patches: ${patches})`, async () => {
    const server = new FakeServer({ patches });
    const email = `quota-records-${patches}@example.com`;
    const token = server.seedUser(email);
    const keys = ['estimates'];
    const a = dev(server, { token, keys });
    const qStorage = new MemoryStorage({ quota: 20_000 });
    const q = dev(server, { token: await loginToken(server, email), storage: qStorage, keys, retryMs: 30 });
    await Promise.all([a.sm.start(), q.sm.start()]);
    const three = [0, 1, 2].map((i) => ({ id: `est-${i}`, client: `Client ${i}`, amount: i }));
    a.storage.setItem('estimates', j(three));
    await waitFor(() => q.storage.getItem('estimates') === j(three), { what: 'the 3 records on q' });
    await q.sm.whenSynced(2000);
    const many = [...three, ...Array.from({ length: 5000 }, (_, i) => ({ id: `more-${i}`, client: `Bulk ${i}`, amount: i }))];
    a.storage.setItem('estimates', j(many));
    await waitFor(() => q.sm.error?.code === 'storage_full', { what: 'q to report the full storage' });
    assert.equal(q.storage.getItem('estimates'), j(three), 'q still holds the 3 records');

    // q's app edits one field of the list it holds.
    const list = JSON.parse(q.storage.getItem('estimates'));
    list[1].client = 'Edited on Q';
    q.storage.setItem('estimates', j(list));
    const user = server.userOf(token);
    await waitFor(() => server.value(user, 'estimates')?.includes('Edited on Q'), { what: 'q’s edit on the server' });
    const stored = JSON.parse(server.value(user, 'estimates'));
    assert.equal(stored.length, 5003, 'the 5,000 records q never stored are still there');
    assert.equal(stored.find((r) => r.id === 'est-1').client, 'Edited on Q', 'and q’s edit too');
    await waitFor(() => JSON.parse(a.storage.getItem('estimates')).length === 5003 && a.storage.getItem('estimates').includes('Edited on Q'), { what: 'both on a' });
    // q still cannot store the merged list and says so; once it fits, it takes it.
    assert.equal(q.sm.error?.code, 'storage_full');
    qStorage.quota = Infinity;
    await waitFor(() => q.storage.getItem('estimates') === server.value(user, 'estimates') && q.sm.status === 'synced', { what: 'q to take the merged list' });
  });
}

// ------------------------------------------------------------------ tabs

test('a tab that does not hold the connection tells the truth about its own edits', async () => {
  const server = new FakeServer();
  const token = server.seedUser('tabs@example.com');
  const browser = new FakeBrowser();
  const lock = lockName();
  const t1 = dev(server, { token, tab: browser.tab(), lock, tabs: true });
  await t1.sm.start();
  await t1.sm.whenSynced(2000);
  const t2 = dev(server, { tab: browser.tab(), lock, tabs: true });
  await t2.sm.start();
  await waitFor(() => t2.sm.status === 'synced', { what: 'the follower to mirror the leader' });
  // (A first sync goes over REST; the socket follows.)
  await waitFor(() => server.frames('hello').length >= 1, { what: 'the socket' });
  await sleep(50);
  assert.equal(server.frames('hello').length, 1, 'one socket for the browser');

  const changes = [];
  t2.sm.on('change', (c) => changes.push(c));
  server.holdAcks = true;
  t2.storage.setItem('estimates', j([{ id: 'from-tab-2' }]));
  assert.notEqual(t2.sm.status, 'synced', 'right after its edit the follower is not synced');
  assert.equal(t2.sm.pendingCount, 1);
  assert.deepEqual(changes, [{ key: 'estimates', value: j([{ id: 'from-tab-2' }]), source: 'local' }]);
  let resolved = false;
  const synced = t2.sm.whenSynced(3000).then(() => (resolved = true));
  await waitFor(() => server.held.length === 1, { what: 'the leader to send it' });
  await sleep(30);
  assert.equal(resolved, false, 'whenSynced waits for the acknowledgement');
  assert.notEqual(t2.sm.status, 'synced');
  server.holdAcks = false;
  server.release();
  await synced;
  assert.equal(t2.sm.pendingCount, 0);
  assert.equal(server.frames('put').filter((f) => f.key === 'estimates').length, 1, 'sent once');
});

test('without Web Locks the tabs elect one syncing tab through a lease: one socket, each edit sent once, a new leader when it closes', async () => {
  const server = new FakeServer();
  const token = server.seedUser('lease@example.com');
  const browser = new FakeBrowser();
  const opts = { lock: false, tabs: true, leaseMs: 300 };
  const t1 = dev(server, { token, tab: browser.tab({ locks: false }), ...opts });
  const t2 = dev(server, { tab: browser.tab({ locks: false }), ...opts });
  await Promise.all([t1.sm.start(), t2.sm.start()]);
  await waitFor(() => t1.sm.status === 'synced' && t2.sm.status === 'synced', { what: 'both synced' });
  await sleep(100);
  assert.equal(server.sockets.size, 1, 'one socket');
  assert.equal(server.frames('hello').length, 1);
  const leader = t1.sm.isLeader ? t1 : t2;
  const follower = leader === t1 ? t2 : t1;
  assert.equal(follower.sm.isLeader, false);

  follower.storage.setItem('estimates', j([{ id: 'once' }]));
  await waitFor(() => server.value(server.userOf(token), 'estimates') === j([{ id: 'once' }]), { what: 'the edit synced' });
  await waitFor(() => follower.sm.status === 'synced', { what: 'follower synced' });
  await sleep(100);
  assert.equal(server.frames('put').filter((f) => f.key === 'estimates').length, 1, 'each edit is sent once');

  // The leading tab closes: the other takes over within a lease.
  leader.sm.destroy();
  browser.tabs.forEach((t) => t.storage === leader.storage && t.close());
  await waitFor(() => follower.sm.isLeader && server.sockets.size === 1 && follower.sm.status === 'synced', {
    what: 'the other tab to take over',
    timeoutMs: 3000,
  });
  follower.storage.setItem('estimates', j([{ id: 'after' }]));
  await waitFor(() => server.value(server.userOf(token), 'estimates') === j([{ id: 'after' }]), { what: 'synced by the new leader' });
});

// Issue 19 item 7: a stale write in any tab gets the syncing tab's treatment.

/** One browser (tab 1 syncs, tab 2 follows) and a second device b, all synced on a two-record list. */
async function tabsAndDevice(name) {
  const server = new FakeServer();
  const email = `${name}@example.com`;
  const token = server.seedUser(email);
  const browser = new FakeBrowser();
  const lock = lockName();
  const tab1 = browser.tab();
  const tab2 = browser.tab();
  const t1 = { ...dev(server, { token, tab: tab1, lock, tabs: true }), tab: tab1 };
  await t1.sm.start();
  await t1.sm.whenSynced(2000);
  const t2 = { ...dev(server, { tab: tab2, lock, tabs: true }), tab: tab2 };
  await t2.sm.start();
  const b = dev(server, { token: await loginToken(server, email) });
  await b.sm.start();
  await b.sm.whenSynced(2000);
  t1.storage.setItem('estimates', j([{ id: 'x', n: 1 }, { id: 'y', n: 2 }]));
  await waitFor(() => b.storage.getItem('estimates')?.includes('"y"'), { what: 'the list on b' });
  await waitFor(() => t1.sm.status === 'synced' && t2.sm.status === 'synced', { what: 'both tabs synced' });
  await sleep(20); // every storage event delivered
  return { server, user: server.userOf(token), browser, t1, t2, b };
}

const allSynced = (...ds) => waitFor(() => ds.every((d) => d.sm.status === 'synced'), { what: 'everyone synced' });

for (const writer of ['t1', 't2']) {
  test(`a stale write of a record another device changed: the ${writer === 't1' ? 'syncing' : 'following'} tab's gets the stale-write treatment`, async () => {
    const s = await tabsAndDevice(`stale-${writer}`);
    const tab = s[writer];
    const mem = JSON.parse(tab.storage.getItem('estimates')); // the app holds the list
    s.b.storage.setItem('estimates', j([{ id: 'x', n: 1, fromB: true }, { id: 'y', n: 2 }]));
    await waitFor(() => tab.sm._read('estimates').includes('fromB'), { what: 'b’s field in the tab’s storage' });
    await sleep(20);
    mem[0].fromTab = true;
    tab.storage.setItem('estimates', j(mem)); // its stale copy, another field on x
    await waitFor(() => s.server.value(s.user, 'estimates')?.includes('fromTab'), { what: 'the write on the server' });
    await allSynced(s.t1, s.t2, s.b);
    const stored = s.server.value(s.user, 'estimates');
    // b's field is either kept or reported (restorable) in every tab: never gone silently.
    if (!stored.includes('fromB')) {
      for (const t of [s.t1, s.t2]) {
        await waitFor(() => t.sm.conflicts.some((c) => c.key === 'estimates' && j(c.lostElements ?? []).includes('fromB')), {
          what: `the conflict in ${t === s.t1 ? 'tab 1' : 'tab 2'}'s log`,
        });
      }
    }
    assert.equal(s.t1.sm._read('estimates'), stored);
    assert.equal(s.b.storage.getItem('estimates'), stored);
  });
}

test('a following tab’s app writes its stale list before that tab has heard of a remote change: the change stays', async () => {
  const s = await tabsAndDevice('stale-race-follower');
  const mem = JSON.parse(s.t2.storage.getItem('estimates'));
  s.t2.tab.eventDelayMs = 200; // tab 2 hears of tab 1's writes late
  s.b.storage.setItem('estimates', j([{ id: 'x', n: 1 }, { id: 'y', n: 2, fromB: true }]));
  await waitFor(() => s.t1.sm._read('estimates').includes('fromB'), { what: 'b’s edit in storage' });
  mem[0].fromTab2 = true;
  s.t2.storage.setItem('estimates', j(mem)); // before its storage event arrived
  await waitFor(() => s.server.value(s.user, 'estimates')?.includes('fromTab2'), { what: 'tab 2’s edit on the server' });
  await allSynced(s.t1, s.t2, s.b);
  const want = j([{ id: 'x', n: 1, fromTab2: true }, { id: 'y', n: 2, fromB: true }]);
  assert.equal(s.server.value(s.user, 'estimates'), want);
  await waitFor(() => s.b.storage.getItem('estimates') === want && s.t1.sm._read('estimates') === want, { what: 'both edits everywhere' });
});

test('a remote change reaches the syncing tab before it has heard of a following tab’s (stale) edit: both stay', async () => {
  const s = await tabsAndDevice('stale-race-leader');
  s.t1.tab.eventDelayMs = 200; // tab 1 hears of tab 2's writes late
  const list = JSON.parse(s.t2.storage.getItem('estimates'));
  list[0].fromTab2 = true;
  s.t2.storage.setItem('estimates', j(list));
  s.b.storage.setItem('estimates', j([{ id: 'x', n: 1 }, { id: 'y', n: 2, fromB: true }]));
  await waitFor(() => s.server.value(s.user, 'estimates')?.includes('fromB'), { what: 'b’s edit on the server' });
  await sleep(250);
  await allSynced(s.t1, s.t2, s.b);
  const want = j([{ id: 'x', n: 1, fromTab2: true }, { id: 'y', n: 2, fromB: true }]);
  assert.equal(s.server.value(s.user, 'estimates'), want);
  await waitFor(() => s.b.storage.getItem('estimates') === want && s.t1.sm._read('estimates') === want, { what: 'both edits everywhere' });
});

// ------------------------------------------------------------ after stop()

test('an edit made after stop() is queued with its own edit time and sent with it at the next start', async () => {
  const server = new FakeServer();
  const token = server.seedUser('stop@example.com');
  const browser = new FakeBrowser();
  let offset = 0;
  const now = () => Date.now() + offset;
  const a = dev(server, { token, tab: browser.tab(), lock: lockName(), tabs: true, now });
  await a.sm.start();
  await a.sm.whenSynced(2000);
  a.sm.stop();
  const editedAt = now();
  a.storage.setItem('estimates', j([{ id: 'while-stopped' }]));
  assert.equal(a.sm.pendingCount, 1, 'queued while stopped');
  offset += 3_600_000; // an hour later
  await a.sm.start();
  await a.sm.whenSynced(2000);
  const put = server.frames('put').find((f) => f.key === 'estimates');
  assert.ok(put, 'sent after the restart');
  assert.ok(Math.abs(put.updatedAt - editedAt) < 1000, `stamped with the edit time (${put.updatedAt - editedAt} ms off)`);
});

// ------------------------------------------------------------ edge errors

test('an HTML 502 from the edge during REST fallback is retried soon, not at the next poll', async () => {
  const server = new FakeServer();
  server.wsRefused = true;
  const token = server.seedUser('502@example.com');
  const a = dev(server, { token, retryMs: 30 }); // polling stays at the default 60 s
  await a.sm.start();
  await a.sm.whenSynced(2000);
  server.failures.push({ method: 'POST', path: /\/api\/sync$/, status: 502, html: true });
  a.storage.setItem('estimates', j([{ id: 'through-502' }]));
  await a.sm.whenSynced(3000);
  assert.equal(server.value(server.userOf(token), 'estimates'), j([{ id: 'through-502' }]));
  assert.equal(server.failures.length, 0, 'the 502 was met');
});

test('a large REST write that meets one 502 while the socket is live is retried without another edit', async () => {
  const server = new FakeServer();
  const token = server.seedUser('big502@example.com');
  const a = dev(server, { token, retryMs: 30 });
  await a.sm.start();
  await a.sm.whenSynced(2000);
  server.failures.push({ method: 'PUT', status: 503, html: true });
  const big = j([{ id: 1, notes: 'z'.repeat(1100 * 1024) }]);
  a.storage.setItem('estimates', big);
  await a.sm.whenSynced(3000);
  assert.equal(server.value(server.userOf(token), 'estimates'), big);
  assert.equal(server.failures.length, 0);
});

test('retry delays honour Retry-After and carry jitter', async () => {
  assert.equal(typeof lib.retryDelay, 'function', 'retryDelay is exported');
  const d = (attempt, random, retryAfterMs) => lib.retryDelay(attempt, { baseMs: 2000, maxMs: 60000, random: () => random, retryAfterMs });
  assert.notEqual(d(0, 0, null), d(0, 0.99, null), 'jitter: two clients do not retry in step');
  assert.ok(d(3, 0.5, null) > d(0, 0.5, null), 'grows with the attempt');
  assert.ok(d(20, 0.99, null) <= 60000, 'capped');
  for (const r of [0, 0.5, 0.99]) assert.ok(d(0, r, 5000) >= 5000, 'never before Retry-After');
  assert.notEqual(d(0, 0, 5000), d(0, 0.99, 5000), 'jitter after Retry-After too');

  // Over REST: a 429 with Retry-After: 1 is sent again after a second, not before.
  const server = new FakeServer();
  server.wsRefused = true;
  const token = server.seedUser('429@example.com');
  const a = dev(server, { token, retryMs: 30 });
  await a.sm.start();
  await a.sm.whenSynced(2000);
  server.failures.push({ method: 'POST', path: /\/api\/sync$/, status: 429, code: 'rate_limited', retryAfter: 1 });
  const t0 = Date.now();
  a.storage.setItem('estimates', '[]');
  await a.sm.whenSynced(4000);
  const posts = server.log.filter((l) => l.method === 'POST' && l.path === '/api/sync');
  assert.ok(posts.length >= 2);
  assert.ok(Date.now() - t0 >= 1000, 'waited for Retry-After');
});

// ------------------------------------------------------- first sign-in

test('first sign-in: an element changed on both sides without updatedAt keeps the local one in a persisted conflict log', async () => {
  const server = new FakeServer();
  const token = server.seedUser('first@example.com');
  server.write(token, 'estimates', j([{ id: 'e1', amount: 200 }, { id: 'e2', amount: 5 }]));
  const storage = new MemoryStorage();
  storage.setItem('estimates', j([{ id: 'e1', amount: 100 }]));
  const d = dev(server, { storage });
  await d.sm.login('first@example.com', 'password1');
  await d.sm.start();
  await d.sm.whenSynced(3000);
  const c = d.sm.conflicts.find((x) => x.key === 'estimates');
  assert.ok(c, 'the merge is reported');
  assert.ok(j(c.lostElements ?? c.lost ?? null).includes('100'), `the local element is kept in the record: ${j(c)}`);
  assert.ok((storage.getItem('sync-conflicts') ?? '').includes('100'), 'the conflict log is kept in storage');

  // After a reload the log is still there and can bring the local element back.
  d.sm.destroy();
  cleanups.length = 0;
  const again = dev(server, { storage });
  const c2 = again.sm.conflicts.find((x) => x.key === 'estimates');
  assert.ok(c2 && typeof c2.restore === 'function', 'loaded with a restore');
  await again.sm.start();
  c2.restore();
  await again.sm.whenSynced(3000);
  const e1 = JSON.parse(server.value(server.userOf(token), 'estimates')).find((e) => e.id === 'e1');
  assert.equal(e1.amount, 100, 'the local element is current again everywhere');
});

// ---------------------------------------------- clear() and other accounts

test('localStorage.clear() by the app keeps the device signed in, and the data comes back from the account', async () => {
  const server = new FakeServer();
  const token = server.seedUser('clear@example.com');
  const a = dev(server, { token });
  await a.sm.start();
  a.storage.setItem('estimates', j([{ id: 'kept' }]));
  await a.sm.whenSynced(2000);
  a.storage.clear();
  assert.equal(a.storage.getItem('sync-token'), token, 'the token survives');
  assert.equal(a.sm.signedIn, true);
  await waitFor(() => a.storage.getItem('estimates') === j([{ id: 'kept' }]), { what: 'data back from the account' });
  await a.sm.whenSynced(2000);
  assert.equal(server.value(server.userOf(token), 'estimates'), j([{ id: 'kept' }]), 'clear() deleted nothing on the server');
  // A reload is still signed in.
  a.sm.destroy();
  cleanups.length = 0;
  assert.equal(dev(server, { storage: a.storage }).sm.signedIn, true);
});

test('storage cleared while no SyncManager was loaded: the sign-in comes back from its IndexedDB copy; signing out removes it', async () => {
  const server = new FakeServer();
  server.seedUser('backup@example.com');
  let kept = null;
  const signInBackup = { load: async () => kept, save: async (r) => (kept = r), clear: async () => (kept = null) };
  const storage = new MemoryStorage();
  const a = dev(server, { storage, signInBackup });
  await a.sm.login('backup@example.com', 'password1');
  await a.sm.start();
  a.storage.setItem('estimates', j([{ id: 'in-the-account' }]));
  await a.sm.whenSynced(2000);
  a.sm.destroy();
  cleanups.length = 0;
  storage.clear(); // the app, at start-up, before the library loads

  const b = dev(server, { storage, signInBackup });
  await b.sm.ready;
  assert.equal(b.sm.signedIn, true, 'signed in again from the copy');
  assert.equal(b.sm.email, 'backup@example.com');
  await b.sm.start();
  await b.sm.whenSynced(2000);
  assert.equal(storage.getItem('estimates'), j([{ id: 'in-the-account' }]), 'the data comes back');
  await b.sm.logout();
  assert.equal(kept, null, 'an explicit sign-out removes the copy');
});

test('signing in to a different account on this device needs an explicit choice', async () => {
  const server = new FakeServer();
  server.seedUser('first-account@example.com');
  server.seedUser('second-account@example.com');
  const storage = new MemoryStorage();
  const d = dev(server, { storage });
  await d.sm.login('first-account@example.com', 'password1');
  await d.sm.start();
  d.storage.setItem('estimates', j([{ id: 'first-account-data' }]));
  await d.sm.whenSynced(2000);
  await d.sm.logout();

  await assert.rejects(d.sm.login('second-account@example.com', 'password1'), (e) => e.code === 'account_changed');
  assert.equal(d.sm.signedIn, false, 'not signed in without a choice');
  const second = server.users.get('second-account@example.com').userId;
  await sleep(50);
  assert.equal(server.value(second, 'estimates'), null, "nothing of the first account's data went to the second");

  // Choosing to keep the accounts apart: this device's copy is replaced by the second account's data.
  await d.sm.login('second-account@example.com', 'password1', { accountChange: 'replace' });
  await d.sm.start();
  await d.sm.whenSynced(2000);
  assert.equal(d.storage.getItem('estimates'), null);
  assert.equal(server.value(second, 'estimates'), null);
  assert.equal(server.value(server.users.get('first-account@example.com').userId, 'estimates'), j([{ id: 'first-account-data' }]));
});

// -------------------------------------------------------- last synced, timers

test('a live idle device keeps "last synced" current through the heartbeat', async () => {
  const server = new FakeServer();
  const token = server.seedUser('idle@example.com');
  let offset = 0;
  const now = () => Date.now() + offset;
  const a = dev(server, { token, now, pingMs: 20, deadMs: 1e12 });
  await a.sm.start();
  await a.sm.whenSynced(2000);
  offset += 3 * 3_600_000; // three quiet hours
  await waitFor(() => a.sm.lastSyncedAt >= now() - 1000, { what: 'lastSyncedAt to follow the heartbeat' });
  assert.equal(a.sm.status, 'synced');
});

test('throttled background timers do not make the heartbeat drop a healthy socket; a dead one is still noticed', async () => {
  const server = new FakeServer();
  const token = server.seedUser('hidden@example.com');
  // Each timer tick looks ten times further apart than it is: the page's
  // timers run far less often than pingMs, as in a throttled background tab.
  const t0 = Date.now();
  const now = () => t0 + (Date.now() - t0) * 10;
  const a = dev(server, { token, now, pingMs: 300, deadMs: 600, connectTimeoutMs: 2000 });
  await a.sm.start();
  await a.sm.whenSynced(2000);
  const hellos = server.frames('hello').length;
  await sleep(1200);
  assert.equal(server.frames('hello').length, hellos, 'no reconnect: the socket answered every ping');
  assert.equal(a.sm.status, 'synced');
  server.silent = true;
  await waitFor(() => a.sm.status !== 'synced', { what: 'a dead link to be noticed', timeoutMs: 3000 });
});
