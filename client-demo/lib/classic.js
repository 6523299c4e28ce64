// The classic-script build's entry (dist/alternassist-sync.js): the whole
// library plus the <sync-status> element, under the one global
// `AlternassistSync` (never `SyncManager`: Chromium has that global already).
export * from '../sync-manager.js';
export { SyncStatusElement, timeAgo } from '../sync-status.js';
