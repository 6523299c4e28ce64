-- Issue #15 (security).
-- The day's write units per user (quota WRITES_PER_DAY): columns of the
-- counter row every commit updates already, so counting costs no billed row.
ALTER TABLE sync_state ADD COLUMN write_day INTEGER NOT NULL DEFAULT 0;   -- UTC day (ms / 86400000)
ALTER TABLE sync_state ADD COLUMN write_units INTEGER NOT NULL DEFAULT 0;
-- Ended sign-in windows are deleted on each attempt; this keeps that cheap.
CREATE INDEX auth_failures_window ON auth_failures(window_start);
