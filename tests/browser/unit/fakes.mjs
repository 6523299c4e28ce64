// Test doubles for the SyncManager unit tests: a storage object, and an
// in-memory server that speaks the Worker's REST and WebSocket contract
// (versions, fast-forward, three-way merge of arrays with ids,
// last-write-wins, idempotent requestIds, broadcast to the user's other
// sockets, close 4001 on logout; history and restore, export and import,
// the device list and revocation) through an injected `fetch` and
// `WebSocket` class.

import { SyncManager, mergeById } from '../../../client-demo/sync-manager.js';
import { applyPatch, diffRecords, joinRecords, patchFromWire, splitRecords } from '../../../client-demo/lib/records.js';

/** A record patch as the server sends it (upserts as objects), or null when either value is not a record list. */
function wirePatch(before, after) {
  const b = typeof before === 'string' ? splitRecords(before) : null;
  const a = typeof after === 'string' ? splitRecords(after) : null;
  if (!a || !b) return null;
  const p = diffRecords(b, a);
  const out = { upserts: p.upserts.map((u) => JSON.parse(u.text)), removed: p.removed };
  if (p.after.length) out.after = p.after;
  return out;
}

/**
 * Anything with getItem/setItem/removeItem/key/length works as storage.
 * `quota` (characters of keys and values, as browsers count localStorage)
 * makes setItem throw a QuotaExceededError like a full localStorage does.
 */
export class MemoryStorage {
  #items = new Map();
  #quota;
  constructor({ quota = Infinity } = {}) {
    this.#quota = quota;
  }
  get quota() {
    return this.#quota;
  }
  set quota(q) {
    this.#quota = q;
  }
  get length() {
    return this.#items.size;
  }
  key(i) {
    return [...this.#items.keys()][i] ?? null;
  }
  getItem(k) {
    return this.#items.has(String(k)) ? this.#items.get(String(k)) : null;
  }
  setItem(k, v) {
    k = String(k);
    v = String(v);
    let used = k.length + v.length;
    for (const [key, value] of this.#items) if (key !== k) used += key.length + value.length;
    if (used > this.quota) throw new DOMException(`Setting the value of '${k}' exceeded the quota.`, 'QuotaExceededError');
    this.#items.set(k, v);
  }
  removeItem(k) {
    this.#items.delete(String(k));
  }
  clear() {
    this.#items.clear();
  }
}

/**
 * Several tabs of one browser: one shared storage that each tab sees through
 * its own view and window; a write through one view fires a `storage` event
 * in every other tab (not in the writing one), as browsers do. `locks` is a
 * Web Locks stand-in (navigator.locks) shared by the tabs.
 */
export class FakeBrowser {
  constructor({ quota } = {}) {
    this.shared = new MemoryStorage({ quota });
    this.tabs = new Set();
    const held = new Map(); // name -> [{cb, resolve}] (the first holds it)
    const grant = (name) => {
      const q = held.get(name);
      if (!q?.length) return;
      const head = q[0];
      if (head.running) return;
      head.running = true;
      Promise.resolve()
        .then(() => head.cb({ name }))
        .then(head.resolve, head.reject)
        .finally(() => {
          q.shift();
          grant(name);
        });
    };
    this.locks = {
      request: (name, cb) =>
        new Promise((resolve, reject) => {
          if (!held.has(name)) held.set(name, []);
          held.get(name).push({ cb, resolve, reject });
          grant(name);
        }),
    };
  }

  /** A new tab: {storage, win, navigator, close()}. */
  tab({ locks = true } = {}) {
    const browser = this;
    const shared = this.shared;
    const win = new EventTarget();
    // eventDelayMs: how late storage events reach this tab (a browser delivers them on a later task).
    const tabRef = { win, eventDelayMs: 1 };
    const notify = (key, oldValue, newValue) => {
      for (const other of browser.tabs) {
        if (other === tabRef) continue;
        setTimeout(() => {
          if (!browser.tabs.has(other)) return;
          const ev = new Event('storage');
          Object.assign(ev, { key, oldValue, newValue, storageArea: other.storage });
          other.win.dispatchEvent(ev);
        }, other.eventDelayMs);
      }
    };
    tabRef.storage = {
      get length() {
        return shared.length;
      },
      key: (i) => shared.key(i),
      getItem: (k) => shared.getItem(k),
      setItem(k, v) {
        const old = shared.getItem(k);
        shared.setItem(k, v);
        if (old !== String(v)) notify(String(k), old, String(v));
      },
      removeItem(k) {
        const old = shared.getItem(k);
        shared.removeItem(k);
        if (old !== null) notify(String(k), old, null);
      },
      clear() {
        shared.clear();
        notify(null, null, null);
      },
    };
    tabRef.navigator = { onLine: true, userAgent: 'node', ...(locks && { locks: this.locks }) };
    tabRef.close = () => browser.tabs.delete(tabRef);
    this.tabs.add(tabRef);
    return tabRef;
  }
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns something truthy; fails after `timeoutMs`. */
export async function waitFor(fn, { timeoutMs = 3000, what = 'condition' } = {}) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await tick(5);
  }
}

let seq = 0;
const id = (p) => `${p}${++seq}`;

export class FakeServer {
  constructor({ now = Date.now, patches = process.env.FAKE_PATCHES === '1' } = {}) {
    this.now = now;
    this.patches = patches; // speaks record patches (issue 13) with sockets that say so in hello
    this.notRecords = new Set(); // keys whose patch frames are refused with not_records
    this.users = new Map(); // email -> {password, userId}
    this.tokens = new Map(); // token -> {userId, deviceId, revoked}
    this.data = new Map(); // userId -> {cursor, keys: Map, requests: Map, history: []}
    this.sockets = new Set();
    this.offline = false; // fetch throws, sockets cannot connect
    this.wsRefused = false; // sockets cannot connect, REST works
    this.silent = false; // open sockets get no answer at all (a dead link)
    this.holdAcks = false; // acks wait until release()
    this.rateLimitWrites = 0; // the next n socket writes are refused with rate_limited
    this.mergeArrays = true; // a conflict between two arrays of objects with ids is merged three-way, like the Worker
    this.muted = new Set(); // device ids whose sockets get no change frames (to make a writer miss a change)
    this.onRequest = null; // (method, path) => void or a promise the answer waits for, called as each REST request arrives
    this.held = [];
    this.failures = []; // [{method?, path? (RegExp), status, html?, retryAfter?}]: the next matching REST request gets this answer instead
    this.log = []; // every REST request and socket frame, for assertions
    const server = this;
    this.fetch = (url, init) => server.#fetch(url, init);
    this.WebSocket = class extends FakeSocket {
      constructor(url, protocols) {
        super(server, url, protocols);
      }
    };
  }

