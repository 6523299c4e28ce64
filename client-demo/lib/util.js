// Small helpers without state.

/** Short non-cryptographic fingerprint (FNV-1a, 32 bits) plus length; 'deleted' for null. */
export function fingerprint(text) {
  if (text === null || text === undefined) return 'deleted';
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return `${h.toString(16)}.${text.length}`;
}

/** UTF-8 byte length, or the UTF-16 length when that is surely below `limit`. */
export function utf8Length(text, limit = Infinity) {
  if (text.length * 3 < limit) return text.length;
  return new TextEncoder().encode(text).length;
}

export function readJson(text) {
  if (typeof text !== 'string') return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** A unique id that sorts by time: `<ms base36>-<random>`. */
export function newId(now, random = Math.random) {
  const rnd = globalThis.crypto?.randomUUID?.() ?? `${random().toString(36).slice(2)}${random().toString(36).slice(2)}`;
  return `${now.toString(36)}-${rnd}`;
}

/** "Chrome on macOS", "Alternassist desktop", ... from a user agent. */
export function guessDeviceName(nav) {
  const ua = nav?.userAgent ?? '';
  if (/Electron/.test(ua)) return 'Alternassist desktop';
  const browser = /Edg\//.test(ua)
    ? 'Edge'
    : /Firefox\//.test(ua)
      ? 'Firefox'
      : /Chrom(e|ium)\//.test(ua)
        ? 'Chrome'
        : /Safari\//.test(ua)
          ? 'Safari'
          : 'Browser';
  const os = /Mac OS X/.test(ua)
    ? 'macOS'
    : /Windows/.test(ua)
      ? 'Windows'
      : /Android/.test(ua)
        ? 'Android'
        : /iPhone|iPad/.test(ua)
          ? 'iOS'
          : /Linux/.test(ua)
            ? 'Linux'
            : '';
  return os ? `${browser} on ${os}` : browser;
}

/** True for a storage write refused because the storage is full. */
export function isQuotaError(err) {
  return (
    err?.name === 'QuotaExceededError' ||
    err?.name === 'NS_ERROR_DOM_QUOTA_REACHED' ||
    err?.code === 22 ||
    err?.code === 1014
  );
}
