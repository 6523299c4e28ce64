// The durable queue of local edits, one entry per key, persisted in storage
// under `sync-queue` so a crash or a closed window loses nothing. The value
// itself is read from storage when it is sent, so the queue does not copy
// the data. An entry:
//   key, requestId (new for every edit: a retried send is applied once),
//   updatedAt (edit time, ms), baseVersion (server version the edit was made
//   on; absent: unknown), base (the value at baseVersion, for three-way
//   merges and record patches), sent (fingerprint of the last value sent),
//   remote (a server change not yet reconciled with this edit: {value,
//   version, ...}), failed (the server refused it for good), heldUntil
//   (retry not before), noPatch (the server refused a patch: send whole).
//
// A record list's base is persisted as the records the edit changed, not as
// a copy of the list: `baseDelta` is the patch from the stored value back to
// the base (records.js), one entry per record however often it was edited,
// with `baseOf`, the fingerprint of the value it applies to. Loading puts the
// base back together; if the value changed while nothing watched, the base
// is dropped (the edit then goes whole, and the server merges against its
// history).

import { applyPatch, diffRecords, joinRecords, splitRecords } from './records.js';
import { fingerprint, readJson } from './util.js';

/** The delta's items from their persisted texts. */
const itemsOf = (texts) =>
  texts.map((text) => {
    const obj = JSON.parse(text);
    return { id: String(obj.id), raw: obj.id, text, obj };
  });

export class EditQueue extends Map {
  /**
   * @param {import('./meta-store.js').MetaStore} meta
   * @param {Set<string>} tracked
   * @param {(key: string) => string | null} read a tracked key's stored value
   */
  constructor(meta, tracked, read = () => null) {
    super();
    this._meta = meta;
    this._tracked = tracked;
    this._read = read;
    this._deltas = new Map(); // key -> {base, value, delta}: the last persisted delta, reused while both are the same
  }

  load() {
    this.clear();
    this._deltas.clear();
    const q = readJson(this._meta.get('queue'));
    for (const e of Array.isArray(q) ? q : []) {
      if (!e || typeof e.key !== 'string' || !this._tracked.has(e.key)) continue;
      if (e.baseDelta) this._restoreBase(e);
      this.set(e.key, e);
    }
  }

  save() {
    this._meta.set('queue', this.size ? JSON.stringify([...this.values()].map((e) => this._persisted(e))) : null);
  }

  /** The entry as stored: a record list's base as the delta from the stored value. */
  _persisted(e) {
    if (typeof e.base !== 'string') return e;
    const value = this._read(e.key);
    let memo = this._deltas.get(e.key);
    if (!memo || memo.base !== e.base || memo.value !== value) {
      const to = splitRecords(e.base);
      const from = to && splitRecords(value);
      memo = { base: e.base, value, delta: null };
      if (from) {
        const p = diffRecords(from, to);
        memo.delta = { upserts: p.upserts.map((it) => it.text), removed: p.removed, after: p.after };
      }
      this._deltas.set(e.key, memo);
    }
    if (!memo.delta) return e;
    const { base: _, ...rest } = e;
    return { ...rest, baseDelta: memo.delta, baseOf: fingerprint(value) };
  }

  /** Puts a persisted delta back together into `base` (or drops it when the value moved on). */
  _restoreBase(e) {
    const { baseDelta, baseOf } = e;
    delete e.baseDelta;
    delete e.baseOf;
    const value = this._read(e.key);
    if (fingerprint(value) !== baseOf) return;
    try {
      const items = splitRecords(value);
      const base = items && applyPatch(items, { upserts: itemsOf(baseDelta.upserts), removed: baseDelta.removed, after: baseDelta.after });
      if (base) e.base = joinRecords(base);
    } catch {
      // A damaged queue entry: the edit goes without a base.
    }
  }

  /** Drops what the entries knew of a session (on sign-out or a new account). */
  strip() {
    for (const e of this.values()) {
      for (const f of ['base', 'baseVersion', 'sent', 'remote', 'noPatch']) delete e[f];
    }
    this.save();
  }

  anyFailed() {
    for (const e of this.values()) if (e.failed) return true;
    return false;
  }
}
