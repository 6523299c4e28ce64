//! What a hub loads when it wakes, how it persists a plan, and what it reads
//! after a failed commit.
//!
//! Rows written per single-key edit, as D1 bills them (see
//! migrations/0002): the counters row 1, the history row 1 plus its version
//! index entry 1, the remembered answer 1 (only with a requestId). A new
//! key rewrites the key list in the same counters row, and the day's write
//! units ride on it too (migrations/0003): columns cost no billed row.

use super::super::config::Retention;
use super::{batch, db_err, int, num, rows, stmt, text, uint, Labelled};
use crate::error::SyncError;
use crate::hub::session::CommitCheck;
use crate::hub::{KeyMeta, Plan, UserState};
use crate::model::{split_chunks, CHUNK_BYTES};
use crate::quota::Usage;
use crate::sqlgen::{json_select, pack_json, pack_rows, values_placeholders, MAX_JSON_BYTES};
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::D1Database;

/// Rows of one key that one commit's retention looks at, at most: the
/// oldest ones, which are the first to expire. A commit adds a row or two
/// per key, so this keeps up, and the work does not grow with history depth.
const RETENTION_SCAN: u32 = 16;
/// Remembered answers dropped by one prune, at most.
const PRUNE_REQUESTS: u32 = 1000;

/// The id of the key's current row: its newest row with a version.
pub(super) fn latest_id(key: &str) -> String {
    format!(
        "(SELECT x.id FROM sync_history x WHERE x.user_id = ?1 AND x.key = {key} \
         AND x.version IS NOT NULL ORDER BY x.id DESC LIMIT 1)"
    )
}

#[derive(Deserialize)]
struct StateRow {
    cursor: f64,
    hist_seq: f64,
    write_day: f64,
    write_units: f64,
    bytes: f64,
}

#[derive(Deserialize)]
struct MetaRow {
    key: String,
    id: f64,
    version: f64,
    deleted: f64,
    updated_at: f64,
    hash: String,
    records: f64,
    /// For a record list: its newest write's version and time (from the
    /// counters row's map of lists).
    rversion: Option<f64>,
    rupdated: Option<f64>,
}

/// The entry of key `key` (a column) in the counters row's map of record
/// lists, as `l` (`l.value` is `[version, updated_at]`); with `s`, the
/// counters row, in scope.
pub(super) fn list_entry(key: &str) -> String {
    format!("LEFT JOIN json_each(s.lists) l ON l.key = {key}")
}

/// The newest version of a record list, from its map entry `l`.
pub(super) const LIST_VERSION: &str = "json_extract(l.value, '$[0]')";

/// The newest record row of the record list `h` (a `sync_history` row), one
/// index seek: `col` of it (only for rows a read returns).
pub(super) fn newest_record(col: &str) -> String {
    format!(
        "CASE WHEN h.records = 1 THEN (SELECT r.{col} FROM sync_records r \
         WHERE r.user_id = ?1 AND r.key = h.key AND r.version IS NOT NULL \
         ORDER BY r.version DESC LIMIT 1) END"
    )
}