  // ------------------------------------------------------------- control

  /** Creates an account directly and returns a token for a new device. */
  seedUser(email, password = 'password1', deviceName = 'Seeded device') {
    const userId = id('user-');
    this.users.set(email, { password, userId });
    return this.#device(userId, deviceName);
  }

  /** The device id behind a token. */
  deviceOf(token) {
    return this.tokens.get(token).deviceId;
  }

  /** The sockets of the device behind `token` stop receiving change frames. */
  mute(token) {
    this.muted.add(this.deviceOf(token));
  }

  /** A write as another device of the user would make it, stored only: unlike a real write, no socket is sent a change frame. */
  write(token, key, value, opts = {}) {
    const dev = this.tokens.get(token);
    return this.#apply(dev, [{ key, value, ...opts }], null).results[0];
  }

  value(userId, key) {
    const k = this.#user(userId).keys.get(key);
    return k && !k.deleted ? k.value : null;
  }

  userOf(token) {
    return this.tokens.get(token).userId;
  }

  /** Every open socket drops as if the network went away. */
  dropAll(code = 1006) {
    for (const s of [...this.sockets]) s._serverClose(code);
  }

  revoke(token) {
    const dev = this.tokens.get(token);
    dev.revoked = true;
    for (const s of [...this.sockets]) if (s.device === dev) s._serverClose(4001);
  }

  release() {
    const held = this.held;
    this.held = [];
    for (const fn of held) fn();
  }

  frames(type) {
    return this.log.filter((l) => l.frame?.type === type).map((l) => l.frame);
  }

  // -------------------------------------------------------------- model

