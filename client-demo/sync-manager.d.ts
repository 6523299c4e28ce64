// Types of the alternassist-sync client (sync-manager.js, and the bundles in
// dist/ built from it). Written by hand; tests/types checks them with tsc,
// and tests/browser/unit/types.test.mjs checks that they name exactly what
// the module exports.

/** The seven Alternassist keys, tracked by default. */
export declare const DEFAULT_KEYS: readonly string[];

/** Storage keys the library itself uses (never tracked). */
export declare const STORAGE_KEYS: Readonly<{
  token: 'sync-token';
  state: 'sync-state';
  queue: 'sync-queue';
  conflicts: 'sync-conflicts';
  edits: 'sync-edits';
  leader: 'sync-leader';
}>;

export type SyncStatus = 'synced' | 'syncing' | 'offline' | 'error';

export interface SyncErrorInfo {
  /** The server's error code, or the library's: 'storage_full', 'network', 'http', 'internal', ... */
  code: string;
  message: string;
  /** With 'storage_full': the keys whose newer server value does not fit in storage. */
  keys?: string[];
}

export interface StatusSnapshot {
  status: SyncStatus;
  pendingCount: number;
  lastSyncedAt: number | null;
  error: SyncErrorInfo | null;
}

export type ChangeSource = 'local' | 'remote' | 'tab' | 'merge' | 'account';

export interface ChangeEvent {
  key: string;
  /** The new value; null when the key was removed. */
  value: string | null;
  /**
   * 'local': this page's own edit; 'tab': another tab's; 'remote': another device's; 'merge': a merge of both
   * (also this page's own write of a list it read before a remote change: storage holds the write merged by id
   * with that change, which the app should read); 'account': a sign-in replaced the data.
   */
  source: ChangeSource;
}

/** The server's report of a conflict (REST `conflicts`, WebSocket ack). */
export interface ServerConflict {
  key: string;
  resolution: 'last-write-wins' | 'merged';
  winner: 'incoming' | 'stored' | 'merged';
  version: number;
  storedVersion: number;
  baseVersion: number | null;
  incomingUpdatedAt: number;
  storedUpdatedAt: number;
}

export interface LostElement {
  id: string | number;
  /** Which side's version of the element did not win. */
  side: 'local' | 'remote';
  element: Record<string, unknown> & { id: string | number };
}

/** An entry of the conflict log (`conflicts`, the 'conflict' event); kept in storage across reloads. */
export interface ConflictRecord {
  id: string;
  /** When this device resolved it (ms). */
  at: number;
  key: string;
  resolution: 'last-write-wins' | 'merged';
  winner: 'local' | 'remote' | 'both';
  /** The value that is current now. */
  kept?: string | null;
  /** The value that lost (last-write-wins); null for a deletion. */
  lost?: string | null;
  /** Elements changed on both sides whose other version won (merges). */
  lostElements?: LostElement[];
  /** The log outgrew its bound and dropped this record's losing value (the server's history keeps what it saw). */
  lostTruncated?: boolean;
  version: number;
  server?: ServerConflict;
  /** Makes the losing value (or the losing elements) current again, as a new edit. Absent when nothing was lost. */
  restore?: () => void;
}

export interface OnlineDevice {
  deviceId: string;
  name: string | null;
}

export interface HistoryEntry {
  version: number;
  updatedAt: number;
  deviceId: string | null;
  deviceName: string | null;
  deleted: boolean;
  size: number;
  current: boolean;
}

export interface HistoryVersion {
  key: string;
  version: number;
  value: string | null;
  deleted: boolean;
  updatedAt: number;
  deviceId: string | null;
}

export interface ExportDocument {
  format: 'alternassist-sync-export';
  formatVersion: 1;
  exportedAt: string;
  data: Record<string, string>;
  versions: Record<string, number>;
}

export interface WriteResult {
  synced: string[];
  conflicts: ServerConflict[];
  versions: Record<string, number>;
  cursor?: number;
}

export interface Device {
  id: string;
  name: string | null;
  createdAt: number;
  lastSeenAt: number;
  current: boolean;
  online: boolean;
}

/** `account()`: what the account uses against its quotas. */
export interface AccountInfo {
  userId: string;
  deviceId: string;
  usage: { bytes: number; keys: number; writesToday: number };
  limits: { bytes: number; keys: number; writesPerDay: number; writeBurst: number; writesPerMinute: number };
  /** When writesToday starts again from 0 (ms, next UTC midnight). */
  writesResetAt: number;
}

