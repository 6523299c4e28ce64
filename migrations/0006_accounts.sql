-- Issue #22 (accounts): disabling an account, per-person limits, password
-- reset codes, and the registration allow-list in the database.

-- Set by the operator (`scripts/admin.sh disable`): the account's devices
-- were signed out and it cannot sign in until enabled (NULL).
ALTER TABLE users ADD COLUMN disabled_at INTEGER;
-- Per-person limits (`scripts/admin.sh quota`); NULL: the deployment's
-- QUOTA_BYTES, QUOTA_KEYS, WRITES_PER_DAY.
ALTER TABLE users ADD COLUMN quota_bytes INTEGER;
ALTER TABLE users ADD COLUMN quota_keys INTEGER;
ALTER TABLE users ADD COLUMN quota_writes_per_day INTEGER;

-- One reset code per account at a time (a new one replaces it), issued by
-- the operator, valid for an hour and once. Only its SHA-256 is stored.
CREATE TABLE reset_codes (
  user_id TEXT PRIMARY KEY,
  code_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- The operator's changes to the registration allow-list: an entry (a
-- lower-cased email or "@domain") allowed (1) or not (0). Entries of
-- REGISTRATION_ALLOWLIST without a row here hold as the variable says, so
-- the variable seeds the list and this table changes it without a deploy.
CREATE TABLE registration_allowlist (
  entry TEXT PRIMARY KEY,
  allowed INTEGER NOT NULL,
  changed_at INTEGER NOT NULL
) WITHOUT ROWID;
