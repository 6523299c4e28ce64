// Writes the server makes for this device: restore a version, import an
// export document. Methods of SyncManager (manager.js mixes them in): the
// key's queued edits go first, its change frames are held while the request
// runs, and then local storage follows the server's answer.

import { readJson } from './util.js';

export const serverWrites = {
  /**
   * Makes version `version` of `key` current again on the server (a new
   * version, sent to every device), and here. Edits of the key still queued
   * are sent first, so they stay in the server's history. Resolves to
   * {key, version (the new one), value} (value: undefined for an untracked key).
   */
  async restore(key, version) {
    let adopted = {};
    const res = await this._serverWrite(
      [key],
      () => this._request('POST', `/sync/${encodeURIComponent(key)}/restore`, { version, requestId: this._newId() }),
      (r) => ({ [key]: r.version }),
      (a) => (adopted = a),
    );
    const value = adopted[key] ? adopted[key].value : this._tracked.has(key) ? this.storage.getItem(key) : undefined;
    return { key, version: res.version, value };
  },

  /**
   * Writes an export document (an object, or its JSON text as read from a
   * file) into the account as one batch, under the usual conflict rules;
   * this device's storage then follows the server. Resolves to
   * {synced, conflicts, versions, cursor}; a document the server refuses
   * rejects with its SyncError (code invalid_json, invalid_request, ...)
   * and changes nothing.
   */
  async importData(doc) {
    const raw = typeof doc === 'string';
    const parsed = raw ? readJson(doc) : doc;
    const keys = parsed && typeof parsed.data === 'object' && parsed.data ? Object.keys(parsed.data) : [];
    const res = await this._serverWrite(
      keys,
      () => this._request('POST', '/import', doc, { raw }),
      (r) => r.versions ?? {},
    );
    return { synced: res.synced ?? [], conflicts: res.conflicts ?? [], versions: res.versions ?? {}, cursor: res.cursor };
  },

  /**
   * Runs a server-side write the user asked for (a restore, an import) on
   * `keys`, then makes storage follow the server. Queued edits of those keys
   * go out first; while the request runs, new edits of them wait and their
   * change frames are held back (the server's answer says which version to
   * take, and a change made by this device must not be mistaken for one of
   * its own edits to build on).
   */
  async _serverWrite(keys, request, versionsOf, onAdopted = () => {}) {
    const tracked = [...new Set(keys)].filter((k) => this._tracked.has(k));
    const follow = this._leader && this._state.initialized && tracked.length > 0;
    // Not the syncing tab (that one hears of it over its socket or next poll),
    // not synced yet (the first sync takes the server's state), or nothing tracked.
    if (!follow) return request();
    await this._drain(tracked);
    const hold = { keys: new Set(tracked), changes: new Map(), before: new Map() };
    for (const k of tracked) hold.before.set(k, this._queue.get(k)?.requestId);
    this._holds.add(hold);
    let res;
    try {
      res = await request();
    } catch (err) {
      await this._serial(() => this._release(hold, null));
      throw err;
    }
    onAdopted(await this._serial(() => this._release(hold, versionsOf(res))));
    this._updateStatus();
    return res;
  },

  /** Waits (a bounded time) until no edit of `keys` is queued or in flight. */
  async _drain(keys) {
    const busy = () =>
      keys.some((k) => this._inflightFor(k) || (this._queue.has(k) && !this._queue.get(k).failed));
    if (!busy() || !this._canConnect()) return;
    this._flushSoon();
    const end = Date.now() + Math.min(this.requestTimeoutMs, 10000);
    while (busy() && this._canConnect() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  },

  /**
   * Ends a hold. With the server's new `versions` (key -> version), each key
   * takes the server's value at that version: from a held change frame, or
   * fetched. An edit queued before the request is superseded by it; one made
   * while it ran stays, now on top of the server's value. Returns the
   * adopted {key: {value, version}}.
   */
  async _release(hold, versions) {
    const written = (key) => typeof versions?.[key] === 'number';
    const heldRemote = (key) => {
      const c = hold.changes.get(key);
      return c ? { value: c.deleted || c.value === undefined ? null : c.value, version: c.version } : null;
    };
    const fetched = {};
    const wanted = {};
    for (const key of hold.keys) {
      if (!written(key) || (heldRemote(key)?.version ?? -1) >= versions[key]) continue;
      const stale = this._queue.has(key) && this._queue.get(key).requestId === hold.before.get(key);
      if ((this._state.versions[key] ?? 0) < versions[key] || stale) wanted[key] = versions[key];
    }
    if (Object.keys(wanted).length) {
      // Still holding: edits made meanwhile must not leave on the old base.
      try {
        Object.assign(fetched, await this._fetchKeys(wanted));
      } catch (err) {
        // Their change frames or the next catch-up bring them; queued edits stay queued.
        this._transportFailure(err);
      }
    }
    this._holds.delete(hold);
    const remotes = new Map();
    for (const c of [...hold.changes.values()].sort((a, b) => a.version - b.version)) {
      // Keys the request did not write: their changes take the usual way.
      if (!written(c.key)) this._receiveRemote(c);
      else remotes.set(c.key, heldRemote(c.key));
    }
    for (const [key, remote] of Object.entries(fetched)) {
      if (remote.version > (remotes.get(key)?.version ?? -1)) remotes.set(key, remote);
    }
    const adopted = {};
    for (const [key, remote] of remotes) {
      if (remote.version <= (this._state.versions[key] ?? 0) && !this._queue.has(key)) continue;
      const entry = this._queue.get(key);
      if (entry && entry.requestId === hold.before.get(key) && !this._inflightFor(key)) this._queue.delete(key);
      const newer = this._queue.get(key);
      if (newer) {
        // Edited while the request ran: that edit now builds on the server's value.
        this._markSynced(key, remote.version, remote.value);
        Object.assign(newer, { base: remote.value, baseVersion: remote.version });
        delete newer.remote;
        delete newer.sent;
      } else {
        this._applyRemote(key, remote);
      }
      adopted[key] = remote;
    }
    this._queue.save();
    this._saveState();
    this._flushSoon();
    return adopted;
  },
};