/** What to do when this device's data belongs to another account than the one signing in. */
export type AccountChoice = 'merge' | 'replace' | 'cancel';

export interface AccountChange {
  previousUserId: string;
  previousEmail: string | null;
  userId: string;
  email: string;
}

export interface SignInOptions {
  /**
   * This device last synced another account: 'merge' adds its local data to
   * the new account (the first-sign-in merge); 'replace' swaps it for the
   * new account's data (the old account keeps its copy on the server).
   * Without a choice (here or `onAccountChange`) the sign-in is refused
   * with a SyncError of code 'account_changed'.
   */
  accountChange?: AccountChoice;
}

/** Anything with the Storage methods the library uses. */
export interface StorageLike {
  readonly length: number;
  key(index: number): string | null;
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
  clear?(): void;
}

export interface SyncManagerOptions {
  /** The Worker's API, absolute or relative to the page (default '/api'). Electron and file:// pages: absolute. */
  apiBase?: string;
  /** Tracked localStorage keys (default DEFAULT_KEYS). */
  keys?: readonly string[];
  /** Default: window.localStorage. */
  storage?: StorageLike;
  /** WebSocket live mode (default true); false: REST polling only. */
  live?: boolean;
  /** REST polling period while not live (default 60000). */
  autoSyncMs?: number;
  /** Name shown in the device list (default: guessed from the user agent). */
  deviceName?: string;
  /**
   * One syncing tab per browser: 'auto' (default) for this window's
   * localStorage (or when `lock` names a lock), true always, false never.
   */
  tabs?: boolean | 'auto';
  /** 'auto' (default) uses Web Locks where the page has them; false never (the storage lease); a string names the lock. */
  lock?: boolean | string;
  /** Without Web Locks: how long a syncing tab's lease lasts unrenewed (default 5000). */
  leaseMs?: number;
  /** Heartbeat period (default 15000). */
  pingMs?: number;
  /** A ping unanswered this long (on two heartbeat ticks) means the socket is dead (default 30000). */
  deadMs?: number;
  /** For a socket to open, and again to catch up (default 10000). */
  connectTimeoutMs?: number;
  /** For one REST request (default 30000). */
  requestTimeoutMs?: number;
  /** First retry delay for writes refused for now (429, 5xx, edge pages); grows with jitter (default 2000). */
  retryMs?: number;
  /** Longest retry delay (default 60000). */
  retryMaxMs?: number;
  /** Reconnect delays. */
  backoff?: { baseMs?: number; maxMs?: number };
  /** Where a second copy of the sign-in is kept (default: globalThis.indexedDB; null: nowhere). */
  indexedDB?: IDBFactory | null;
  /** Injection (tests): replaces the IndexedDB copy of the sign-in. */
  signInBackup?: {
    load(): Promise<{ token: string; userId: string; deviceId: string; email: string | null } | null>;
    save(record: { token: string; userId: string; deviceId: string; email: string | null }): Promise<unknown>;
    clear(): Promise<unknown>;
  };
  /** Asked when this device's data belongs to another account than the one signing in. */
  onAccountChange?: (change: AccountChange) => AccountChoice | Promise<AccountChoice>;
  /** Injection (tests, other runtimes). */
  fetch?: typeof fetch;
  WebSocket?: typeof WebSocket;
  BroadcastChannel?: typeof BroadcastChannel;
  window?: EventTarget;
  document?: EventTarget & { visibilityState?: string };
  navigator?: { onLine?: boolean; userAgent?: string; locks?: unknown };
  /** Resolves a relative apiBase (default location.href). */
  baseUrl?: string;
  now?: () => number;
  random?: () => number;
}

export interface SyncManagerEvents {
  status: StatusSnapshot;
  change: ChangeEvent;
  conflict: ConflictRecord;
  signedout: { reason: 'logout' | 'revoked'; email: string | null };
  presence: OnlineDevice[];
  error: SyncErrorInfo;
  /** The sign-in was missing from storage (cleared while the library was not loaded) and came back from IndexedDB. */
  restored: { email: string | null };
}

