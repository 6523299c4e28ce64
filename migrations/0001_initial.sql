-- alternassist-sync schema, version 1.

CREATE TABLE users (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,          -- lower-cased
  password TEXT NOT NULL,              -- pbkdf2-sha256$iterations$salt$hash
  created_at INTEGER NOT NULL          -- ms since epoch
);

CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users(id),
  name TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,     -- SHA-256 of the token, hex; never the token
  created_at INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,         -- slides forward on use
  revoked_at INTEGER
);
CREATE INDEX devices_user ON devices(user_id);

-- The user's change counter and history row counter, guarded on every commit.
CREATE TABLE sync_state (
  user_id TEXT PRIMARY KEY,
  cursor INTEGER NOT NULL,
  hist_seq INTEGER NOT NULL
);

-- Every value ever stored: each accepted version (version set) and each
-- conflict loser (version NULL). The first chunk is inline in `data`.
CREATE TABLE sync_history (
  user_id TEXT NOT NULL,
  id INTEGER NOT NULL,
  key TEXT NOT NULL,
  version INTEGER,
  deleted INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  device_id TEXT NOT NULL,
  size INTEGER NOT NULL,               -- bytes of the whole value
  chunks INTEGER NOT NULL,             -- 1 + rows in sync_chunks
  hash TEXT NOT NULL,
  data TEXT,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (user_id, id)
);
CREATE INDEX sync_history_key ON sync_history(user_id, key, id);

-- Chunks 1.. of values larger than one D1 row allows.
CREATE TABLE sync_chunks (
  user_id TEXT NOT NULL,
  hist_id INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  data TEXT NOT NULL,
  PRIMARY KEY (user_id, hist_id, idx)
);

-- The current version of each key; `hist_id` points at its value.
CREATE TABLE sync_data (
  user_id TEXT NOT NULL,
  key TEXT NOT NULL,
  version INTEGER NOT NULL,
  hist_id INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  device_id TEXT NOT NULL,
  hash TEXT NOT NULL,
  PRIMARY KEY (user_id, key)
);
CREATE INDEX sync_data_version ON sync_data(user_id, version);

-- Answers already given, so a retried requestId changes nothing.
CREATE TABLE sync_requests (
  user_id TEXT NOT NULL,
  request_id TEXT NOT NULL,
  response TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (user_id, request_id)
);

-- Failed logins per fixed one-minute window; bucket is "email:..." or "ip:...".
CREATE TABLE auth_failures (
  bucket TEXT PRIMARY KEY,
  window_start INTEGER NOT NULL,
  count INTEGER NOT NULL
);
