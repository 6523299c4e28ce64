// A second copy of the sign-in (token and account) outside localStorage, in
// IndexedDB, so that an app which clears localStorage while the library is
// not loaded (at start-up, say) does not silently sign the device out: the
// next SyncManager on this storage finds the copy and signs back in. An
// explicit sign-out or a revocation removes the copy too. Where IndexedDB
// is missing (or fails) this does nothing.

const DB = 'alternassist-sync';
const STORE = 'sign-in';

export class SignInBackup {
  /** @param {IDBFactory|null} idb  @param {string} scope one record per API (and storage) */
  constructor(idb, scope) {
    this._idb = idb ?? null;
    this._scope = scope;
    this._db = null;
  }

  _open() {
    if (!this._idb) return Promise.resolve(null);
    this._db ??= new Promise((resolve) => {
      try {
        const req = this._idb.open(DB, 1);
        req.onupgradeneeded = () => req.result.createObjectStore(STORE);
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => resolve(null);
        req.onblocked = () => resolve(null);
      } catch {
        resolve(null);
      }
    });
    return this._db;
  }

  async _run(mode, fn) {
    const db = await this._open();
    if (!db) return null;
    return new Promise((resolve) => {
      try {
        const tx = db.transaction(STORE, mode);
        const req = fn(tx.objectStore(STORE));
        tx.oncomplete = () => resolve(req.result ?? null);
        tx.onerror = tx.onabort = () => resolve(null);
      } catch {
        resolve(null);
      }
    });
  }

  /** {token, userId, deviceId, email} or null. */
  load() {
    return this._run('readonly', (s) => s.get(this._scope));
  }
  save(record) {
    return this._run('readwrite', (s) => s.put(record, this._scope));
  }
  clear() {
    return this._run('readwrite', (s) => s.delete(this._scope));
  }
}
