// sync-manager.js: keeps chosen localStorage keys identical across a person's
// devices through an alternassist-sync Worker. Plain ES module, no
// dependencies: runs in a browser tab and in an Electron renderer.
//
//   import { SyncManager } from './sync-manager.js';
//   const sync = new SyncManager({ apiBase: 'https://sync.example.workers.dev/api' });
//   sync.on('change', ({ key, value, source }) => render());
//   if (!sync.signedIn) await sync.login(email, password);
//   await sync.start();
//
// The app keeps using localStorage.setItem/removeItem: writes to tracked keys
// are noticed by a hook on the storage object, queued (persisted in storage,
// so a crash or a closed window loses nothing) and sent over a WebSocket, or
// over REST while the socket cannot connect. Remote changes are written
// straight into storage (never echoed back) and announced as `change` events.
//
// Promises (DESIGN.md, "The client's promises"): local data is never deleted
// by signing out, stopping or an outage; on a first sign-in local and account
// data are merged, never blindly overwritten; `status` is never 'synced' while
// an edit is unacknowledged.

export const DEFAULT_KEYS = Object.freeze([
  'kanban-projects',
  'kanban-columns',
  'outstanding-payments',
  'alternatone-payments',
  'accountingTransactions',
  'cue-tracker-sessions',
  'estimates',
]);

/** Storage keys the manager itself uses (never tracked). */
export const STORAGE_KEYS = Object.freeze({
  token: 'sync-token',
  state: 'sync-state',
  queue: 'sync-queue',
});

const WS_PROTOCOL = 'alternassist-sync.v1';
const PING_FRAME = '{"type":"ping"}'; // exact text: answered by the runtime itself
const CLOSE_REVOKED = 4001;
// The server refuses frames over 1 MiB; bigger values go over REST PUT.
const MAX_FRAME_BYTES = 1024 * 1024 - 4096;
const MAX_BATCH_KEYS = 64;
const MAX_BATCH_BYTES = 4 * 1024 * 1024;
const MAX_CONFLICTS = 50;

// ------------------------------------------------------------------ helpers

/**
 * Delay before reconnect attempt `attempt` (0-based): exponential growth
 * capped at `maxMs`, with "equal jitter" so that many clients coming back at
 * once spread out: the result lies in [cap/2, cap].
 */
export function backoffDelay(attempt, { baseMs = 500, maxMs = 30000, random = Math.random } = {}) {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.max(0, Math.min(attempt, 30)));
  return Math.round(cap / 2 + random() * (cap / 2));
}

/** An element's edit time in ms (number or date string), or NaN. */
function timeOf(element) {
  const t = element?.updatedAt;
  if (typeof t === 'number') return t;
  if (typeof t === 'string') return Date.parse(t);
  return NaN;
}

