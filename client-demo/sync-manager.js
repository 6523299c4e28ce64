// alternassist-sync client: keeps chosen localStorage keys identical across a
// person's devices through an alternassist-sync Worker. No dependencies:
// runs in a browser tab and in an Electron renderer.
//
//   import { SyncManager } from 'alternassist-sync';   // or './sync-manager.js'
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
// This file is the package's entry; the modules under lib/ each hold one
// concern (see lib/manager.js). scripts/build-client.mjs bundles it into
// dist/ as one ES module and one classic script (global AlternassistSync).
// Types: sync-manager.d.ts.

export { SyncManager, DEFAULT_KEYS } from './lib/manager.js';
export { SyncError } from './lib/errors.js';
export { STORAGE_KEYS } from './lib/meta-store.js';
export { backoffDelay, retryDelay } from './lib/backoff.js';
export { mergeById, mergeByIdDetailed, parseIdArray } from './lib/merge.js';
export { SyncManager as default } from './lib/manager.js';
