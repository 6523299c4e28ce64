// The one error type the library rejects with.

/** An error from the server or the network: `status` (HTTP, 0 for none), `code` (the server's, or 'network'). */
export class SyncError extends Error {
  constructor(message, { status = 0, code = 'network', retryAfter = null } = {}) {
    super(message);
    this.name = 'SyncError';
    this.status = status;
    this.code = code;
    /** Milliseconds the server asked to wait (Retry-After), or null. */
    this.retryAfter = retryAfter;
  }
  get network() {
    return this.code === 'network';
  }
  /** The server or the edge refused for now: try again later (429, 5xx gateway errors, network). */
  get retryable() {
    return (
      this.network ||
      this.code === 'rate_limited' ||
      this.code === 'unavailable' ||
      [429, 500, 502, 503, 504].includes(this.status)
    );
  }
}
