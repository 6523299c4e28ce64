// Reconciliation: what a server change, an acknowledgement or a first
// sign-in does to the local value and the queue. Methods of SyncManager
// (manager.js mixes them in), kept apart because this is the part with the
// conflict rules: fast-forward, three-way merge by id (merge.js), and
// last-write-wins whose loser is always reported.

import { mergeByIdDetailed, inferUpdatedAt } from './merge.js';
import { applyPatch, joinRecords, patchFromWire, splitRecords } from './records.js';
import { fingerprint } from './util.js';

/** The `lostElements` of a conflict record (none: nothing). */
function lostElements(lost) {
  return lost?.length ? { lostElements: lost } : {};
}

export const reconcile = {
  /** Writes a server value into storage without echoing it back. */
  _applyRemote(key, remote, source = 'remote') {
    const current = this._read(key);
    if (current === remote.value) return this._markSynced(key, remote.version, remote.value);
    // Storage full: the key stays at the version this device really holds.
    if (!this._writeData(key, remote.value)) return this._cannotStore(key, remote);
    this._markSynced(key, remote.version, remote.value);
    this._emit('change', { key, value: remote.value, source });
  },

  /**
   * A change carrying a record patch, as a whole-value change: the patch
   * applied to the key's value at `baseVersion` as this device holds it
   * (live frames: only if that is the version held; catch-up: the key as
   * held, since the client has everything up to `since`), else the key
   * fetched whole from the server. Null when neither works now.
   */
  async _wholeChange(change, catchUp) {
    const { key } = change;
    if (!this._tracked.has(key)) return change;
    if (change.version <= (this._state.versions[key] ?? 0)) return change; // seen: ignored anyway
    const held = this._heldServerValue(key, change.baseVersion, catchUp);
    const patch = patchFromWire(change.patch);
    if (held !== undefined && patch) {
      const items = held === null ? [] : splitRecords(held);
      const applied = items && applyPatch(items, patch);
      if (applied) {
        const { patch: _, baseVersion: __, ...rest } = change;
        return { ...rest, value: joinRecords(applied), deleted: false };
      }
    }
    let remote = null;
    try {
      remote = await this._fetchWhole(key, change.version);
    } catch (err) {
      this._transportFailure(err);
    }
    if (!remote) return null;
    return { key, version: remote.version, value: remote.value, deleted: remote.value === null, updatedAt: change.updatedAt, deviceId: change.deviceId };
  },

  /**
   * The server's value of `key` at `baseVersion` as this device holds it
   * (null: absent), or undefined when it does not hold it: the synced value
   * is in storage when no edit is queued, else the queued edit's base.
   */
  _heldServerValue(key, baseVersion, catchUp) {
    const version = this._state.versions[key];
    const fits = catchUp ? (version ?? 0) <= baseVersion : version === baseVersion;
    if (!fits || this._unapplied.has(key)) return undefined;
    const synced = this._state.synced[key] ?? fingerprint(null);
    const entry = this._queue.get(key);
    const value = entry ? entry.base : this._read(key);
    if (value === undefined || (entry && entry.baseVersion !== version)) return undefined;
    return fingerprint(value) === synced ? value : undefined;
  },

  /** The key's {value, version} at `version` or later, fetched whole (GET /sync/{key}; older servers: the snapshot since). */
  async _fetchWhole(key, version) {
    try {
      const res = await this._request('GET', `/sync/${encodeURIComponent(key)}`);
      if (typeof res.version === 'number' && res.version >= version) {
        return { value: res.deleted || typeof res.value !== 'string' ? null : res.value, version: res.version };
      }
    } catch (err) {
      // A server without that route (404, 405, ...) answers the snapshot query below; for now or signed out: no.
      if (err.retryable || err.status === 401 || !err.status) throw err;
    }
    return this._fetchKey(key, version);
  },

  _receiveRemote(change) {
    const { key } = change;
    if (!this._tracked.has(key)) return;
    if (change.version <= (this._state.versions[key] ?? 0)) return; // seen (or our own)
    for (const hold of this._holds) {
      if (!hold.keys.has(key)) continue;
      // A restore or import of ours is changing this key: its answer decides.
      const prev = hold.changes.get(key);
      if (!prev || prev.version < change.version) hold.changes.set(key, change);
      return;
    }
    const remote = {
      value: change.deleted || change.value === undefined ? null : change.value,
      version: change.version,
      updatedAt: change.updatedAt,
      deviceId: change.deviceId,
    };
    const entry = this._queue.get(key);
    if (!entry) {
      // Another tab's edit is in storage and its storage event still on the way: not overwritten (tab-follow.js).
      const unheard = this._tabEditUnheard(key);
      if (unheard) return this._awaitTabEdit(key, remote, unheard);
      return this._applyRemote(key, remote);
    }
    if (this._inflightFor(key)) {
      // Our write is on its way: reconcile when its answer arrives.
      if (!entry.remote || entry.remote.version < remote.version) entry.remote = remote;
      this._queue.save();
      return;
    }
    this._rebase(entry, remote);
  },

  /**
   * A server change met a pending local edit of the same key. Our own earlier
   * write: the edit simply continues from it. Arrays of objects with ids:
   * merged three-way, the merge becomes the edit, now based on the server's
   * version. Anything else: the edit keeps its old base, so the server
   * decides by last-write-wins when it is sent (and the loser stays in its
   * history).
   */
  _rebase(entry, remote) {
    const { key } = entry;
    const local = this._read(key);
    const own =
      (remote.deviceId && remote.deviceId === this._state.deviceId) ||
      (entry.sent && fingerprint(remote.value) === entry.sent);
    if (local === remote.value || own) {
      this._markSynced(key, remote.version, remote.value);
      if (local === remote.value) this._queue.delete(key);
      else {
        entry.base = remote.value;
        entry.baseVersion = remote.version;
        delete entry.remote;
        delete entry.sent;
      }
      this._queue.save();
      this._saveState();
      return;
    }
    const m = mergeByIdDetailed(entry.base, local, remote.value);
    if (m === null) {
      entry.remote = remote;
      this._queue.save();
      return;
    }
    this._adoptMerge(entry, local, m.text, remote, m.lost);
  },

  /**
   * Takes a merge of `local` with the server's `remote` as the new state.
   * `lost`: the elements changed on both sides whose other version won; the
   * conflict record keeps them (and can put them back).
   */
  _adoptMerge(entry, local, merged, remote, lost = []) {
    const { key } = entry;
    if (merged === remote.value) {
      this._queue.delete(key);
      this._applyRemote(key, remote); // marks it synced, or keeps it unapplied when it does not fit
    } else {
      if (merged !== local) {
        if (!this._writeData(key, merged)) {
          // The merge does not fit in storage: the edit stays based on the
          // version this device holds (a fast-forward from `remote` would
          // erase what it never stored); the server merges it instead.
          delete entry.remote;
          this._queue.set(key, entry); // (a first sign-in's merge: the local value still goes up)
          this._queue.save();
          this._cannotStore(key, remote);
          return;
        }
        this._emit('change', { key, value: merged, source: 'merge' });
      }
      this._markSynced(key, remote.version, remote.value);
      Object.assign(entry, {
        base: remote.value,
        baseVersion: remote.version,
        requestId: this._newId(),
        updatedAt: this._now(),
      });
      delete entry.remote;
      delete entry.sent;
      this._queue.set(key, entry);
    }
    this._conflict({ key, resolution: 'merged', winner: 'both', kept: merged, lost: undefined, ...lostElements(lost), version: remote.version });
    this._queue.save();
    this._saveState();
  },

  /** The server's answer to one sent edit: `version` and maybe a conflict. */
  async _onAck(sent, version, conflict) {
    const { key } = sent;
    this._retryAttempt = 0;
    if (conflict?.winner === 'stored') return this._onLost(sent, conflict);
    if (conflict?.winner === 'merged') return this._onServerMerged(sent, version, conflict);
    let entry = this._queue.get(key);
    const current = entry?.requestId === sent.requestId;
    if (version >= (this._state.versions[key] ?? 0)) this._markSynced(key, version, sent.value);
    // The cursor may skip our own write only when no one else's can hide in between.
    if (version === this._state.cursor + 1) this._state.cursor = version;
    let overwritten = null;
    let later = null;
    if (entry) {
      if (entry.remote) {
        if (conflict && entry.remote.version === conflict.storedVersion) overwritten = entry.remote;
        else if (entry.remote.version > version) later = entry.remote;
        delete entry.remote;
      }
      if (current) {
        this._queue.delete(key);
        entry = null;
      } else {
        // Edited again while this write travelled: continue from it.
        entry.base = sent.value;
        entry.baseVersion = version;
        delete entry.sent;
      }
    }
    if (conflict) this._afterWonConflict(sent, version, conflict, overwritten);
    if (later) {
      entry = this._queue.get(key);
      if (entry) this._rebase(entry, later);
      else this._applyRemote(key, later);
    }
    this._queue.save();
    this._saveState();
  },

  /** Our write won by last-write-wins over a value we had not seen merged in. */
  _afterWonConflict(sent, version, conflict, overwritten) {
    const { key } = sent;
    if (overwritten && overwritten.value !== null) {
      const local = this._read(key);
      const m = mergeByIdDetailed(sent.base, local, overwritten.value);
      if (m !== null) {
        const merged = m.text;
        if (merged !== local) {
          const entry = this._queue.get(key) ?? { key };
          this._writeData(key, merged);
          this._emit('change', { key, value: merged, source: 'merge' });
          Object.assign(entry, {
            base: sent.value,
            baseVersion: version,
            requestId: this._newId(),
            updatedAt: this._now(),
          });
          this._queue.set(key, entry);
        }
        this._conflict({ key, resolution: 'merged', winner: 'both', kept: merged, lost: undefined, ...lostElements(m.lost), version, server: conflict });
        return;
      }
    }
    const lost = overwritten ? overwritten.value : undefined;
    this._conflict({ key, resolution: 'last-write-wins', winner: 'local', kept: sent.value, lost, version, server: conflict });
  },

  /** Our write lost by last-write-wins: take the server's value (or merge). */
  async _onLost(sent, conflict) {
    const { key } = sent;
    const remote = await this._remoteAt(key, conflict.version);
    // Cannot learn the winner now: the edit stays queued and is tried again later.
    if (!remote) return;
    const entry = this._queue.get(key);
    delete entry?.heldUntil;
    if (!entry) return this._applyRemote(key, remote);
    const local = this._read(key);
    const m = mergeByIdDetailed(entry.base, local, remote.value);
    if (m !== null) return this._adoptMerge(entry, local, m.text, remote, m.lost);
    if (entry.requestId !== sent.requestId) {
      // Edited again since: that newer edit is judged on its own.
      entry.remote = remote;
      this._queue.save();
      return;
    }
    this._queue.delete(key);
    this._applyRemote(key, remote);
    this._conflict({ key, resolution: 'last-write-wins', winner: 'remote', kept: remote.value, lost: local, version: remote.version, server: conflict });
    this._queue.save();
    this._saveState();
  },

  /**
   * The server merged our write with a change we had not seen (two arrays of
   * objects with ids, three-way): the key's value at `version` is neither
   * side's, and our socket gets no change frame for it, so fetch and adopt it.
   */
  async _onServerMerged(sent, version, conflict) {
    const { key } = sent;
    const remote = await this._remoteAt(key, version);
    // Cannot learn the merge now: the write is resent later with the same
    // requestId, and the server answers with the same merge.
    if (!remote) return;
    const entry = this._queue.get(key);
    if (entry) {
      delete entry.heldUntil;
      if (entry.remote && entry.remote.version <= remote.version) delete entry.remote;
    }
    if (version === this._state.cursor + 1 && remote.version >= version) this._state.cursor = version;
    if (entry && entry.requestId !== sent.requestId) {
      // Edited again while the write travelled: that edit goes on top of the merge.
      entry.base = sent.value;
      const local = this._read(key);
      const m = mergeByIdDetailed(sent.value, local, remote.value);
      if (m !== null) return this._adoptMerge(entry, local, m.text, remote, m.lost);
      entry.remote = remote; // not mergeable any more: judged when it is sent
      this._queue.save();
      return;
    }
    if (entry) this._queue.delete(key);
    this._applyRemote(key, remote, 'merge');
    this._conflict({ key, resolution: 'merged', winner: 'both', kept: remote.value, lost: undefined, version: remote.version, server: conflict });
    this._queue.save();
    this._saveState();
  },

  /**
   * The key's {value, version} at `version` or later: from a change already
   * received, else from the server. Null when it cannot be learned now; the
   * key's queued edit is then held and a retry scheduled.
   */
  async _remoteAt(key, version) {
    const known = this._queue.get(key)?.remote;
    if (known && known.version >= version) return known;
    let remote = null;
    try {
      remote = await this._fetchKey(key, version);
    } catch (err) {
      this._transportFailure(err);
    }
    if (!remote) {
      const wait = this._retryAfterFailure(null);
      const entry = this._queue.get(key);
      if (entry) entry.heldUntil = this._now() + wait;
    }
    return remote;
  },

  /** The key's value at `version` or later, from the server. */
  async _fetchKey(key, version) {
    return (await this._fetchKeys({ [key]: version }))[key] ?? null;
  },

  /** Each key's {value, version} at its given version or later, from the server (missing if older). */
  async _fetchKeys(wanted) {
    const since = Math.min(...Object.values(wanted));
    const res = await this._request('GET', `/sync?since=${Math.max(0, since - 1)}`);
    const out = {};
    for (const [key, version] of Object.entries(wanted)) {
      const v = res.versions?.[key];
      if (v === undefined || v < version) continue;
      const has = Object.prototype.hasOwnProperty.call(res.data ?? {}, key);
      out[key] = { value: has ? res.data[key] : null, version: v };
    }
    return out;
  },

  /** First sync of this device with the account: merge, never overwrite. */
  async _initialSync() {
    const res = await this._request('GET', '/sync');
    const st = this._state;
    st.versions = {};
    st.synced = {};
    const data = res.data ?? {};
    for (const key of this._tracked) {
      const local = this._read(key);
      const pending = this._queue.get(key);
      const version = res.versions?.[key];
      const onServer = Object.prototype.hasOwnProperty.call(data, key);
      const server = onServer ? data[key] : null;
      this._queue.delete(key);
      if (local === null) {
        // Nothing here: take the account's value (a local removal made before
        // this device ever synced does not delete the account's data).
        if (onServer) this._applyRemote(key, { value: server, version });
        else if (version !== undefined) this._markSynced(key, version, null);
        continue;
      }
      const entry = { key, requestId: this._newId(), updatedAt: pending?.updatedAt ?? this._now() };
      if (!onServer) {
        // The account lacks it: upload (on top of a deletion, if there was one).
        this._queue.set(key, { ...entry, base: null, ...(version !== undefined && { baseVersion: version }) });
        continue;
      }
      if (server === local) {
        this._markSynced(key, version, server);
        continue;
      }
      const m = mergeByIdDetailed(null, local, server);
      if (m !== null) {
        this._adoptMerge({ ...entry, base: null }, local, m.text, { value: server, version }, m.lost);
        continue;
      }
      // Two different opaque values: upload ours with its edit time (0 if
      // unknown: the account's value wins) without a base version, so the
      // server's last-write-wins decides and keeps the loser in its history.
      this._queue.set(key, {
        ...entry,
        updatedAt: pending?.updatedAt ?? inferUpdatedAt(local) ?? 0,
        remote: { value: server, version },
      });
    }
    st.cursor = res.cursor ?? 0;
    st.initialized = true;
    this._queue.save();
    this._saveState();
  },
};
