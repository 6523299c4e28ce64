-- Record lists (issue #12): a value that is a compact JSON array of objects
-- with unique ids is kept as one row per record version, so an edit of one
-- record stores that record, not the list.
--
-- A key's newest sync_history row still says what the key is; `records = 1`
-- marks the version at which it became a record list (data NULL). Its
-- records are the sync_records rows written since: the value at version V
-- is, for each record, its newest row with a version <= V, in the order of
-- their predecessors (`prev`), texts joined by "," inside "[" "]".
-- Existing values stay as they are and become records on their next write.
--
-- Rows a one-record edit writes, as D1 bills them: the record row 1, its
-- version index entry 1, the counters row 1, the remembered answer 1.
ALTER TABLE sync_history ADD COLUMN records INTEGER NOT NULL DEFAULT 0;
-- Versions of this record list below it can no longer be rebuilt (retention
-- dropped rows they need).
ALTER TABLE sync_history ADD COLUMN horizon INTEGER NOT NULL DEFAULT 0;

-- Each record list's newest write, {key: [version, updated_at]}: rewritten
-- (in the counters row every commit writes anyway) only by a commit that
-- changes a list, so a wake and a `hello` learn which lists changed without
-- reading their records.
ALTER TABLE sync_state ADD COLUMN lists TEXT NOT NULL DEFAULT '{}';

CREATE TABLE sync_records (
  user_id TEXT NOT NULL,
  key TEXT NOT NULL,
  rid TEXT NOT NULL,                   -- the record's id (a JSON number as written)
  seq INTEGER NOT NULL,                -- per user, from sync_state.hist_seq
  version INTEGER,                     -- NULL: a stale write's record that lost
  deleted INTEGER NOT NULL,
  prev TEXT,                           -- the record before it; NULL: first
  updated_at INTEGER NOT NULL,
  device_id TEXT NOT NULL,
  size INTEGER NOT NULL,               -- bytes of the whole value at this version
  data TEXT,                           -- the element's JSON text, verbatim
  created_at INTEGER NOT NULL,
  PRIMARY KEY (user_id, key, rid, seq)
) WITHOUT ROWID;
CREATE INDEX sync_records_version ON sync_records(user_id, key, version)
  WHERE version IS NOT NULL;
