// The durable queue of local edits, one entry per key, persisted in storage
// under `sync-queue` so a crash or a closed window loses nothing. The value
// itself is read from storage when it is sent, so the queue does not copy
// the data. An entry:
//   key, requestId (new for every edit: a retried send is applied once),
//   updatedAt (edit time, ms), baseVersion (server version the edit was made
//   on; absent: unknown), base (the value at baseVersion, for three-way
//   merges), sent (fingerprint of the last value sent), remote (a server
//   change not yet reconciled with this edit: {value, version, ...}),
//   failed (the server refused it for good), heldUntil (retry not before).

import { readJson } from './util.js';

export class EditQueue extends Map {
  /** @param {import('./meta-store.js').MetaStore} meta  @param {Set<string>} tracked */
  constructor(meta, tracked) {
    super();
    this._meta = meta;
    this._tracked = tracked;
  }

  load() {
    this.clear();
    const q = readJson(this._meta.get('queue'));
    for (const e of Array.isArray(q) ? q : []) {
      if (e && typeof e.key === 'string' && this._tracked.has(e.key)) this.set(e.key, e);
    }
  }

  save() {
    this._meta.set('queue', this.size ? JSON.stringify([...this.values()]) : null);
  }

  /** Drops what the entries knew of a session (on sign-out or a new account). */
  strip() {
    for (const e of this.values()) {
      for (const f of ['base', 'baseVersion', 'sent', 'remote']) delete e[f];
    }
    this.save();
  }

  anyFailed() {
    for (const e of this.values()) if (e.failed) return true;
    return false;
  }
}
