// The WebSocket transport: one socket to /api/ws with the token in the
// subprotocol, a bounded wait to open and to catch up, and a heartbeat.
//
// Liveness is judged by whether the server answers, not by how long the
// page's own timers took: a background tab's timers may run once a minute,
// so "no frame for 30 s" would call a healthy socket dead. A ping is sent
// every pingMs; the socket is dead when a ping has gone unanswered for
// deadMs on two heartbeat ticks in a row (a frame that arrived while the
// page was frozen gets its turn between them). Coming back to a visible tab
// pings at once.

export const WS_PROTOCOL = 'alternassist-sync.v1';
export const PING_FRAME = '{"type":"ping"}'; // exact text: answered by the runtime itself
export const CLOSE_REVOKED = 4001;

export class SocketLink {
  /**
   * @param {object} o
   * @param {Function} o.WebSocket
   * @param {string} o.url
   * @param {string[]} o.protocols
   * @param {Function} o.now
   * @param {number} o.pingMs
   * @param {number} o.deadMs
   * @param {number} o.connectTimeoutMs to open, and again to catch up
   * @param {Function} o.onOpen (link) the socket opened
   * @param {Function} o.onFrame (msg) a parsed frame
   * @param {Function} o.onGone ({code, opened}) closed, dead or never opened (not after close())
   */
  constructor(o) {
    Object.assign(this, o);
    this.ws = null;
    this.opened = false;
    this.catchingUp = false;
    this._timers = new Set();
    this._heartbeat = null;
  }

  open() {
    let ws;
    try {
      ws = new this.WebSocket(this.url, this.protocols);
    } catch {
      queueMicrotask(() => this.onGone({ code: 1006, opened: false }));
      return;
    }
    this.ws = ws;
    // Not open, or not caught up, within connectTimeoutMs: give up on it.
    let connectTimer = this._after(this.connectTimeoutMs, () => {
      if (!this.opened) this.drop();
    });
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this._clear(connectTimer);
      connectTimer = this._after(this.connectTimeoutMs, () => {
        if (this.catchingUp) this.drop();
      });
      this.opened = true;
      this.catchingUp = true;
      this.lastFrameAt = this.lastPingAt = this.now();
      this._strikes = 0;
      this._startHeartbeat();
      this.onOpen(this);
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.lastFrameAt = this.now();
      this._strikes = 0;
      let msg = null;
      try {
        msg = JSON.parse(typeof ev.data === 'string' ? ev.data : String(ev.data));
      } catch {
        return;
      }
      if (msg && typeof msg.type === 'string') this.onFrame(msg);
    };
    ws.onerror = () => {};
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      const opened = this.opened;
      this._detach();
      this.onGone({ code: ev.code, opened });
    };
  }

  /** The answer to hello arrived. */
  caughtUp() {
    this.catchingUp = false;
  }

  send(msg) {
    try {
      this.ws?.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
      return !!this.ws;
    } catch {
      return false;
    }
  }

  /** Pings now unless a ping is already waiting for its answer (after the page was hidden or frozen). */
  probe() {
    if (!this.opened || !this.ws) return;
    if (this.lastFrameAt >= this.lastPingAt) this._ping();
    this._strikes = 0;
  }

  /** Gives up on a socket that went silent or never opened (onGone follows). */
  drop() {
    const ws = this.ws;
    if (!ws) return;
    const opened = this.opened;
    this._detach();
    try {
      ws.close();
    } catch {
      /* already closed */
    }
    this.onGone({ code: 1006, opened, dead: true });
  }

  /** Closes the socket; no onGone. */
  close() {
    const ws = this.ws;
    this._detach();
    if (ws) {
      try {
        ws.close(1000, 'bye');
      } catch {
        /* already closed */
      }
    }
  }

  _ping() {
    this.lastPingAt = this.now();
    this.send(PING_FRAME);
  }

  _startHeartbeat() {
    const tick = Math.max(50, Math.min(this.pingMs, this.deadMs) / 3);
    this._heartbeat = setInterval(() => {
      const now = this.now();
      const waiting = this.lastFrameAt < this.lastPingAt;
      if (waiting) {
        if (now - this.lastPingAt > this.deadMs && ++this._strikes >= 2) this.drop();
        return;
      }
      if (now - this.lastPingAt >= this.pingMs) this._ping();
    }, tick);
  }

  _detach() {
    const ws = this.ws;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = null;
    this.ws = null;
    this.opened = false;
    this.catchingUp = false;
    clearInterval(this._heartbeat);
    this._heartbeat = null;
    for (const t of this._timers) clearTimeout(t);
    this._timers.clear();
  }

  _after(ms, fn) {
    const t = setTimeout(() => {
      this._timers.delete(t);
      fn();
    }, ms);
    this._timers.add(t);
    return t;
  }

  _clear(t) {
    clearTimeout(t);
    this._timers.delete(t);
  }
}
