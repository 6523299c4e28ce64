// The queue's way out: which transport carries each queued edit (frames on
// the live socket; REST batches while the socket is down or in REST mode;
// REST PUT for a value too big for a frame), and what a failure does
// (retried with backoff and jitter, never before Retry-After; refused for
// good: kept locally and reported). Methods of SyncManager (manager.js
// mixes them in).

import { retryDelay } from './backoff.js';
import { SyncError } from './errors.js';
import { diffRecords, patchFieldsJson, splitRecords } from './records.js';
import { fingerprint, utf8Length } from './util.js';

// The server refuses frames over 1 MiB; bigger values go over REST PUT.
const MAX_FRAME_BYTES = 1024 * 1024 - 4096;
const MAX_BATCH_KEYS = 64;
const MAX_BATCH_BYTES = 4 * 1024 * 1024;
// After this many failed retries of a refused-for-now request the status says 'error' (it keeps retrying).
const RETRIES_BEFORE_ERROR = 3;

export const sending = {
  /** Queue entries ready to send: not in flight, reconciled with known server changes. */
  _sendable() {
    const out = [];
    for (const entry of [...this._queue.values()]) {
      if (this._inflightFor(entry.key) || entry.failed || entry.heldUntil > this._now()) continue;
      if ([...this._holds].some((h) => h.keys.has(entry.key))) continue; // after the restore or import
      if (entry.remote && entry.remote.version > (entry.baseVersion ?? 0)) {
        this._rebase(entry, entry.remote);
        if (!this._queue.has(entry.key)) continue;
      }
      out.push(this._queue.get(entry.key));
    }
    return out;
  },

  _snapshotEntry(entry, via) {
    const value = this._read(entry.key);
    const sent = {
      key: entry.key,
      requestId: entry.requestId,
      value,
      base: entry.base,
      baseVersion: entry.baseVersion,
      updatedAt: entry.updatedAt,
      via,
    };
    entry.sent = fingerprint(value);
    this._inflight.set(sent.requestId, sent);
    return sent;
  },

  async _syncUp() {
    for (let round = 0; round < 8; round++) {
      const ready = this._sendable();
      if (!ready.length) break;
      const batch = [];
      let bytes = 0;
      for (const entry of ready) {
        const size = (this._read(entry.key) ?? '').length * 2 + 200;
        if (batch.length && (batch.length >= MAX_BATCH_KEYS || bytes + size > MAX_BATCH_BYTES)) break;
        batch.push(this._snapshotEntry(entry, 'rest'));
        bytes += size;
      }
      this._queue.save();
      const body = { data: {}, baseVersions: {}, updatedAt: {}, deleted: [] };
      for (const s of batch) {
        if (s.value === null) body.deleted.push(s.key);
        else body.data[s.key] = s.value;
        if (s.baseVersion !== undefined) body.baseVersions[s.key] = s.baseVersion;
        body.updatedAt[s.key] = s.updatedAt;
      }
      // The same entries always make the same batch id: a retry is applied once.
      body.requestId = `b-${fingerprint(batch.map((s) => s.requestId).sort().join(','))}`;
      let res;
      try {
        res = await this._request('POST', '/sync', body);
      } catch (err) {
        for (const s of batch) this._inflight.delete(s.requestId);
        if (err.status === 413 || err.code === 'invalid_key' || err.code === 'invalid_request') {
          this._rejectWrites(batch, err);
          continue;
        }
        throw err;
      }
      for (const s of batch) this._inflight.delete(s.requestId);
      batch.sort((x, y) => (res.versions?.[x.key] ?? 0) - (res.versions?.[y.key] ?? 0));
      for (const s of batch) {
        const conflict = (res.conflicts ?? []).find((c) => c.key === s.key) ?? null;
        await this._onAck(s, res.versions?.[s.key] ?? 0, conflict);
      }
    }
    this._updateStatus();
  },

  /** The server refused these writes for good: keep the local data, stop retrying. */
  _rejectWrites(sents, err) {
    for (const s of sents) {
      const entry = this._queue.get(s.key);
      if (entry && entry.requestId === s.requestId) entry.failed = err.code;
    }
    this._queue.save();
    this._error = { code: err.code, message: err.message };
    this._emit('error', this._error);
  },

  async _restPut(entry) {
    if (!this._queue.has(entry.key) || this._inflightFor(entry.key)) return;
    const s = this._snapshotEntry(entry, 'rest');
    this._queue.save();
    const path = `/sync/${encodeURIComponent(s.key)}`;
    const body = { updatedAt: s.updatedAt, requestId: s.requestId };
    if (s.baseVersion !== undefined) body.baseVersion = s.baseVersion;
    if (s.value !== null) body.value = s.value;
    let res;
    try {
      res = await this._request(s.value === null ? 'DELETE' : 'PUT', path, body);
    } finally {
      this._inflight.delete(s.requestId);
    }
    await this._onAck(s, res.version, res.conflict ?? null);
  },

  async _syncDown() {
    const since = this._resumeCursor();
    let res = await this._request('GET', `/sync?since=${since}`);
    if ((res.cursor ?? 0) < since) {
      // The server's data was reset or restored: take its whole state.
      this._state.versions = {};
      this._state.synced = {};
      res = await this._request('GET', '/sync?since=0');
    }
    const changes = Object.entries(res.versions ?? {})
      .map(([key, version]) => ({
        key,
        version,
        deleted: !Object.prototype.hasOwnProperty.call(res.data ?? {}, key),
        value: res.data?.[key],
      }))
      .sort((a, b) => a.version - b.version);
    for (const c of changes) this._receiveRemote(c);
    this._state.cursor = res.cursor ?? this._state.cursor;
    this._saveState();
  },

  /** Sends queued edits now, on the socket if it is live, else over REST. */
  _flush() {
    this._clearTimer('flush');
    if (!this._canConnect()) return;
    if (this._link !== 'live') {
      // REST carries the queue while the socket is down (the fallback is on) or in REST mode.
      if (this._link === 'rest' || !this.live || this._timers.poll) this._restSync(true);
      return;
    }
    for (const entry of this._sendable()) {
      const value = this._read(entry.key);
      // The records it changed when that is smaller than the whole value.
      let text = this._patchFrame(entry, value);
      if (text === null || text.length >= value.length) {
        const frame = { type: value === null ? 'delete' : 'put', key: entry.key };
        if (value !== null) frame.value = value;
        if (entry.baseVersion !== undefined) frame.baseVersion = entry.baseVersion;
        frame.updatedAt = entry.updatedAt;
        frame.requestId = entry.requestId;
        text = JSON.stringify(frame);
      }
      if (utf8Length(text, MAX_FRAME_BYTES) > MAX_FRAME_BYTES) {
        this._serial(() => this._restPut(entry)).catch((err) => this._transportFailure(err));
        continue;
      }
      this._snapshotEntry(entry, 'ws');
      if (!this._send(text)) this._inflight.delete(entry.requestId);
    }
    this._queue.save();
    this._updateStatus();
  },

  /**
   * The queued edit as a `patch` frame (the records changed since the
   * value at its baseVersion, which the queue keeps as `base`), or null
   * when it cannot be one: the server did not say `patches`, refused a
   * patch for this key (`not_records`), the base is unknown, or either
   * value is not a record list. Every edit since the base is in it, so
   * ten edits of one record while offline send that record once.
   */
  _patchFrame(entry, value) {
    if (!this._patchesLive || entry.noPatch || value === null) return null;
    if (entry.baseVersion === undefined || !('base' in entry) || entry.base === null || entry.base === undefined) return null;
    const base = splitRecords(entry.base);
    const next = base && splitRecords(value);
    if (!next) return null;
    const p = diffRecords(base, next);
    const head = JSON.stringify({ type: 'patch', key: entry.key, requestId: entry.requestId, baseVersion: entry.baseVersion, updatedAt: entry.updatedAt });
    return `${head.slice(0, -1)},${patchFieldsJson(p)}}`;
  },

  _flushSoon() {
    if (this._timers.flush) return;
    this._timers.flush = setTimeout(() => this._flush(), 0);
  },

  /** Sends queued edits again after a backoff with jitter (never before the server's Retry-After); returns the delay. */
  _retryAfterFailure(err) {
    const ms = retryDelay(this._retryAttempt++, {
      baseMs: this.retryMs,
      maxMs: this.retryMaxMs,
      random: this._random,
      retryAfterMs: err?.retryAfterMs ?? null,
    });
    this._retryLater(ms);
    return ms;
  },

  _retryLater(ms) {
    if (this._timers.retry) return;
    this._timers.retry = setTimeout(() => {
      this._timers.retry = null;
      this._flushSoon();
    }, ms);
  },

  _restSync(upOnly = false) {
    if (this._restSyncRunning) {
      // Edits made meanwhile go in a second round right after this one.
      this._restSyncAgain = true;
      return;
    }
    this._restSyncRunning = true;
    this._restSyncAgain = false;
    const work = upOnly && this._state.initialized ? this.syncUp() : this.fullSync();
    work
      .then(() => {
        if (this._link !== 'live') this._link = 'rest';
        this._error = null;
        this._touchSynced();
      })
      .catch((err) => this._transportFailure(err))
      .finally(() => {
        this._restSyncRunning = false;
        this._updateStatus();
        if (this._link !== 'live') this._settle();
        if (this._restSyncAgain && this._link === 'rest' && this._canConnect() && this._queue.size) this._restSync(true);
      });
  },

  _startPolling() {
    if (this._timers.poll) return;
    this._timers.poll = setInterval(() => {
      if (this._canConnect() && this._link !== 'live') this._restSync();
      else if (this._userPolling && this._canConnect()) this._restSync();
    }, this.autoSyncMs);
  },

  _startFallback() {
    const polling = !!this._timers.poll;
    this._startPolling();
    if (!polling) this._restSync();
  },

  _stopFallback() {
    if (!this._userPolling && this.live) this._clearTimer('poll');
  },

  _transportFailure(err) {
    if (!(err instanceof SyncError)) {
      console.error('sync: unexpected failure', err);
      this._error = { code: 'internal', message: String(err?.message ?? err) };
    } else if (err.network) {
      if (this._link === 'rest') this._link = 'down';
      if (this._queue.size) this._retryAfterFailure(err);
    } else if (err.status === 401) {
      // handled by _revoked()
    } else if (err.retryable) {
      // 429, or a 5xx (an HTML page from the edge too): the same requests again, later.
      this._retryAfterFailure(err);
      if (this._retryAttempt > RETRIES_BEFORE_ERROR) {
        this._error = { code: err.code, message: err.message };
        this._emit('error', this._error);
      }
    } else {
      this._error = { code: err.code, message: err.message };
      this._emit('error', this._error);
    }
    this._updateStatus();
  },
};