/// Counters, usage and key metadata: one row for the counters and key
/// list, one per key, and the sizes of the user's history rows (the
/// storage quota counts current values and history together). No answers
/// are read: D1 keeps them until a retry asks.
/// With `count_bytes`, the stored bytes are summed over the user's history
/// (rows read grow with it); otherwise the counters row's upper bound is
/// read (every insert adds to it, retention's deletions do not subtract).
pub async fn load_state(
    db: &D1Database,
    user_id: &str,
    count_bytes: bool,
) -> Result<UserState, SyncError> {
    let uid = [text(user_id)];
    let current = format!(
        "SELECT h.key, h.id, h.version, h.deleted, h.updated_at, h.hash, h.records, \
           {LIST_VERSION} AS rversion, json_extract(l.value, '$[1]') AS rupdated \
         FROM sync_state s CROSS JOIN json_each(s.keys) k CROSS JOIN sync_history h {} \
         WHERE s.user_id = ?1 AND h.user_id = ?1 AND h.key = k.value AND h.id = {}",
        list_entry("k.value"),
        latest_id("k.value")
    );
    let results = batch(
        db,
        "load",
        user_id,
        vec![
            // Users made before sync_state existed get their row here.
            (
                "sync_state",
                stmt(
                    db,
                    "INSERT INTO sync_state (user_id, cursor, hist_seq) VALUES (?1, 0, 0) \
                     ON CONFLICT DO NOTHING",
                    &uid,
                )?,
            ),
            (
                "sync_state",
                stmt(
                    db,
                    if count_bytes {
                        "SELECT cursor, hist_seq, write_day, write_units, \
                           (SELECT COALESCE(SUM(size), 0) FROM sync_history WHERE user_id = ?1 AND records = 0) \
                           + (SELECT COALESCE(SUM(length(data)), 0) FROM sync_records WHERE user_id = ?1) AS bytes \
                         FROM sync_state WHERE user_id = ?1"
                    } else {
                        "SELECT cursor, hist_seq, write_day, write_units, bytes \
                         FROM sync_state WHERE user_id = ?1"
                    },
                    &uid,
                )?,
            ),
            ("sync_history", stmt(db, &current, &uid)?),
        ],
    )
    .await
    .map_err(db_err("load state"))?;
    let [_, state, metas] = results.as_slice() else {
        return Err(SyncError::Internal("load state: wrong result count".into()));
    };
    let state = rows::<StateRow>(state)?
        .pop()
        .ok_or_else(|| SyncError::Internal("load state: no sync_state row".into()))?;
    Ok(UserState {
        cursor: state.cursor as u64,
        hist_seq: state.hist_seq as u64,
        usage: Usage {
            bytes: state.bytes as u64,
            day: state.write_day as i64,
            day_units: state.write_units as u64,
        },
        keys: rows::<MetaRow>(metas)?
            .into_iter()
            .map(|m| {
                let records = m.records != 0.0;
                let newer = m.rversion.filter(|v| records && *v > m.version);
                (
                    m.key,
                    KeyMeta {
                        version: newer.unwrap_or(m.version) as u64,
                        deleted: m.deleted != 0.0,
                        updated_at: match (newer, m.rupdated) {
                            (Some(_), Some(t)) => t as i64,
                            _ => m.updated_at as i64,
                        },
                        hash: m.hash,
                        hist_id: m.id as u64,
                        records,
                        epoch: newer.map(|_| m.version as u64),
                    },
                )
            })
            .collect(),
        unpruned: Default::default(),
        records: Default::default(),
    })
}

/// One value of a row to insert.
#[derive(Debug, Clone, Copy)]
enum Cell<'a> {
    Text(&'a str),
    Int(i64),
    Null,
}

impl Serialize for Cell<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Text(t) => s.serialize_str(t),
            Cell::Int(n) => s.serialize_i64(*n),
            Cell::Null => s.serialize_none(),
        }
    }
}

impl Cell<'_> {
    fn js(&self) -> JsValue {
        match self {
            Cell::Text(t) => text(t),
            Cell::Int(n) => int(*n),
            Cell::Null => JsValue::NULL,
        }
    }

    fn len(&self) -> usize {
        match self {
            Cell::Text(t) => t.len(),
            _ => 8,
        }
    }
}

