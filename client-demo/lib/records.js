// Record lists: a value that is a compact JSON array of objects, each with a
// unique string or number `id` (what JSON.stringify gives for the app's
// lists), seen as its elements' verbatim texts. The same rule as the
// server's src/records.rs: `[` + the texts joined by `,` + `]` is exactly
// the value; whitespace between elements, an element that is not an object,
// a missing or repeated id make it a plain value. Ids compare as strings
// (`1` and `"1"` name the same record, as in merge.js).
//
// Pure functions: split and join, the patch between two lists (the wire
// format of docs: /work/notes/patch-frames.md, asyncapi.yaml `patch`), its
// exact application, and the three-way application of the app's patch onto
// a value that moved on meanwhile (threeWay).
//
// An item: {id (string), raw (the id as written: string or number), text
// (the element's exact JSON), obj (parsed, when known)}.

import { canonical, timeOf } from './merge.js';

const isObject = (o) => o !== null && typeof o === 'object' && !Array.isArray(o);

/** The items of `text`, in order, or null when it is not a record list. */
export function splitRecords(text) {
  if (typeof text !== 'string' || text.charCodeAt(0) !== 91 /* [ */) return null;
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    return null;
  }
  if (!Array.isArray(parsed)) return null;
  if (parsed.length === 0) return text === '[]' ? [] : null;
  const items = [];
  const seen = new Set();
  const n = text.length;
  let depth = 0;
  let start = 1;
  const cut = (end) => {
    const k = items.length;
    const obj = parsed[k];
    // Compact: each element starts and ends right at the separators.
    if (!isObject(obj) || text.charCodeAt(start) !== 123 /* { */ || text.charCodeAt(end - 1) !== 125 /* } */) return false;
    const raw = obj.id;
    if (typeof raw !== 'string' && typeof raw !== 'number') return false;
    const id = String(raw);
    if (seen.has(id)) return false;
    seen.add(id);
    items.push({ id, raw, text: text.slice(start, end), obj });
    return true;
  };
  for (let i = 1; i < n; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 34 /* " */) {
      // Skip the string: to the next quote not escaped by an odd run of backslashes.
      for (;;) {
        i = text.indexOf('"', i + 1);
        if (i < 0) return null;
        let k = i - 1;
        while (text.charCodeAt(k) === 92 /* \ */) k--;
        if ((i - 1 - k) % 2 === 0) break;
      }
    } else if (ch === 123 || ch === 91) depth++;
    else if (ch === 125 || ch === 93) {
      if (depth === 0) {
        // The outer `]`: it must end the value.
        if (i !== n - 1 || !cut(i)) return null;
        return items.length === parsed.length ? items : null;
      }
      depth--;
    } else if (ch === 44 /* , */ && depth === 0) {
      if (!cut(i)) return null;
      start = i + 1;
    }
  }
  return null;
}

/** The value the items make: exactly JSON.stringify of their array. */
export function joinRecords(items) {
  let out = '[';
  for (let i = 0; i < items.length; i++) out += (i ? ',' : '') + items[i].text;
  return `${out}]`;
}

/** True when `text` is a record list. */
export function isRecordList(text) {
  return splitRecords(text) !== null;
}

const byId = (items) => new Map(items.map((it) => [it.id, it]));

/** Indexes (into `seq`) of one longest strictly increasing subsequence. */
function lisIndexes(seq) {
  const tails = []; // tails[k]: index in seq of the smallest tail of an increasing run of length k+1
  const prev = new Array(seq.length);
  for (let i = 0; i < seq.length; i++) {
    let lo = 0;
    let hi = tails.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (seq[tails[mid]] < seq[i]) lo = mid + 1;
      else hi = mid;
    }
    prev[i] = lo > 0 ? tails[lo - 1] : -1;
    tails[lo] = i;
  }
  const out = new Set();
  for (let i = tails.length ? tails[tails.length - 1] : -1; i >= 0; i = prev[i]) out.add(i);
  return out;
}

