-- The one table of the D1 floor (bench/d1floor/worker.js): a key's current
-- value per room, upserted once per write.
CREATE TABLE kv (
  room TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT,
  version INTEGER NOT NULL,
  PRIMARY KEY (room, key)
);