/// Inserts `rows` (the user's, `user_id` first) into `table` in few
/// statements, however many rows: as JSON arrays read by `json_each`, up
/// to `MAX_JSON_BYTES` of JSON per statement. So one group's commit (an
/// import of 1,000 keys included) stays within D1's statements per
/// invocation. A row with a NUL character (which SQLite's JSON functions
/// would cut short) or too big for one JSON parameter is bound as
/// parameters instead.
fn insert_rows(
    db: &D1Database,
    table: &'static str,
    columns: &str,
    user_id: &str,
    rows: Vec<Vec<Cell<'_>>>,
    out: &mut Vec<Labelled>,
) -> Result<(), SyncError> {
    let cols = columns.split(',').count();
    let mut json = Vec::with_capacity(rows.len());
    let mut bound = Vec::new();
    for row in &rows {
        let nul = row
            .iter()
            .any(|c| matches!(c, Cell::Text(t) if t.contains('\0')));
        let text = serde_json::to_string(row).map_err(|e| SyncError::Internal(e.to_string()))?;
        if nul || text.len() >= MAX_JSON_BYTES {
            bound.push(row);
        } else {
            json.push(text);
        }
    }
    let sizes: Vec<usize> = json.iter().map(String::len).collect();
    let sql = format!(
        "INSERT INTO {table} ({columns}) SELECT {} FROM json_each(?2)",
        json_select(cols)
    );
    for pack in pack_json(&sizes, MAX_JSON_BYTES) {
        let array = format!("[{}]", json[pack].join(","));
        out.push((table, stmt(db, &sql, &[text(user_id), text(&array)])?));
    }
    let sizes: Vec<usize> = bound
        .iter()
        .map(|r| r.iter().map(Cell::len).sum())
        .collect();
    let mut bound = bound.into_iter();
    for range in pack_rows(&sizes, cols) {
        let n = range.len();
        let mut params = Vec::with_capacity(n * cols);
        for row in bound.by_ref().take(n) {
            params.push(text(user_id));
            params.extend(row.iter().map(Cell::js));
        }
        let sql = format!(
            "INSERT INTO {table} ({columns}) VALUES {}",
            values_placeholders(n, cols)
        );
        out.push((table, stmt(db, &sql, &params)?));
    }
    Ok(())
}

