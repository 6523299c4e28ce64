// Types of the classic-script build (dist/alternassist-sync.js): one global,
// AlternassistSync. (Chromium's own global SyncManager is the Background
// Sync API and is left alone.) Reference it with
//   /// <reference types="alternassist-sync/classic" />
import type * as Sync from './sync-manager.js';
import type { SyncStatusElement as StatusElement, timeAgo as TimeAgo } from './sync-status.js';

declare global {
  var AlternassistSync: typeof Sync & { SyncStatusElement: typeof StatusElement; timeAgo: typeof TimeAgo };
}
export {};
