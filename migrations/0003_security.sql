-- Issue #15 (security).
-- The day's write units per user (quota WRITES_PER_DAY): columns of the
-- counter row every commit updates already, so counting costs no billed row.
ALTER TABLE sync_state ADD COLUMN write_day INTEGER NOT NULL DEFAULT 0;   -- UTC day (ms / 86400000)
ALTER TABLE sync_state ADD COLUMN write_units INTEGER NOT NULL DEFAULT 0;
-- An upper bound of the bytes the user stores (quota QUOTA_BYTES), so a
-- wake reads one row: every commit adds what it inserts; retention's
-- deletions are not subtracted, and a write is refused for space only
-- after an exact count over the history.
ALTER TABLE sync_state ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
UPDATE sync_state SET bytes =
  (SELECT COALESCE(SUM(h.size), 0) FROM sync_history h WHERE h.user_id = sync_state.user_id);
-- Ended sign-in windows are deleted on each attempt; this keeps that cheap.
CREATE INDEX auth_failures_window ON auth_failures(window_start);
