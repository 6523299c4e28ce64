//! Reads of sync data: changes since a cursor, a key's history, past
//! versions. Each is one batch (one transaction), so what it returns is one
//! consistent moment.

use super::commit::{latest_id, list_entry, newest_record, LIST_VERSION};
use super::{batch, db_err, rows, stmt, text, uint, Chunks, Labelled};
use crate::error::SyncError;
use crate::hub::{Values, Wanted};
use crate::protocol::{Change, HistoryEntry, RecordHistoryEntry};
use crate::records::{RecordSet, StoredRec};
use serde::Deserialize;
use std::collections::HashMap;
use worker::{D1Database, D1Result};

/// Versions stay below 2^53; "no bound" is one past any of them.
const NO_BOUND: u64 = 1 << 53;

#[derive(Deserialize)]
struct RecRows {
    rows: String,
}

/// One record row as `json_array(rid, data, prev, version, updated_at)`.
#[derive(Deserialize)]
struct RecRow(String, Option<String>, Option<String>, f64, f64);

/// The statement reading the records of `key`'s list that started at
/// `epoch`, as they were at version `at`: each record's newest row up to
/// `at`, unless that row removed it.
fn set_statement(
    db: &D1Database,
    user_id: &str,
    key: &str,
    epoch: u64,
    at: u64,
) -> Result<Labelled, SyncError> {
    Ok((
        "sync_records",
        stmt(
            db,
            // One pass over the key's rows in primary-key order (rid, seq):
            // each record's newest row up to `at` (SQLite takes the bare
            // columns from the max(seq) row). `+version` keeps the planner
            // off the version index, which workerd's SQLite would otherwise
            // scan once per record. The rows come back as one JSON text:
            // thousands of row objects across the runtime's boundary cost
            // far more than parsing one string.
            "SELECT json_group_array(json_array(rid, data, prev, version, updated_at)) AS rows FROM ( \
               SELECT r.rid, r.data, r.prev, r.version, r.updated_at, r.deleted, max(r.seq) \
               FROM sync_records r WHERE r.user_id = ?1 AND r.key = ?2 \
               AND r.version IS NOT NULL AND +r.version <= ?4 GROUP BY r.rid) \
             WHERE deleted = 0 AND version >= ?3",
            &[text(user_id), text(key), uint(epoch), uint(at)],
        )?,
    ))
}

fn read_set(r: &D1Result) -> Result<RecordSet, SyncError> {
    let text = rows::<RecRows>(r)?
        .pop()
        .map(|r| r.rows)
        .unwrap_or_default();
    let parsed: Vec<RecRow> = if text.is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(&text).map_err(|e| SyncError::Internal(format!("record rows: {e}")))?
    };
    let rows = parsed
        .into_iter()
        .map(|RecRow(id, data, prev, version, updated_at)| StoredRec {
            id,
            text: data.unwrap_or_default(),
            prev,
            version: version as u64,
            updated_at: updated_at as i64,
        })
        .collect();
    Ok(RecordSet::from_rows(rows))
}

/// Record lists as they are now: (key, version it started at) each.
pub async fn record_sets(
    db: &D1Database,
    user_id: &str,
    wanted: &[(String, u64)],
) -> Result<HashMap<String, RecordSet>, SyncError> {
    lists_at(db, user_id, wanted, NO_BOUND).await
}

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
    records: f64,
    rversion: Option<f64>,
    rupdated: Option<f64>,
    rdevice: Option<String>,
}

/// How to find the keys changed after a cursor: through the version index
/// (cost grows with the changes missed) or through the key list (cost grows
/// with the keys). Same answer either way. Record lists are always found
/// through the key list (their records' versions are indexed per key).
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

/// What changed after a cursor.
pub struct Changes {
    pub cursor: u64,
    /// Every key changed, oldest first.
    pub changes: Vec<Change>,
    /// The record lists among them: (key, the version the list started at).
    pub lists: Vec<(String, u64)>,
}

