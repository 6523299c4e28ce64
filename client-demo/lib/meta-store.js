// The sync's own keys in storage (token, state, queue, conflict log, edit
// times from other tabs, the tab lease), written without going through the
// storage hook. The manager holds each in memory too, which is how a
// localStorage.clear() by the app is undone for them.

import { readJson } from './util.js';

/** Storage keys the manager itself uses (never tracked). */
export const STORAGE_KEYS = Object.freeze({
  token: 'sync-token',
  state: 'sync-state',
  queue: 'sync-queue',
  conflicts: 'sync-conflicts',
  edits: 'sync-edits',
  leader: 'sync-leader',
});

export class MetaStore {
  /**
   * @param {Storage} storage
   * @param {{setItem: Function, removeItem: Function}} raw unhooked writes
   * @param {Function} onError ({code, message}) a write failed
   */
  constructor(storage, raw, onError) {
    this._storage = storage;
    this._raw = raw;
    this._onError = onError;
  }

  get(name) {
    return this._storage.getItem(STORAGE_KEYS[name]);
  }
  getJson(name) {
    return readJson(this.get(name));
  }

  /** Writes (null removes); false when storage refused (full). */
  set(name, text) {
    const key = STORAGE_KEYS[name];
    try {
      if (text === null) this._raw.removeItem(key);
      else this._raw.setItem(key, text);
      return true;
    } catch (err) {
      this._onError({ code: 'storage_full', message: `could not write ${key} to storage: ${err.message}` });
      return false;
    }
  }
  setJson(name, value) {
    return this.set(name, value === null ? null : JSON.stringify(value));
  }
}