/// Persists a plan in one D1 transaction. The first statement fails (NOT
/// NULL) unless the counters are still what the plan started from, so a
/// stale hub can never overwrite newer data; a requestId D1 already holds
/// fails it too (primary key). The session then asks `check` why.
pub async fn commit(
    db: &D1Database,
    user_id: &str,
    plan: &Plan,
    now: i64,
    retention: Retention,
) -> Result<(), SyncError> {
    let uid = text(user_id);
    let guard = "UPDATE sync_state SET \
           cursor = CASE WHEN cursor = ?1 AND hist_seq = ?2 THEN ?3 ELSE NULL END, \
           hist_seq = ?4, commit_id = ?5, write_day = ?7, write_units = ?8, \
           bytes = min(bytes + ?9, ?10)";
    let mut params = vec![
        uint(plan.prev_cursor),
        uint(plan.prev_hist_seq),
        uint(plan.cursor),
        uint(plan.hist_seq),
        text(&plan.commit_id),
        uid.clone(),
        int(plan.usage.day),
        uint(plan.usage.day_units),
        // Both are upper bounds of what D1 stores (what it held plus what
        // this commit adds; the hub's count, exact after a count): keep the
        // smaller one.
        uint(plan.stored_bytes()),
        uint(plan.usage.bytes),
    ];
    let mut also = String::new();
    if plan.new_keys {
        let keys = serde_json::to_string(&plan.key_list())
            .map_err(|e| SyncError::Internal(e.to_string()))?;
        params.push(text(&keys));
        also.push_str(&format!(", keys = ?{}", params.len()));
    }
    if plan.lists_changed {
        params.push(text(&plan.list_map()));
        also.push_str(&format!(", lists = ?{}", params.len()));
    }
    let sql = format!("{guard}{also} WHERE user_id = ?6");
    let mut statements = vec![("sync_state", stmt(db, &sql, &params)?)];

    let mut history = Vec::with_capacity(plan.history.len());
    let mut chunks = Vec::new();
    for h in &plan.history {
        let value = h.value.as_deref();
        let parts = value
            .map(|v| split_chunks(v, CHUNK_BYTES))
            .unwrap_or_default();
        for (idx, part) in parts.iter().enumerate().skip(1) {
            chunks.push(vec![
                Cell::Int(h.hist_id as i64),
                Cell::Int(idx as i64),
                Cell::Text(part),
            ]);
        }
        history.push(vec![
            Cell::Text(&h.key),
            Cell::Int(h.hist_id as i64),
            h.version.map_or(Cell::Null, |v| Cell::Int(v as i64)),
            Cell::Int(i64::from(value.is_none() && !h.records)),
            Cell::Int(h.updated_at),
            Cell::Text(&h.device_id),
            Cell::Int(h.size as i64),
            Cell::Int(parts.len().max(1) as i64),
            Cell::Text(&h.hash),
            parts.first().map_or(Cell::Null, |p| Cell::Text(p)),
            Cell::Int(now),
            Cell::Int(i64::from(h.records)),
        ]);
    }
    insert_rows(
        db,
        "sync_history",
        "user_id, key, id, version, deleted, updated_at, device_id, size, chunks, hash, data, created_at, records",
        user_id,
        history,
        &mut statements,
    )?;
    let records = plan
        .record_rows
        .iter()
        .map(|r| {
            vec![
                Cell::Text(&r.key),
                Cell::Text(&r.id),
                Cell::Int(r.seq as i64),
                r.version.map_or(Cell::Null, |v| Cell::Int(v as i64)),
                Cell::Int(i64::from(r.text.is_none())),
                r.prev.as_deref().map_or(Cell::Null, Cell::Text),
                Cell::Int(r.updated_at),
                Cell::Text(&r.device_id),
                Cell::Int(r.size as i64),
                r.text.as_deref().map_or(Cell::Null, Cell::Text),
                Cell::Int(now),
            ]
        })
        .collect();
    insert_rows(
        db,
        "sync_records",
        "user_id, key, rid, seq, version, deleted, prev, updated_at, device_id, size, data, created_at",
        user_id,
        records,
        &mut statements,
    )?;
    insert_rows(
        db,
        "sync_chunks",
        "user_id, hist_id, idx, data",
        user_id,
        chunks,
        &mut statements,
    )?;
    let requests = plan
        .requests
        .iter()
        .map(|(rid, answer)| vec![Cell::Text(rid), Cell::Text(answer), Cell::Int(now)])
        .collect();
    insert_rows(
        db,
        "sync_requests",
        "user_id, request_id, response, created_at",
        user_id,
        requests,
        &mut statements,
    )?;
    prune_history(db, user_id, plan, now, retention, &mut statements)?;
    if let Some(before) = plan.prune_requests_before {
        statements.push((
            "sync_requests",
            stmt(
                db,
                "DELETE FROM sync_requests WHERE user_id = ?1 AND request_id IN \
                 (SELECT request_id FROM sync_requests WHERE user_id = ?1 AND created_at <= ?2 LIMIT ?3)",
                &[uid.clone(), int(before), num(PRUNE_REQUESTS)],
            )?,
        ));
    }
    batch(db, "commit", user_id, statements)
        .await
        .map_err(db_err("commit"))?;
    Ok(())
}

/// Rows of the written keys' history that retention lets go: older than
/// the key's newest `versions` versions and older than `max_age_ms`, among
/// the key's `RETENTION_SCAN` oldest rows. The current version is always
/// among the newest, so it always stays.
const DOOMED_HISTORY: &str = "WITH t AS MATERIALIZED (\
       SELECT k.value AS key, \
         (SELECT x.id FROM sync_history x WHERE x.user_id = ?1 AND x.key = k.value \
          AND x.version IS NOT NULL ORDER BY x.id DESC LIMIT 1 OFFSET ?2) AS keep_from, \
         (SELECT y.id FROM sync_history y WHERE y.user_id = ?1 AND y.key = k.value \
          ORDER BY y.id LIMIT 1 OFFSET ?5) AS scan_to \
       FROM json_each(?3) k), \
     doomed AS (SELECT h.key, h.id FROM t CROSS JOIN sync_history h \
       WHERE h.user_id = ?1 AND h.key = t.key AND h.id < min(t.keep_from, COALESCE(t.scan_to + 1, t.keep_from)) \
       AND h.created_at < ?4)";

