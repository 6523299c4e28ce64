// Delays before trying again: reconnects and retried requests. Both spread
// out with jitter, so many clients coming back at once do not stay in step.

/**
 * Delay before reconnect attempt `attempt` (0-based): exponential growth
 * capped at `maxMs`, with "equal jitter": the result lies in [cap/2, cap].
 */
export function backoffDelay(attempt, { baseMs = 500, maxMs = 30000, random = Math.random } = {}) {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.max(0, Math.min(attempt, 30)));
  return Math.round(cap / 2 + random() * (cap / 2));
}

/**
 * Delay before retrying a request the server or the edge refused for now
 * (429, 502, 503, 504, a network error): the backoff above from `baseMs`,
 * and never sooner than the server's Retry-After (`retryAfterMs`), to which
 * up to 20% jitter (at most 5 s) is added.
 */
export function retryDelay(attempt, { baseMs = 2000, maxMs = 60000, random = Math.random, retryAfterMs = null } = {}) {
  if (Number.isFinite(retryAfterMs) && retryAfterMs > 0) {
    return Math.round(retryAfterMs + random() * Math.min(5000, retryAfterMs * 0.2));
  }
  return backoffDelay(attempt, { baseMs, maxMs, random });
}

/** A Retry-After header (seconds or an HTTP date) in ms from `now`, or null. */
export function parseRetryAfter(value, now = Date.now()) {
  if (value === null || value === undefined || value === '') return null;
  const s = Number(value);
  if (Number.isFinite(s)) return Math.max(0, s * 1000);
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - now) : null;
}
