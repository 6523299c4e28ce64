// Pure pieces of the client: merging arrays by id and the reconnect backoff.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, mergeById } from '../../../client-demo/sync-manager.js';

const j = (v) => JSON.stringify(v);
const p = (s) => JSON.parse(s);

test('backoff grows exponentially, is capped, and its jitter stays in [cap/2, cap]', () => {
  const opts = { baseMs: 500, maxMs: 30000 };
  const low = (n) => backoffDelay(n, { ...opts, random: () => 0 });
  const high = (n) => backoffDelay(n, { ...opts, random: () => 0.999999 });
  assert.deepEqual([0, 1, 2, 3, 4].map(high), [500, 1000, 2000, 4000, 8000]);
  assert.deepEqual([0, 1, 2, 3, 4].map(low), [250, 500, 1000, 2000, 4000]);
  assert.equal(high(10), 30000, 'capped at maxMs');
  assert.equal(high(1000), 30000, 'no overflow for huge attempts');
  for (let n = 0; n < 12; n++) {
    const cap = Math.min(30000, 500 * 2 ** n);
    const seen = new Set();
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(n, opts);
      assert.ok(d >= cap / 2 && d <= cap, `attempt ${n}: ${d} outside [${cap / 2}, ${cap}]`);
      seen.add(d);
    }
    if (cap >= 1000) assert.ok(seen.size > 20, 'jitter actually varies');
  }
});

test('first sign-in merge (no base) is the union; the later updatedAt wins, else the server', () => {
  const local = j([
    { id: 1, title: 'local newer', updatedAt: 200 },
    { id: 2, title: 'local older', updatedAt: 100 },
    { id: 3, title: 'only local', updatedAt: 50 },
    { id: 5, title: 'local no time' },
  ]);
  const server = j([
    { id: 1, title: 'server older', updatedAt: 100 },
    { id: 2, title: 'server newer', updatedAt: 300 },
    { id: 4, title: 'only server', updatedAt: 10 },
    { id: 5, title: 'server no time' },
  ]);
  const merged = p(mergeById(null, local, server));
  const byId = Object.fromEntries(merged.map((o) => [o.id, o.title]));
  assert.deepEqual(byId, {
    1: 'local newer',
    2: 'server newer',
    3: 'only local',
    4: 'only server',
    5: 'server no time',
  });
  assert.equal(merged.length, 5);
});

test('three-way merge keeps both sides: edits of different elements, additions and removals', () => {
  const base = j([
    { id: 'a', v: 1, updatedAt: 1 },
    { id: 'b', v: 1, updatedAt: 1 },
    { id: 'c', v: 1, updatedAt: 1 },
    { id: 'd', v: 1, updatedAt: 1 },
  ]);
  // local edits a, removes c, adds x after b; remote edits b, removes d, adds y
  const local = j([
    { id: 'a', v: 2, updatedAt: 5 },
    { id: 'b', v: 1, updatedAt: 1 },
    { id: 'x', v: 1, updatedAt: 5 },
    { id: 'd', v: 1, updatedAt: 1 },
  ]);
  const remote = j([
    { id: 'a', v: 1, updatedAt: 1 },
    { id: 'b', v: 3, updatedAt: 6 },
    { id: 'c', v: 1, updatedAt: 1 },
    { id: 'y', v: 1, updatedAt: 6 },
  ]);
  const merged = p(mergeById(base, local, remote));
  assert.deepEqual(
    merged.map((o) => `${o.id}${o.v}`),
    ['a2', 'b3', 'x1', 'y1'],
  );
});

test('an element changed on both sides takes the later updatedAt; edit beats removal', () => {
  const base = j([{ id: 1, t: 'base', updatedAt: 1 }, { id: 2, t: 'base', updatedAt: 1 }]);
  const local = j([{ id: 1, t: 'local', updatedAt: 9 }]); // removed 2
  const remote = j([{ id: 1, t: 'remote', updatedAt: 5 }, { id: 2, t: 'remote edit', updatedAt: 5 }]);
  const merged = p(mergeById(base, local, remote));
  assert.deepEqual(merged, [{ id: 1, t: 'local', updatedAt: 9 }, { id: 2, t: 'remote edit', updatedAt: 5 }]);
});

test('merge returns the exact remote or local text when it equals one of them', () => {
  const remote = '[ {"id":1,"a":1} ]';
  assert.equal(mergeById(null, '[{"a":1,"id":1}]', remote), remote, 'same content, other key order');
  const local = '[{"id":1,"a":2,"updatedAt":9}]';
  assert.equal(mergeById('[{"id":1,"a":0}]', local, '[{"id":1,"a":0}]'), local);
});

test('only arrays of objects with ids are merged', () => {
  for (const [l, r] of [
    ['{"a":1}', '[{"id":1}]'],
    ['[1,2]', '[{"id":1}]'],
    ['[{"id":1}]', '[{"name":"no id"}]'],
    ['not json', '[]'],
    ['[{"id":1}]', null],
  ]) {
    assert.equal(mergeById(null, l, r), null, `${l} / ${r}`);
  }
  assert.equal(mergeById(null, '[]', '[]'), '[]');
});
