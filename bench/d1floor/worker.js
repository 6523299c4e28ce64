// The naive D1 floor for benches/load: the baseline Durable Object
// (../baseline/worker.js), except that each write does one un-batched D1
// upsert and is acked (and broadcast) only once it has committed. Frames that
// arrive while an upsert is pending run at once (D1 I/O does not close the
// object's input gate), so N writes in flight are N concurrent upserts: what
// "one D1 round trip per write" costs, for the group commit to beat.

import worker, { Room as BareRoom } from '../baseline/worker.js';

export default worker;

const UPSERT =
  'INSERT INTO kv (room, key, value, version) VALUES (?, ?, ?, ?) ' +
  'ON CONFLICT (room, key) DO UPDATE SET value = excluded.value, version = excluded.version';

export class Room extends BareRoom {
  constructor(state, env) {
    super(state);
    this.db = env.DB;
    this.room = state.id.toString();
  }

  async handle(ws, m) {
    if (m.type !== 'put' && m.type !== 'delete') {
      return super.handle(ws, m);
    }
    const version = ++this.version;
    try {
      const value = m.type === 'put' ? String(m.value) : null;
      await this.db.prepare(UPSERT).bind(this.room, String(m.key), value, version).run();
    } catch (e) {
      ws.send(JSON.stringify({ type: 'error', requestId: m.requestId, code: 'internal', message: String(e) }));
      return undefined;
    }
    this.announce(ws, m, version);
    return undefined;
  }
}
