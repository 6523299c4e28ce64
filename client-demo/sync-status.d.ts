// Types of the <sync-status> indicator (sync-status.js).
import type { SyncManager } from './sync-manager.js';

/** "just now", "2 minutes ago", "yesterday", ... for a time in ms ("never" for none). */
export declare function timeAgo(ms: number | null | undefined, now?: number): string;

/** <sync-status>: 🟢 Synced / 🟡 Syncing… / 🔴 Offline, "Last synced: …", edits waiting; `state` attribute for styling. */
export declare class SyncStatusElement extends HTMLElement {
  manager: SyncManager | null;
}

declare global {
  interface HTMLElementTagNameMap {
    'sync-status': SyncStatusElement;
  }
}
