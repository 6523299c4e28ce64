// The wire format is pinned in tests/fixtures/protocol.json, which the Rust
// tests round-trip through the server's own types. Here the client's frames
// and the fake server's frames must carry exactly the fixture's fields, so
// neither the client nor the fake these tests rely on can drift from the
// real server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { FakeServer, device, waitFor } from './fakes.mjs';

const fixture = JSON.parse(
  readFileSync(new URL('../../fixtures/protocol.json', import.meta.url), 'utf8'),
);
const keysOf = (o) => Object.keys(o).sort();

/** Every type's fixtures (the issue-13 patch frames are kept apart in patchClient/patchServer). */
const fixturesByType = (...lists) => {
  const m = new Map();
  for (const f of lists.flat()) m.set(f.type, [...(m.get(f.type) ?? []), f]);
  return m;
};
const serverFixtures = fixturesByType(fixture.server, fixture.patchServer);
const clientFixtures = fixturesByType(fixture.client, fixture.patchClient);
const required = {
  hello: ['type', 'since'],
  put: ['type', 'key', 'value', 'requestId'],
  delete: ['type', 'key', 'requestId'],
  ping: ['type'],
  patch: ['type', 'key', 'requestId', 'baseVersion', 'upserts', 'removed'],
};
const sameKeys = (a, b) => JSON.stringify(keysOf(a)) === JSON.stringify(keysOf(b));

/** A fake server that records what it delivers, and two signed-in devices of one account on it. */
async function setup(options) {
  const server = new FakeServer(options);
  const delivered = [];
  const deliver = server.WebSocket.prototype._deliver;
  server.WebSocket.prototype._deliver = function (msg) {
    delivered.push(msg);
    return deliver.call(this, msg);
  };
  const token = server.seedUser('fx@example.com');
  const res = await server.fetch('http://sync.test/api/auth/login', {
    method: 'POST',
    body: JSON.stringify({ email: 'fx@example.com', password: 'password1' }),
  });
  const a = device(server, { token, pingMs: 30 });
  const b = device(server, { token: (await res.json()).token, pingMs: 30 });
  return { server, delivered, a, b };
}

/** Each frame the fake server delivered has exactly the fields of a fixture of its type; returns the types seen. */
function checkServerFrames(delivered) {
  const seen = new Set();
  for (const msg of delivered) {
    const wants = serverFixtures.get(msg.type);
    assert.ok(wants, `fake server sent an unknown frame type ${msg.type}`);
    assert.ok(wants.some((w) => sameKeys(msg, w)), `fields of a ${msg.type} frame: ${keysOf(msg)}`);
    if (msg.type === 'changes') {
      const entries = wants.flatMap((w) => w.changes);
      for (const c of msg.changes) assert.ok(entries.some((e) => sameKeys(c, e)), `fields of a change in changes: ${keysOf(c)}`);
    }
    if (msg.patch) {
      const patches = wants.filter((w) => w.patch).map((w) => w.patch);
      assert.ok(patches.some((p) => keysOf(msg.patch).every((k) => k in p)), `fields of a patch: ${keysOf(msg.patch)}`);
    }
    seen.add(msg.patch ? `${msg.type}+patch` : msg.type);
    if (msg.type === 'changes' && msg.changes.some((c) => c.patch)) seen.add('changes+patch');
  }
  return seen;
}

/** Each frame the client sent has only fixture fields and the required ones; returns them. */
function checkClientFrames(server) {
  const sent = server.log.filter((l) => l.frame).map((l) => l.frame);
  for (const frame of sent) {
    const wants = clientFixtures.get(frame.type);
    assert.ok(wants, `client sent an unknown frame type ${frame.type}`);
    const allowed = new Set(wants.flatMap(keysOf));
    for (const k of keysOf(frame)) assert.ok(allowed.has(k), `client ${frame.type} frame has unknown field ${k}`);
    for (const k of required[frame.type]) assert.ok(k in frame, `client ${frame.type} frame lacks ${k}`);
  }
  return sent;
}

