//! Reads of sync data: changes since a cursor, a key's history, past
//! versions. Each is one batch (one transaction), so what it returns is one
//! consistent moment.

use super::commit::latest_id;
use super::{batch, db_err, rows, stmt, text, uint, Chunks};
use crate::error::SyncError;
use crate::hub::Values;
use crate::protocol::{Change, HistoryEntry};
use serde::Deserialize;
use std::collections::HashMap;
use worker::D1Database;

#[derive(Deserialize)]
struct CursorRow {
    cursor: f64,
}

#[derive(Deserialize)]
struct CurrentRow {
    key: String,
    id: f64,
    version: f64,
    deleted: f64,
    updated_at: f64,
    device_id: String,
    data: Option<String>,
}

/// How to find the keys changed after a cursor: through the version index
/// (cost grows with the changes missed) or through the key list (cost grows
/// with the keys). Same answer either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Versions,
    Keys,
}

impl Path {
    /// The cheaper path, given what the hub knows (`keys`: how many keys
    /// the user has, when known).
    pub fn for_read(since: u64, cursor: Option<u64>, keys: Option<usize>) -> Path {
        match (cursor, keys) {
            _ if since == 0 => Path::Keys,
            (Some(c), Some(k)) if c.saturating_sub(since) > k as u64 => Path::Keys,
            _ => Path::Versions,
        }
    }
}

/// The cursor and every key changed after `since`, oldest first.
pub async fn changes_since(
    db: &D1Database,
    user_id: &str,
    since: u64,
    path: Path,
) -> Result<(u64, Vec<Change>), SyncError> {
    // `filter` narrows the rows before the current-row check (which costs a
    // lookup each): the chunk read only wants values stored in chunks.
    let rows_sql = |filter: &str| match path {
        Path::Versions => format!(
            "SELECT h.key, h.id, h.version, h.deleted, h.updated_at, h.device_id, h.data \
             FROM sync_history h WHERE h.user_id = ?1 AND h.version > ?2 {filter} AND h.id = {}",
            latest_id("h.key")
        ),
        Path::Keys => format!(
            "SELECT h.key, h.id, h.version, h.deleted, h.updated_at, h.device_id, h.data \
             FROM sync_state s CROSS JOIN json_each(s.keys) k CROSS JOIN sync_history h \
             WHERE s.user_id = ?1 AND h.user_id = ?1 AND h.key = k.value AND h.id = {} \
             AND h.version > ?2 {filter}",
            latest_id("k.value")
        ),
    };
    let current = rows_sql("");
    let chunked = rows_sql("AND h.chunks > 1");
    let params = [text(user_id), uint(since)];
    let results = batch(
        db,
        "changes",
        user_id,
        vec![
            (
                "sync_state",
                stmt(
                    db,
                    "SELECT cursor FROM sync_state WHERE user_id = ?1",
                    &params[..1],
                )?,
            ),
            (
                "sync_history",
                stmt(db, &format!("{current} ORDER BY h.version"), &params)?,
            ),
            (
                "sync_chunks",
                stmt(
                    db,
                    &format!(
                        "WITH cur AS ({chunked}) SELECT c.hist_id, c.data FROM cur \
                         CROSS JOIN sync_chunks c WHERE c.user_id = ?1 AND c.hist_id = cur.id \
                         ORDER BY c.hist_id, c.idx"
                    ),
                    &params,
                )?,
            ),
        ],
    )
    .await
    .map_err(db_err("changes"))?;
    let [state, current, chunks] = results.as_slice() else {
        return Err(SyncError::Internal("changes: wrong result count".into()));
    };
    let cursor = rows::<CursorRow>(state)?
        .pop()
        .map_or(0, |s| s.cursor as u64);
    let mut chunks = Chunks::read(chunks)?;
    let changes = rows::<CurrentRow>(current)?
        .into_iter()
        .map(|r| {
            let value = (r.deleted == 0.0).then(|| chunks.join(r.id as u64, r.data));
            Change {
                key: r.key,
                deleted: value.is_none(),
                value,
                version: r.version as u64,
                updated_at: r.updated_at as i64,
                device_id: r.device_id,
            }
        })
        .collect();
    Ok((cursor, changes))
}

#[derive(Deserialize)]
struct HistoryRowOut {
    version: f64,
    updated_at: f64,
    device_id: String,
    device_name: Option<String>,
    deleted: f64,
    size: f64,
    current: f64,
}