fn prune_history(
    db: &D1Database,
    user_id: &str,
    plan: &Plan,
    now: i64,
    retention: Retention,
    out: &mut Vec<Labelled>,
) -> Result<(), SyncError> {
    if plan.prune_keys.is_empty() {
        return Ok(());
    }
    // Over the byte budget, history is kept by count only.
    let cutoff = if plan.usage.bytes > retention.max_bytes {
        now
    } else {
        now - retention.max_age_ms
    };
    let keys =
        serde_json::to_string(&plan.prune_keys).map_err(|e| SyncError::Internal(e.to_string()))?;
    let params = [
        text(user_id),
        num(retention.versions.saturating_sub(1)),
        text(&keys),
        int(cutoff),
        num(RETENTION_SCAN - 1),
    ];
    // What the deletions free comes off the stored bytes (retention runs
    // once per few writes of a key: one more write of the counters row then).
    out.push((
        "sync_state",
        stmt(
            db,
            &format!(
                "{DOOMED_HISTORY}, freed AS MATERIALIZED (SELECT COALESCE(SUM(h.size), 0) AS n \
                 FROM doomed d CROSS JOIN sync_history h \
                  WHERE h.user_id = ?1 AND h.key = d.key AND h.id = d.id AND h.records = 0) \
                 UPDATE sync_state SET bytes = max(0, bytes - (SELECT n FROM freed)) \
                 WHERE user_id = ?1 AND (SELECT n FROM freed) > 0"
            ),
            &params,
        )?,
    ));
    for (table, target) in [
        (
            "sync_chunks",
            "DELETE FROM sync_chunks WHERE user_id = ?1 AND hist_id IN (SELECT id FROM doomed)",
        ),
        (
            "sync_history",
            "DELETE FROM sync_history WHERE user_id = ?1 AND (key, id) IN (SELECT key, id FROM doomed)",
        ),
    ] {
        out.push((table, stmt(db, &format!("{DOOMED_HISTORY} {target}"), &params)?));
    }
    for key in &plan.prune_keys {
        let Some(meta) = plan.keys.get(key).filter(|m| m.records && !m.deleted) else {
            continue;
        };
        prune_records(db, user_id, key, meta.hist_id, cutoff, retention, out)?;
    }
    Ok(())
}

/// Record rows one commit's retention deletes per list, at most.
const RECORD_RETENTION_SCAN: u32 = 256;

/// The horizon of a record list: the oldest version it keeps, the newer of
/// the `?3`-th newest version and the oldest one written after `?4` (so a
/// version is dropped only when neither rule keeps it). Rows older than
/// the horizon that a row at or below it replaces are needed by no kept
/// version (`doomed`).
const RECORD_HORIZON: &str = "WITH hz AS MATERIALIZED (SELECT min( \
       COALESCE((SELECT v FROM (SELECT DISTINCT r.version AS v FROM sync_records r \
         WHERE r.user_id = ?1 AND r.key = ?2 AND r.version IS NOT NULL \
         ORDER BY r.version DESC LIMIT 1 OFFSET ?3)), 0), \
       COALESCE((SELECT r.version FROM sync_records r WHERE r.user_id = ?1 AND r.key = ?2 \
         AND r.version IS NOT NULL AND r.created_at >= ?4 ORDER BY r.version LIMIT 1), 9007199254740992) \
     ) AS h), \
     doomed AS MATERIALIZED (SELECT r.rid, r.seq, length(r.data) AS bytes FROM hz CROSS JOIN sync_records r \
       WHERE r.user_id = ?1 AND r.key = ?2 AND r.version < hz.h AND EXISTS (SELECT 1 FROM sync_records x \
         WHERE x.user_id = ?1 AND x.key = ?2 AND x.rid = r.rid AND x.seq > r.seq \
         AND x.version IS NOT NULL AND +x.version <= hz.h) \
       ORDER BY r.version LIMIT ?5)";

