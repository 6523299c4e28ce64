// The manager's side of tab coordination (tabs.js elects the leader):
// what a tab does when it starts or stops leading, how a following tab
// mirrors the leader's status and hands its own edits over, with their edit
// times, through storage. Methods of SyncManager (manager.js mixes them in).

import { fingerprint, newId } from './util.js';

// How long the syncing tab waits for the storage event of another tab's
// edit it found in storage before it treats the edit as made unseen.
const TAB_EVENT_WAIT_MS = 1000;

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

  /**
   * In the syncing tab: another tab's edit of `key` that is in storage while
   * its storage event has not arrived yet (browsers deliver it on a later
   * task), as the edit record that tab left (_noteTabEdit); else null. The
   * record goes before the value and the event takes it, so without one no
   * stored value is hashed on this path (it runs for every remote change).
   */
  _tabEditUnheard(key) {
    if (!this._tabs || !this._leader || !this._state.initialized || this._unapplied.has(key)) return null;
    const rec = this._meta.getJson('edits')?.[key];
    const synced = this._state.synced[key];
    if (!rec || synced === undefined) return null;
    const stored = fingerprint(this._read(key));
    return stored !== synced ? { ...rec, current: rec.fp === stored } : null;
  },

  /**
   * A remote change met such an edit: writing it would erase the edit. The
   * edit is queued now, with the remote change to merge, and held until its
   * storage event brings the value it was made on (the merge base); after
   * TAB_EVENT_WAIT_MS without one it goes as an edit made unseen.
   */
  _awaitTabEdit(key, remote, rec) {
    const updatedAt = rec.current ? rec.updatedAt : this._now();
    const entry = { key, requestId: this._newId(), updatedAt, remote, awaitingTab: true };
    if (this._state.versions[key] !== undefined) entry.baseVersion = this._state.versions[key];
    entry.heldUntil = this._now() + TAB_EVENT_WAIT_MS;
    this._queue.set(key, entry);
    this._queue.save();
    setTimeout(() => this._flushSoon(), TAB_EVENT_WAIT_MS + 10);
    this._updateStatus();
  },

  /** The storage event of another tab's write of `key` (made over `before`) arrived: an edit waiting for it has its base. */
  _tabEditHeard(key, before) {
    const entry = this._queue.get(key);
    if (!entry?.awaitingTab) return;
    delete entry.awaitingTab;
    delete entry.heldUntil;
    if (!('base' in entry) && fingerprint(before) === this._state.synced[key]) entry.base = before;
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