test('client and fake-server frames carry exactly the fixture fields', async () => {
  const { server, delivered, a, b } = await setup();
  try {
    await Promise.all([a.sm.start(), b.sm.start()]);
    a.storage.setItem('estimates', JSON.stringify([{ id: 'e1' }]));
    await waitFor(() => b.storage.getItem('estimates') !== null, { what: 'change on b' });
    a.storage.removeItem('estimates');
    await waitFor(() => b.storage.getItem('estimates') === null, { what: 'removal on b' });
    await waitFor(() => delivered.some((m) => m.type === 'pong'), { what: 'a pong' });
  } finally {
    a.sm.destroy();
    b.sm.destroy();
  }
  const seen = checkServerFrames(delivered);
  for (const type of ['changes', 'ack', 'change', 'pong']) assert.ok(seen.has(type), `no ${type} frame seen`);
  const sent = checkClientFrames(server);
  for (const type of ['hello', 'put', 'delete', 'ping']) {
    assert.ok(sent.some((f) => f.type === type), `client sent no ${type}`);
  }
  // The hello offers patches; a server that does not answer `patches: true` gets none.
  assert.ok(sent.filter((f) => f.type === 'hello').every((f) => f.patches === true), 'hello says patches: true');
  assert.ok(!sent.some((f) => f.type === 'patch'), 'no patch frame to a server without patches');
});

test('patch frames (issue 13): client and fake-server frames carry exactly the patchClient/patchServer fixture fields', async () => {
  const { server, delivered, a, b } = await setup({ patches: true });
  const list = Array.from({ length: 30 }, (_, i) => ({ id: `inv-${i}`, client: `Client ${i}`, amount: i, updatedAt: 1000 + i }));
  const edit = (storage, key, fn) => storage.setItem(key, JSON.stringify(fn(JSON.parse(storage.getItem(key)))));
  try {
    await Promise.all([a.sm.start(), b.sm.start()]);
    a.storage.setItem('estimates', JSON.stringify(list));
    await waitFor(() => b.storage.getItem('estimates') === JSON.stringify(list), { what: 'the list on b' });
    await waitFor(() => a.sm.pendingCount === 0, { what: 'a synced' });
    // One changed record, one removed, one new first: a patch each way.
    edit(a.storage, 'estimates', (l) => [{ id: 'inv-new', amount: 1 }, ...l.filter((x) => x.id !== 'inv-9').map((x) => (x.id === 'inv-3' ? { ...x, amount: 120 } : x))]);
    await waitFor(() => b.storage.getItem('estimates') === a.storage.getItem('estimates'), { what: 'the patch on b' });
    await waitFor(() => a.sm.pendingCount === 0 && b.sm.pendingCount === 0, { what: 'both synced' });
    // b reconnects after a's edit: its catch-up carries a patch against what b holds.
    b.goOffline();
    edit(a.storage, 'estimates', (l) => l.map((x) => (x.id === 'inv-4' ? { ...x, amount: 44 } : x)));
    await waitFor(() => a.sm.pendingCount === 0, { what: 'a synced again' });
    b.goOnline();
    await waitFor(() => b.storage.getItem('estimates') === a.storage.getItem('estimates'), { what: 'the catch-up patch on b' });
    // A key the server does not hold as records: not_records, then the whole value as a put.
    server.notRecords.add('estimates');
    edit(a.storage, 'estimates', (l) => l.map((x) => (x.id === 'inv-5' ? { ...x, amount: 55 } : x)));
    await waitFor(() => b.storage.getItem('estimates') === a.storage.getItem('estimates'), { what: 'the whole put after not_records' });
    await waitFor(() => delivered.some((m) => m.type === 'pong'), { what: 'a pong' });
  } finally {
    a.sm.destroy();
    b.sm.destroy();
  }
  const seen = checkServerFrames(delivered);
  for (const type of ['changes', 'changes+patch', 'ack', 'change+patch', 'error']) assert.ok(seen.has(type), `no ${type} frame seen`);
  const sent = checkClientFrames(server);
  const patches = sent.filter((f) => f.type === 'patch');
  assert.ok(patches.length >= 3, `client sent ${patches.length} patch frames`);
  assert.deepEqual(patches[0].removed, ['inv-9']);
  assert.deepEqual(patches[0].upserts.map((u) => u.id), ['inv-new', 'inv-3']);
  assert.deepEqual(patches[0].after, [['inv-new', null]]);
  const refused = patches.at(-1);
  const put = sent.filter((f) => f.type === 'put').at(-1);
  assert.ok(put.value.includes('"amount":55'), 'the refused patch went again as a whole put');
  assert.notEqual(put.requestId, refused.requestId, 'with a new requestId');
});

test('the fixture REST answers have the fields the client reads', () => {
  const { snapshot, batch, write, error } = fixture.rest;
  for (const k of ['data', 'versions', 'deleted', 'cursor']) assert.ok(k in snapshot, k);
  for (const k of ['synced', 'conflicts', 'versions', 'cursor']) assert.ok(k in batch, k);
  for (const k of ['key', 'version', 'conflict']) assert.ok(k in write, k);
  assert.deepEqual(keysOf(error.error), ['code', 'message']);
});
