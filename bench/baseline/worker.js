// Baseline Durable Object for benches/load: the same frames as the real
// Worker (hello/changes, put/ack/change) with nothing behind them, so the
// benchmark can show what the runtime itself costs. bench/d1floor/ extends
// it with one D1 upsert per write.
//
//   GET  /               200 "ok" (start-up probe)
//   GET  /room/:name/ws  WebSocket (subprotocol alternassist-sync.v1)
//   POST /room/:name/blob  keep the body in memory
//   GET  /room/:name/blob  send it back

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const m = url.pathname.match(/^\/room\/([^/]+)\/(ws|blob)$/);
    if (!m) {
      return new Response(url.pathname === '/' ? 'ok' : 'not found', {
        status: url.pathname === '/' ? 200 : 404,
      });
    }
    const stub = env.ROOM.get(env.ROOM.idFromName(m[1]));
    return stub.fetch(request);
  },
};

export class Room {
  constructor(state) {
    this.state = state;
    // In memory only: a baseline, not a store.
    this.version = 0;
    this.log = [];
    this.blob = '';
    this.nextSocket = 0;
  }

  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname.endsWith('/ws')) {
      if (request.headers.get('Upgrade') !== 'websocket') {
        return new Response('expected a WebSocket', { status: 426 });
      }
      const pair = new WebSocketPair();
      this.state.acceptWebSocket(pair[1]);
      pair[1].serializeAttachment({ id: ++this.nextSocket });
      return new Response(null, {
        status: 101,
        webSocket: pair[0],
        headers: { 'Sec-WebSocket-Protocol': 'alternassist-sync.v1' },
      });
    }
    if (request.method === 'POST') {
      this.blob = await request.text();
      return Response.json({ success: true, bytes: this.blob.length });
    }
    return new Response(this.blob, { headers: { 'Content-Type': 'application/json' } });
  }

  webSocketMessage(ws, message) {
    let m;
    try {
      m = JSON.parse(message);
    } catch {
      ws.send(JSON.stringify({ type: 'error', code: 'invalid_json', message: 'bad JSON' }));
      return undefined;
    }
    return this.handle(ws, m);
  }

  // Returns a promise only in subclasses that store something.
  handle(ws, m) {
    if (m.type === 'put' || m.type === 'delete') {
      this.announce(ws, m, ++this.version);
    } else if (m.type === 'hello') {
      const since = Number(m.since) || 0;
      // Latest change per key, oldest first, like the real catch-up.
      const latest = new Map();
      for (const c of this.log) {
        if (c.version > since) {
          latest.delete(c.key);
          latest.set(c.key, c);
        }
      }
      ws.send(JSON.stringify({ type: 'changes', changes: [...latest.values()], cursor: this.version }));
    } else if (m.type === 'ping') {
      ws.send('{"type":"pong"}');
    }
    return undefined;
  }

  // Broadcasts the write that took `version` and acks it to its sender.
  announce(ws, m, version) {
    const change = {
      type: 'change',
      key: m.key,
      value: m.type === 'put' ? m.value : null,
      version,
      deleted: m.type === 'delete',
      updatedAt: Date.now(),
      deviceId: '',
    };
    this.log.push(change);
    const text = JSON.stringify(change);
    const me = ws.deserializeAttachment().id;
    for (const other of this.state.getWebSockets()) {
      if (other.deserializeAttachment().id !== me) {
        try {
          other.send(text);
        } catch {
          // A socket closing right now: nothing to do.
        }
      }
    }
    ws.send(JSON.stringify({ type: 'ack', requestId: m.requestId, key: m.key, version, conflict: null }));
  }

  webSocketClose(ws, code, reason) {
    try {
      ws.close(code, reason);
    } catch {
      // Already closed.
    }
  }
}
