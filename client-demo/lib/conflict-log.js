// The conflict log: every conflict this device saw, newest first, with what
// won and what lost, kept in storage (`sync-conflicts`) so a reload does not
// forget it. Bounded: at most `max` records and about `maxBytes` of text;
// when over, the oldest records' losing values go first (the record stays,
// marked `lostTruncated`; a losing value the server saw is in its history),
// then the oldest records.

export class ConflictLog {
  /** @param {import('./meta-store.js').MetaStore} meta */
  constructor(meta, { max = 50, maxBytes = 256 * 1024 } = {}) {
    this._meta = meta;
    this.max = max;
    this.maxBytes = maxBytes;
  }

  /** The stored records (plain data), newest first. */
  load() {
    const list = this._meta.getJson('conflicts');
    return Array.isArray(list) ? list.filter((r) => r && typeof r.key === 'string') : [];
  }

  /** Persists `records` (newest first) within the bounds; returns the records kept. */
  save(records) {
    const kept = records.slice(0, this.max).map(plain);
    let text = JSON.stringify(kept);
    for (let i = kept.length - 1; i >= 0 && text.length > this.maxBytes; i--) {
      const r = kept[i];
      if (r.lost !== undefined || r.lostElements !== undefined) {
        delete r.lost;
        delete r.lostElements;
        r.lostTruncated = true;
        text = JSON.stringify(kept);
      }
    }
    while (kept.length > 1 && text.length > this.maxBytes) {
      kept.pop();
      text = JSON.stringify(kept);
    }
    this._meta.set('conflicts', kept.length ? text : null);
    return kept.length;
  }
}

function plain(record) {
  const { restore: _, ...rest } = record;
  return { ...rest };
}
