// Merge of values the app keeps as JSON arrays of objects with an `id`
// (the kanban board, invoices, payments, ...). Pure functions: the same rules
// as the server's src/merge.rs. Record lists, their patches and the
// three-way application of an app's stale write are in records.js.

/** An element's edit time in ms (number or date string), or NaN. */
export function timeOf(element) {
  const t = element?.updatedAt;
  if (typeof t === 'number') return t;
  if (typeof t === 'string') return Date.parse(t);
  return NaN;
}

/** JSON with sorted object keys, so equal content compares equal. */
export function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** The parsed array if `text` is a JSON array of objects with an `id`, else null. */
export function parseIdArray(text) {
  if (typeof text !== 'string') return null;
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    return null;
  }
  const ok =
    Array.isArray(parsed) &&
    parsed.every(
      (o) =>
        o !== null &&
        typeof o === 'object' &&
        !Array.isArray(o) &&
        (typeof o.id === 'string' || typeof o.id === 'number'),
    );
  return ok ? parsed : null;
}

/**
 * Three-way merge of JSON arrays of objects keyed by `id`, reporting what it
 * let go. `base` is the value both sides started from (null or undefined when
 * unknown, as on a first sign-in: the union). Elements added or removed on
 * one side are added or removed; an element changed on both sides takes the
 * later `updatedAt`, the remote one on a tie or without times; an element
 * changed on one side and removed on the other is kept (an edit is never
 * silently dropped). Order follows `remote`, with local additions after
 * their local predecessor.
 *
 * Returns null when the values are not both such arrays, else
 * {text, lost}: `text` is the merged JSON (exactly `remote` or `local` when
 * it equals one of them); `lost` lists the elements changed on both sides
 * whose version did not win, as [{id, side: 'local'|'remote', element}].
 */
export function mergeByIdDetailed(base, local, remote) {
  const L = parseIdArray(local);
  const R = parseIdArray(remote);
  if (!L || !R) return null;
  const byId = (arr) => {
    const m = new Map();
    for (const o of arr) if (!m.has(String(o.id))) m.set(String(o.id), o);
    return m;
  };
  const bMap = byId(parseIdArray(base) ?? []);
  const lMap = byId(L);
  const rMap = byId(R);
  const same = (a, b) => canonical(a) === canonical(b);
  const DROP = Symbol('drop');
  const lost = [];
  const pick = (id) => {
    const b = bMap.get(id);
    const l = lMap.get(id);
    const r = rMap.get(id);
    if (l && r) {
      if (same(l, r) || (b && same(l, b))) return r;
      if (b && same(r, b)) return l;
      const localWins = timeOf(l) > timeOf(r);
      lost.push(localWins ? { id: r.id, side: 'remote', element: r } : { id: l.id, side: 'local', element: l });
      return localWins ? l : r;
    }
    const only = l ?? r;
    if (!b) return only; // added on one side
    return same(only, b) ? DROP : only; // removed on the other side, unless edited here
  };

  const out = [];
  const seen = new Set();
  for (const id of rMap.keys()) {
    seen.add(id);
    const v = pick(id);
    if (v !== DROP) out.push({ id, v });
  }
  let prev = null;
  for (const id of lMap.keys()) {
    if (!seen.has(id)) {
      seen.add(id);
      const v = pick(id);
      if (v !== DROP) {
        const at = prev === null ? -1 : out.findIndex((e) => e.id === prev);
        out.splice(at + 1, 0, { id, v });
      }
    }
    if (out.some((e) => e.id === id)) prev = id;
  }
  const merged = out.map((e) => e.v);
  const text = canonical(merged);
  if (text === canonical(R)) return { text: remote, lost };
  if (text === canonical(L)) return { text: local, lost };
  return { text: JSON.stringify(merged), lost };
}

/** mergeByIdDetailed's merged text alone (null when the values are not both arrays of objects with ids). */
export function mergeById(base, local, remote) {
  return mergeByIdDetailed(base, local, remote)?.text ?? null;
}

/**
 * `text` (an array of objects with ids) with `elements` put back: each
 * replaces the element of its id, or is appended. Null if `text` is not such
 * an array (then the caller decides).
 */
export function putElements(text, elements) {
  const arr = text === null ? [] : parseIdArray(text);
  if (!arr) return null;
  const out = [...arr];
  for (const el of elements) {
    const i = out.findIndex((o) => String(o.id) === String(el.id));
    if (i >= 0) out[i] = el;
    else out.push(el);
  }
  return JSON.stringify(out);
}

/** Latest `updatedAt` found in a JSON value (object or array of objects), or null. */
export function inferUpdatedAt(text) {
  try {
    const v = JSON.parse(text);
    const times = (Array.isArray(v) ? v : [v]).map(timeOf).filter(Number.isFinite);
    return times.length ? Math.max(...times) : null;
  } catch {
    return null;
  }
}
