// SyncManager: the orchestration. It owns the session (token, sync state),
// decides which transport carries the queue (WebSocket when live, REST while
// the socket cannot connect), and wires the modules together:
//   storage-hook.js  notices the app's setItem/removeItem/clear
//   queue.js         the durable queue of local edits
//   socket.js, rest.js  the two transports; send.js: which one carries the queue
//   reconcile.js     remote changes, acknowledgements, first sign-in (merge.js)
//   server-writes.js restore and import: writes the server makes for us
//   tabs.js          one syncing tab per browser; tab-follow.js: the others follow it
//   status.js        what the indicator says
//   conflict-log.js  the persisted conflict log
//
// Promises (DESIGN.md, "The client's promises"): local data is never deleted
// by signing out, stopping or an outage; on a first sign-in local and account
// data are merged, never blindly overwritten; `status` is never 'synced' while
// an edit is unacknowledged, in any tab.

import { backoffDelay } from './backoff.js';
import { SignInBackup } from './backup.js';
import { ConflictLog } from './conflict-log.js';
import { SyncError } from './errors.js';
import { Emitter } from './events.js';
import { putElements } from './merge.js';
import { threeWayText } from './records.js';
import { MetaStore, STORAGE_KEYS } from './meta-store.js';
import { EditQueue } from './queue.js';
import { reconcile } from './reconcile.js';
import { RestClient } from './rest.js';
import { sending } from './send.js';
import { serverWrites } from './server-writes.js';
import { CLOSE_REVOKED, SocketLink, WS_PROTOCOL } from './socket.js';
import { followerStatus, leaderStatus } from './status.js';
import { installHook } from './storage-hook.js';
import { following } from './tab-follow.js';
import { LEASE_KEY, TabCoordinator } from './tabs.js';
import { fingerprint, guessDeviceName, newId, readJson } from './util.js';

export const DEFAULT_KEYS = Object.freeze([
  'kanban-projects',
  'kanban-columns',
  'outstanding-payments',
  'alternatone-payments',
  'accountingTransactions',
  'cue-tracker-sessions',
  'estimates',
]);

const MAX_CONFLICTS = 50;

export class SyncManager {
  /**
   * @param {object} [options] see sync-manager.d.ts for each option
   */
  constructor(options = {}) {
    const g = globalThis;
    this.apiBase = String(options.apiBase ?? '/api').replace(/\/+$/, '');
    this.keys = [...(options.keys ?? DEFAULT_KEYS)];
    this.storage = options.storage ?? g.localStorage;
    if (!this.storage) throw new TypeError('SyncManager needs a storage object (getItem/setItem/removeItem/key/length)');
    this.live = options.live ?? true;
    this.autoSyncMs = options.autoSyncMs ?? 60000;
    this.pingMs = options.pingMs ?? 15000;
    this.deadMs = options.deadMs ?? 30000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10000;
    this.retryMs = options.retryMs ?? 2000;
    this.retryMaxMs = options.retryMaxMs ?? 60000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30000;
    this.leaseMs = options.leaseMs ?? 5000;
    this.backoff = { baseMs: 500, maxMs: 30000, ...options.backoff };
    this._WebSocket = options.WebSocket ?? g.WebSocket ?? null;
    this._window = options.window ?? (typeof window !== 'undefined' ? window : null);
    this._document = options.document ?? (options.window ? null : (g.document ?? null));
    this._navigator = options.navigator ?? g.navigator ?? null;
    this._baseUrl = options.baseUrl ?? g.location?.href ?? undefined;
    this._now = options.now ?? Date.now;
    this._random = options.random ?? Math.random;
    this._onAccountChange = options.onAccountChange ?? null;
    this.deviceName = options.deviceName ?? guessDeviceName(this._navigator);

    const internal = new Set(Object.values(STORAGE_KEYS));
    this._tracked = new Set(this.keys.filter((k) => !internal.has(k)));
    this._events = new Emitter();
    this._chain = Promise.resolve();
    this._inflight = new Map(); // requestId -> what was sent
    this._timers = { reconnect: null, poll: null, flush: null, retry: null, unapplied: null };
    this._socket = null;
    this._link = 'down'; // 'down' | 'live' (socket caught up) | 'rest' (last REST sync worked)
    this._connecting = false;
    this._unreachable = false;
    this._busy = 0;
    this._attempt = 0; // reconnects
    this._retryAttempt = 0; // requests refused for now
    this._running = false;
    this._wantRunning = false;
    this._userPolling = false;
    this._error = null;
    this._revokedFlag = false;
    this._online = this._navigator?.onLine ?? true;
    this._lastEmitted = '';
    this._mirror = null; // the leading tab's last status snapshot
    this._tabPending = new Map(); // id -> key: this tab's edits the leading tab has not taken yet
    this._unapplied = new Map(); // key -> remote change that did not fit in storage
    // key -> the value the app last saw, when something other than the app
    // (a remote change, a merge, another tab) wrote the key after the app's
    // last write: the base of the app's next write (records.js threeWay).
    this._appBase = new Map();
    this._patchesLive = false; // the socket's server takes and sends patch frames
    /** Devices connected right now, from the server's presence frames: [{deviceId, name}]. */
    this.onlineDevices = [];
    // Keys whose server state a restore or import is changing right now:
    // their change frames wait here until the request's answer is in.
    this._holds = new Set();

    this._raw = installHook(this.storage, {
      get: (k, v) => this._appRead(k, v),
      set: (k, v) => this._hookedSet(k, v),
      remove: (k) => this._hookedRemove(k),
      clear: () => this._hookedClear(),
    });
    this._meta = new MetaStore(this.storage, this._raw, (e) => {
      this._error = e;
      this._emit('error', e);
    });
    this._queue = new EditQueue(this._meta, this._tracked, (k) => this._read(k));
    this._log = new ConflictLog(this._meta, { max: MAX_CONFLICTS });
    this._rest = new RestClient({
      fetch: options.fetch ?? (g.fetch ? g.fetch.bind(g) : null),
      url: (path) => this._resolve(path),
      timeoutMs: this.requestTimeoutMs,
      token: () => this._token,
      busy: (d) => {
        this._busy += d;
        this._updateStatus();
      },
      reachable: (ok) => (this._unreachable = !ok),
      unauthorized: (token) => {
        if (token === this._token && !this._loggingOut) this._revoked();
      },
    });

    // One syncing tab per browser: for this window's localStorage (or when asked).
    const lock = options.lock ?? 'auto';
    const named = typeof lock === 'string' && lock !== 'auto';
    const ownStorage = typeof window !== 'undefined' && this.storage === g.localStorage;
    const tabs = options.tabs ?? 'auto';
    if (tabs === true || (tabs === 'auto' && (ownStorage || named))) {
      this._tabs = new TabCoordinator({
        name: named ? lock : `alternassist-sync ${this._resolve('')}`,
        useLocks: lock !== false && !!this._navigator?.locks?.request,
        navigator: this._navigator,
        BroadcastChannel: options.BroadcastChannel ?? g.BroadcastChannel ?? null,
        storage: this.storage,
        raw: this._raw,
        leaseMs: this.leaseMs,
        now: this._now,
        onLead: () => this._becomeLeader(),
        onLose: () => this._loseLead(),
        onMessage: (m) => this._tabMessage(m),
      });
      this._tabs.post({ type: 'status?' });
    } else {
      this._tabs = null;
    }
    this._leader = !this._tabs; // without coordination this instance syncs for itself
    // With other tabs on this storage: key -> the value this tab's app last
    // read or wrote. Another tab's write reaches this one as a storage event
    // on a later task, maybe after the app's next write: this is what that
    // write is judged against, in the syncing tab and in the others alike.
    this._appSeen = this._tabs ? new Map() : null;

    this._load();
    // The sign-in is kept in IndexedDB too: storage cleared while this library was not loaded does not sign out.
    this._backup = options.signInBackup ?? new SignInBackup(options.indexedDB ?? g.indexedDB ?? null, this._resolve(''));
    /** Settles once a sign-in lost from storage has been looked for in the backup (at once when signed in). */
    this.ready = this._token ? Promise.resolve() : this._restoreSignIn();
    if (this._token && this._state.userId) this._keepSignIn();
    this._onWindowEvent = (e) => this._windowEvent(e);
    this._windowEvents = ['online', 'offline', 'storage', 'pagehide', 'pageshow'];
    for (const type of this._windowEvents) this._window?.addEventListener?.(type, this._onWindowEvent);
    this._onVisible = () => {
      if (this._document?.visibilityState !== 'hidden') this._socket?.probe();
    };
    for (const type of ['visibilitychange', 'resume']) this._document?.addEventListener?.(type, this._onVisible);
  }

