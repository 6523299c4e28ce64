// The localStorage hook: the app keeps calling getItem/setItem/removeItem/clear,
// and the manager hears of every call before it returns (a read tells it
// which value the app has seen). The returned `raw` methods read and write
// without being heard (remote changes, the sync's own keys, its own reads).
//
// Storage objects of the browser turn any own property into a stored item
// (even through defineProperty), so for them the prototype is patched once
// and dispatches on `this`; plain objects (tests, custom stores) get own
// properties instead.
//
// The handler is {get(key, value), set(key, value), remove(key), clear()};
// get only listens (it is told the value the app is given).

const METHODS = ['getItem', 'setItem', 'removeItem', 'clear'];
const protoHooks = new Map(); // storage object -> handler
let protoOriginals = null;

const ALREADY = 'another SyncManager already tracks this storage object; destroy() it first';

export function installHook(storage, handler) {
  const StorageClass = globalThis.Storage;
  if (StorageClass && storage instanceof StorageClass) {
    const proto = StorageClass.prototype;
    if (!protoOriginals) {
      const { getItem, setItem, removeItem, clear } = proto;
      protoOriginals = { getItem, setItem, removeItem, clear };
      proto.getItem = function (key) {
        const value = getItem.call(this, key);
        protoHooks.get(this)?.get(key, value);
        return value;
      };
      proto.setItem = function (key, value) {
        const h = protoHooks.get(this);
        return h ? h.set(key, value) : setItem.call(this, key, value);
      };
      proto.removeItem = function (key) {
        const h = protoHooks.get(this);
        return h ? h.remove(key) : removeItem.call(this, key);
      };
      proto.clear = function () {
        const h = protoHooks.get(this);
        return h ? h.clear() : clear.call(this);
      };
    }
    if (protoHooks.has(storage)) throw new Error(ALREADY);
    protoHooks.set(storage, handler);
    const { getItem, setItem, removeItem, clear } = protoOriginals;
    return {
      getItem: (k) => getItem.call(storage, k),
      setItem: (k, v) => setItem.call(storage, k, v),
      removeItem: (k) => removeItem.call(storage, k),
      clear: () => clear.call(storage),
      uninstall: () => protoHooks.delete(storage),
    };
  }
  if (storage.__syncManager) throw new Error(ALREADY);
  const own = Object.fromEntries(METHODS.map((m) => [m, Object.getOwnPropertyDescriptor(storage, m)]));
  const raw = {
    getItem: storage.getItem.bind(storage),
    setItem: storage.setItem.bind(storage),
    removeItem: storage.removeItem.bind(storage),
    clear: typeof storage.clear === 'function' ? storage.clear.bind(storage) : null,
  };
  const hide = (name, value) =>
    Object.defineProperty(storage, name, { value, configurable: true, writable: true, enumerable: false });
  hide('getItem', (k) => {
    const value = raw.getItem(k);
    handler.get(k, value);
    return value;
  });
  hide('setItem', (k, v) => handler.set(k, v));
  hide('removeItem', (k) => handler.remove(k));
  if (raw.clear) hide('clear', () => handler.clear());
  hide('__syncManager', handler);
  return {
    ...raw,
    uninstall: () => {
      for (const name of METHODS) {
        if (own[name]) Object.defineProperty(storage, name, own[name]);
        else delete storage[name];
      }
      delete storage.__syncManager;
    },
  };
}