/** JSON with sorted object keys, so equal content compares equal. */
function canonical(value) {
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
 * Three-way merge of JSON arrays of objects keyed by `id`. `base` is the
 * value both sides started from (null or undefined when unknown, as on a
 * first sign-in: the union). Elements added or removed on one side are added
 * or removed; an element changed on both sides takes the later `updatedAt`,
 * the remote one on a tie or without times; an element changed on one side
 * and removed on the other is kept (an edit is never silently dropped).
 * Order follows `remote`, with local additions after their local predecessor.
 *
 * Returns the merged JSON text (exactly `remote` or `local` when it equals
 * one of them), or null when the values are not both such arrays.
 */
export function mergeById(base, local, remote) {
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
  const pick = (id) => {
    const b = bMap.get(id);
    const l = lMap.get(id);
    const r = rMap.get(id);
    if (l && r) {
      if (same(l, r) || (b && same(l, b))) return r;
      if (b && same(r, b)) return l;
      return timeOf(l) > timeOf(r) ? l : r;
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
  if (text === canonical(R)) return remote;
  if (text === canonical(L)) return local;
  return JSON.stringify(merged);
}

/** Latest `updatedAt` found in a JSON value (object or array of objects), or null. */
function inferUpdatedAt(text) {
  try {
    const v = JSON.parse(text);
    const times = (Array.isArray(v) ? v : [v]).map(timeOf).filter(Number.isFinite);
    return times.length ? Math.max(...times) : null;
  } catch {
    return null;
  }
}

/** Short non-cryptographic fingerprint (FNV-1a, 32 bits) plus length. */
function fingerprint(text) {
  if (text === null || text === undefined) return 'deleted';
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return `${h.toString(16)}.${text.length}`;
}

function utf8Length(text) {
  if (text.length * 3 < MAX_FRAME_BYTES) return text.length; // surely small enough
  return new TextEncoder().encode(text).length;
}

function readJson(text) {
  if (typeof text !== 'string') return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function guessDeviceName(nav) {
  const ua = nav?.userAgent ?? '';
  if (/Electron/.test(ua)) return 'Alternassist desktop';
  const browser = /Edg\//.test(ua)
    ? 'Edge'
    : /Firefox\//.test(ua)
      ? 'Firefox'
      : /Chrom(e|ium)\//.test(ua)
        ? 'Chrome'
        : /Safari\//.test(ua)
          ? 'Safari'
          : 'Browser';
  const os = /Mac OS X/.test(ua)
    ? 'macOS'
    : /Windows/.test(ua)
      ? 'Windows'
      : /Android/.test(ua)
        ? 'Android'
        : /iPhone|iPad/.test(ua)
          ? 'iOS'
          : /Linux/.test(ua)
            ? 'Linux'
            : '';
  return os ? `${browser} on ${os}` : browser;
}

/** An error from the server or the network. */
export class SyncError extends Error {
  constructor(message, { status = 0, code = 'network', retryAfter = null } = {}) {
    super(message);
    this.name = 'SyncError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
  get network() {
    return this.code === 'network';
  }
}

// ------------------------------------------------------------ storage hook

// Storage objects of the browser turn any own property into a stored item
// (even through defineProperty), so for them the prototype is patched once
// and dispatches on `this`; plain objects (tests, custom stores) get own
// properties instead.
const protoHooks = new Map(); // storage object -> manager
let protoOriginals = null;

function installHook(storage, manager) {
  const StorageClass = globalThis.Storage;
  if (StorageClass && storage instanceof StorageClass) {
    const proto = StorageClass.prototype;
    if (!protoOriginals) {
      const setItem = proto.setItem;
      const removeItem = proto.removeItem;
      protoOriginals = { setItem, removeItem };
      proto.setItem = function (key, value) {
        const m = protoHooks.get(this);
        return m ? m._hookedSet(key, value) : setItem.call(this, key, value);
      };
      proto.removeItem = function (key) {
        const m = protoHooks.get(this);
        return m ? m._hookedRemove(key) : removeItem.call(this, key);
      };
    }
    if (protoHooks.has(storage)) {
      throw new Error('another SyncManager already tracks this storage object; destroy() it first');
    }
    protoHooks.set(storage, manager);
    const { setItem, removeItem } = protoOriginals;
    return {
      setItem: (k, v) => setItem.call(storage, k, v),
      removeItem: (k) => removeItem.call(storage, k),
      uninstall: () => protoHooks.delete(storage),
    };
  }
  if (storage.__syncManager) {
    throw new Error('another SyncManager already tracks this storage object; destroy() it first');
  }
  const own = {
    setItem: Object.getOwnPropertyDescriptor(storage, 'setItem'),
    removeItem: Object.getOwnPropertyDescriptor(storage, 'removeItem'),
  };
  const setItem = storage.setItem.bind(storage);
  const removeItem = storage.removeItem.bind(storage);
  const hide = (name, value) =>
    Object.defineProperty(storage, name, { value, configurable: true, writable: true, enumerable: false });
  hide('setItem', (k, v) => manager._hookedSet(k, v));
  hide('removeItem', (k) => manager._hookedRemove(k));
  hide('__syncManager', manager);
  return {
    setItem,
    removeItem,
    uninstall: () => {
      for (const name of ['setItem', 'removeItem']) {
        if (own[name]) Object.defineProperty(storage, name, own[name]);
        else delete storage[name];
      }
      delete storage.__syncManager;
    },
  };
}

// ---------------------------------------------------------------- manager

/**
 * A queued edit, one per key (the value itself is read from storage when it
 * is sent, so the queue does not copy the data):
 *   key, requestId (new for every edit: a retried send is applied once),
 *   updatedAt (edit time, ms), baseVersion (server version the edit was made
 *   on; absent: unknown), base (the value at baseVersion, for three-way
 *   merges), sent (fingerprint of the last value sent), remote (a server
 *   change not yet reconciled with this edit: {value, version, ...}).
 */
export class SyncManager {
  /**
   * @param {object} [options]
   * @param {string} [options.apiBase='/api'] the Worker's API, absolute or relative to the page
   * @param {string[]} [options.keys] tracked localStorage keys
   * @param {Storage} [options.storage=localStorage] anything with getItem/setItem/removeItem/key/length
   * @param {boolean} [options.live=true] WebSocket live mode (else REST polling only)
   * @param {number} [options.autoSyncMs=60000] REST polling period when not live
   * @param {string} [options.deviceName] name shown in the device list
   * @param {Function} [options.fetch] transport injection (tests): fetch
   * @param {Function} [options.WebSocket] transport injection (tests): WebSocket class
   * @param {EventTarget} [options.window] where online/offline/storage events come from
   * @param {object} [options.navigator] for navigator.onLine and navigator.locks
   * @param {string} [options.baseUrl] resolves a relative apiBase (default: location.href)
   * @param {boolean|string} [options.lock] one syncing tab per browser through the Web Locks API
   *   (default: when storage is this window's localStorage and locks exist); or a lock name
   * @param {number} [options.pingMs=15000] heartbeat period
   * @param {number} [options.deadMs=30000] silence after which the socket counts as dead
   * @param {number} [options.connectTimeoutMs=10000] for a socket to open, and again to catch up
   * @param {number} [options.requestTimeoutMs=30000] for one REST request
   * @param {number} [options.retryMs=2000] pause before resending writes the server refused for now (rate_limited, unavailable)
   * @param {{baseMs:number,maxMs:number}} [options.backoff] reconnect delays
   * @param {Function} [options.now=Date.now]
   * @param {Function} [options.random=Math.random]
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
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30000;
    this.backoff = { baseMs: 500, maxMs: 30000, ...options.backoff };
    this._fetch = options.fetch ?? (g.fetch ? g.fetch.bind(g) : null);
    this._WebSocket = options.WebSocket ?? g.WebSocket ?? null;
    this._window = options.window ?? (typeof window !== 'undefined' ? window : null);
    this._navigator = options.navigator ?? g.navigator ?? null;
    this._baseUrl = options.baseUrl ?? g.location?.href ?? undefined;
    this._now = options.now ?? Date.now;
    this._random = options.random ?? Math.random;
    this.deviceName = options.deviceName ?? guessDeviceName(this._navigator);

    const internal = new Set(Object.values(STORAGE_KEYS));
    this._tracked = new Set(this.keys.filter((k) => !internal.has(k)));
    this._listeners = new Map();
    this._chain = Promise.resolve();
    this._inflight = new Map(); // requestId -> what was sent
    this._timers = { reconnect: null, heartbeat: null, poll: null, flush: null, retry: null };
    this._ws = null;
    this._link = 'down'; // 'down' | 'live' (socket caught up) | 'rest' (last REST sync worked)
    this._connecting = false;
    this._catchingUp = false;
    this._unreachable = false;
    this._busy = 0;
    this._attempt = 0;
    this._running = false;
    this._wantRunning = false;
    this._userPolling = false;
    this._error = null;
    this._revokedFlag = false;
    this._online = this._navigator?.onLine ?? true;
    this._lastEmitted = '';
    this.conflicts = [];
    /** Devices connected right now, from the server's presence frames: [{deviceId, name}]. */
    this.onlineDevices = [];
    // Keys whose server state a restore or import is changing right now:
    // their change frames wait here until the request's answer is in.
    this._holds = new Set();

    const lock = options.lock ?? 'auto';
    const canLock = !!this._navigator?.locks?.request && typeof g.BroadcastChannel === 'function';
    const ownStorage = typeof window !== 'undefined' && this.storage === g.localStorage;
    this._lockName =
      lock === false || !canLock || (lock === 'auto' && !ownStorage)
        ? null
        : typeof lock === 'string' && lock !== 'auto'
          ? lock
          : `alternassist-sync ${this._resolve('')}`;
    this._leader = !this._lockName; // without a lock every instance syncs for itself
    this._lockGen = 0;
    if (this._lockName) {
      // The syncing tab tells the others its status through this channel.
      this._channel = new g.BroadcastChannel(this._lockName);
      this._channel.onmessage = (e) => this._channelMessage(e.data);
      this._channel.postMessage({ type: 'status?' });
    }

    this._raw = installHook(this.storage, this);
    this._load();
    this._onWindowEvent = (e) => this._windowEvent(e);
    for (const type of ['online', 'offline', 'storage']) {
      this._window?.addEventListener?.(type, this._onWindowEvent);
    }
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
  get lastSyncedAt() {
    if (!this._leader && this._mirror) return this._mirror.lastSyncedAt ?? null;
    return this._state.lastSyncedAt ?? null;
  }
  /** Edits not yet acknowledged by the server. */
  get pendingCount() {
    if (!this._leader && this._mirror) return this._mirror.pendingCount ?? 0;
    return this._queue.size;
  }
  /** The last error that stopped syncing, {code, message}, or null. */
  get error() {
    if (!this._leader && this._mirror) return this._mirror.error ?? null;
    return this._error;
  }
  /** 'synced' | 'syncing' | 'offline' | 'error' */
  get status() {
    if (!this._token) return this._revokedFlag ? 'error' : 'offline';
    if (!this._leader) {
      // Another tab of this browser syncs and tells its status.
      if (this._mirror) return this._mirror.status;
      return this._wantRunning && this._online ? 'syncing' : 'offline';
    }
    if (!this._online || !this._running) return 'offline';
    if (this._error || [...this._queue.values()].some((e) => e.failed)) return 'error';
    if (this._link === 'down') {
      return (this._connecting || this._busy > 0) && !this._unreachable ? 'syncing' : 'offline';
    }
    const idle = this._queue.size === 0 && this._inflight.size === 0 && this._busy === 0 && !this._catchingUp;
    return idle ? 'synced' : 'syncing';
  }

  /** Subscribes to 'status', 'change', 'conflict', 'signedout', 'presence' or 'error'; returns an unsubscribe function. */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }
  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
  }
  _emit(event, detail) {
    for (const fn of [...(this._listeners.get(event) ?? [])]) {
      try {
        fn(detail);
      } catch (err) {
        console.error(`sync: a '${event}' listener failed`, err);
      }
    }
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

  register(email, password, deviceName = this.deviceName) {
    return this._auth('register', email, password, deviceName);
  }
  login(email, password, deviceName = this.deviceName) {
    return this._auth('login', email, password, deviceName);
  }

  async _auth(kind, email, password, deviceName) {
    const res = await this._request('POST', `/auth/${kind}`, { email, password, deviceName }, { auth: false });
    if (this._token && this._leader) this._endSession();
    this._token = res.token;
    this._revokedFlag = false;
    this._error = null;
    this._state = this._freshState({ userId: res.userId, deviceId: res.deviceId, email });
    this._saveState(); // before the token: another tab reacts to the token
    this._setRaw(STORAGE_KEYS.token, res.token);
    if (this._leader) {
      this._stripQueue();
      if (this._running) this._kick();
      else if (this._wantRunning) this._run();
    }
    this._updateStatus();
    return { userId: res.userId, deviceId: res.deviceId };
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

  // ------------------------------------- history, restore, export, devices

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
  }

  /** The account's data as an export document: {format, formatVersion, exportedAt, data, versions}. */
  async exportData() {
    const { success: _, ...doc } = await this._request('GET', '/export');
    return doc;
  }

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
  }

  /** Waits (a bounded time) until no edit of `keys` is queued or in flight. */
  async _drain(keys) {
    const busy = () =>
      keys.some((k) => this._inflightFor(k) || (this._queue.has(k) && !this._queue.get(k).failed));
    if (!busy() || !this._canConnect()) return;
    this._flushSoon();
    const end = Date.now() + Math.min(this.requestTimeoutMs, 10000);
    while (busy() && this._canConnect() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  }

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
    this._saveQueue();
    this._saveState();
    this._flushSoon();
    return adopted;
  }

  // --------------------------------------------------------- start and stop

  /**
   * Starts syncing: a full sync, then live mode over the WebSocket (REST
   * polling every `autoSyncMs` while the socket cannot connect). Resolves
   * after the first attempt (synced, or failed: see `status`).
   */
  start() {
    this._wantRunning = true;
    if (!this._leader) {
      this._requestLock();
      this._updateStatus();
      return Promise.resolve();
    }
    return this._run();
  }

  /** Stops syncing (local edits keep being queued for the next start). */
  stop() {
    this._wantRunning = false;
    this._running = false;
    this._closeSocket();
    for (const name of Object.keys(this._timers)) this._clearTimer(name);
    this._userPolling = false;
    this._link = 'down';
    this._connecting = false;
    this._releaseLock?.();
    this._releaseLock = null;
    this._lockGen++;
    if (this._lockName) this._leader = false;
    this._updateStatus();
  }

  /** Stops, removes the storage hook and the window listeners. */
  destroy() {
    this.stop();
    this._raw.uninstall();
    for (const type of ['online', 'offline', 'storage']) {
      this._window?.removeEventListener?.(type, this._onWindowEvent);
    }
    this._listeners.clear();
    this._channel?.close();
  }

  _run() {
    if (!this._running) {
      this._running = true;
      this._online = this._navigator?.onLine ?? true;
      this._scanForDrift();
      if (!this.live) this._startPolling();
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

  _requestLock() {
    if (this._lockPending === this._lockGen || !this._lockName) return;
    const gen = (this._lockPending = this._lockGen);
    this._navigator.locks
      .request(this._lockName, () => {
        if (gen !== this._lockGen) return undefined; // stopped meanwhile
        return new Promise((release) => {
          this._releaseLock = release;
          this._becomeLeader();
        });
      })
      .catch((err) => console.warn('sync: tab lock failed', err));
  }

  _channelMessage(msg) {
    if (!msg || typeof msg !== 'object') return;
    if (msg.type === 'status?' && this._leader && this._lastEmitted) {
      this._channel.postMessage({ type: 'status', snap: JSON.parse(this._lastEmitted) });
    } else if (msg.type === 'status' && !this._leader) {
      this._mirror = msg.snap;
      this._updateStatus();
    }
  }

  _becomeLeader() {
    this._leader = true;
    this._mirror = null;
    this._load(); // the previous leader tab may have left newer state
    if (this._wantRunning) this._run();
  }

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
    // fingerprint of that value, to notice edits made while nothing watched.
    return { cursor: 0, versions: {}, synced: {}, initialized: false, lastSyncedAt: null, ...extra };
  }

  _load() {
    this._token = this.storage.getItem(STORAGE_KEYS.token);
    const s = readJson(this.storage.getItem(STORAGE_KEYS.state));
    this._state = this._freshState(s && typeof s === 'object' ? s : {});
    for (const f of ['versions', 'synced']) {
      if (typeof this._state[f] !== 'object' || !this._state[f]) this._state[f] = {};
    }
    const q = readJson(this.storage.getItem(STORAGE_KEYS.queue));
    this._queue = new Map(
      (Array.isArray(q) ? q : [])
        .filter((e) => e && typeof e.key === 'string' && this._tracked.has(e.key))
        .map((e) => [e.key, e]),
    );
  }

  _setRaw(key, value) {
    try {
      if (value === null) this._raw.removeItem(key);
      else this._raw.setItem(key, value);
      return true;
    } catch (err) {
      this._error = { code: 'storage', message: `could not write ${key} to storage: ${err.message}` };
      this._emit('error', this._error);
      return false;
    }
  }
  _saveState() {
    this._setRaw(STORAGE_KEYS.state, JSON.stringify(this._state));
  }
  _saveQueue() {
    this._setRaw(STORAGE_KEYS.queue, this._queue.size ? JSON.stringify([...this._queue.values()]) : null);
  }

  // ---------------------------------------------------- local edits

  _hookedSet(key, value) {
    key = String(key);
    value = String(value);
    if (!this._tracked.has(key)) return this._raw.setItem(key, value);
    const old = this.storage.getItem(key);
    this._raw.setItem(key, value); // may throw (quota): then nothing is queued
    if (old !== value) this._localEdit(key, value, old, 'local');
    return undefined;
  }

  _hookedRemove(key) {
    key = String(key);
    if (!this._tracked.has(key)) return this._raw.removeItem(key);
    const old = this.storage.getItem(key);
    this._raw.removeItem(key);
    if (old !== null) this._localEdit(key, null, old, 'local');
    return undefined;
  }

  _localEdit(key, value, old, source) {
    if (!this._leader) {
      // Another tab syncs: it learns of this edit through its `storage` event.
      if (source !== 'local') this._emit('change', { key, value, source });
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
    entry.updatedAt = this._now();
    entry.requestId = this._newId();
    delete entry.failed; // a new edit gets a new chance
    // Back to the synced value before anything was sent: nothing to do.
    if ('base' in entry && entry.base === value && !entry.sent && !entry.remote && !this._inflightFor(key)) {
      this._queue.delete(key);
    }
    this._saveQueue();
    this._emit('change', { key, value, source });
    this._updateStatus();
    this._flushSoon();
  }

  /** The server holds `value` for `key` at `version`. */
  _markSynced(key, version, value) {
    if (version !== undefined) this._state.versions[key] = version;
    this._state.synced[key] = fingerprint(value);
  }

  /**
   * Queues tracked keys whose stored value differs from the last synced one
   * without a queued edit: written before this tab took over syncing (or
   * before the library loaded, or by assigning localStorage properties).
   */
  _scanForDrift() {
    if (!this._state.initialized) return;
    let found = false;
    for (const key of this._tracked) {
      if (this._queue.has(key)) continue;
      const value = this.storage.getItem(key);
      if (fingerprint(value) === (this._state.synced[key] ?? fingerprint(null))) continue;
      const entry = { key, requestId: this._newId(), updatedAt: this._now() };
      if (this._state.versions[key] !== undefined) entry.baseVersion = this._state.versions[key];
      this._queue.set(key, entry);
      found = true;
    }
    if (found) this._saveQueue();
  }

  _newId() {
    const rnd = globalThis.crypto?.randomUUID?.() ?? `${this._random().toString(36).slice(2)}${this._random().toString(36).slice(2)}`;
    return `${this._now().toString(36)}-${rnd}`;
  }

  _inflightFor(key) {
    for (const s of this._inflight.values()) if (s.key === key) return s;
    return null;
  }

  /** Drops what a queue entry knew of a session (on sign-out or a new account). */
  _stripQueue() {
    for (const e of this._queue.values()) {
      for (const f of ['base', 'baseVersion', 'sent', 'remote']) delete e[f];
    }
    this._inflight.clear();
    this._saveQueue();
  }

  // ---------------------------------------------------- remote changes

  /** Writes a server value into storage without echoing it back. */
  _applyRemote(key, remote, source = 'remote') {
    const current = this.storage.getItem(key);
    if (current === remote.value) return this._markSynced(key, remote.version, remote.value);
    const written = this._setRaw(key, remote.value);
    this._markSynced(key, remote.version, written ? remote.value : current);
    if (written) this._emit('change', { key, value: remote.value, source });
  }

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
    if (!entry) return this._applyRemote(key, remote);
    if (this._inflightFor(key)) {
      // Our write is on its way: reconcile when its answer arrives.
      if (!entry.remote || entry.remote.version < remote.version) entry.remote = remote;
      this._saveQueue();
      return;
    }
    this._rebase(entry, remote);
  }

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
    const local = this.storage.getItem(key);
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
      this._saveQueue();
      this._saveState();
      return;
    }
    const merged = mergeById(entry.base, local, remote.value);
    if (merged === null) {
      entry.remote = remote;
      this._saveQueue();
      return;
    }
    this._adoptMerge(entry, local, merged, remote);
  }

  /** Takes a merge of `local` with the server's `remote` as the new state. */
  _adoptMerge(entry, local, merged, remote) {
    const { key } = entry;
    this._markSynced(key, remote.version, remote.value);
    if (merged === remote.value) {
      this._queue.delete(key);
      this._applyRemote(key, remote);
    } else {
      if (merged !== local && this._setRaw(key, merged)) {
        this._emit('change', { key, value: merged, source: 'merge' });
      }
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
    this._conflict({ key, resolution: 'merged', winner: 'both', kept: merged, lost: undefined, version: remote.version });
    this._saveQueue();
    this._saveState();
  }

  // --------------------------------------------------- acknowledgements

  /** The server's answer to one sent edit: `version` and maybe a conflict. */
  async _onAck(sent, version, conflict) {
    const { key } = sent;
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
    this._saveQueue();
    this._saveState();
  }

  /** Our write won by last-write-wins over a value we had not seen merged in. */
  _afterWonConflict(sent, version, conflict, overwritten) {
    const { key } = sent;
    if (overwritten && overwritten.value !== null) {
      const local = this.storage.getItem(key);
      const merged = mergeById(sent.base, local, overwritten.value);
      if (merged !== null) {
        if (merged !== local) {
          const entry = this._queue.get(key) ?? { key };
          this._setRaw(key, merged);
          this._emit('change', { key, value: merged, source: 'merge' });
          Object.assign(entry, {
            base: sent.value,
            baseVersion: version,
            requestId: this._newId(),
            updatedAt: this._now(),
          });
          this._queue.set(key, entry);
        }
        this._conflict({ key, resolution: 'merged', winner: 'both', kept: merged, lost: undefined, version, server: conflict });
        return;
      }
    }
    const lost = overwritten ? overwritten.value : undefined;
    this._conflict({ key, resolution: 'last-write-wins', winner: 'local', kept: sent.value, lost, version, server: conflict });
  }

  /** Our write lost by last-write-wins: take the server's value (or merge). */
  async _onLost(sent, conflict) {
    const { key } = sent;
    const remote = await this._remoteAt(key, conflict.version);
    // Cannot learn the winner now: the edit stays queued and is tried again later.
    if (!remote) return;
    const entry = this._queue.get(key);
    delete entry?.heldUntil;
    if (!entry) return this._applyRemote(key, remote);
    const local = this.storage.getItem(key);
    const merged = mergeById(entry.base, local, remote.value);
    if (merged !== null) return this._adoptMerge(entry, local, merged, remote);
    if (entry.requestId !== sent.requestId) {
      // Edited again since: that newer edit is judged on its own.
      entry.remote = remote;
      this._saveQueue();
      return;
    }
    this._queue.delete(key);
    this._applyRemote(key, remote);
    this._conflict({ key, resolution: 'last-write-wins', winner: 'remote', kept: remote.value, lost: local, version: remote.version, server: conflict });
    this._saveQueue();
    this._saveState();
  }

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
      const local = this.storage.getItem(key);
      const merged = mergeById(sent.value, local, remote.value);
      if (merged !== null) return this._adoptMerge(entry, local, merged, remote);
      entry.remote = remote; // not mergeable any more: judged when it is sent
      this._saveQueue();
      return;
    }
    if (entry) this._queue.delete(key);
    this._applyRemote(key, remote, 'merge');
    this._conflict({ key, resolution: 'merged', winner: 'both', kept: remote.value, lost: undefined, version: remote.version, server: conflict });
    this._saveQueue();
    this._saveState();
  }

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
      const entry = this._queue.get(key);
      if (entry) entry.heldUntil = this._now() + this.retryMs;
      this._retryLater(this.retryMs);
    }
    return remote;
  }

  /** The key's value at `version` or later, from the server. */
  async _fetchKey(key, version) {
    return (await this._fetchKeys({ [key]: version }))[key] ?? null;
  }

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
  }

  _conflict(info) {
    const record = { id: this._newId(), at: this._now(), ...info };
    if (info.lost !== undefined) {
      record.restore = () => this._restore(info.key, info.lost);
    }
    this.conflicts.unshift(record);
    this.conflicts.length = Math.min(this.conflicts.length, MAX_CONFLICTS);
    this._emit('conflict', record);
  }

  /** Makes a conflict's losing value current again (a new edit; the other goes to history). */
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

  async _request(method, path, body, { auth = true, raw = false } = {}) {
    if (!this._fetch) throw new SyncError('no fetch available');
    const headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const token = this._token;
    if (auth) {
      if (!token) throw new SyncError('not signed in', { status: 401, code: 'unauthorized' });
      headers.authorization = `Bearer ${token}`;
    }
    this._busy++;
    this._updateStatus();
    try {
      let res;
      try {
        res = await this._fetch(this._resolve(path), {
          method,
          headers,
          body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
          // A request hanging on a dead network must not hold up the rest.
          signal: globalThis.AbortSignal?.timeout?.(this.requestTimeoutMs),
        });
      } catch (err) {
        this._unreachable = true;
        throw new SyncError(`cannot reach the sync server: ${err.message}`);
      }
      this._unreachable = false;
      let json = null;
      try {
        json = await res.json();
      } catch {
        json = null;
      }
      if (!res.ok || !json || json.success === false) {
        const e = json?.error ?? {};
        const retryAfter = Number(res.headers?.get?.('retry-after')) || null;
        const err = new SyncError(e.message ?? `HTTP ${res.status}`, {
          status: res.status,
          code: e.code ?? 'http',
          retryAfter,
        });
        if (res.status === 401 && auth && token === this._token && !this._loggingOut) this._revoked();
        throw err;
      }
      return json;
    } finally {
      this._busy--;
      this._updateStatus();
    }
  }

  /** First sync of this device with the account: merge, never overwrite. */
  async _initialSync() {
    const res = await this._request('GET', '/sync');
    const st = this._state;
    st.versions = {};
    st.synced = {};
    const data = res.data ?? {};
    for (const key of this._tracked) {
      const local = this.storage.getItem(key);
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
      const merged = mergeById(null, local, server);
      if (merged !== null) {
        this._adoptMerge({ ...entry, base: null }, local, merged, { value: server, version });
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
    this._saveQueue();
    this._saveState();
  }

  async _syncDown() {
    const since = this._state.cursor;
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
  }

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
  }

  _snapshot(entry, via) {
    const value = this.storage.getItem(entry.key);
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
  }

  async _syncUp() {
    for (let round = 0; round < 8; round++) {
      const ready = this._sendable();
      if (!ready.length) break;
      const batch = [];
      let bytes = 0;
      for (const entry of ready) {
        const size = (this.storage.getItem(entry.key) ?? '').length * 2 + 200;
        if (batch.length && (batch.length >= MAX_BATCH_KEYS || bytes + size > MAX_BATCH_BYTES)) break;
        batch.push(this._snapshot(entry, 'rest'));
        bytes += size;
      }
      this._saveQueue();
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
  }

  /** The server refused these writes for good: keep the local data, stop retrying. */
  _rejectWrites(sents, err) {
    for (const s of sents) {
      const entry = this._queue.get(s.key);
      if (entry && entry.requestId === s.requestId) entry.failed = err.code;
    }
    this._saveQueue();
    this._error = { code: err.code, message: err.message };
    this._emit('error', this._error);
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
    if (!this._canConnect() || this._ws || this._connecting) return;
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
    let ws;
    try {
      ws = new this._WebSocket(this._wsUrl(), [WS_PROTOCOL, `bearer.${this._token}`]);
    } catch (err) {
      this._connecting = false;
      this._socketGone(null, 1006, false);
      return;
    }
    this._ws = ws;
    this._wsOpened = false;
    // Not open, or not caught up, within connectTimeoutMs: try a new socket.
    let connectTimer = setTimeout(() => {
      if (!this._wsOpened && this._ws === ws) this._dropSocket(ws);
    }, this.connectTimeoutMs);
    ws.onopen = () => {
      if (this._ws !== ws) return;
      clearTimeout(connectTimer);
      connectTimer = setTimeout(() => {
        if (this._catchingUp && this._ws === ws) this._dropSocket(ws);
      }, this.connectTimeoutMs);
      this._wsOpened = true;
      this._connecting = false;
      this._catchingUp = true;
      this._unreachable = false;
      this._lastFrameAt = this._now();
      this._helloSince = this._state.cursor;
      this._send({ type: 'hello', since: this._helloSince });
      this._startHeartbeat(ws);
      this._updateStatus();
    };
    ws.onmessage = (ev) => {
      if (this._ws !== ws) return;
      this._lastFrameAt = this._now();
      const msg = readJson(typeof ev.data === 'string' ? ev.data : String(ev.data));
      if (!msg || typeof msg.type !== 'string') return;
      this._serial(() => this._onFrame(msg, ws)).catch((err) => this._transportFailure(err));
    };
    ws.onerror = () => {};
    ws.onclose = (ev) => {
      clearTimeout(connectTimer);
      if (this._ws !== ws) return;
      this._socketGone(ws, ev.code, this._wsOpened);
    };
  }

  _send(msg) {
    try {
      this._ws?.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
      return true;
    } catch {
      return false;
    }
  }

  _startHeartbeat(ws) {
    this._clearTimer('heartbeat');
    let lastPing = this._now();
    const tick = Math.max(50, Math.min(this.pingMs, this.deadMs) / 3);
    this._timers.heartbeat = setInterval(() => {
      if (this._ws !== ws) return this._clearTimer('heartbeat');
      const now = this._now();
      if (now - this._lastFrameAt > this.deadMs) return this._dropSocket(ws);
      if (now - lastPing >= this.pingMs) {
        lastPing = now;
        this._send(PING_FRAME);
      }
    }, tick);
  }

  /** Gives up on a socket that went silent or never opened. */
  _dropSocket(ws) {
    if (this._ws !== ws) return;
    const opened = this._wsOpened;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try {
      ws.close();
    } catch {
      /* already closed */
    }
    this._unreachable = true;
    this._socketGone(ws, 1006, opened);
  }

  _closeSocket() {
    const ws = this._ws;
    this._ws = null;
    this._clearTimer('heartbeat');
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close(1000, 'bye');
      } catch {
        /* already closed */
      }
    }
    for (const [id, s] of this._inflight) if (s.via === 'ws') this._inflight.delete(id);
    if (this._link === 'live') this._link = 'down';
    this._catchingUp = false;
  }

  _socketGone(ws, code, opened) {
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

  async _onFrame(msg, ws) {
    switch (msg.type) {
      case 'changes':
        // An answer to an earlier socket's hello: the current one asks again.
        if (ws === this._ws) await this._onCatchUp(msg);
        break;
      case 'change':
        this._receiveRemote(msg);
        if (msg.version > this._state.cursor) this._state.cursor = msg.version;
        this._saveState();
        this._touchSynced();
        break;
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
      default: // 'pong' and anything newer: the heartbeat already noted it
    }
    this._updateStatus();
  }

  async _onCatchUp(msg) {
    const since = this._helloSince ?? this._state.cursor;
    const reset = since > msg.cursor; // the server's data was reset or restored
    if (reset) {
      this._state.versions = {};
      this._state.synced = {};
    }
    for (const c of msg.changes ?? []) this._receiveRemote(c);
    this._state.cursor = reset ? msg.cursor : Math.max(this._state.cursor, msg.cursor);
    this._saveState();
    this._catchingUp = false;
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
      if (this._catchingUp) this._dropSocket(this._ws);
      return;
    }
    this._inflight.delete(msg.requestId);
    const entry = this._queue.get(sent.key);
    if (msg.code === 'frame_too_large' && entry) {
      // Too big for a frame: the same write over REST PUT.
      this._serial(() => this._restPut(entry)).catch((err) => this._transportFailure(err));
    } else if (msg.code === 'rate_limited' || msg.code === 'unavailable' || msg.code === 'internal') {
      const wait = msg.code === 'rate_limited' ? this.retryMs : this.retryMs * 2.5;
      if (entry) entry.heldUntil = this._now() + wait; // other acks must not resend it sooner
      this._retryLater(wait);
    } else {
      this._rejectWrites([sent], new SyncError(msg.message ?? msg.code, { code: msg.code }));
    }
  }

  _retryLater(ms) {
    if (this._timers.retry) return;
    this._timers.retry = setTimeout(() => {
      this._timers.retry = null;
      this._flushSoon();
    }, ms);
  }

  async _restPut(entry) {
    if (!this._queue.has(entry.key) || this._inflightFor(entry.key)) return;
    const s = this._snapshot(entry, 'rest');
    this._saveQueue();
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
  }

  /** Sends queued edits now, on the socket if it is live, else over REST. */
  _flush() {
    this._clearTimer('flush');
    if (!this._canConnect()) return;
    if (this._link !== 'live') {
      if (this._link === 'rest' || !this.live) this._restSync(true);
      return;
    }
    for (const entry of this._sendable()) {
      const value = this.storage.getItem(entry.key);
      const frame = { type: value === null ? 'delete' : 'put', key: entry.key };
      if (value !== null) frame.value = value;
      if (entry.baseVersion !== undefined) frame.baseVersion = entry.baseVersion;
      frame.updatedAt = entry.updatedAt;
      frame.requestId = entry.requestId;
      const text = JSON.stringify(frame);
      if (utf8Length(text) > MAX_FRAME_BYTES) {
        this._serial(() => this._restPut(entry)).catch((err) => this._transportFailure(err));
        continue;
      }
      this._snapshot(entry, 'ws');
      if (!this._send(text)) this._inflight.delete(entry.requestId);
    }
    this._saveQueue();
    this._updateStatus();
  }

  _flushSoon() {
    if (this._timers.flush) return;
    this._timers.flush = setTimeout(() => this._flush(), 0);
  }

  // ----------------------------------------------------- REST fallback

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
        this._touchSynced();
      })
      .catch((err) => this._transportFailure(err))
      .finally(() => {
        this._restSyncRunning = false;
        this._updateStatus();
        if (this._link !== 'live') this._settle();
        if (this._restSyncAgain && this._link === 'rest' && this._canConnect() && this._queue.size) this._restSync(true);
      });
  }

  _startPolling() {
    if (this._timers.poll) return;
    this._timers.poll = setInterval(() => {
      if (this._canConnect() && this._link !== 'live') this._restSync();
      else if (this._userPolling && this._canConnect()) this._restSync();
    }, this.autoSyncMs);
  }

  _startFallback() {
    const polling = !!this._timers.poll;
    this._startPolling();
    if (!polling) this._restSync();
  }

  _stopFallback() {
    if (!this._userPolling && this.live) this._clearTimer('poll');
  }

  _transportFailure(err) {
    if (!(err instanceof SyncError)) {
      console.error('sync: unexpected failure', err);
      this._error = { code: 'internal', message: String(err?.message ?? err) };
    } else if (err.network) {
      if (this._link === 'rest') this._link = 'down';
    } else if (err.status === 401) {
      // handled by _revoked()
    } else if (err.code === 'rate_limited' || err.code === 'unavailable') {
      this._retryLater(err.retryAfter ? err.retryAfter * 1000 : this.retryMs * 2.5);
    } else {
      this._error = { code: err.code, message: err.message };
      this._emit('error', this._error);
    }
    this._updateStatus();
  }

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
    const email = this._state.email;
    this._state = this._freshState();
    if (this._leader || reason === 'logout') {
      this._setRaw(STORAGE_KEYS.token, null);
      this._saveState();
    }
    this._updateStatus();
    this._emit('signedout', { reason, email });
  }

  _endSession() {
    this._closeSocket();
    for (const name of ['reconnect', 'heartbeat', 'flush', 'retry']) this._clearTimer(name);
    if (!this._userPolling) this._clearTimer('poll');
    this._link = 'down';
    this._connecting = false;
    this._stripQueue();
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
    }
  }

  /** Another tab of this browser changed storage. */
  _storageEvent(e) {
    if (e.storageArea && e.storageArea !== this.storage) return;
    const { key } = e;
    if (key === null) return; // clear() elsewhere: not a deletion made by the user
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
    if (!this._tracked.has(key) || e.newValue === e.oldValue) return;
    if (this._leader) this._localEdit(key, e.newValue, e.oldValue, 'tab');
    else this._emit('change', { key, value: e.newValue, source: 'tab' });
  }

  // ------------------------------------------------------------ status

  _touchSynced() {
    if (this.status === 'synced') {
      this._state.lastSyncedAt = this._now();
      this._saveState();
    }
    this._updateStatus();
  }

  _updateStatus() {
    const snap = {
      status: this.status,
      pendingCount: this.pendingCount,
      lastSyncedAt: this.lastSyncedAt,
      error: this.error,
    };
    if (snap.status === 'synced' && !snap.lastSyncedAt) {
      snap.lastSyncedAt = this._state.lastSyncedAt = this._now();
    }
    const text = JSON.stringify(snap);
    if (text === this._lastEmitted) return;
    this._lastEmitted = text;
    if (this._leader && this._channel) this._channel.postMessage({ type: 'status', snap });
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

export default SyncManager;