  // ------------------------------------------------------------ public state

  get signedIn() {
    return !!this._token;
  }
  get email() {
    return this._state.email ?? null;
  }
  get userId() {
    return this._state.userId ?? null;
  }
  get deviceId() {
    return this._state.deviceId ?? null;
  }
  /** True in the one tab of this browser that holds the connection. */
  get isLeader() {
    return this._leader;
  }
  get lastSyncedAt() {
    if (!this._leader && this._mirror) return this._mirror.lastSyncedAt ?? null;
    return this._state.lastSyncedAt ?? null;
  }
  /** Edits not yet acknowledged by the server (in a following tab: the leader's, plus this tab's own it has not taken yet). */
  get pendingCount() {
    if (!this._leader) return (this._mirror?.pendingCount ?? 0) + this._tabPending.size;
    return this._queue.size + this._unapplied.size;
  }
  /** What stops syncing, {code, message}, or null. */
  get error() {
    if (!this._leader) return this._mirror?.error ?? null;
    return this._error ?? this._fullError();
  }
  /** 'synced' | 'syncing' | 'offline' | 'error' */
  get status() {
    if (!this._leader) {
      return followerStatus({
        signedIn: !!this._token,
        revoked: this._revokedFlag,
        mirror: this._mirror,
        wantRunning: this._wantRunning,
        online: this._online,
        ownPending: this._tabPending.size,
      });
    }
    return leaderStatus({
      signedIn: !!this._token,
      revoked: this._revokedFlag,
      online: this._online,
      running: this._running,
      error: this.error,
      anyFailed: this._queue.anyFailed(),
      link: this._link,
      connecting: this._connecting,
      busy: this._busy,
      unreachable: this._unreachable,
      pending: this._queue.size,
      inflight: this._inflight.size,
      catchingUp: !!this._socket?.catchingUp,
    });
  }

  /** Subscribes to 'status', 'change', 'conflict', 'signedout', 'presence' or 'error'; returns an unsubscribe function. */
  on(event, fn) {
    return this._events.on(event, fn);
  }
  off(event, fn) {
    this._events.off(event, fn);
  }
  _emit(event, detail) {
    this._events.emit(event, detail);
  }

