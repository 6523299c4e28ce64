//! What a hub loads when it wakes, how it persists a plan, and what it reads
//! after a failed commit.
//!
//! Rows written per single-key edit, as D1 bills them (see
//! migrations/0002): the counters row 1, the history row 1 plus its version
//! index entry 1, the remembered answer 1 (only with a requestId). A new
//! key rewrites the key list in the same counters row.

use super::super::config::Retention;
use super::{batch, db_err, int, num, rows, stmt, text, uint, Labelled};
use crate::error::SyncError;
use crate::hub::session::CommitCheck;
use crate::hub::{KeyMeta, Plan, UserState};
use crate::model::{split_chunks, CHUNK_BYTES};
use crate::sqlgen::{pack_rows, values_placeholders};
use serde::Deserialize;
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
}

#[derive(Deserialize)]
struct MetaRow {
    key: String,
    id: f64,
    version: f64,
    deleted: f64,
    updated_at: f64,
    hash: String,
}

/// Counters and key metadata: one row for the counters and key list, one
/// per key. No answers are read: D1 keeps them until a retry asks.
pub async fn load_state(db: &D1Database, user_id: &str) -> Result<UserState, SyncError> {
    let uid = [text(user_id)];
    let current = format!(
        "SELECT h.key, h.id, h.version, h.deleted, h.updated_at, h.hash \
         FROM sync_state s CROSS JOIN json_each(s.keys) k CROSS JOIN sync_history h \
         WHERE s.user_id = ?1 AND h.user_id = ?1 AND h.key = k.value AND h.id = {}",
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
                    "SELECT cursor, hist_seq FROM sync_state WHERE user_id = ?1",
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
        keys: rows::<MetaRow>(metas)?
            .into_iter()
            .map(|m| {
                (
                    m.key,
                    KeyMeta {
                        version: m.version as u64,
                        deleted: m.deleted != 0.0,
                        updated_at: m.updated_at as i64,
                        hash: m.hash,
                        hist_id: m.id as u64,
                    },
                )
            })
            .collect(),
        unpruned: Default::default(),
    })
}

/// Builds `INSERT ... VALUES (...), (...)` statements for `rows`, packed to
/// D1's limits. Each row is its parameters plus its size in bytes.
fn multi_insert(
    db: &D1Database,
    table: &'static str,
    head: &str,
    cols: usize,
    rows: Vec<(Vec<JsValue>, usize)>,
    out: &mut Vec<Labelled>,
) -> Result<(), SyncError> {
    let sizes: Vec<usize> = rows.iter().map(|r| r.1).collect();
    let mut rows = rows.into_iter();
    for range in pack_rows(&sizes, cols) {
        let n = range.len();
        let params: Vec<JsValue> = rows.by_ref().take(n).flat_map(|r| r.0).collect();
        let sql = format!("{head} VALUES {}", values_placeholders(n, cols));
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
           hist_seq = ?4, commit_id = ?5";
    let mut params = vec![
        uint(plan.prev_cursor),
        uint(plan.prev_hist_seq),
        uint(plan.cursor),
        uint(plan.hist_seq),
        text(&plan.commit_id),
        uid.clone(),
    ];
    let sql = if plan.new_keys {
        let keys = serde_json::to_string(&plan.key_list())
            .map_err(|e| SyncError::Internal(e.to_string()))?;
        params.push(text(&keys));
        format!("{guard}, keys = ?7 WHERE user_id = ?6")
    } else {
        format!("{guard} WHERE user_id = ?6")
    };
    let mut statements = vec![("sync_state", stmt(db, &sql, &params)?)];

    let mut history = Vec::with_capacity(plan.history.len());
    let mut chunks = Vec::new();
    for h in &plan.history {
        let value = h.value.as_deref();
        let parts = value
            .map(|v| split_chunks(v, CHUNK_BYTES))
            .unwrap_or_default();
        let first = parts.first().copied();
        for (idx, part) in parts.iter().enumerate().skip(1) {
            chunks.push((
                vec![uid.clone(), uint(h.hist_id), num(idx as u32), text(part)],
                part.len(),
            ));
        }
        history.push((
            vec![
                uid.clone(),
                text(&h.key),
                uint(h.hist_id),
                h.version.map_or(JsValue::NULL, uint),
                num(u8::from(value.is_none())),
                int(h.updated_at),
                text(&h.device_id),
                uint(value.map_or(0, str::len) as u64),
                uint(parts.len().max(1) as u64),
                text(&h.hash),
                first.map_or(JsValue::NULL, text),
                int(now),
            ],
            first.map_or(0, str::len),
        ));
    }
    multi_insert(
        db,
        "sync_history",
        "INSERT INTO sync_history (user_id, key, id, version, deleted, updated_at, device_id, size, chunks, hash, data, created_at)",
        12,
        history,
        &mut statements,
    )?;
    multi_insert(
        db,
        "sync_chunks",
        "INSERT INTO sync_chunks (user_id, hist_id, idx, data)",
        4,
        chunks,
        &mut statements,
    )?;
    let requests = plan
        .requests
        .iter()
        .map(|(rid, answer)| {
            (
                vec![uid.clone(), text(rid), text(answer), int(now)],
                answer.len(),
            )
        })
        .collect();
    multi_insert(
        db,
        "sync_requests",
        "INSERT INTO sync_requests (user_id, request_id, response, created_at)",
        4,
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
    let keys =
        serde_json::to_string(&plan.prune_keys).map_err(|e| SyncError::Internal(e.to_string()))?;
    let params = [
        text(user_id),
        num(retention.versions.saturating_sub(1)),
        text(&keys),
        int(now - retention.max_age_ms),
        num(RETENTION_SCAN - 1),
    ];
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