  #device(userId, name = null) {
    const token = id('tok-');
    const now = this.now();
    this.tokens.set(token, { userId, deviceId: id('dev-'), revoked: false, name, createdAt: now, lastSeenAt: now });
    return token;
  }

  #user(userId) {
    if (!this.data.has(userId)) {
      this.data.set(userId, { cursor: 0, keys: new Map(), requests: new Map(), history: [] });
    }
    return this.data.get(userId);
  }

  /** Applies writes like src/hub/plan.rs: unchanged, fast-forward, or last-write-wins. */
  #apply(dev, writes, requestId) {
    const u = this.#user(dev.userId);
    if (requestId && u.requests.has(requestId)) return u.requests.get(requestId);
    const now = this.now();
    const results = [];
    const changes = [];
    for (const w of writes) {
      const stored = u.keys.get(w.key);
      const incoming = {
        deleted: w.value === null,
        value: w.value,
        updatedAt: Math.min(w.updatedAt ?? now, now),
      };
      const same = stored && stored.deleted === incoming.deleted && (stored.deleted || stored.value === incoming.value);
      if ((!stored && incoming.deleted) || same) {
        results.push({ key: w.key, version: stored?.version ?? 0, applied: false, conflict: null });
        continue;
      }
      const conflictWith = (winner, version) => ({
        key: w.key,
        resolution: 'last-write-wins',
        winner,
        version,
        storedVersion: stored.version,
        baseVersion: w.baseVersion ?? null,
        incomingUpdatedAt: incoming.updatedAt,
        storedUpdatedAt: stored.updatedAt,
      });
      let conflict = null;
      if (stored && w.baseVersion !== stored.version && this.mergeArrays && !stored.deleted && !incoming.deleted) {
        // Two arrays of objects with ids: merged three-way against the value
        // at baseVersion (without a base: last-write-wins).
        const baseRow = u.history.find((h) => !h.loser && h.key === w.key && h.version === w.baseVersion);
        const merged = baseRow && !baseRow.deleted ? mergeById(baseRow.value, incoming.value, stored.value) : null;
        if (merged !== null) {
          u.history.push({ key: w.key, ...incoming, loser: true });
          const mergedConflict = (version) => ({ ...conflictWith('merged', version), resolution: 'merged' });
          if (merged === stored.value) {
            results.push({ key: w.key, version: stored.version, applied: false, conflict: mergedConflict(stored.version) });
            continue;
          }
          const version = ++u.cursor;
          const row = { deleted: false, value: merged, updatedAt: Math.max(incoming.updatedAt, stored.updatedAt), version, deviceId: dev.deviceId };
          u.keys.set(w.key, row);
          u.history.push({ key: w.key, ...row });
          changes.push({ key: w.key, value: merged, version, deleted: false, updatedAt: row.updatedAt, deviceId: dev.deviceId, prev: stored });
          results.push({ key: w.key, version, applied: true, conflict: mergedConflict(version) });
          continue;
        }
      }
      if (stored && w.baseVersion !== stored.version) {
        const cmp =
          incoming.updatedAt - stored.updatedAt ||
          Number(!incoming.deleted) - Number(!stored.deleted) ||
          String(incoming.value ?? '').localeCompare(String(stored.value ?? ''));
        if (cmp <= 0) {
          u.history.push({ key: w.key, ...incoming, loser: true });
          results.push({ key: w.key, version: stored.version, applied: false, conflict: conflictWith('stored', stored.version) });
          continue;
        }
        conflict = true;
      }
      const version = ++u.cursor;
      const row = { ...incoming, version, deviceId: dev.deviceId };
      u.keys.set(w.key, row);
      u.history.push({ key: w.key, ...row });
      changes.push({ key: w.key, value: row.deleted ? null : row.value, version, deleted: row.deleted, updatedAt: row.updatedAt, deviceId: dev.deviceId, prev: stored });
      results.push({ key: w.key, version, applied: true, conflict: conflict ? conflictWith('incoming', version) : null });
    }
    const answer = { results, cursor: u.cursor, changes };
    if (requestId) u.requests.set(requestId, { results, cursor: u.cursor, changes: [] });
    return answer;
  }

  /** Applies `writes` as one batch, tells every socket, and answers (with `json`) as POST /api/sync does. */
  #batch(json, dev, writes, requestId) {
    const a = this.#apply(dev, writes, requestId);
    this.#broadcast(dev.userId, a.changes, null);
    return json(200, {
      success: true,
      synced: a.results.filter((r) => r.applied).map((r) => r.key),
      conflicts: a.results.filter((r) => r.conflict).map((r) => r.conflict),
      versions: Object.fromEntries(a.results.map((r) => [r.key, r.version])),
      cursor: a.cursor,
    });
  }

  #broadcast(userId, changes, except) {
    for (const s of this.sockets) {
      if (s !== except && s.device.userId === userId && s.readyState === 1 && !this.muted.has(s.device.deviceId)) {
        for (const { prev, ...c } of changes) {
          const patch = s.patches && prev && !prev.deleted && !c.deleted ? wirePatch(prev.value, c.value) : null;
          if (patch) {
            const { value: _, ...rest } = c;
            s._deliver({ type: 'change', ...rest, baseVersion: prev.version, patch });
          } else s._deliver({ type: 'change', ...c });
        }
      }
    }
  }

  /** The accepted value of `key` at `version` (null: absent or deleted then), from the history. */
  #valueAt(u, key, version) {
    let row = null;
    for (const h of u.history) if (!h.loser && h.key === key && h.version <= version && (!row || h.version > row.version)) row = h;
    return row && !row.deleted ? row.value : null;
  }

  #changesSince(userId, since) {
    const u = this.#user(userId);
    const rows = [...u.keys.entries()]
      .filter(([, r]) => r.version > since)
      .sort((a, b) => a[1].version - b[1].version);
    return { cursor: u.cursor, rows };
  }

  // ---------------------------------------------------------------- REST

  async #fetch(url, init = {}) {
    await tick();
    if (this.offline) throw new TypeError('Failed to fetch');
    const u = new URL(url);
    const method = (init.method ?? 'GET').toUpperCase();
    let body = null;
    let badJson = false;
    try {
      body = init.body ? JSON.parse(init.body) : null;
    } catch {
      badJson = true;
    }
    this.log.push({ method, path: u.pathname + u.search, body });
    await this.onRequest?.(method, u.pathname + u.search);
    const failure = this.failures.findIndex(
      (f) => (!f.method || f.method === method) && (!f.path || f.path.test(u.pathname)),
    );
    if (failure >= 0) {
      const [f] = this.failures.splice(failure, 1);
      const headers = { 'content-type': f.html ? 'text/html' : 'application/json' };
      if (f.retryAfter !== undefined) headers['retry-after'] = String(f.retryAfter);
      const text = f.html
        ? `<html><head><title>${f.status} Bad Gateway</title></head><body>edge error</body></html>`
        : JSON.stringify({ success: false, error: { code: f.code ?? 'unavailable', message: 'try again' } });
      return new Response(text, { status: f.status, headers });
    }
    const json = (status, obj, headers = {}) =>
      new Response(JSON.stringify(obj), { status, headers: { 'content-type': 'application/json', ...headers } });
    const fail = (status, code) => json(status, { success: false, error: { code, message: code } });
    const path = u.pathname.replace(/^\/api/, '');

    if (path === '/auth/register' || path === '/auth/login') {
      const existing = this.users.get(body.email);
      if (path === '/auth/register') {
        if (existing) return fail(409, 'email_taken');
        if ((body.password ?? '').length < 8) return fail(400, 'weak_password');
        this.users.set(body.email, { password: body.password, userId: id('user-') });
      } else if (!existing || existing.password !== body.password) {
        return fail(401, 'invalid_credentials');
      }
      const { userId } = this.users.get(body.email);
      const token = this.#device(userId, body.deviceName ?? null);
      const { deviceId } = this.tokens.get(token);
      return json(path.endsWith('register') ? 201 : 200, { success: true, token, userId, deviceId });
    }

    const token = (init.headers?.authorization ?? '').replace(/^Bearer /, '');
    const dev = this.tokens.get(token);
    if (!dev || dev.revoked) return fail(401, 'unauthorized');
    if (badJson) return fail(400, 'invalid_json');

    if (path === '/auth/logout') {
      this.revoke(token);
      return json(200, { success: true });
    }
    if (path === '/sync' && method === 'GET') {
      const since = Number(u.searchParams.get('since') ?? 0);
      const { cursor, rows } = this.#changesSince(dev.userId, since);
      const out = { success: true, data: {}, versions: {}, deleted: [], cursor, lastSync: new Date().toISOString() };
      for (const [k, r] of rows) {
        out.versions[k] = r.version;
        if (r.deleted) out.deleted.push(k);
        else out.data[k] = r.value;
      }
      return json(200, out);
    }
    if (path === '/sync' && method === 'POST') {
      const writes = [
        ...Object.entries(body.data ?? {}).map(([key, value]) => ({ key, value })),
        ...(body.deleted ?? []).map((key) => ({ key, value: null })),
      ].map((w) => ({ ...w, baseVersion: body.baseVersions?.[w.key], updatedAt: body.updatedAt?.[w.key] }));
      return this.#batch(json, dev, writes, body.requestId);
    }
    const routed = this.#issue5Routes(dev, method, path, body, json, fail, u.searchParams);
    if (routed) return routed;
    const m = path.match(/^\/sync\/([^/]+)$/);
    if (m && (method === 'PUT' || method === 'DELETE')) {
      const key = decodeURIComponent(m[1]);
      const value = method === 'PUT' ? body.value : null;
      const a = this.#apply(dev, [{ key, value, baseVersion: body?.baseVersion, updatedAt: body?.updatedAt }], body?.requestId);
      this.#broadcast(dev.userId, a.changes, null);
      const r = a.results[0];
      return json(200, { success: true, key, version: r.version, conflict: r.conflict });
    }
    return fail(404, 'not_found');
  }

  /** History and restore, export and import, devices (issue 5's contract). */
  #issue5Routes(dev, method, path, body, json, fail, query) {
    const u = this.#user(dev.userId);
    const nameOf = (deviceId) => [...this.tokens.values()].find((t) => t.deviceId === deviceId)?.name ?? null;
    const accepted = (key) => u.history.filter((h) => !h.loser && h.key === key);
    let m = path.match(/^\/sync\/([^/]+)\/history$/);
    if (m && method === 'GET') {
      const key = decodeURIComponent(m[1]);
      const current = u.keys.get(key)?.version;
      const before = Number(query.get('before') ?? Infinity);
      const limit = Number(query.get('limit') ?? 50);
      const history = accepted(key)
        .filter((h) => h.version < before)
        .sort((a, b) => b.version - a.version)
        .slice(0, limit)
        .map((h) => ({
          version: h.version,
          updatedAt: h.updatedAt,
          deviceId: h.deviceId,
          deviceName: nameOf(h.deviceId),
          deleted: h.deleted,
          size: h.deleted ? 0 : Buffer.byteLength(h.value, 'utf8'),
          current: h.version === current,
        }));
      return json(200, { success: true, key, history });
    }
    m = path.match(/^\/sync\/([^/]+)\/history\/([^/]+)$/);
    if (m && method === 'GET') {
      const key = decodeURIComponent(m[1]);
      if (!/^[1-9][0-9]*$/.test(m[2])) return fail(400, 'invalid_request');
      const h = accepted(key).find((x) => x.version === Number(m[2]));
      if (!h) return fail(404, 'not_found');
      return json(200, { success: true, key, version: h.version, value: h.deleted ? null : h.value, deleted: h.deleted, updatedAt: h.updatedAt, deviceId: h.deviceId });
    }
    m = path.match(/^\/sync\/([^/]+)\/restore$/);
    if (m && method === 'POST') {
      const key = decodeURIComponent(m[1]);
      if (!Number.isInteger(body?.version) || body.version < 1) return fail(400, 'invalid_request');
      const h = accepted(key).find((x) => x.version === body.version);
      if (!h) return fail(404, 'not_found');
      const a = this.#apply(dev, [{ key, value: h.deleted ? null : h.value, baseVersion: u.keys.get(key)?.version, updatedAt: this.now() }], body.requestId);
      this.#broadcast(dev.userId, a.changes, null);
      return json(200, { success: true, key, version: a.results[0].version, conflict: null });
    }
    if (path === '/export' && method === 'GET') {
      const doc = { format: 'alternassist-sync-export', formatVersion: 1, exportedAt: new Date(this.now()).toISOString(), data: {}, versions: {} };
      for (const [k, r] of u.keys) {
        if (r.deleted) continue;
        doc.data[k] = r.value;
        doc.versions[k] = r.version;
      }
      return json(200, doc, { 'content-disposition': 'attachment; filename="alternassist-sync-export.json"' });
    }
    if (path === '/import' && method === 'POST') {
      const valid =
        body?.format === 'alternassist-sync-export' &&
        body.formatVersion === 1 &&
        body.data && typeof body.data === 'object' && !Array.isArray(body.data) &&
        Object.values(body.data).every((v) => typeof v === 'string') &&
        (body.versions === undefined || (typeof body.versions === 'object' && Object.values(body.versions).every((v) => Number.isInteger(v) && v >= 0)));
      if (!valid) return fail(400, 'invalid_request');
      const writes = Object.entries(body.data).map(([key, value]) => ({ key, value, baseVersion: body.versions?.[key], updatedAt: this.now() }));
      return this.#batch(json, dev, writes, null);
    }
    if (path === '/devices' && method === 'GET') {
      const online = new Set([...this.sockets].filter((s) => s.readyState === 1).map((s) => s.device.deviceId));
      const devices = [...this.tokens.values()]
        .filter((t) => t.userId === dev.userId && !t.revoked)
        .map((t) => ({ id: t.deviceId, name: t.name, createdAt: t.createdAt, lastSeenAt: t.lastSeenAt, current: t === dev, online: online.has(t.deviceId) }));
      return json(200, { success: true, devices });
    }
    m = path.match(/^\/devices\/([^/]+)$/);
    if (m && method === 'DELETE') {
      const target = [...this.tokens.entries()].find(([, t]) => t.deviceId === decodeURIComponent(m[1]) && t.userId === dev.userId && !t.revoked);
      if (!target) return fail(404, 'not_found');
      this.revoke(target[0]);
      return json(200, { success: true });
    }
    return null;
  }

  // ------------------------------------------------------------ sockets

  _connect(socket) {
    const bearer = socket.protocols.find((p) => p.startsWith('bearer.'));
    const dev = bearer && this.tokens.get(bearer.slice('bearer.'.length));
    if (this.offline || this.wsRefused || !dev || dev.revoked) return false;
    socket.device = dev;
    this.sockets.add(socket);
    return true;
  }

  _frame(socket, text) {
    let frame = JSON.parse(text);
    this.log.push({ frame, bytes: Buffer.byteLength(text) });
    if (this.silent) return;
    const dev = socket.device;
    if (frame.type === 'ping') return socket._deliver({ type: 'pong' });
    if (frame.type === 'hello') {
      socket.patches = this.patches && frame.patches === true;
      const u = this.#user(dev.userId);
      const since = frame.since > u.cursor ? 0 : frame.since;
      const { cursor, rows } = this.#changesSince(dev.userId, since);
      const changes = rows.map(([key, r]) => {
        const whole = { key, value: r.deleted ? null : r.value, version: r.version, deleted: r.deleted, updatedAt: r.updatedAt, deviceId: r.deviceId };
        // A patch against the key as the client holds it (everything up to `since`).
        const patch = socket.patches && since > 0 && !r.deleted ? wirePatch(this.#valueAt(u, key, since), r.value) : null;
        if (!patch) return whole;
        const { value: _, ...rest } = whole;
        return { ...rest, baseVersion: since, patch };
      });
      return socket._deliver({ type: 'changes', changes, cursor, ...(socket.patches && { patches: true }) });
    }
    if (frame.type === 'patch') {
      if (!socket.patches) return socket._deliver({ type: 'error', requestId: frame.requestId, code: 'invalid_request', message: 'unknown frame type' });
      const u = this.#user(dev.userId);
      const base = this.notRecords.has(frame.key) ? null : splitRecords(this.#valueAt(u, frame.key, frame.baseVersion));
      const p = patchFromWire(frame);
      const applied = base && p ? applyPatch(base, p) : null;
      if (!applied) {
        return socket._deliver({ type: 'error', requestId: frame.requestId, code: 'not_records', message: `${frame.key} does not hold a record list: send the whole value` });
      }
      frame = { type: 'put', key: frame.key, value: joinRecords(applied), baseVersion: frame.baseVersion, updatedAt: frame.updatedAt, requestId: frame.requestId };
    }
    if ((frame.type === 'put' || frame.type === 'delete') && this.rateLimitWrites > 0) {
      this.rateLimitWrites--;
      return socket._deliver({ type: 'error', requestId: frame.requestId, code: 'rate_limited', message: 'slow down' });
    }
    if (frame.type === 'put' || frame.type === 'delete') {
      const a = this.#apply(dev, [{ key: frame.key, value: frame.type === 'put' ? frame.value : null, baseVersion: frame.baseVersion, updatedAt: frame.updatedAt }], frame.requestId);
      this.#broadcast(dev.userId, a.changes, socket);
      const r = a.results[0];
      const ack = () => socket._deliver({ type: 'ack', requestId: frame.requestId, key: frame.key, version: r.version, conflict: r.conflict });
      if (this.holdAcks) this.held.push(ack);
      else ack();
    }
  }
}

/** A WebSocket whose other end is a FakeServer. */
class FakeSocket {
  constructor(server, url, protocols = []) {
    this.server = server;
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    setTimeout(() => {
      if (this.readyState !== 0) return;
      if (server._connect(this)) {
        this.readyState = 1;
        this.protocol = 'alternassist-sync.v1';
        this.onopen?.({});
      } else {
        this.readyState = 3;
        this.onerror?.({});
        this.onclose?.({ code: 1006 });
      }
    }, 1);
  }
  send(text) {
    if (this.readyState !== 1) throw new Error('socket not open');
    setTimeout(() => this.readyState === 1 && this.server._frame(this, text), 1);
  }
  close(code = 1000) {
    if (this.readyState >= 2) return;
    this.readyState = 3;
    this.server.sockets.delete(this);
    setTimeout(() => this.onclose?.({ code }), 1);
  }
  _deliver(msg) {
    const data = JSON.stringify(msg);
    this.received = (this.received ?? 0) + Buffer.byteLength(data);
    setTimeout(() => this.readyState === 1 && this.onmessage?.({ data }), 1);
  }
  _serverClose(code) {
    if (this.readyState >= 2) return;
    this.readyState = 3;
    this.server.sockets.delete(this);
    setTimeout(() => this.onclose?.({ code }), 1);
  }
}

/** A device: its own storage and window, a SyncManager on the fake server. */
export function device(server, { token = null, storage = new MemoryStorage(), tab = null, ...options } = {}) {
  // A tab of a FakeBrowser shares its storage, window events and locks with the browser's other tabs.
  if (tab) storage = tab.storage;
  const win = tab?.win ?? new EventTarget();
  const navigator = tab?.navigator ?? { onLine: true, userAgent: 'node' };
  if (token) storage.setItem('sync-token', token);
  const sm = new SyncManager({
    apiBase: 'http://sync.test/api',
    storage,
    fetch: server.fetch,
    WebSocket: server.WebSocket,
    window: win,
    navigator,
    lock: false,
    backoff: { baseMs: 20, maxMs: 200 },
    ...options,
  });
  const statuses = [];
  sm.on('status', (s) => statuses.push(s));
  return {
    sm,
    storage,
    win,
    statuses,
    goOffline() {
      navigator.onLine = false;
      win.dispatchEvent(new Event('offline'));
    },
    goOnline() {
      navigator.onLine = true;
      win.dispatchEvent(new Event('online'));
    },
  };
}

/**
 * device() for a test file whose managers are destroyed after each test:
 * `const { dev, cleanups } = devicesPerTest(afterEach)`. A test that
 * destroys one itself (a reload) takes it off `cleanups`.
 */
export function devicesPerTest(afterEach) {
  const cleanups = [];
  afterEach(() => {
    while (cleanups.length) cleanups.pop()();
  });
  const dev = (server, opts) => {
    const d = device(server, opts);
    cleanups.push(() => d.sm.destroy());
    return d;
  };
  return { dev, cleanups };
}

/** A new device token for `email` (password1), as a second device's sign-in gets it. */
export async function loginToken(server, email, deviceName) {
  const res = await server.fetch('http://sync.test/api/auth/login', {
    method: 'POST',
    body: JSON.stringify({ email, password: 'password1', deviceName }),
  });
  return (await res.json()).token;
}
