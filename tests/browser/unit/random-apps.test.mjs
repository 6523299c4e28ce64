// Issue 19 item 7: seeded random app-level runs. Three devices (A: a browser
// with two tabs, one syncing and one following; B and C), each tab an app
// that keeps the list in memory, re-reads it now and then and writes the
// whole array back after each change; offline periods, reloads of tabs and
// devices, and periods where the socket cannot connect (REST fallback).
// Each app only edits and removes the records it added, so no two writes
// conflict: at the end every operation an app wrote must be on the server
// and on every device, and every device must hold the server's value.
//
//   node --test tests/browser/unit/random-apps.test.mjs
//   SEEDS=1,2,3 OPS=200 node --test ...   (other runs)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeBrowser, FakeServer, MemoryStorage, device, loginToken, waitFor } from './fakes.mjs';

const KEY = 'estimates';
const SEEDS = (process.env.SEEDS ?? '1,2,3,4,5,6,7,8').split(',').map(Number);
const OPS = Number(process.env.OPS ?? 120);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** mulberry32: a small seeded PRNG. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function run(seed) {
  const rnd = prng(seed);
  const pick = (arr) => arr[Math.floor(rnd() * arr.length)];
  const server = new FakeServer({ patches: rnd() < 0.5 });
  const email = `random-${seed}@example.com`;
  const token = server.seedUser(email);
  const user = server.userOf(token);
  const opts = { keys: [KEY], retryMs: 30, retryMaxMs: 200, pingMs: 200, deadMs: 600 };
  const browser = new FakeBrowser();
  const lock = `random-apps-${process.pid}-${seed}`;
  const log = [];
  const managers = new Set();

  // A device is {name, online, tabs: [slot]}; a slot is one tab: its app's memory and its SyncManager.
  const open = (slot) => {
    const d =
      slot.browser
        ? device(server, { tab: (slot.tab = slot.browser.tab()), lock, tabs: true, ...opts })
        : device(server, { storage: slot.storage, ...opts });
    slot.d = d;
    managers.add(d.sm);
    if (!slot.dev.online) d.goOffline();
    return d.sm.start();
  };
  const close = (slot) => {
    slot.d.sm.destroy();
    managers.delete(slot.d.sm);
    slot.tab?.close();
  };

  const A = { name: 'A', online: true, tabs: [] };
  const B = { name: 'B', online: true, tabs: [] };
  const C = { name: 'C', online: true, tabs: [] };
  browser.shared.setItem('sync-token', token);
  A.tabs.push({ dev: A, name: 'A1', browser }, { dev: A, name: 'A2', browser });
  const bStorage = new MemoryStorage();
  bStorage.setItem('sync-token', await loginToken(server, email));
  const cStorage = new MemoryStorage();
  cStorage.setItem('sync-token', await loginToken(server, email));
  B.tabs.push({ dev: B, name: 'B', storage: bStorage });
  C.tabs.push({ dev: C, name: 'C', storage: cStorage });
  const devices = [A, B, C];
  const slots = devices.flatMap((d) => d.tabs);

  // What must be there at the end: id -> record, as its owner last wrote it (removed: absent).
  const expected = new Map();
  let n = 0;

  const app = (slot) => {
    const read = () => (slot.mem = JSON.parse(slot.d.storage.getItem(KEY) ?? '[]'));
    const write = () => slot.d.storage.setItem(KEY, JSON.stringify(slot.mem));
    return {
      add() {
        if (!slot.mem) read();
        const rec = { id: `${slot.name}-${++n}`, owner: slot.name, v: 0 };
        slot.mem.push(rec);
        expected.set(rec.id, { ...rec });
        write();
        log.push(`${slot.name} add ${rec.id}`);
      },
      edit() {
        if (!slot.mem) read();
        const own = slot.mem.filter((r) => r.owner === slot.name);
        if (!own.length) return this.add();
        const rec = pick(own);
        rec.v += 1;
        rec[`f${++n}`] = true;
        expected.set(rec.id, { ...rec });
        write();
        log.push(`${slot.name} edit ${rec.id} v${rec.v}`);
      },
      remove() {
        if (!slot.mem) read();
        const own = slot.mem.filter((r) => r.owner === slot.name);
        if (!own.length) return this.add();
        const rec = pick(own);
        slot.mem = slot.mem.filter((r) => r !== rec);
        expected.delete(rec.id);
        write();
        log.push(`${slot.name} remove ${rec.id}`);
      },
    };
  };

  for (const slot of slots) {
    await open(slot);
    await sleep(20);
  }
  await waitFor(() => slots.every((s) => s.d.sm.status === 'synced'), { what: 'all synced at the start', timeoutMs: 5000 });

  let restUntil = 0;
  try {
    for (let i = 0; i < OPS; i++) {
      const r = rnd();
      const slot = pick(slots);
      if (r < 0.3) app(slot).edit();
      else if (r < 0.5) app(slot).add();
      else if (r < 0.58) app(slot).remove();
      else if (r < 0.68) {
        slot.mem = JSON.parse(slot.d.storage.getItem(KEY) ?? '[]'); // the app re-reads
        log.push(`${slot.name} reads`);
      } else if (r < 0.76) {
        const dev = pick(devices);
        dev.online = !dev.online;
        for (const s of dev.tabs) (dev.online ? s.d.goOnline : s.d.goOffline)();
        log.push(`${dev.name} ${dev.online ? 'online' : 'offline'}`);
      } else if (r < 0.82) {
        close(slot);
        log.push(`${slot.name} reloads`);
        await open(slot);
      } else if (r < 0.85 && !server.wsRefused) {
        server.wsRefused = true; // sockets cannot connect: REST carries everything for a while
        server.dropAll();
        restUntil = i + 5 + Math.floor(rnd() * 15);
        log.push('sockets refused');
      }
      if (server.wsRefused && i >= restUntil) {
        server.wsRefused = false;
        log.push('sockets back');
      }
      await sleep(Math.floor(rnd() * 25));
    }

    // Everyone back online, sockets allowed: everything settles.
    server.wsRefused = false;
    for (const dev of devices) {
      if (!dev.online) {
        dev.online = true;
        for (const s of dev.tabs) s.d.goOnline();
      }
    }
    const value = () => server.value(user, KEY);
    await waitFor(
      () => slots.every((s) => s.d.sm.status === 'synced' && s.d.sm.pendingCount === 0 && s.d.storage.getItem(KEY) === value()),
      { what: 'every device to hold the server value', timeoutMs: 15_000 },
    ).catch(() => {});
    await sleep(300);
    const final = JSON.parse(value() ?? '[]');
    const got = new Map(final.map((r) => [r.id, r]));
    const missing = [];
    for (const [id, rec] of expected) {
      if (JSON.stringify(got.get(id)) !== JSON.stringify(rec)) missing.push(`${id}: want ${JSON.stringify(rec)}, server ${JSON.stringify(got.get(id) ?? null)}`);
    }
    const extra = final.filter((r) => !expected.has(r.id)).map((r) => r.id);
    const where = `seed ${seed}; last steps:\n  ${log.slice(-25).join('\n  ')}`;
    assert.deepEqual(missing, [], `operations lost on the server (${where})`);
    assert.deepEqual(extra, [], `removed records back on the server (${where})`);
    for (const s of slots) {
      assert.equal(s.d.storage.getItem(KEY), value(), `${s.name} holds the server's value (${where})`);
      assert.equal(s.d.sm.status, 'synced', `${s.name} says synced (${where})`);
    }
    return { ops: log.length, records: final.length, conflicts: slots.reduce((k, s) => k + s.d.sm.conflicts.length, 0) };
  } finally {
    for (const sm of managers) sm.destroy();
  }
}

for (const seed of SEEDS) {
  test(`random app-level run, seed ${seed}: three devices, a second tab, offline, reloads, REST fallback; nothing lost`, { timeout: 60_000 }, async () => {
    const t0 = Date.now();
    const r = await run(seed);
    console.log(`[random] seed ${seed}: ${r.ops} steps, ${r.records} records at the end, ${r.conflicts} conflicts logged, ${Date.now() - t0} ms`);
  });
}
