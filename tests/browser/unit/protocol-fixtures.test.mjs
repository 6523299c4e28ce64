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
const byType = (frames) => new Map(frames.map((f) => [f.type, f]));

test('client and fake-server frames carry exactly the fixture fields', async () => {
  const server = new FakeServer();
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

  const serverFixtures = byType(fixture.server);
  const seen = new Set();
  for (const msg of delivered) {
    const want = serverFixtures.get(msg.type);
    assert.ok(want, `fake server sent an unknown frame type ${msg.type}`);
    assert.deepEqual(keysOf(msg), keysOf(want), `fields of a ${msg.type} frame`);
    if (msg.type === 'changes' && msg.changes.length) {
      assert.deepEqual(keysOf(msg.changes[0]), keysOf(want.changes[0]), 'fields of a change in changes');
    }
    seen.add(msg.type);
  }
  for (const type of ['changes', 'ack', 'change', 'pong']) assert.ok(seen.has(type), `no ${type} frame seen`);

  const clientFixtures = byType(fixture.client);
  const required = { hello: ['type', 'since'], put: ['type', 'key', 'value', 'requestId'], delete: ['type', 'key', 'requestId'], ping: ['type'] };
  const sent = server.log.filter((l) => l.frame).map((l) => l.frame);
  for (const type of ['hello', 'put', 'delete', 'ping']) {
    assert.ok(sent.some((f) => f.type === type), `client sent no ${type}`);
  }
  for (const frame of sent) {
    const want = clientFixtures.get(frame.type);
    assert.ok(want, `client sent an unknown frame type ${frame.type}`);
    const allowed = new Set(keysOf(want));
    for (const k of keysOf(frame)) assert.ok(allowed.has(k), `client ${frame.type} frame has unknown field ${k}`);
    for (const k of required[frame.type]) assert.ok(k in frame, `client ${frame.type} frame lacks ${k}`);
  }
});

test('the fixture REST answers have the fields the client reads', () => {
  const { snapshot, batch, write, error } = fixture.rest;
  for (const k of ['data', 'versions', 'deleted', 'cursor']) assert.ok(k in snapshot, k);
  for (const k of ['synced', 'conflicts', 'versions', 'cursor']) assert.ok(k in batch, k);
  for (const k of ['key', 'version', 'conflict']) assert.ok(k in write, k);
  assert.deepEqual(keysOf(error.error), ['code', 'message']);
});
