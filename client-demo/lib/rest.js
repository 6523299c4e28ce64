// The REST transport: one JSON request to the Worker's API with the bearer
// token, a timeout, and every failure turned into a SyncError (an HTML page
// from the edge included: status 502, code 'http').

import { SyncError } from './errors.js';
import { parseRetryAfter } from './backoff.js';

export class RestClient {
  /**
   * @param {object} o
   * @param {Function|null} o.fetch
   * @param {Function} o.url (path) the absolute URL of an API path
   * @param {number} o.timeoutMs
   * @param {Function} o.token () the current token
   * @param {Function} o.busy (delta) a request starts (+1) or ends (-1)
   * @param {Function} o.reachable (bool) whether the server answered at all
   * @param {Function} o.unauthorized (token) the server refused that token (401)
   */
  constructor(o) {
    Object.assign(this, o);
  }

  /** Resolves to the JSON answer; rejects with a SyncError. `token` overrides the current one. */
  async request(method, path, body, { auth = true, raw = false, token = this.token() } = {}) {
    if (!this.fetch) throw new SyncError('no fetch available');
    const headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (auth) {
      if (!token) throw new SyncError('not signed in', { status: 401, code: 'unauthorized' });
      headers.authorization = `Bearer ${token}`;
    }
    this.busy(1);
    try {
      let res;
      try {
        res = await this.fetch(this.url(path), {
          method,
          headers,
          body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
          // A request hanging on a dead network must not hold up the rest.
          signal: globalThis.AbortSignal?.timeout?.(this.timeoutMs),
        });
      } catch (err) {
        this.reachable(false);
        throw new SyncError(`cannot reach the sync server: ${err.message}`);
      }
      this.reachable(true);
      let json = null;
      try {
        json = await res.json();
      } catch {
        json = null; // an HTML error page from the edge, or an empty body
      }
      if (!res.ok || !json || json.success === false) {
        const e = json?.error ?? {};
        const retryAfterMs = parseRetryAfter(res.headers?.get?.('retry-after'));
        const err = new SyncError(e.message ?? `HTTP ${res.status}`, {
          status: res.status,
          code: e.code ?? 'http',
          retryAfter: retryAfterMs === null ? null : retryAfterMs / 1000,
        });
        err.retryAfterMs = retryAfterMs;
        if (res.status === 401 && auth) this.unauthorized(token);
        throw err;
      }
      return json;
    } finally {
      this.busy(-1);
    }
  }
}
