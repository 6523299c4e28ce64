-- alternassist-sync schema, version 2: an edit writes at most 4 rows as D1
-- bills them (every b-tree entry: table rows and index entries alike).
--
-- - Every sync table is WITHOUT ROWID: its primary key is the table, so a
--   row is one entry, not a row plus an index entry for the key.
-- - sync_data is gone. A key's current value is its newest history row with
--   a version; the key list lives in sync_state (rewritten only when a key
--   is created), so a wake reads one row per key, and the since-query reads
--   the partial version index.
-- - sync_requests is no longer read when a hub wakes: its primary key
--   refuses a second answer for a requestId, which makes a replayed write's
--   commit fail, and only then is the stored answer looked up.
-- - sync_state.commit_id names the last commit, so a hub can tell after an
--   unclear D1 failure whether its commit landed.

CREATE TABLE sync_state_v2 (
  user_id TEXT PRIMARY KEY,
  cursor INTEGER NOT NULL,
  hist_seq INTEGER NOT NULL,
  commit_id TEXT NOT NULL DEFAULT '',
  keys TEXT NOT NULL DEFAULT '[]'      -- JSON array of the user's keys, sorted
) WITHOUT ROWID;
INSERT INTO sync_state_v2 (user_id, cursor, hist_seq, keys)
  SELECT s.user_id, s.cursor, s.hist_seq,
    (SELECT json_group_array(key) FROM (SELECT d.key FROM sync_data d WHERE d.user_id = s.user_id ORDER BY d.key))
  FROM sync_state s;

-- Every value ever stored: each accepted version (version set) and each
-- conflict loser (version NULL). The first chunk is inline in `data`.
CREATE TABLE sync_history_v2 (
  user_id TEXT NOT NULL,
  key TEXT NOT NULL,
  id INTEGER NOT NULL,                 -- per user, from sync_state.hist_seq
  version INTEGER,
  deleted INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  device_id TEXT NOT NULL,
  size INTEGER NOT NULL,               -- bytes of the whole value
  chunks INTEGER NOT NULL,             -- 1 + rows in sync_chunks
  hash TEXT NOT NULL,
  data TEXT,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (user_id, key, id)
) WITHOUT ROWID;
INSERT INTO sync_history_v2 (user_id, key, id, version, deleted, updated_at, device_id, size, chunks, hash, data, created_at)
  SELECT user_id, key, id, version, deleted, updated_at, device_id, size, chunks, hash, data, created_at
  FROM sync_history;

-- Chunks 1.. of values larger than one D1 row allows.
CREATE TABLE sync_chunks_v2 (
  user_id TEXT NOT NULL,
  hist_id INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  data TEXT NOT NULL,
  PRIMARY KEY (user_id, hist_id, idx)
) WITHOUT ROWID;
INSERT INTO sync_chunks_v2 (user_id, hist_id, idx, data)
  SELECT user_id, hist_id, idx, data FROM sync_chunks;

-- Answers already given, so a retried requestId changes nothing.
CREATE TABLE sync_requests_v2 (
  user_id TEXT NOT NULL,
  request_id TEXT NOT NULL,
  response TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (user_id, request_id)
) WITHOUT ROWID;
INSERT INTO sync_requests_v2 (user_id, request_id, response, created_at)
  SELECT user_id, request_id, response, created_at FROM sync_requests;

DROP TABLE sync_data;
DROP TABLE sync_state;
DROP TABLE sync_history;
DROP TABLE sync_chunks;
DROP TABLE sync_requests;
ALTER TABLE sync_state_v2 RENAME TO sync_state;
ALTER TABLE sync_history_v2 RENAME TO sync_history;
ALTER TABLE sync_chunks_v2 RENAME TO sync_chunks;
ALTER TABLE sync_requests_v2 RENAME TO sync_requests;

-- Versions are unique per user: the since-query's index, and a second guard
-- against two plans handing out the same version.
CREATE UNIQUE INDEX sync_history_version ON sync_history(user_id, version)
  WHERE version IS NOT NULL;
