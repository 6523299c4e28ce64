// records.js: record lists (split/join), the patch between two lists and its
// exact application, and the three-way application of an app's stale write.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  applyPatch,
  diffRecords,
  joinRecords,
  patchFieldsJson,
  patchFromWire,
  splitRecords,
  threeWayText,
} from '../../../client-demo/lib/records.js';

const j = (v) => JSON.stringify(v);
const texts = (items) => items.map((it) => it.text);

test('splitRecords takes exactly the compact arrays of objects with unique ids, with their verbatim texts', () => {
  const tricky = '[{"id":"a,]}"},{"id":2,"x":[1,{"a":"\\"]"}],"s":"\\\\"},{"id":"é\\u00e9"}]';
  assert.deepEqual(texts(splitRecords(tricky)), ['{"id":"a,]}"}', '{"id":2,"x":[1,{"a":"\\"]"}],"s":"\\\\"}', '{"id":"é\\u00e9"}']);
  assert.deepEqual(splitRecords(tricky).map((it) => [it.id, it.raw]), [['a,]}', 'a,]}'], ['2', 2], ['éé', 'éé']]);
  assert.equal(joinRecords(splitRecords(tricky)), tricky, 'join gives the value back byte for byte');
  assert.deepEqual(splitRecords('[]'), []);
  assert.deepEqual(texts(splitRecords('[{"id": 1}]')), ['{"id": 1}'], 'whitespace inside an element is its own');
  for (const no of [
    '[ {"id":1}]', '[{"id":1} ]', '[{"id":1}, {"id":2}]', '[ ]', // not compact
    '[{"id":1},{"id":"1"}]', // the same id twice (ids compare as strings)
    '[{"id":1},2]', '[{"id":1},[1]]', '[{"x":1}]', '[{"id":null}]', '[{"id":{}}]', // not records
    '{"id":1}', '"[]"', '[{"id":1}', 'nope', '', null, undefined,
  ]) {
    assert.equal(splitRecords(no), null, `${no} is not a record list`);
  }
});

/** A small deterministic random source. */
function rng(seed) {
  return () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
}

test('diff then apply gives the new list exactly, through the wire format, for random edits, moves and shuffles', () => {
  const rnd = rng(7);
  for (let t = 0; t < 2000; t++) {
    const base = Array.from({ length: Math.floor(rnd() * 14) }, (_, i) => ({ id: rnd() < 0.3 ? i : `r${i}`, v: Math.floor(rnd() * 3) }));
    const next = base.filter(() => rnd() > 0.2).map((o) => (rnd() < 0.3 ? { ...o, v: o.v + 10 } : o));
    for (let k = 0; k < 3; k++) if (rnd() < 0.4) next.splice(Math.floor(rnd() * (next.length + 1)), 0, { id: `n${k}`, v: k });
    if (rnd() < 0.3) next.sort(() => rnd() - 0.5);
    else if (rnd() < 0.5 && next.length > 1) next.push(next.shift());
    const p = diffRecords(splitRecords(j(base)), splitRecords(j(next)));
    const wire = patchFromWire(JSON.parse(`{${patchFieldsJson(p)}}`));
    assert.equal(joinRecords(applyPatch(splitRecords(j(base)), wire)), j(next), `${j(base)} -> ${j(next)}`);
  }
});

test('a patch names only what changed: one edited record, a removal, one move, a new record', () => {
  const list = Array.from({ length: 100 }, (_, i) => ({ id: `c${i}`, n: i }));
  const B = splitRecords(j(list));
  const edited = list.map((o) => (o.id === 'c50' ? { ...o, n: -1 } : o));
  assert.deepEqual(diffRecords(B, splitRecords(j(edited))), { upserts: [splitRecords(j(edited))[50]], removed: [], after: [] });
  const without = list.filter((o) => o.id !== 'c7');
  assert.deepEqual(diffRecords(B, splitRecords(j(without))), { upserts: [], removed: ['c7'], after: [] });
  const moved = [...list.slice(1, 60), list[0], ...list.slice(60)];
  assert.deepEqual(diffRecords(B, splitRecords(j(moved))).after, [['c0', 'c59']], 'one move: one pair');
  const added = [{ id: 9999, n: 0 }, ...list];
  const p = diffRecords(B, splitRecords(j(added)));
  assert.deepEqual([texts(p.upserts), p.removed, p.after], [['{"id":9999,"n":0}'], [], [[9999, null]]]);
  assert.equal(patchFieldsJson(p), '"upserts":[{"id":9999,"n":0}],"removed":[],"after":[[9999,null]]');
});

test('applyPatch refuses a patch that does not fit the list (a predecessor that is not there)', () => {
  const B = splitRecords(j([{ id: 'a' }, { id: 'b' }]));
  assert.equal(applyPatch(B, patchFromWire({ upserts: [{ id: 'c' }], removed: [], after: [['c', 'zz']] })), null);
  assert.equal(applyPatch(B, patchFromWire({ upserts: [], removed: [], after: [['x', null]] })), null);
  assert.equal(joinRecords(applyPatch(B, patchFromWire({ upserts: [{ id: 'c' }], removed: ['a'] }))), j([{ id: 'b' }, { id: 'c' }]));
  assert.equal(patchFromWire({ upserts: [{ noId: 1 }], removed: [] }), null);
});