fn prune_records(
    db: &D1Database,
    user_id: &str,
    key: &str,
    hist_id: u64,
    cutoff: i64,
    retention: Retention,
    out: &mut Vec<Labelled>,
) -> Result<(), SyncError> {
    let params = [
        text(user_id),
        text(key),
        num(retention.versions.saturating_sub(1)),
        int(cutoff),
        num(RECORD_RETENTION_SCAN),
        uint(hist_id),
    ];
    let statements = [
        // Versions below the horizon can no longer be rebuilt once rows go:
        // say so first (only when some do go, so an edit that frees nothing
        // writes nothing more).
        (
            "sync_history",
            "UPDATE sync_history SET horizon = (SELECT h FROM hz) WHERE user_id = ?1 AND key = ?2 \
             AND id = ?6 AND horizon < (SELECT h FROM hz) AND EXISTS (SELECT 1 FROM doomed)",
        ),
        (
            "sync_state",
            "UPDATE sync_state SET bytes = max(0, bytes - (SELECT COALESCE(SUM(bytes), 0) FROM doomed)) \
             WHERE user_id = ?1 AND EXISTS (SELECT 1 FROM doomed)",
        ),
        (
            "sync_records",
            "DELETE FROM sync_records WHERE user_id = ?1 AND key = ?2 AND (rid, seq) IN (SELECT rid, seq FROM doomed)",
        ),
        // A removal below the horizon with nothing before it any more.
        (
            "sync_records",
            "DELETE FROM sync_records WHERE user_id = ?1 AND key = ?2 AND deleted = 1 \
             AND version < (SELECT h FROM hz) AND NOT EXISTS (SELECT 1 FROM sync_records x \
               WHERE x.user_id = ?1 AND x.key = ?2 AND x.rid = sync_records.rid AND x.seq < sync_records.seq)",
        ),
        // What stale writes sent and lost, once old enough.
        (
            "sync_records",
            "DELETE FROM sync_records WHERE user_id = ?1 AND key = ?2 AND version IS NULL \
             AND created_at < ?4 AND seq < (SELECT min(x.seq) FROM hz CROSS JOIN sync_records x \
               WHERE x.user_id = ?1 AND x.key = ?2 AND x.version >= hz.h)",
        ),
    ];
    for (table, sql) in statements {
        // D1 wants exactly the parameters a statement names.
        let n = if sql.contains("?6") { 6 } else { 5 };
        out.push((
            table,
            stmt(db, &format!("{RECORD_HORIZON} {sql}"), &params[..n])?,
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct CheckRow {
    cursor: f64,
    hist_seq: f64,
    commit_id: String,
}

#[derive(Deserialize)]
struct AnswerRow {
    request_id: String,
    response: String,
}

/// After a failed commit: the counters, the last commit's id, and any
/// answers D1 holds for the plan's requestIds.
pub async fn check(db: &D1Database, user_id: &str, plan: &Plan) -> Result<CommitCheck, SyncError> {
    let ids: Vec<&str> = plan.requests.iter().map(|(r, _)| r.as_str()).collect();
    let ids = serde_json::to_string(&ids).map_err(|e| SyncError::Internal(e.to_string()))?;
    let results = batch(
        db,
        "check",
        user_id,
        vec![
            (
                "sync_state",
                stmt(
                    db,
                    "SELECT cursor, hist_seq, commit_id FROM sync_state WHERE user_id = ?1",
                    &[text(user_id)],
                )?,
            ),
            (
                "sync_requests",
                stmt(
                    db,
                    "SELECT request_id, response FROM sync_requests \
                     WHERE user_id = ?1 AND request_id IN (SELECT value FROM json_each(?2))",
                    &[text(user_id), text(&ids)],
                )?,
            ),
        ],
    )
    .await
    .map_err(db_err("check commit"))?;
    let [state, answers] = results.as_slice() else {
        return Err(SyncError::Internal("check: wrong result count".into()));
    };
    let state = rows::<CheckRow>(state)?
        .pop()
        .ok_or_else(|| SyncError::Internal("check: no sync_state row".into()))?;
    Ok(CommitCheck {
        cursor: state.cursor as u64,
        hist_seq: state.hist_seq as u64,
        commit_id: state.commit_id,
        answers: rows::<AnswerRow>(answers)?
            .into_iter()
            .map(|a| (a.request_id, a.response))
            .collect(),
    })
}
