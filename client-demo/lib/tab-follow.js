// The manager's side of tab coordination (tabs.js elects the leader):
// what a tab does when it starts or stops leading, how a following tab
// mirrors the leader's status and hands its own edits over, with their edit
// times, through storage. Methods of SyncManager (manager.js mixes them in).

import { fingerprint, newId } from './util.js';

export const following = {
  _becomeLeader() {
    this._leader = true;
    this._mirror = null;
    this._tabPending.clear();
    this._load(); // the previous leader tab may have left newer state
    if (this._wantRunning) this._run();
    this._updateStatus();
  },

  /** Another tab holds the lease now (it claimed it while ours looked free): follow it. */
  _loseLead() {
    this._leader = false;
    this._running = false;
    this._closeSocket();
    for (const name of Object.keys(this._timers)) this._clearTimer(name);
    this._link = 'down';
    this._connecting = false;
    this._tabs.post({ type: 'status?' });
    this._updateStatus();
  },

  _tabMessage(msg) {
    if (!msg || typeof msg !== 'object') return;
    if (msg.type === 'status?' && this._leader && this._lastEmitted) {
      this._postStatus();
    } else if (msg.type === 'status' && !this._leader) {
      this._mirror = msg.snap;
      // This tab's edits the leader took (or that a newer edit replaced) are in its count now.
      const consumed = new Set(msg.consumed ?? []);
      const edits = this._meta.getJson('edits') ?? {};
      for (const [id, key] of this._tabPending) {
        if (consumed.has(id) || edits[key]?.id !== id) this._tabPending.delete(id);
      }
      this._updateStatus();
    } else if (msg.type === 'lease-free') {
      this._tabs.check();
    }
  },

  _postStatus(consumed = []) {
    if (!this._tabs || !this._leader) return;
    this._tabs.post({ type: 'status', snap: this._snapshot(), consumed });
  },

  /** A following (or stopped) tab's edit: its time goes to storage before the value, for whichever tab syncs it. */
  _noteTabEdit(key, value) {
    const edits = this._meta.getJson('edits') ?? {};
    const id = newId(this._now(), this._random);
    edits[key] = { id, updatedAt: this._now(), fp: fingerprint(value) };
    this._meta.setJson('edits', edits);
    for (const [other, k] of this._tabPending) if (k === key) this._tabPending.delete(other);
    this._tabPending.set(id, key);
  },

  /** The edit time another tab recorded for `key`'s current `value`, taken (removed) from storage. */
  _takeTabEdit(key, value) {
    const edits = this._meta.getJson('edits');
    const rec = edits?.[key];
    if (!rec) return null;
    delete edits[key];
    this._meta.setJson('edits', Object.keys(edits).length ? edits : null);
    return rec.fp === fingerprint(value) ? rec : { id: rec.id, updatedAt: undefined };
  },
};