/**
 * The patch from `base` to `next` (item arrays): {upserts (items new or
 * changed, in next's order), removed (raw ids), after ([raw id, raw
 * predecessor id | null] for every new or moved record, in next's order)}.
 * Applied to base with applyPatch it gives next exactly.
 */
export function diffRecords(base, next) {
  const bMap = new Map();
  base.forEach((it, i) => bMap.set(it.id, { it, i }));
  const nIds = new Set(next.map((it) => it.id));
  const upserts = [];
  const survivors = []; // indexes into next of records kept from base
  const oldPos = [];
  for (let i = 0; i < next.length; i++) {
    const it = next[i];
    const b = bMap.get(it.id);
    if (!b || b.it.text !== it.text) upserts.push(it);
    if (b) {
      survivors.push(i);
      oldPos.push(b.i);
    }
  }
  const removed = base.filter((it) => !nIds.has(it.id)).map((it) => it.raw);
  let inOrder = true;
  for (let k = 1; k < oldPos.length; k++) if (oldPos[k] < oldPos[k - 1]) inOrder = false;
  const stay = new Set();
  if (inOrder) for (const i of survivors) stay.add(i);
  else for (const k of lisIndexes(oldPos)) stay.add(survivors[k]);
  const after = [];
  for (let i = 0; i < next.length; i++) {
    if (!stay.has(i)) after.push([next[i].raw, i ? next[i - 1].raw : null]);
  }
  return { upserts, removed, after };
}

/** True when the patch changes nothing. */
export function isEmptyPatch(p) {
  return !p.upserts.length && !p.removed.length && !(p.after?.length);
}

/**
 * A doubly linked order of ids, for moving records in O(1) each: the order
 * operations of a patch on a 5,000-record list stay cheap whatever moves.
 */
class Order {
  constructor(ids) {
    this.head = null;
    this.tail = null;
    this.next = new Map();
    this.prev = new Map();
    for (const id of ids) this.insertAfter(id, this.tail);
  }
  has(id) {
    return this.next.has(id);
  }
  remove(id) {
    if (!this.has(id)) return;
    const p = this.prev.get(id);
    const n = this.next.get(id);
    if (p === null) this.head = n;
    else this.next.set(p, n);
    if (n === null) this.tail = p;
    else this.prev.set(n, p);
    this.next.delete(id);
    this.prev.delete(id);
  }
  /** Puts `id` right after `pred` (null: first), taking it out of where it was. */
  insertAfter(id, pred) {
    if (id === pred) return;
    this.remove(id);
    const n = pred === null ? this.head : this.next.get(pred);
    this.prev.set(id, pred);
    this.next.set(id, n);
    if (pred === null) this.head = id;
    else this.next.set(pred, id);
    if (n === null) this.tail = id;
    else this.prev.set(n, id);
  }
  ids() {
    const out = [];
    for (let id = this.head; id !== null; id = this.next.get(id)) out.push(id);
    return out;
  }
}

/**
 * `base` (items) with `patch` applied exactly: removed ids dropped, upserted
 * texts replaced in place, each `after` pair moving or inserting its id
 * right after its predecessor (null: to the front), the remaining new ids
 * appended in upsert order. Null when the patch does not fit `base` (an
 * `after` names an id or a predecessor that is not there).
 */
export function applyPatch(base, patch) {
  const items = byId(base);
  for (const r of patch.removed) items.delete(String(r));
  const order = new Order(base.map((it) => it.id).filter((id) => items.has(id)));
  const fresh = [];
  for (const u of patch.upserts) {
    if (!items.has(u.id)) fresh.push(u.id);
    items.set(u.id, u);
  }
  const placed = new Set();
  for (const [rawId, rawPred] of patch.after ?? []) {
    const id = String(rawId);
    const pred = rawPred === null ? null : String(rawPred);
    if (!items.has(id) || (pred !== null && !order.has(pred))) return null;
    order.insertAfter(id, pred);
    placed.add(id);
  }
  for (const id of fresh) if (!placed.has(id)) order.insertAfter(id, order.tail);
  return order.ids().map((id) => items.get(id));
}

