// <sync-status>: a small sync indicator for a nav bar.
//
//   import './sync-status.js';
//   document.querySelector('sync-status').manager = syncManager;
//
// Shows 🟢 Synced / 🟡 Syncing… / 🔴 Offline (or a sync error), "Last
// synced: 2 minutes ago" kept current, and the number of edits waiting while
// offline. The host carries `state="synced|syncing|offline|error"` for
// styling and tests.

const LABELS = {
  synced: ['🟢', 'Synced'],
  syncing: ['🟡', 'Syncing…'],
  offline: ['🔴', 'Offline'],
  error: ['🔴', 'Sync error'],
};

/** "just now", "2 minutes ago", "yesterday", ... for a time in ms. */
export function timeAgo(ms, now = Date.now()) {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 10) return 'just now';
  const rtf = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });
  if (s < 60) return rtf.format(-s, 'second');
  const m = Math.floor(s / 60);
  if (m < 60) return rtf.format(-m, 'minute');
  const h = Math.floor(m / 60);
  if (h < 24) return rtf.format(-h, 'hour');
  return rtf.format(-Math.floor(h / 24), 'day');
}

const STYLE = `
  :host { display: inline-flex; font: inherit; color: inherit; }
  .pill {
    display: inline-flex; align-items: center; gap: .5rem;
    padding: .3rem .75rem .3rem .6rem; border-radius: 999px;
    background: var(--sync-status-bg, rgba(127,127,127,.1));
    border: 1px solid var(--sync-status-border, rgba(127,127,127,.18));
    line-height: 1.15; white-space: nowrap;
  }
  /* The emoji stays in the text; the dot is drawn, so it looks the same
     where no emoji font is installed. */
  .dot {
    display: inline-block; width: .6rem; height: .6rem; border-radius: 50%;
    font-size: 0; overflow: hidden; flex: none; background: #d93a32;
  }
  :host([state="synced"]) .dot { background: #22a55a; }
  :host([state="syncing"]) .dot { background: #e0a400; animation: pulse 1.2s ease-in-out infinite; }
  @keyframes pulse { 50% { opacity: .35; } }
  @media (prefers-reduced-motion: reduce) { :host([state="syncing"]) .dot { animation: none; } }
  .text { display: flex; flex-direction: column; }
  .label { font-weight: 600; font-size: .85rem; }
  .detail { font-size: .72rem; opacity: .7; }
  .detail:empty { display: none; }
  :host([state="error"]) .pill { background: var(--sync-status-error-bg, rgba(220,38,38,.08)); }
`;

export class SyncStatusElement extends HTMLElement {
  #manager = null;
  #off = null;
  #timer = null;
  #snap = { status: 'offline', pendingCount: 0, lastSyncedAt: null, error: null };

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    root.innerHTML = `<style>${STYLE}</style>
      <span class="pill" part="pill" role="status" aria-live="polite">
        <span class="dot" part="dot" aria-hidden="true"></span>
        <span class="text"><span class="label" part="label"></span><span class="detail" part="detail"></span></span>
      </span>`;
    this.#render();
  }

  /** The SyncManager to follow (null to detach). */
  get manager() {
    return this.#manager;
  }
  set manager(sm) {
    this.#off?.();
    this.#off = null;
    this.#manager = sm ?? null;
    if (sm) {
      const offStatus = sm.on('status', (snap) => this.#update(snap));
      const offSignedOut = sm.on('signedout', () => this.#update());
      this.#off = () => {
        offStatus();
        offSignedOut();
      };
    }
    this.#update();
  }

  connectedCallback() {
    // Keeps "2 minutes ago" current.
    this.#timer ??= setInterval(() => this.#render(), 15000);
  }
  disconnectedCallback() {
    clearInterval(this.#timer);
    this.#timer = null;
  }

  #update(snap) {
    const sm = this.#manager;
    this.#snap = snap ?? (sm
      ? { status: sm.status, pendingCount: sm.pendingCount, lastSyncedAt: sm.lastSyncedAt, error: sm.error }
      : { status: 'offline', pendingCount: 0, lastSyncedAt: null, error: null });
    this.#render();
  }

  #render() {
    const { status, pendingCount, lastSyncedAt, error } = this.#snap;
    const signedOut = this.#manager && !this.#manager.signedIn;
    let [dot, label] = LABELS[status] ?? LABELS.offline;
    if (signedOut) label = status === 'error' ? 'Signed out' : 'Not syncing';
    const parts = [];
    if (pendingCount > 0 && status !== 'synced') {
      parts.push(`${pendingCount} ${pendingCount === 1 ? 'edit' : 'edits'} waiting`);
    }
    if (!signedOut) parts.push(lastSyncedAt ? `Last synced: ${timeAgo(lastSyncedAt)}` : 'Not synced yet');
    const root = this.shadowRoot;
    root.querySelector('.dot').textContent = dot;
    root.querySelector('.label').textContent = label;
    root.querySelector('.detail').textContent = parts.join(' · ');
    this.setAttribute('state', status);
    this.setAttribute('pending', String(pendingCount ?? 0));
    this.title = error?.message ?? (lastSyncedAt ? `Last synced ${new Date(lastSyncedAt).toLocaleString()}` : '');
  }
}

if (!customElements.get('sync-status')) customElements.define('sync-status', SyncStatusElement);
