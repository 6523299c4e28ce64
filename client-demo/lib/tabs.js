// One syncing tab per browser. The tabs of one origin share localStorage, so
// only one of them may hold the connection, the queue and the sync state;
// the others follow it. Leadership comes from the Web Locks API where the
// page has it (secure origins), else from a lease in storage that the
// leader renews (a self-hosted http:// origin, `lock: false`). Tabs talk
// over a BroadcastChannel: the leader tells the others its status.

import { readJson } from './util.js';

export const LEASE_KEY = 'sync-leader';

export class TabCoordinator {
  /**
   * @param {object} o
   * @param {string} o.name lock and channel name
   * @param {boolean} o.useLocks Web Locks (else the lease)
   * @param {object} o.navigator for navigator.locks
   * @param {Function|null} o.BroadcastChannel
   * @param {object} o.storage where the lease lives (getItem)
   * @param {{setItem: Function, removeItem: Function}} o.raw unhooked writes
   * @param {number} o.leaseMs a lease not renewed for this long is free
   * @param {Function} o.now
   * @param {Function} o.onLead called when this tab becomes the leader
   * @param {Function} o.onLose called when a lease was lost to another tab
   * @param {Function} o.onMessage a message from another tab
   */
  constructor(o) {
    Object.assign(this, o);
    this.id = `${o.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    this.leading = false;
    this.wanted = false;
    this._gen = 0;
    this._timer = null;
    this._channel = null;
    if (typeof o.BroadcastChannel === 'function') {
      this._channel = new o.BroadcastChannel(o.name);
      this._channel.onmessage = (e) => this.onMessage(e.data);
    }
  }

  post(msg) {
    try {
      this._channel?.postMessage(msg);
    } catch {
      /* closed */
    }
  }

  /** Asks for leadership; onLead() runs once it is granted. */
  request() {
    if (this.wanted) return;
    this.wanted = true;
    const gen = ++this._gen;
    if (this.useLocks) {
      this.navigator.locks
        .request(this.name, () => {
          if (gen !== this._gen) return undefined; // released meanwhile
          return new Promise((release) => {
            this._releaseLock = release;
            this.leading = true;
            this.onLead();
          });
        })
        .catch((err) => console.warn('sync: tab lock failed', err));
      return;
    }
    this._tick();
    this._timer = setInterval(() => this._tick(), Math.max(20, this.leaseMs / 3));
  }

  /** Gives leadership up (and stops asking). */
  release() {
    this.wanted = false;
    this._gen++;
    clearInterval(this._timer);
    this._timer = null;
    if (this.useLocks) {
      this._releaseLock?.();
      this._releaseLock = null;
    } else if (this.leading && this._lease()?.id === this.id) {
      this.raw.removeItem(LEASE_KEY);
      this.post({ type: 'lease-free' });
    }
    this.leading = false;
  }

  close() {
    this.release();
    this._channel?.close();
    this._channel = null;
  }

  /** Writes the lease again now (after storage was cleared). */
  renew() {
    if (this.leading && !this.useLocks) this._write();
  }

  /** Someone changed the lease (a storage event) or freed it: look now. */
  check() {
    if (this.wanted && !this.useLocks) this._tick();
  }

  _lease() {
    const l = readJson(this.storage.getItem(LEASE_KEY));
    return l && typeof l.id === 'string' && typeof l.until === 'number' ? l : null;
  }

  _write() {
    try {
      this.raw.setItem(LEASE_KEY, JSON.stringify({ id: this.id, until: this.now() + this.leaseMs }));
      return true;
    } catch {
      return false;
    }
  }

  _tick() {
    if (!this.wanted || this._claiming) return;
    const lease = this._lease();
    const now = this.now();
    if (this.leading) {
      if (lease && lease.id !== this.id && lease.until > now) {
        // Another tab claimed it while ours looked free to it: it leads.
        this.leading = false;
        this.onLose();
        return;
      }
      this._write();
      return;
    }
    if (lease && lease.id !== this.id && lease.until > now) return;
    // Free (or expired): claim it, then see whose claim stuck.
    if (!this._write()) return;
    this._claiming = true;
    const gen = this._gen;
    setTimeout(() => {
      this._claiming = false;
      if (gen !== this._gen || !this.wanted || this.leading) return;
      if (this._lease()?.id !== this.id) return;
      this.leading = true;
      this.onLead();
    }, Math.max(10, Math.min(100, this.leaseMs / 10)));
  }
}