/** A patch as it arrives in a frame (upserts as parsed objects) in items. Null if malformed. */
export function patchFromWire(p) {
  if (!p || !Array.isArray(p.upserts) || !Array.isArray(p.removed)) return null;
  const upserts = [];
  for (const obj of p.upserts) {
    if (!isObject(obj) || (typeof obj.id !== 'string' && typeof obj.id !== 'number')) return null;
    upserts.push({ id: String(obj.id), raw: obj.id, text: JSON.stringify(obj), obj });
  }
  const after = Array.isArray(p.after) ? p.after : [];
  if (!after.every((a) => Array.isArray(a) && a.length === 2)) return null;
  return { upserts, removed: p.removed, after };
}

/** The patch's fields as frame JSON (upserts spliced in verbatim): `"upserts":[...],"removed":[...]` (+ `,"after":[...]`). */
export function patchFieldsJson(p) {
  const after = p.after?.length ? `,"after":${JSON.stringify(p.after)}` : '';
  return `"upserts":${joinRecords(p.upserts)},"removed":${JSON.stringify(p.removed)}${after}`;
}

const objOf = (it) => it.obj ?? JSON.parse(it.text);
const sameRecord = (a, b) => a.text === b.text || canonical(objOf(a)) === canonical(objOf(b));

/**
 * The app wrote `next` having last seen `base`, while storage had moved on
 * to `current` (a remote change landed in between). The app's patch
 * (base -> next) applied onto current, by id: records the app did not touch
 * keep current's version; a record the app changed takes the app's version
 * unless current changed it too, then the later `updatedAt` wins (the
 * app's on a tie: it is the newest action here); a record removed on one
 * side and edited on the other is kept; the app's moves and new records go
 * after their predecessor in next (the nearest one still there).
 *
 * Returns {items, lost}: `lost` lists the records changed on both sides
 * whose version did not win, as [{id, side: 'local'|'remote', element}].
 */
export function threeWay(base, next, current) {
  const patch = diffRecords(base, next);
  const bMap = byId(base);
  const items = byId(current);
  const order = new Order(current.map((it) => it.id));
  const lost = [];
  for (const u of patch.upserts) {
    const b = bMap.get(u.id);
    const c = items.get(u.id);
    if (c && sameRecord(c, u)) continue;
    if (c && !(b && sameRecord(c, b))) {
      // Changed (or added) on both sides.
      const localWins = !(timeOf(objOf(c)) > timeOf(objOf(u)));
      lost.push(localWins ? { id: c.raw, side: 'remote', element: objOf(c) } : { id: u.raw, side: 'local', element: objOf(u) });
      if (!localWins) continue;
    }
    items.set(u.id, u); // a record removed there and edited here is kept
  }
  for (const r of patch.removed) {
    const id = String(r);
    const b = bMap.get(id);
    const c = items.get(id);
    if (c && b && sameRecord(c, b)) {
      items.delete(id);
      order.remove(id);
    }
    // else: edited by the other side (kept), or gone there too.
  }
  // The app's order changes and new records, each after its nearest predecessor in next that is still there.
  const nextIds = next.map((it) => it.id);
  const at = new Map(nextIds.map((id, i) => [id, i]));
  const place = [...patch.after.map(([rawId]) => String(rawId)), ...patch.upserts.map((u) => u.id).filter((id) => !order.has(id))];
  for (const id of place) {
    if (!items.has(id)) continue;
    let pred = null;
    for (let i = at.get(id) - 1; i >= 0; i--) {
      if (order.has(nextIds[i])) {
        pred = nextIds[i];
        break;
      }
    }
    order.insertAfter(id, pred);
  }
  return { items: order.ids().map((id) => items.get(id)), lost };
}

/**
 * threeWay on texts: null unless next is a record list and base and current
 * are record lists or absent (null: no records). Returns {text, lost}.
 */
export function threeWayText(base, next, current) {
  const N = splitRecords(next);
  if (!N) return null;
  const B = base === null || base === undefined ? [] : splitRecords(base);
  const C = current === null || current === undefined ? [] : splitRecords(current);
  if (!B || !C) return null;
  const m = threeWay(B, N, C);
  return { text: joinRecords(m.items), lost: m.lost };
}