/// The cursor and every key changed after `since`, oldest first.
/// `known`: record lists the hub holds in memory, by key, with the version
/// they are at; one D1 still holds at that version is not read again.
pub async fn changes_since(
    db: &D1Database,
    user_id: &str,
    since: u64,
    path: Path,
    known: &HashMap<String, (u64, RecordSet)>,
) -> Result<Changes, SyncError> {
    // A record list's version and time come from the counters row's map
    // of lists (`l`); who wrote it last, from its newest record row, only
    // for the rows returned.
    let cols = format!(
        "h.key, h.id, h.version, h.deleted, h.updated_at, h.device_id, h.data, h.records, \
         CASE WHEN h.records = 1 THEN {LIST_VERSION} END AS rversion, \
         CASE WHEN h.records = 1 THEN json_extract(l.value, '$[1]') END AS rupdated, {} AS rdevice",
        newest_record("device_id")
    );
    // A record list changed when a record did, even if its row did not.
    let list_changed = format!("(h.records = 1 AND {LIST_VERSION} > ?2)");
    // `filter` narrows the rows before the current-row check (which costs a
    // lookup each): the chunk read only wants values stored in chunks.
    let rows_sql = |filter: &str| {
        match path {
        // Keys whose row changed, through the version index; then the lists
        // the map says changed (only those: none is looked up otherwise).
        Path::Versions => format!(
            "SELECT {cols} FROM sync_state s CROSS JOIN sync_history h {} \
             WHERE s.user_id = ?1 AND h.user_id = ?1 AND h.version > ?2 {filter} AND h.id = {} \
             UNION ALL \
             SELECT {cols} FROM sync_state s CROSS JOIN json_each(s.lists) l CROSS JOIN sync_history h \
             WHERE s.user_id = ?1 AND {LIST_VERSION} > ?2 AND h.user_id = ?1 AND h.key = l.key \
             AND h.id = {} AND h.version <= ?2 AND h.records = 1 {filter}",
            list_entry("h.key"),
            latest_id("h.key"),
            latest_id("l.key")
        ),
        Path::Keys => format!(
            "SELECT {cols} FROM sync_state s CROSS JOIN json_each(s.keys) k CROSS JOIN sync_history h {} \
             WHERE s.user_id = ?1 AND h.user_id = ?1 AND h.key = k.value AND h.id = {} \
             AND (h.version > ?2 OR {list_changed}) {filter}",
            list_entry("k.value"),
            latest_id("k.value")
        ),
    }
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
            ("sync_history", stmt(db, &current, &params)?),
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
    let current = rows::<CurrentRow>(current)?;
    let lists: Vec<(String, u64)> = current
        .iter()
        .filter(|r| r.records != 0.0)
        .map(|r| (r.key.clone(), r.version as u64))
        .collect();
    // (`lists` is returned too: a catch-up may send patches against them.)
    let version_of = |r: &CurrentRow| r.rversion.unwrap_or(0.0).max(r.version) as u64;
    let mut sets: HashMap<String, RecordSet> = HashMap::new();
    let mut unknown = Vec::new();
    for r in current.iter().filter(|r| r.records != 0.0) {
        match known.get(&r.key) {
            Some((v, set)) if *v == version_of(r) => {
                sets.insert(r.key.clone(), set.clone());
            }
            _ => unknown.push((r.key.clone(), r.version as u64)),
        }
    }
    sets.extend(record_sets(db, user_id, &unknown).await?);
    let mut changes: Vec<Change> = current
        .into_iter()
        .map(|r| {
            if r.records != 0.0 {
                let newer = r.rversion.filter(|v| *v > r.version);
                return Change {
                    value: Some(
                        sets.remove(&r.key)
                            .map(|s| s.value())
                            .unwrap_or_else(|| "[]".into()),
                    ),
                    key: r.key,
                    deleted: false,
                    version: newer.unwrap_or(r.version) as u64,
                    updated_at: match (newer, r.rupdated) {
                        (Some(_), Some(t)) => t as i64,
                        _ => r.updated_at as i64,
                    },
                    device_id: match (newer, r.rdevice) {
                        (Some(_), Some(d)) => d,
                        _ => r.device_id,
                    },
                    patch: None,
                    list: None,
                };
            }
            let value = (r.deleted == 0.0).then(|| chunks.join(r.id as u64, r.data));
            Change {
                key: r.key,
                deleted: value.is_none(),
                value,
                version: r.version as u64,
                updated_at: r.updated_at as i64,
                device_id: r.device_id,
                patch: None,
                list: None,
            }
        })
        .collect();
    changes.sort_by_key(|c| c.version);
    Ok(Changes {
        cursor,
        changes,
        lists,
    })
}

/// Record lists as they were at version `at` (each started at or before it).
pub async fn lists_at(
    db: &D1Database,
    user_id: &str,
    lists: &[(String, u64)],
    at: u64,
) -> Result<HashMap<String, RecordSet>, SyncError> {
    if lists.is_empty() {
        return Ok(HashMap::new());
    }
    let statements = lists
        .iter()
        .map(|(key, epoch)| set_statement(db, user_id, key, *epoch, at))
        .collect::<Result<Vec<_>, _>>()?;
    let results = batch(db, "records", user_id, statements)
        .await
        .map_err(db_err("records"))?;
    lists
        .iter()
        .zip(&results)
        .map(|((key, _), r)| Ok((key.clone(), read_set(r)?)))
        .collect()
}

#[derive(Deserialize)]
struct HistoryRowOut {
    version: f64,
    updated_at: f64,
    device_id: String,
    device_name: Option<String>,
    deleted: f64,
    size: f64,
    records: f64,
    horizon: f64,
}

#[derive(Deserialize)]
struct LatestRow {
    version: f64,
    rversion: Option<f64>,
}

/// A key's retained versions, newest first, below `before` when given. A
/// record list's versions are those its records were written at, from
/// where its list started (or retention's horizon) on.
pub async fn history(
    db: &D1Database,
    user_id: &str,
    key: &str,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<HistoryEntry>, SyncError> {
    let before = before.unwrap_or(NO_BOUND);
    let params = [text(user_id), text(key), uint(before), uint(limit as u64)];
    let results = batch(
        db,
        "history",
        user_id,
        vec![
            (
                "sync_history",
                stmt(
                    db,
                    "SELECT h.version, h.updated_at, h.device_id, d.name AS device_name, h.deleted, \
                       h.size, h.records, h.horizon \
                     FROM sync_history h LEFT JOIN devices d ON d.id = h.device_id \
                     WHERE h.user_id = ?1 AND h.key = ?2 AND h.version IS NOT NULL AND h.version < ?3 \
                     ORDER BY h.id DESC",
                    &params[..3],
                )?,
            ),
            (
                "sync_records",
                stmt(
                    db,
                    "SELECT r.version, r.updated_at, r.device_id, d.name AS device_name, 0 AS deleted, \
                       r.size, 1 AS records, 0 AS horizon \
                     FROM sync_records r LEFT JOIN devices d ON d.id = r.device_id \
                     WHERE r.user_id = ?1 AND r.key = ?2 AND r.version IS NOT NULL AND r.version < ?3 \
                     GROUP BY r.version ORDER BY r.version DESC LIMIT ?4",
                    &params,
                )?,
            ),
            (
                "sync_history",
                stmt(
                    db,
                    &format!(
                        "SELECT h.version, {} AS rversion FROM sync_history h \
                         WHERE h.user_id = ?1 AND h.key = ?2 AND h.id = {}",
                        newest_record("version"),
                        latest_id("?2")
                    ),
                    &params[..2],
                )?,
            ),
        ],
    )
    .await
    .map_err(db_err("history"))?;
    let [starts, lists, latest] = results.as_slice() else {
        return Err(SyncError::Internal("history: wrong result count".into()));
    };
    let current = rows::<LatestRow>(latest)?
        .pop()
        .map(|l| l.rversion.unwrap_or(0.0).max(l.version) as u64);
    let starts = rows::<HistoryRowOut>(starts)?;
    // A record version counts within the list it belongs to (the newest
    // row at or before it), above that list's start and horizon.
    let counts = |v: u64| {
        starts
            .iter()
            .find(|h| h.version as u64 <= v)
            .is_some_and(|h| h.records != 0.0 && v > h.version as u64 && v >= h.horizon as u64)
    };
    let listed: Vec<HistoryRowOut> = rows::<HistoryRowOut>(lists)?
        .into_iter()
        .filter(|r| counts(r.version as u64))
        .collect();
    let mut all: Vec<HistoryEntry> = starts
        .iter()
        .map(|h| (h, h.records != 0.0 && (h.version as u64) < h.horizon as u64))
        .filter(|(_, hidden)| !hidden)
        .map(|(h, _)| h)
        .chain(&listed)
        .map(|h| HistoryEntry {
            version: h.version as u64,
            updated_at: h.updated_at as i64,
            device_id: h.device_id.clone(),
            device_name: h.device_name.clone(),
            deleted: h.deleted != 0.0,
            size: h.size as u64,
            current: Some(h.version as u64) == current,
        })
        .collect();
    all.sort_by_key(|e| std::cmp::Reverse(e.version));
    all.truncate(limit);
    Ok(all)
}

#[derive(Deserialize)]
struct RecordHistoryRow {
    version: Option<f64>,
    deleted: f64,
    updated_at: f64,
    device_id: String,
    device_name: Option<String>,
    data: Option<String>,
}

/// Every kept row of one record of `key`, newest first: its versions (a
/// removal included) and what stale writes sent for it that did not win.
pub async fn record_history(
    db: &D1Database,
    user_id: &str,
    key: &str,
    id: &str,
    limit: usize,
) -> Result<Vec<RecordHistoryEntry>, SyncError> {
    let results = batch(
        db,
        "record-history",
        user_id,
        vec![(
            "sync_records",
            stmt(
                db,
                "SELECT r.version, r.deleted, r.updated_at, r.device_id, d.name AS device_name, r.data \
                 FROM sync_records r LEFT JOIN devices d ON d.id = r.device_id \
                 WHERE r.user_id = ?1 AND r.key = ?2 AND r.rid = ?3 ORDER BY r.seq DESC LIMIT ?4",
                &[text(user_id), text(key), text(id), uint(limit as u64)],
            )?,
        )],
    )
    .await
    .map_err(db_err("record history"))?;
    let found = results
        .first()
        .ok_or_else(|| SyncError::Internal("record history: no result".into()))?;
    let mut current_seen = false;
    Ok(rows::<RecordHistoryRow>(found)?
        .into_iter()
        .map(|r| {
            let version = r.version.map(|v| v as u64);
            // The newest row with a version is the record as it stands.
            let current = version.is_some() && !current_seen;
            current_seen |= version.is_some();
            RecordHistoryEntry {
                version,
                deleted: r.deleted != 0.0,
                updated_at: r.updated_at as i64,
                device_id: r.device_id,
                device_name: r.device_name,
                current,
                value: r.data,
            }
        })
        .collect())
}

#[derive(Deserialize)]
struct LastWriteRow {
    updated_at: f64,
    device_id: String,
}

/// When and by which device a record list was last written: its newest
/// record row (one index seek); `None` for a list without records.
pub async fn last_record_write(
    db: &D1Database,
    user_id: &str,
    key: &str,
) -> Result<Option<(i64, String)>, SyncError> {
    let results = batch(
        db,
        "last-write",
        user_id,
        vec![(
            "sync_records",
            stmt(
                db,
                "SELECT r.updated_at, r.device_id FROM sync_records r WHERE r.user_id = ?1 \
                 AND r.key = ?2 AND r.version IS NOT NULL ORDER BY r.version DESC LIMIT 1",
                &[text(user_id), text(key)],
            )?,
        )],
    )
    .await
    .map_err(db_err("last write"))?;
    let row = results
        .first()
        .map(rows::<LastWriteRow>)
        .transpose()?
        .and_then(|mut r| r.pop());
    Ok(row.map(|r| (r.updated_at as i64, r.device_id)))
}

#[derive(Deserialize)]
struct RecordAtRow {
    data: Option<String>,
    deleted: f64,
    prev: Option<String>,
}

/// One record as it was at version `at` of its key: its text and the id
/// before it then (`None`: it did not exist then, or is no longer kept).
pub async fn record_at(
    db: &D1Database,
    user_id: &str,
    key: &str,
    id: &str,
    at: u64,
) -> Result<Option<(String, Option<String>)>, SyncError> {
    let results = batch(
        db,
        "record-at",
        user_id,
        vec![(
            "sync_records",
            stmt(
                db,
                "SELECT r.data, r.deleted, r.prev FROM sync_records r \
                 WHERE r.user_id = ?1 AND r.key = ?2 AND r.rid = ?3 AND r.version IS NOT NULL \
                 AND +r.version <= ?4 ORDER BY r.seq DESC LIMIT 1",
                &[text(user_id), text(key), text(id), uint(at)],
            )?,
        )],
    )
    .await
    .map_err(db_err("record at"))?;
    let found = results
        .first()
        .ok_or_else(|| SyncError::Internal("record at: no result".into()))?;
    Ok(rows::<RecordAtRow>(found)?
        .pop()
        .filter(|r| r.deleted == 0.0)
        .and_then(|r| Some((r.data?, r.prev))))
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
    records: f64,
    horizon: f64,
    wanted: f64,
    rupdated: Option<f64>,
    rdevice: Option<String>,
}

/// One retained version of a key.
pub struct StoredVersion {
    pub value: Option<String>,
    pub updated_at: i64,
    pub device_id: String,
}

/// Each asked-for (key, version) that history still holds. A version of a
/// record list is rebuilt from its records.
pub async fn versions(
    db: &D1Database,
    user_id: &str,
    wanted: &[(String, u64)],
) -> Result<HashMap<(String, u64), StoredVersion>, SyncError> {
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let pairs = serde_json::to_string(wanted).map_err(|e| SyncError::Internal(e.to_string()))?;
    // Each pair finds the key's newest row at or before the version: the
    // value itself, or the start of the record list it belongs to.
    const PAIRS: &str = "FROM json_each(?2) p CROSS JOIN sync_history h ON h.user_id = ?1 \
        AND h.key = json_extract(p.value, '$[0]') AND h.id = (SELECT x.id FROM sync_history x \
          WHERE x.user_id = ?1 AND x.key = json_extract(p.value, '$[0]') AND x.version IS NOT NULL \
          AND x.version <= json_extract(p.value, '$[1]') ORDER BY x.id DESC LIMIT 1)";
    const AT: &str = "FROM sync_records r WHERE r.user_id = ?1 AND r.key = h.key \
        AND r.version = json_extract(p.value, '$[1]') LIMIT 1";
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
                    &format!(
                        "SELECT h.id, h.key, h.version, h.deleted, h.updated_at, h.device_id, h.data, \
                           h.records, h.horizon, json_extract(p.value, '$[1]') AS wanted, \
                           CASE WHEN h.records = 1 THEN (SELECT r.updated_at {AT}) END AS rupdated, \
                           CASE WHEN h.records = 1 THEN (SELECT r.device_id {AT}) END AS rdevice {PAIRS}"
                    ),
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
                         WHERE h.version = json_extract(p.value, '$[1]') ORDER BY c.hist_id, c.idx"
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
    let mut out = HashMap::new();
    let mut lists = Vec::new();
    for r in rows::<VersionRow>(found)? {
        let wanted = r.wanted as u64;
        let start = r.version as u64;
        if r.records == 0.0 {
            if start != wanted {
                continue;
            }
            let value = (r.deleted == 0.0).then(|| chunks.join(r.id as u64, r.data));
            out.insert(
                (r.key, wanted),
                StoredVersion {
                    value,
                    updated_at: r.updated_at as i64,
                    device_id: r.device_id,
                },
            );
            continue;
        }
        // A version of a record list: its start, or one its records name,
        // and not below what retention kept whole.
        let (updated_at, device_id) = match (r.rupdated, r.rdevice) {
            (Some(t), Some(d)) => (t as i64, d),
            _ if start == wanted => (r.updated_at as i64, r.device_id),
            _ => continue,
        };
        if wanted < r.horizon as u64 {
            continue;
        }
        lists.push((r.key, start, wanted, updated_at, device_id));
    }
    if !lists.is_empty() {
        let statements = lists
            .iter()
            .map(|(key, start, at, _, _)| set_statement(db, user_id, key, *start, *at))
            .collect::<Result<Vec<_>, _>>()?;
        let results = batch(db, "versions", user_id, statements)
            .await
            .map_err(db_err("versions"))?;
        for ((key, _, at, updated_at, device_id), r) in lists.into_iter().zip(&results) {
            let set = read_set(r)?;
            out.insert(
                (key, at),
                StoredVersion {
                    value: Some(set.value()),
                    updated_at,
                    device_id,
                },
            );
        }
    }
    Ok(out)
}

/// What `hub::merge_inputs` asked for.
pub async fn merge_values(
    db: &D1Database,
    user_id: &str,
    wanted: &Wanted,
) -> Result<Values, SyncError> {
    Ok(Values {
        versions: versions(db, user_id, &wanted.versions)
            .await?
            .into_iter()
            .map(|(k, v)| (k, v.value))
            .collect(),
        sets: record_sets(db, user_id, &wanted.sets).await?,
    })
}