test('threeWay: a stale write keeps every remote edit; the app’s own edits win over untouched records', () => {
  const base = [{ id: 1, t: 'a', updatedAt: 1 }, { id: 2, t: 'b', updatedAt: 1 }, { id: 3, t: 'c', updatedAt: 1 }, { id: 4, t: 'd', updatedAt: 1 }];
  // Remote: added 5, edited 2, removed 4.
  const current = [base[0], { id: 2, t: 'B (remote)', updatedAt: 5 }, base[2], { id: 5, t: 'new remote', updatedAt: 5 }];
  // The app, from its stale copy: edited 1, removed 3, added 6 first.
  const stale = [{ id: 6, t: 'new local', updatedAt: 6 }, { id: 1, t: 'A (local)', updatedAt: 6 }, base[1], base[3]];
  const m = threeWayText(j(base), j(stale), j(current));
  assert.equal(m.text, j([{ id: 6, t: 'new local', updatedAt: 6 }, { id: 1, t: 'A (local)', updatedAt: 6 }, { id: 2, t: 'B (remote)', updatedAt: 5 }, { id: 5, t: 'new remote', updatedAt: 5 }]));
  assert.deepEqual(m.lost, []);
  // The app re-read first (its list holds the remote edits): the same result.
  const reread = [{ id: 6, t: 'new local', updatedAt: 6 }, { id: 1, t: 'A (local)', updatedAt: 6 }, current[1], current[3]];
  assert.equal(threeWayText(j(base), j(reread), j(current)).text, m.text);
  // Nothing moved on: the app's value exactly.
  assert.equal(threeWayText(j(base), j(stale), j(base)).text, j(stale));
});

test('threeWay: deleted on one side and edited on the other is kept; edited on both: the later updatedAt, the app’s on a tie', () => {
  const base = [{ id: 'x', v: 0, updatedAt: 1 }, { id: 'y', v: 0, updatedAt: 1 }];
  // Remote deleted x; the app edited it: back, where the app has it.
  assert.equal(threeWayText(j(base), j([{ id: 'x', v: 1, updatedAt: 2 }, base[1]]), j([base[1]])).text, j([{ id: 'x', v: 1, updatedAt: 2 }, base[1]]));
  // Remote edited x; the app deleted it.
  assert.equal(threeWayText(j(base), j([base[1]]), j([{ id: 'x', v: 2, updatedAt: 2 }, base[1]])).text, j([{ id: 'x', v: 2, updatedAt: 2 }, base[1]]));
  // Both edited x: the remote one is later.
  let m = threeWayText(j(base), j([{ id: 'x', v: 'local', updatedAt: 2 }, base[1]]), j([{ id: 'x', v: 'remote', updatedAt: 3 }, base[1]]));
  assert.equal(JSON.parse(m.text)[0].v, 'remote');
  assert.deepEqual(m.lost, [{ id: 'x', side: 'local', element: { id: 'x', v: 'local', updatedAt: 2 } }]);
  // A tie (or no times): the app's edit, the remote one reported lost.
  m = threeWayText(j([{ id: 'x', v: 0 }]), j([{ id: 'x', v: 'local' }]), j([{ id: 'x', v: 'remote' }]));
  assert.equal(m.text, j([{ id: 'x', v: 'local' }]));
  assert.deepEqual(m.lost, [{ id: 'x', side: 'remote', element: { id: 'x', v: 'remote' } }]);
  // Same content in another key order is not a conflict.
  m = threeWayText(j([{ id: 'x', a: 1, b: 1 }]), j([{ id: 'x', a: 2, b: 1 }]), j([{ b: 1, id: 'x', a: 1 }]));
  assert.deepEqual([m.text, m.lost], [j([{ id: 'x', a: 2, b: 1 }]), []]);
});

test('threeWayText is null when the app did not write a record list, or the other side is a plain value', () => {
  assert.equal(threeWayText('[]', 'plain text', '[]'), null);
  assert.equal(threeWayText('[]', '[{"id":1}]', 'plain'), null);
  // Absent on either side counts as no records.
  assert.equal(threeWayText(null, j([{ id: 1 }]), j([{ id: 2 }])).text, j([{ id: 1 }, { id: 2 }]));
  assert.equal(threeWayText(j([{ id: 1 }]), j([{ id: 1 }, { id: 3 }]), null).text, j([{ id: 3 }]));
});

test('a one-field edit of a 5,000-record list: the patch is one record; split, diff and threeWay stay fast', () => {
  const list = Array.from({ length: 5000 }, (_, i) => ({ id: `inv-${i}`, client: `Client ${i}`, amount: i, notes: 'x'.repeat(60), updatedAt: 1e12 + i }));
  const text = j(list);
  const edited = j(list.map((o, i) => (i === 2500 ? { ...o, amount: -1 } : o)));
  const t0 = performance.now();
  const p = diffRecords(splitRecords(text), splitRecords(edited));
  const m = threeWayText(text, edited, text);
  const ms = performance.now() - t0;
  assert.equal(patchFieldsJson(p), `"upserts":[${j({ ...list[2500], amount: -1 })}],"removed":[]`);
  assert.equal(m.text, edited);
  assert.ok(ms < 2000, `took ${ms} ms`);
});