export declare class SyncManager {
  constructor(options?: SyncManagerOptions);
  readonly apiBase: string;
  readonly keys: string[];
  readonly storage: StorageLike;
  readonly signedIn: boolean;
  readonly email: string | null;
  readonly userId: string | null;
  readonly deviceId: string | null;
  /** True in the one tab of this browser that holds the connection. */
  readonly isLeader: boolean;
  readonly status: SyncStatus;
  /** Edits not yet acknowledged by the server (in every tab, its own included). */
  readonly pendingCount: number;
  /** When this device was last known to be in sync (data, or a heartbeat answer while live). */
  readonly lastSyncedAt: number | null;
  readonly error: SyncErrorInfo | null;
  /** The conflict log, newest first (kept in storage, bounded). */
  conflicts: ConflictRecord[];
  /** Devices connected right now. */
  onlineDevices: OnlineDevice[];
  /** Settles once a sign-in missing from storage has been looked for in IndexedDB (at once when signed in); start() waits for it. */
  readonly ready: Promise<void>;

  on<E extends keyof SyncManagerEvents>(event: E, fn: (detail: SyncManagerEvents[E]) => void): () => void;
  off<E extends keyof SyncManagerEvents>(event: E, fn: (detail: SyncManagerEvents[E]) => void): void;
  /** Resolves once status is 'synced' (rejects after timeoutMs, default 30000). */
  whenSynced(timeoutMs?: number): Promise<void>;

  register(email: string, password: string, deviceName?: string | SignInOptions, options?: SignInOptions): Promise<{ userId: string; deviceId: string }>;
  login(email: string, password: string, deviceName?: string | SignInOptions, options?: SignInOptions): Promise<{ userId: string; deviceId: string }>;
  logout(): Promise<void>;
  /** Other devices are signed out unless signOutOthers is false; a wrong current password rejects with code 'wrong_password'. */
  changePassword(currentPassword: string, newPassword: string, options?: { signOutOthers?: boolean }): Promise<{ signedOut: number }>;
  /** Signs every device of the account out, this one too; local data stays. */
  signOutEverywhere(): Promise<{ signedOut: number }>;
  account(): Promise<AccountInfo>;

  start(): Promise<void>;
  stop(): void;
  destroy(): void;

  history(key: string, page?: { before?: number; limit?: number }): Promise<HistoryEntry[]>;
  historyVersion(key: string, version: number): Promise<HistoryVersion>;
  restore(key: string, version: number): Promise<{ key: string; version: number; value: string | null | undefined }>;
  exportData(): Promise<ExportDocument>;
  importData(doc: ExportDocument | string): Promise<WriteResult>;
  devices(): Promise<Device[]>;
  revokeDevice(id: string): Promise<void>;

  syncUp(): Promise<void>;
  syncDown(): Promise<void>;
  fullSync(): Promise<void>;
  startAutoSync(ms?: number): void;
  stopAutoSync(): void;
}

/** An error from the server or the network. */
export declare class SyncError extends Error {
  constructor(message: string, init?: { status?: number; code?: string; retryAfter?: number | null });
  readonly name: 'SyncError';
  /** HTTP status (0 when there was none). */
  status: number;
  /** The server's error code ('rate_limited', 'not_found', ...), 'network', 'http' (a non-JSON answer), 'account_changed', 'pending_edits'. */
  code: string;
  /** Retry-After in seconds, or null. */
  retryAfter: number | null;
  retryAfterMs?: number | null;
  readonly network: boolean;
  /** Refused for now: the same request may succeed later. */
  readonly retryable: boolean;
}

/** Reconnect delay: exponential, capped, with jitter in [cap/2, cap]. */
export declare function backoffDelay(attempt: number, options?: { baseMs?: number; maxMs?: number; random?: () => number }): number;
/** Retry delay: backoffDelay from baseMs, never before Retry-After (plus jitter). */
export declare function retryDelay(
  attempt: number,
  options?: { baseMs?: number; maxMs?: number; random?: () => number; retryAfterMs?: number | null },
): number;

/** The parsed array if `text` is a JSON array of objects with an `id`, else null. */
export declare function parseIdArray(text: string | null | undefined): Array<Record<string, unknown> & { id: string | number }> | null;
/** Three-way merge by id; null when the values are not both arrays of objects with ids. */
export declare function mergeById(base: string | null | undefined, local: string, remote: string): string | null;
export declare function mergeByIdDetailed(
  base: string | null | undefined,
  local: string,
  remote: string,
): { text: string; lost: LostElement[] } | null;

export default SyncManager;