  /** Resolves once status is 'synced' (rejects after `timeoutMs`). */
  whenSynced(timeoutMs = 30000) {
    if (this.status === 'synced') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`not synced within ${timeoutMs} ms (status ${this.status})`));
      }, timeoutMs);
      const off = this.on('status', ({ status }) => {
        if (status === 'synced') {
          clearTimeout(timer);
          off();
          resolve();
        }
      });
    });
  }

  // ------------------------------------------------------------------- auth

  register(email, password, deviceName, options) {
    return this._auth('register', email, password, deviceName, options);
  }
  login(email, password, deviceName, options) {
    return this._auth('login', email, password, deviceName, options);
  }

  async _auth(kind, email, password, deviceName, options = {}) {
    if (deviceName && typeof deviceName === 'object') [deviceName, options] = [undefined, deviceName];
    deviceName ??= this.deviceName;
    const res = await this._request('POST', `/auth/${kind}`, { email, password, deviceName }, { auth: false });
    await this._accountCheck(res, email, options ?? {});
    if (this._token && this._leader) this._endSession();
    this._token = res.token;
    this._revokedFlag = false;
    this._error = null;
    this._state = this._freshState({ userId: res.userId, deviceId: res.deviceId, email });
    this._saveState(); // before the token: another tab reacts to the token
    this._meta.set('token', res.token);
    this._keepSignIn();
    if (this._leader) {
      this._queue.strip();
      this._inflight.clear();
      if (this._running) this._kick();
      else if (this._wantRunning) this._run();
    }
    this._updateStatus();
    return { userId: res.userId, deviceId: res.deviceId };
  }

  /**
   * This device last synced another account: its local data is that
   * account's. Merging it into the new one needs the app's (the user's)
   * explicit choice: `accountChange: 'merge' | 'replace'` or the
   * onAccountChange callback. Without one the sign-in is refused (and the
   * new device token revoked), so nothing crosses over.
   */
  async _accountCheck(res, email, options) {
    const previous = this._state.userId ?? this._state.lastUserId ?? null;
    if (!previous || previous === res.userId) return;
    const info = {
      previousUserId: previous,
      previousEmail: this._state.email ?? this._state.lastEmail ?? null,
      userId: res.userId,
      email,
    };
    let choice = options.accountChange ?? null;
    if (!choice && this._onAccountChange) {
      try {
        choice = await this._onAccountChange(info);
      } catch (err) {
        console.warn('sync: onAccountChange failed', err);
      }
    }
    const refuse = async (err) => {
      await this._request('POST', '/auth/logout', {}, { token: res.token }).catch(() => {});
      throw Object.assign(err, info);
    };
    if (choice !== 'merge' && choice !== 'replace') {
      await refuse(
        new SyncError(
          `This device holds the data of another account (${info.previousEmail ?? previous}). ` +
            `Sign in with accountChange 'merge' to add it to ${email}, or 'replace' to swap it for that account's data.`,
          { code: 'account_changed' },
        ),
      );
    }
    if (choice === 'replace') {
      if (this._queue.size > 0) {
        await refuse(
          new SyncError('Edits of the previous account are still waiting to be sent: sign in to it again to send them first.', {
            code: 'pending_edits',
          }),
        );
      }
      // The previous account keeps its data on the server; this device now shows the new one's.
      for (const key of this._tracked) {
        if (this._read(key) === null) continue;
        this._writeData(key, null);
        this._emit('change', { key, value: null, source: 'account' });
      }
    }
  }

  /** Signs this device out (its token is revoked); local data stays. */
  async logout() {
    const token = this._token;
    if (!token) return;
    this._loggingOut = true;
    try {
      await this._request('POST', '/auth/logout', {});
    } catch (err) {
      // Offline or already revoked: forget the token locally all the same.
      if (err.status !== 401) console.warn('sync: logout could not reach the server', err.message);
    } finally {
      this._loggingOut = false;
    }
    if (this._token === token) this._signOutLocally('logout');
  }

  /**
   * Changes the account's password; other devices are signed out unless
   * signOutOthers is false. Resolves to {signedOut}; a wrong current
   * password rejects with code 'wrong_password' (this device stays signed in).
   */
  async changePassword(currentPassword, newPassword, { signOutOthers = true } = {}) {
    const res = await this._request('POST', '/auth/password', { currentPassword, newPassword, signOutOthers });
    return { signedOut: res.signedOut ?? 0 };
  }

  /** Signs every device of the account out, this one too; local data stays. */
  async signOutEverywhere() {
    const token = this._token;
    this._loggingOut = true;
    let res;
    try {
      res = await this._request('POST', '/auth/logout-all', {});
    } finally {
      this._loggingOut = false;
    }
    if (this._token === token) this._signOutLocally('logout');
    return { signedOut: res.signedOut ?? 0 };
  }

  /** Usage against the quotas: {usage: {bytes, keys, writesToday}, limits, writesResetAt}. */
  async account() {
    const { success: _, ...info } = await this._request('GET', '/account');
    return info;
  }

  _keepSignIn() {
    const { userId, deviceId, email } = this._state;
    this._backup.save({ token: this._token, userId, deviceId, email: email ?? null }).catch(() => {});
  }

  /**
   * No token in storage: the app may have cleared it while this library was
   * not loaded. A sign-in kept in the backup comes back, as a first sync
   * (local data and the account's are merged, never overwritten): what this
   * device had synced is gone with the rest of the sync state.
   */
  async _restoreSignIn() {
    this._restoring = true;
    try {
      const rec = await this._backup.load().catch(() => null);
      if (!rec?.token || this._token || this._meta.get('token') || this._revokedFlag) return;
      this._token = rec.token;
      this._state = this._freshState({ userId: rec.userId, deviceId: rec.deviceId, email: rec.email });
      this._saveState();
      this._meta.set('token', rec.token);
      this._emit('restored', { email: rec.email ?? null });
      this._updateStatus();
    } finally {
      this._restoring = false;
    }
  }

  // ------------------------------------------- history, export, devices

  /**
   * The server's retained versions of `key`, newest first:
   * [{version, updatedAt, deviceId, deviceName, deleted, size, current}].
   * One page: `before` (a version) and `limit` ask for another.
   */
  async history(key, { before, limit } = {}) {
    const query = new URLSearchParams();
    if (before !== undefined) query.set('before', String(before));
    if (limit !== undefined) query.set('limit', String(limit));
    const q = [...query].length ? `?${query}` : '';
    const res = await this._request('GET', `/sync/${encodeURIComponent(key)}/history${q}`);
    return Array.isArray(res.history) ? res.history : [];
  }

  /** One retained version of `key`: {key, version, value (null for a deletion), deleted, updatedAt, deviceId}. */
  async historyVersion(key, version) {
    const { success: _, ...entry } = await this._request(
      'GET',
      `/sync/${encodeURIComponent(key)}/history/${encodeURIComponent(version)}`,
    );
    return entry;
  }

  /** The account's data as an export document: {format, formatVersion, exportedAt, data, versions}. */
  async exportData() {
    const { success: _, ...doc } = await this._request('GET', '/export');
    return doc;
  }

  /** The account's signed-in devices, oldest first: [{id, name, createdAt, lastSeenAt, current, online}]. */
  async devices() {
    const res = await this._request('GET', '/devices');
    return Array.isArray(res.devices) ? res.devices : [];
  }

  /** Signs a device out (its token stops working, its sockets close); this device's own id signs out here too. */
  async revokeDevice(id) {
    const token = this._token;
    const self = id === this.deviceId;
    if (self) this._loggingOut = true;
    try {
      await this._request('DELETE', `/devices/${encodeURIComponent(id)}`);
    } finally {
      if (self) this._loggingOut = false;
    }
    if (self && this._token === token) this._signOutLocally('logout');
  }

  // --------------------------------------------------------- start and stop

  /**
   * Starts syncing: a full sync, then live mode over the WebSocket (REST
   * polling every `autoSyncMs` while the socket cannot connect). Resolves
   * after the first attempt (synced, or failed: see `status`). In a tab that
   * does not hold the connection it resolves at once; that tab follows.
   */
  start() {
    if (this._restoring) return this.ready.then(() => this.start());
    this._wantRunning = true;
    if (!this._leader) {
      this._tabs.request();
      this._updateStatus();
      return Promise.resolve();
    }
    return this._run();
  }

  /** Stops syncing (local edits keep being queued, with their edit time, for the next start). */
  stop() {
    this._wantRunning = false;
    this._running = false;
    this._closeSocket();
    for (const name of Object.keys(this._timers)) this._clearTimer(name);
    this._userPolling = false;
    this._link = 'down';
    this._connecting = false;
    if (this._tabs) {
      this._tabs.release();
      this._leader = false;
      this._mirror = null;
    }
    this._updateStatus();
  }

  /** Stops, removes the storage hook and the window listeners. */
  destroy() {
    this.stop();
    this._raw.uninstall();
    for (const type of this._windowEvents) this._window?.removeEventListener?.(type, this._onWindowEvent);
    for (const type of ['visibilitychange', 'resume']) this._document?.removeEventListener?.(type, this._onVisible);
    this._events.clear();
    this._tabs?.close();
  }

  _run() {
    if (!this._running) {
      this._running = true;
      this._online = this._navigator?.onLine ?? true;
      this._scanForDrift();
      if (!this.live) this._startPolling();
      if (this._unapplied.size) this._startUnappliedRetry();
      this._updateStatus();
    }
    if (!this._token || !this._online) return Promise.resolve();
    return new Promise((resolve) => {
      this._settleStart = resolve;
      this._kick();
    });
  }

  _settle() {
    const done = this._settleStart;
    this._settleStart = null;
    done?.();
  }

  // ------------------------------------------------------------------ tabs

  // ------------------------------------------------- the seed's sync methods

  /** Sends every queued edit over REST. */
  syncUp() {
    return this._serial(() => this._syncUp());
  }
  /** Pulls the changes since the cursor over REST. */
  syncDown() {
    return this._serial(() => this._syncDown());
  }
  /** Pull then push over REST (on a first sign-in: the merge of local and account data). */
  fullSync() {
    return this._serial(async () => {
      if (!this._state.initialized) await this._initialSync();
      else await this._syncDown();
      await this._syncUp();
      if (this._link !== 'live') this._link = 'rest';
      this._error = null;
      this._touchSynced();
    });
  }
  /** REST polling every `ms` (the seed's API; live mode needs none). */
  startAutoSync(ms = this.autoSyncMs) {
    this.autoSyncMs = ms;
    this._userPolling = true;
    this._startPolling();
    if (!this._running) this._run();
  }
  stopAutoSync() {
    this._userPolling = false;
    this._clearTimer('poll');
  }

  // ------------------------------------------------------- persistence

  _freshState(extra = {}) {
    // versions: the server version each key's synced value has; synced: a
    // fingerprint of that value, to notice edits made while nothing watched;
    // unapplied: keys whose newer server version did not fit in storage.
    return { cursor: 0, versions: {}, synced: {}, unapplied: {}, initialized: false, lastSyncedAt: null, ...extra };
  }

  _load() {
    this._token = this._meta.get('token');
    const s = this._meta.getJson('state');
    this._state = this._freshState(s && typeof s === 'object' ? s : {});
    for (const f of ['versions', 'synced', 'unapplied']) {
      if (typeof this._state[f] !== 'object' || !this._state[f]) this._state[f] = {};
    }
    this._queue.load();
    this.conflicts = this._log.load().map((r) => this._withRestore(r));
  }

  /** The cursor to resume from: before any change that could not be stored yet. */
  _resumeCursor() {
    const waiting = Object.values(this._state.unapplied ?? {});
    return waiting.length ? Math.min(this._state.cursor, Math.min(...waiting) - 1) : this._state.cursor;
  }

  _saveState() {
    this._meta.setJson('state', { ...this._state, cursor: this._resumeCursor() });
  }

  /** Reads storage without it counting as the app's read. */
  _read(key) {
    return this._raw.getItem(key);
  }

  /** Writes a tracked key's value without it counting as an edit; false when storage refused it. */
  _writeData(key, value) {
    this._noteForeignWrite(key, this._read(key), value);
    try {
      if (value === null) this._raw.removeItem(key);
      else this._raw.setItem(key, value);
      return true;
    } catch (err) {
      console.warn(`sync: could not write ${key} to storage`, err?.message ?? err);
      return false;
    }
  }

  // ---------------------------------------------------- local edits

  _hookedSet(key, value) {
    key = String(key);
    value = String(value);
    if (!this._tracked.has(key)) return this._raw.setItem(key, value);
    const old = this._read(key);
    const { text, lost } = this._mergeAppWrite(key, value, old);
    if (!this._leader && old !== text) this._noteTabEdit(key, text);
    this._raw.setItem(key, text); // may throw (quota): then nothing is queued
    // The app holds `value`; if storage now holds more, the app has not seen it yet.
    this._appSeen?.set(key, value);
    if (text !== value) this._appBase.set(key, value);
    else this._appBase.delete(key);
    if (old !== text) this._localEdit(key, text, old, text === value ? 'local' : 'merge');
    if (lost.length) {
      // In any tab: the app that wrote is told, and the log (shared by the tabs) keeps it.
      this._conflict({ key, resolution: 'merged', winner: 'both', kept: text, lost: undefined, lostElements: lost, version: this._state.versions[key] });
    }
    return undefined;
  }

  /**
   * The app writes `value` over `old`. When a remote change (or a merge, or
   * another tab) wrote the key since the app's previous write, the app may
   * be writing back an array it read before: its changes since the value it
   * last saw are applied onto `old` by id (records.js threeWay), so no
   * remote edit is erased. Returns {text: what to store, lost}.
   */
  _mergeAppWrite(key, value, old) {
    const seen = this._appSeen?.has(key) ? this._appSeen : this._appBase;
    if (!seen.has(key)) return { text: value, lost: [] };
    const base = seen.get(key);
    if (base === old) return { text: value, lost: [] };
    return threeWayText(base, value, old) ?? { text: value, lost: [] };
  }

  /** The app read `key` (and was given `value`): its next write is judged against that. */
  _appRead(key, value) {
    key = String(key);
    if (this._appBase.size) this._appBase.delete(key);
    if (this._appSeen && this._tracked.has(key)) this._appSeen.set(key, value ?? null);
  }

  /** Something other than the app writes `value` over `before`: the app's next write is judged against `before`. */
  _noteForeignWrite(key, before, value) {
    if (before !== value && this._tracked.has(key) && !this._appBase.has(key)) this._appBase.set(key, before);
  }

  _hookedRemove(key) {
    key = String(key);
    if (!this._tracked.has(key)) return this._raw.removeItem(key);
    this._appBase.delete(key);
    this._appSeen?.delete(key);
    const old = this._read(key);
    if (!this._leader && old !== null) this._noteTabEdit(key, null);
    this._raw.removeItem(key);
    if (old !== null) this._localEdit(key, null, old, 'local');
    return undefined;
  }

  /**
   * The app cleared storage. The sync's own keys are written back (the
   * device stays signed in); tracked keys are not deletions the user made:
   * their queued edits go (their values are gone) and the account's values
   * come back on the next catch-up.
   */
  _hookedClear() {
    this._raw.clear();
    this._afterClear();
  }

  _afterClear() {
    this._appBase.clear();
    this._appSeen?.clear();
    if (this._token) this._meta.set('token', this._token);
    if (this._leader) {
      this._queue.clear();
      this._inflight.clear();
      this._unapplied.clear();
      const st = this._state;
      if (st.initialized) Object.assign(st, { versions: {}, synced: {}, unapplied: {}, cursor: 0 });
      this._saveState();
      this._queue.save();
      this._log.save(this.conflicts);
      this._tabs?.renew?.();
      if (this._canConnect()) {
        this._closeSocket();
        this._link = 'down';
        this._kick();
      }
    } else {
      if (this._token) this._meta.setJson('state', this._state);
      this._tabPending.clear();
    }
    this._updateStatus();
  }

  _localEdit(key, value, old, source, updatedAt) {
    if (!this._leader) {
      // Another tab syncs (or none right now): it takes this edit from storage.
      this._emit('change', { key, value, source });
      this._updateStatus();
      return;
    }
    let entry = this._queue.get(key);
    if (!entry) {
      entry = { key };
      if (this._state.initialized) {
        // The value before this edit is the merge base only if it is what was synced.
        if (fingerprint(old) === (this._state.synced[key] ?? fingerprint(null))) entry.base = old;
        if (this._state.versions[key] !== undefined) entry.baseVersion = this._state.versions[key];
      }
      this._queue.set(key, entry);
    }
    const held = this._unapplied.get(key);
    if (held) {
      // A newer server value never made it into storage: this edit is judged against it.
      if (!entry.remote || entry.remote.version < held.version) entry.remote = held;
      this._unapplied.delete(key);
    }
    entry.updatedAt = updatedAt ?? this._now();
    entry.requestId = this._newId();
    delete entry.failed; // a new edit gets a new chance
    // Back to the synced value before anything was sent: nothing to do.
    if ('base' in entry && entry.base === value && !entry.sent && !entry.remote && !this._inflightFor(key)) {
      this._queue.delete(key);
    }
    this._queue.save();
    this._emit('change', { key, value, source });
    this._updateStatus();
    this._flushSoon();
  }

  /** The server holds `value` for `key` at `version`. */
  _markSynced(key, version, value) {
    if (version !== undefined) {
      this._state.versions[key] = version;
      if (version >= (this._state.unapplied[key] ?? Infinity)) delete this._state.unapplied[key];
      if (version >= (this._unapplied.get(key)?.version ?? Infinity)) this._unapplied.delete(key);
    }
    this._state.synced[key] = fingerprint(value);
  }

  /**
   * Queues tracked keys whose stored value differs from the last synced one
   * without a queued edit: written by a tab that did not sync (with the edit
   * time it recorded), before the library loaded, or by assigning
   * localStorage properties (stamped now).
   */
  _scanForDrift() {
    if (!this._state.initialized) return;
    const edits = this._meta.getJson('edits') ?? {};
    const consumed = [];
    for (const key of this._tracked) {
      const value = this._read(key);
      const rec = edits[key];
      if (rec) consumed.push(rec.id);
      const at = rec && rec.fp === fingerprint(value) ? rec.updatedAt : undefined;
      const entry = this._queue.get(key);
      if (entry) {
        if (at !== undefined && !(at <= entry.updatedAt)) {
          Object.assign(entry, { updatedAt: at, requestId: this._newId() });
          delete entry.failed;
        }
        continue;
      }
      if (fingerprint(value) === (this._state.synced[key] ?? fingerprint(null))) continue;
      const fresh = { key, requestId: this._newId(), updatedAt: at ?? this._now() };
      if (this._state.versions[key] !== undefined) fresh.baseVersion = this._state.versions[key];
      this._queue.set(key, fresh);
    }
    if (consumed.length) this._meta.set('edits', null);
    this._queue.save();
    if (consumed.length) this._postStatus(consumed);
  }

  _newId() {
    return newId(this._now(), this._random);
  }

  _inflightFor(key) {
    for (const s of this._inflight.values()) if (s.key === key) return s;
    return null;
  }

  // ------------------------------------------------------ storage full

  _fullError() {
    if (!this._unapplied.size) return null;
    const keys = [...this._unapplied.keys()];
    return {
      code: 'storage_full',
      message: `A newer version of ${keys.join(', ')} from another device does not fit in this browser's storage. Free some space; it is taken as soon as it fits.`,
      keys,
    };
  }

  /** A server value did not fit: the key stays at the version this device really has, and is retried. */
  _cannotStore(key, remote) {
    this._unapplied.set(key, remote);
    this._state.unapplied[key] = Math.min(this._state.unapplied[key] ?? Infinity, remote.version);
    this._saveState();
    this._emit('error', this._fullError());
    this._startUnappliedRetry();
    this._updateStatus();
  }

  _startUnappliedRetry() {
    if (this._timers.unapplied) return;
    this._timers.unapplied = setInterval(() => {
      for (const [key, remote] of [...this._unapplied]) {
        if (!this._queue.has(key)) this._applyRemote(key, remote);
      }
      this._saveState();
      if (!this._unapplied.size) this._clearTimer('unapplied');
      this._updateStatus();
    }, Math.max(50, this.retryMs * 5));
  }

  _conflict(info) {
    const record = this._withRestore({ id: this._newId(), at: this._now(), ...info });
    if (this._tabs) this._adoptStoredConflicts(); // another tab may have logged some meanwhile
    this.conflicts.unshift(record);
    this.conflicts.length = Math.min(this.conflicts.length, MAX_CONFLICTS);
    this._log.save(this.conflicts);
    this._emit('conflict', record);
  }

  /** Takes the records another tab of this browser added to the stored log (the log is shared by the tabs). */
  _adoptStoredConflicts() {
    const known = new Set(this.conflicts.map((c) => c.id));
    const fresh = this._log.load().filter((r) => !known.has(r.id));
    if (!fresh.length) return;
    this.conflicts = [...fresh.map((r) => this._withRestore(r)), ...this.conflicts].sort((a, b) => b.at - a.at);
    this.conflicts.length = Math.min(this.conflicts.length, MAX_CONFLICTS);
  }

  /** A conflict record with its restore(): the losing value, or the losing elements, made current again. */
  _withRestore(record) {
    const { key } = record;
    if (record.lost !== undefined) record.restore = () => this._restore(key, record.lost);
    else if (record.lostElements?.length) {
      record.restore = () => this._restore(key, putElements(this.storage.getItem(key), record.lostElements.map((l) => l.element)));
    }
    return record;
  }

  /** Makes a value current again (a new edit; the other goes to history). */
  _restore(key, value) {
    if (value === null) this.storage.removeItem(key);
    else this.storage.setItem(key, value);
  }

  // ------------------------------------------------------------- REST

  _resolve(path) {
    const url = this.apiBase + path;
    try {
      return new URL(url, this._baseUrl).href;
    } catch {
      return url;
    }
  }

  _request(method, path, body, opts) {
    return this._rest.request(method, path, body, opts);
  }

  // ----------------------------------------------------------- WebSocket

  _canConnect() {
    return this._running && this._leader && !!this._token && this._online;
  }

  _kick() {
    this._clearTimer('reconnect');
    if (!this._canConnect()) return this._settle();
    if (this.live && this._WebSocket) this._connect();
    else this._restSync();
  }

  async _connect() {
    if (!this._canConnect() || this._socket || this._connecting) return;
    this._connecting = true;
    this._updateStatus();
    if (!this._state.initialized) {
      // A first sign-in merges over REST, then goes live.
      try {
        await this.fullSync();
      } catch (err) {
        this._connecting = false;
        this._transportFailure(err);
        if (this._token) this._scheduleReconnect();
        this._settle();
        return;
      }
    }
    if (!this._canConnect()) {
      this._connecting = false;
      return;
    }
    this._openSocket();
  }

  _wsUrl() {
    const url = new URL(this._resolve('/ws'));
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return url.href;
  }

  _openSocket() {
    const link = new SocketLink({
      WebSocket: this._WebSocket,
      url: this._wsUrl(),
      protocols: [WS_PROTOCOL, `bearer.${this._token}`],
      now: this._now,
      pingMs: this.pingMs,
      deadMs: this.deadMs,
      connectTimeoutMs: this.connectTimeoutMs,
      onOpen: () => {
        if (this._socket !== link) return;
        this._connecting = false;
        this._unreachable = false;
        this._helloSince = this._resumeCursor();
        // patches: this client takes record patches (change frames carrying only the changed records).
        link.send({ type: 'hello', since: this._helloSince, patches: true });
        this._updateStatus();
      },
      onFrame: (msg) => {
        if (this._socket !== link) return;
        this._serial(() => this._onFrame(msg, link)).catch((err) => this._transportFailure(err));
      },
      onGone: ({ code, dead }) => {
        if (this._socket !== link) return;
        if (dead) this._unreachable = true;
        this._socketGone(code);
      },
    });
    this._socket = link;
    link.open();
  }

  _send(msg) {
    return this._socket ? this._socket.send(msg) : false;
  }

  _closeSocket() {
    const link = this._socket;
    this._socket = null;
    this._patchesLive = false;
    link?.close();
    for (const [id, s] of this._inflight) if (s.via === 'ws') this._inflight.delete(id);
    if (this._link === 'live') this._link = 'down';
  }

  _socketGone(code) {
    this._closeSocket();
    this._connecting = false;
    if (code === CLOSE_REVOKED) {
      if (!this._loggingOut) this._revoked();
      return;
    }
    if (!this._canConnect()) return this._updateStatus();
    // While the socket is down, REST keeps edits flowing (and tells a revoked token).
    this._startFallback();
    this._scheduleReconnect();
    this._updateStatus();
  }

  _scheduleReconnect() {
    if (this._timers.reconnect || !this._canConnect()) return;
    const delay = backoffDelay(this._attempt++, { ...this.backoff, random: this._random });
    this._timers.reconnect = setTimeout(() => {
      this._timers.reconnect = null;
      this._connect();
    }, delay);
  }

  async _onFrame(msg, link) {
    switch (msg.type) {
      case 'changes':
        // An answer to an earlier socket's hello: the current one asks again.
        if (link === this._socket) await this._onCatchUp(msg);
        break;
      case 'change': {
        // A record patch becomes the key's whole new value (or is fetched whole).
        const change = msg.patch ? await this._wholeChange(msg, false) : msg;
        if (!change) {
          // Could not learn the value: a new socket catches up from the cursor.
          this._socket?.drop();
          break;
        }
        this._receiveRemote(change);
        if (msg.version > this._state.cursor) this._state.cursor = msg.version;
        this._saveState();
        this._touchSynced();
        break;
      }
      case 'ack': {
        const sent = this._inflight.get(msg.requestId);
        if (!sent) break;
        this._inflight.delete(msg.requestId);
        await this._onAck(sent, msg.version, msg.conflict ?? null);
        this._error = null;
        this._touchSynced();
        this._flushSoon();
        break;
      }
      case 'error':
        this._onErrorFrame(msg);
        break;
      case 'presence':
        this.onlineDevices = Array.isArray(msg.devices) ? msg.devices : [];
        this._emit('presence', this.onlineDevices);
        break;
      case 'pong':
        // The server answered: this device is up to date as of now.
        this._touchSynced();
        break;
      default: // anything newer: the heartbeat already noted it
    }
    this._updateStatus();
  }

  async _onCatchUp(msg) {
    const since = this._helloSince ?? this._resumeCursor();
    const reset = since > msg.cursor; // the server's data was reset or restored
    if (reset) {
      this._state.versions = {};
      this._state.synced = {};
    }
    this._patchesLive = msg.patches === true;
    for (const c of msg.changes ?? []) {
      const change = c.patch ? await this._wholeChange(c, !reset) : c;
      if (!change) {
        // Could not learn the value: a new socket catches up from the cursor.
        this._saveState();
        this._socket?.drop();
        return;
      }
      this._receiveRemote(change);
    }
    this._state.cursor = reset ? msg.cursor : Math.max(this._state.cursor, msg.cursor);
    this._saveState();
    this._socket?.caughtUp();
    this._link = 'live';
    this._attempt = 0;
    this._error = null;
    this._stopFallback();
    this._flush();
    this._touchSynced();
    this._settle();
  }

  _onErrorFrame(msg) {
    const sent = msg.requestId ? this._inflight.get(msg.requestId) : null;
    if (!sent) {
      // A failed hello or an unparseable frame: start over on a new socket.
      if (this._socket?.catchingUp) this._socket.drop();
      return;
    }
    this._inflight.delete(msg.requestId);
    const entry = this._queue.get(sent.key);
    if (msg.code === 'not_records' && entry) {
      // The server does not hold this key as records: the whole value, as a put with a new requestId.
      entry.noPatch = true;
      if (entry.requestId === sent.requestId) entry.requestId = this._newId();
      this._queue.save();
      this._flushSoon();
    } else if (msg.code === 'frame_too_large' && entry) {
      // Too big for a frame: the same write over REST PUT.
      this._serial(() => this._restPut(entry)).catch((err) => this._transportFailure(err));
    } else if (msg.code === 'rate_limited' || msg.code === 'unavailable' || msg.code === 'internal') {
      const wait = this._retryAfterFailure(null);
      if (entry) entry.heldUntil = this._now() + wait; // other acks must not resend it sooner
    } else {
      this._rejectWrites([sent], new SyncError(msg.message ?? msg.code, { code: msg.code }));
    }
  }

  // ----------------------------------------------------- REST fallback

  // ------------------------------------------------------ signing out

  _revoked() {
    if (!this._token) return;
    this._signOutLocally('revoked');
  }

  /** Forgets the token and the session; the data stays in storage. */
  _signOutLocally(reason) {
    if (this._leader) this._endSession();
    this._token = null;
    this._revokedFlag = reason === 'revoked';
    if (this._revokedFlag) {
      this._error = { code: 'unauthorized', message: 'This device was signed out of sync. Sign in again to resume.' };
    }
    const st = this._state;
    const email = st.email;
    // Which account this device's data belongs to, for the next sign-in.
    this._state = this._freshState({ lastUserId: st.userId ?? st.lastUserId, lastEmail: st.email ?? st.lastEmail });
    if (this._leader || reason === 'logout') {
      this._meta.set('token', null);
      this._saveState();
    }
    this._backup.clear().catch(() => {});
    this._updateStatus();
    this._emit('signedout', { reason, email });
  }

  _endSession() {
    this._closeSocket();
    for (const name of ['reconnect', 'flush', 'retry', 'unapplied']) this._clearTimer(name);
    if (!this._userPolling) this._clearTimer('poll');
    this._link = 'down';
    this._connecting = false;
    this._unapplied.clear();
    this._queue.strip();
    this._inflight.clear();
    this._settle();
  }

  // ------------------------------------------------------ window events

  _windowEvent(e) {
    if (e.type === 'offline') {
      this._online = false;
      this._connecting = false;
      this._closeSocket();
      this._clearTimer('reconnect');
      this._link = 'down';
      this._updateStatus();
    } else if (e.type === 'online') {
      this._online = true;
      this._attempt = 0;
      this._unreachable = false;
      this._updateStatus();
      if (this._running) this._kick();
    } else if (e.type === 'storage') {
      this._storageEvent(e);
    } else if (e.type === 'pagehide' && this._tabs && !this._tabs.useLocks && this._leader) {
      // Leaving: hand the lease over now rather than when it runs out.
      const want = this._wantRunning;
      this.stop();
      this._wantRunning = want;
    } else if (e.type === 'pageshow' && e.persisted && this._wantRunning && !this._leader) {
      this.start();
    }
  }

  /** Another tab of this browser changed storage. */
  _storageEvent(e) {
    if (e.storageArea && e.storageArea !== this.storage) return;
    const { key } = e;
    if (key === null) {
      // clear() in another tab: that tab put the token back; the syncing tab restores the rest.
      if (this._leader) this._afterClear();
      return;
    }
    if (key === LEASE_KEY) {
      this._tabs?.check();
      return;
    }
    if (key === STORAGE_KEYS.token) {
      if (e.newValue === this._token) return;
      if (e.newValue === null) {
        if (this._token) this._signOutLocally('logout');
        return;
      }
      // Signed in from another tab: adopt its session.
      if (this._leader) this._endSession();
      this._load();
      this._revokedFlag = false;
      this._error = null;
      if (this._leader && this._running) this._kick();
      this._updateStatus();
      return;
    }
    if (key === STORAGE_KEYS.state && !this._leader) {
      this._state = this._freshState(readJson(e.newValue) ?? {});
      return;
    }
    if (key === STORAGE_KEYS.conflicts) {
      // The syncing tab keeps what it logged and adds what a following tab logged.
      if (this._leader) this._adoptStoredConflicts();
      else this.conflicts = this._log.load().map((r) => this._withRestore(r));
      return;
    }
    if (!this._tracked.has(key) || e.newValue === e.oldValue) return;
    // Another tab wrote it: this tab's app has not seen that yet.
    this._noteForeignWrite(key, e.oldValue, e.newValue);
    if (this._leader) {
      const rec = this._takeTabEdit(key, e.newValue);
      this._tabEditHeard(key, e.oldValue);
      this._localEdit(key, e.newValue, e.oldValue, 'tab', rec?.updatedAt);
      this._postStatus(rec ? [rec.id] : []);
    } else {
      this._emit('change', { key, value: e.newValue, source: 'tab' });
    }
  }

  // ------------------------------------------------------------ status

  _touchSynced() {
    if (this.status === 'synced') {
      this._state.lastSyncedAt = this._now();
      this._saveState();
    }
    this._updateStatus();
  }

  _snapshot() {
    const snap = {
      status: this.status,
      pendingCount: this.pendingCount,
      lastSyncedAt: this.lastSyncedAt,
      error: this.error,
    };
    if (snap.status === 'synced' && !snap.lastSyncedAt && this._leader) {
      snap.lastSyncedAt = this._state.lastSyncedAt = this._now();
    }
    return snap;
  }

  _updateStatus() {
    const snap = this._snapshot();
    const text = JSON.stringify(snap);
    if (text === this._lastEmitted) return;
    this._lastEmitted = text;
    if (this._leader) this._tabs?.post({ type: 'status', snap, consumed: [] });
    this._emit('status', snap);
  }

  _clearTimer(name) {
    const t = this._timers[name];
    if (t) {
      clearTimeout(t);
      clearInterval(t);
    }
    this._timers[name] = null;
  }

  /** Runs `fn` after everything queued before it: one change at a time. */
  _serial(fn) {
    const run = this._chain.then(fn);
    this._chain = run.catch(() => {});
    return run;
  }
}

Object.assign(SyncManager.prototype, reconcile, serverWrites, sending, following);