/// A key's retained versions, newest first, below `before` when given.
pub async fn history(
    db: &D1Database,
    user_id: &str,
    key: &str,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<HistoryEntry>, SyncError> {
    // Versions stay below 2^53; "no bound" is one past any of them.
    let before = before.unwrap_or(1 << 53);
    let sql = format!(
        "SELECT h.version, h.updated_at, h.device_id, d.name AS device_name, h.deleted, h.size, \
           (h.id = {}) AS current \
         FROM sync_history h LEFT JOIN devices d ON d.id = h.device_id \
         WHERE h.user_id = ?1 AND h.key = ?2 AND h.version IS NOT NULL AND h.version < ?3 \
         ORDER BY h.id DESC LIMIT ?4",
        latest_id("?2")
    );
    let results = batch(
        db,
        "history",
        user_id,
        vec![(
            "sync_history",
            stmt(
                db,
                &sql,
                &[text(user_id), text(key), uint(before), uint(limit as u64)],
            )?,
        )],
    )
    .await
    .map_err(db_err("history"))?;
    let found = results
        .first()
        .ok_or_else(|| SyncError::Internal("history: no result".into()))?;
    Ok(rows::<HistoryRowOut>(found)?
        .into_iter()
        .map(|h| HistoryEntry {
            version: h.version as u64,
            updated_at: h.updated_at as i64,
            device_id: h.device_id,
            device_name: h.device_name,
            deleted: h.deleted != 0.0,
            size: h.size as u64,
            current: h.current != 0.0,
        })
        .collect())
}

#[derive(Deserialize)]
struct VersionRow {
    id: f64,
    key: String,
    version: f64,
    deleted: f64,
    updated_at: f64,
    device_id: String,
    data: Option<String>,
}

/// One retained version of a key.
pub struct StoredVersion {
    pub value: Option<String>,
    pub updated_at: i64,
    pub device_id: String,
}

/// Each asked-for (key, version) that history still holds.
pub async fn versions(
    db: &D1Database,
    user_id: &str,
    wanted: &[(String, u64)],
) -> Result<HashMap<(String, u64), StoredVersion>, SyncError> {
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let pairs = serde_json::to_string(wanted).map_err(|e| SyncError::Internal(e.to_string()))?;
    // Each pair is one lookup in the version index.
    const PAIRS: &str = "FROM json_each(?2) p CROSS JOIN sync_history h ON h.user_id = ?1 \
        AND h.version = json_extract(p.value, '$[1]') AND h.key = json_extract(p.value, '$[0]')";
    let params = [text(user_id), text(&pairs)];
    let results = batch(
        db,
        "versions",
        user_id,
        vec![
            (
                "sync_history",
                stmt(
                    db,
                    &format!("SELECT h.id, h.key, h.version, h.deleted, h.updated_at, h.device_id, h.data {PAIRS}"),
                    &params,
                )?,
            ),
            (
                "sync_chunks",
                stmt(
                    db,
                    &format!(
                        "SELECT c.hist_id, c.data {PAIRS} \
                         CROSS JOIN sync_chunks c ON c.user_id = h.user_id AND c.hist_id = h.id \
                         ORDER BY c.hist_id, c.idx"
                    ),
                    &params,
                )?,
            ),
        ],
    )
    .await
    .map_err(db_err("versions"))?;
    let [found, chunks] = results.as_slice() else {
        return Err(SyncError::Internal("versions: wrong result count".into()));
    };
    let mut chunks = Chunks::read(chunks)?;
    Ok(rows::<VersionRow>(found)?
        .into_iter()
        .map(|r| {
            let value = (r.deleted == 0.0).then(|| chunks.join(r.id as u64, r.data));
            (
                (r.key, r.version as u64),
                StoredVersion {
                    value,
                    updated_at: r.updated_at as i64,
                    device_id: r.device_id,
                },
            )
        })
        .collect())
}

/// The values `hub::merge_inputs` asked for.
pub async fn merge_values(
    db: &D1Database,
    user_id: &str,
    wanted: &[(String, u64)],
) -> Result<Values, SyncError> {
    Ok(versions(db, user_id, wanted)
        .await?
        .into_iter()
        .map(|(k, v)| (k, v.value))
        .collect())
}
