//! Every D1 statement the service runs, in one place.

use super::config::Retention;
use crate::error::SyncError;
use crate::hub::{KeyMeta, Plan, UserState, Values};
use crate::model::{split_chunks, CHUNK_BYTES};
use crate::protocol::{Change, DeviceInfo, HistoryEntry};
use crate::quota::Usage;
use crate::sqlgen::{pack_rows, values_placeholders};
use serde::Deserialize;
use std::collections::HashMap;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result};

pub(super) fn text(s: &str) -> JsValue {
    JsValue::from_str(s)
}

fn num<T: Into<f64>>(n: T) -> JsValue {
    JsValue::from_f64(n.into())
}

/// Integers here (ms times, versions) stay far below 2^53, so f64 is exact.
pub(super) fn int(n: i64) -> JsValue {
    JsValue::from_f64(n as f64)
}

fn uint(n: u64) -> JsValue {
    JsValue::from_f64(n as f64)
}

fn db_err(what: &'static str) -> impl Fn(worker::Error) -> SyncError {
    move |e| SyncError::Internal(format!("{what}: {e}"))
}

pub(super) fn stmt(
    db: &D1Database,
    sql: &str,
    params: &[JsValue],
) -> Result<D1PreparedStatement, SyncError> {
    db.prepare(sql).bind(params).map_err(db_err("bind"))
}

pub(super) fn rows<T: for<'de> Deserialize<'de>>(r: &D1Result) -> Result<Vec<T>, SyncError> {
    r.results::<T>().map_err(db_err("decode rows"))
}

// ---------------------------------------------------------------- accounts

#[derive(Deserialize)]
pub struct DeviceRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub token_hash: String,
    pub created_at: f64,
    pub last_seen_at: f64,
    pub expires_at: f64,
}

pub async fn device_by_token_hash(
    db: &D1Database,
    hash: &str,
) -> Result<Option<DeviceRow>, SyncError> {
    stmt(
        db,
        "SELECT id, user_id, name, token_hash, created_at, last_seen_at, expires_at FROM devices \
         WHERE token_hash = ? AND revoked_at IS NULL",
        &[text(hash)],
    )?
    .first::<DeviceRow>(None)
    .await
    .map_err(db_err("device lookup"))
}

/// Slides the device's expiry forward.
pub async fn touch_device(
    db: &D1Database,
    id: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), SyncError> {
    stmt(
        db,
        "UPDATE devices SET last_seen_at = ?, expires_at = ? WHERE id = ? AND revoked_at IS NULL",
        &[int(now), int(expires_at), text(id)],
    )?
    .run()
    .await
    .map_err(db_err("touch device"))?;
    Ok(())
}

pub struct NewDevice<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub name: &'a str,
    pub token_hash: &'a str,
    pub now: i64,
    pub expires_at: i64,
}

fn insert_device(db: &D1Database, d: &NewDevice<'_>) -> Result<D1PreparedStatement, SyncError> {
    stmt(
        db,
        "INSERT INTO devices (id, user_id, name, token_hash, created_at, last_seen_at, expires_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        &[
            text(d.id),
            text(d.user_id),
            text(d.name),
            text(d.token_hash),
            int(d.now),
            int(d.now),
            int(d.expires_at),
        ],
    )
}

/// Creates the user, their sync counter and first device in one transaction.
pub async fn create_user(
    db: &D1Database,
    email: &str,
    password: &str,
    device: &NewDevice<'_>,
) -> Result<(), SyncError> {
    let statements = vec![
        stmt(
            db,
            "INSERT INTO users (id, email, password, created_at) VALUES (?, ?, ?, ?)",
            &[
                text(device.user_id),
                text(email),
                text(password),
                int(device.now),
            ],
        )?,
        stmt(
            db,
            "INSERT INTO sync_state (user_id, cursor, hist_seq) VALUES (?, 0, 0)",
            &[text(device.user_id)],
        )?,
        insert_device(db, device)?,
    ];
    db.batch(statements).await.map_err(|e| {
        let msg = e.to_string();
        if msg.contains("UNIQUE") && msg.contains("users.email") {
            SyncError::EmailTaken
        } else {
            SyncError::Internal(format!("create user: {msg}"))
        }
    })?;
    Ok(())
}

pub async fn create_device(db: &D1Database, device: &NewDevice<'_>) -> Result<(), SyncError> {
    insert_device(db, device)?
        .run()
        .await
        .map_err(db_err("create device"))?;
    Ok(())
}

#[derive(Deserialize)]
pub struct UserRow {
    pub id: String,
    pub password: String,
}

pub async fn user_by_email(db: &D1Database, email: &str) -> Result<Option<UserRow>, SyncError> {
    stmt(
        db,
        "SELECT id, password FROM users WHERE email = ?",
        &[text(email)],
    )?
    .first::<UserRow>(None)
    .await
    .map_err(db_err("user lookup"))
}

/// Signs a device of `user_id` out; `false` when it has no such device that
/// is still signed in. An expired one can be: its socket may still be open.
pub async fn revoke_device(
    db: &D1Database,
    user_id: &str,
    id: &str,
    now: i64,
) -> Result<bool, SyncError> {
    let result = stmt(
        db,
        "UPDATE devices SET revoked_at = ? \
         WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
        &[int(now), text(id), text(user_id)],
    )?
    .run()
    .await
    .map_err(db_err("revoke device"))?;
    let changes = result
        .meta()
        .map_err(db_err("revoke device"))?
        .and_then(|m| m.changes)
        .unwrap_or(0);
    Ok(changes > 0)
}

#[derive(Deserialize)]
struct DeviceListRow {
    id: String,
    name: String,
    created_at: f64,
    last_seen_at: f64,
    expires_at: f64,
}

/// The user's devices not signed out, oldest first, with when each token
/// expires (the caller keeps expired ones that are still connected);
/// `online` is left false.
pub async fn devices(db: &D1Database, user_id: &str) -> Result<Vec<(DeviceInfo, i64)>, SyncError> {
    let r = stmt(
        db,
        "SELECT id, name, created_at, last_seen_at, expires_at FROM devices \
         WHERE user_id = ? AND revoked_at IS NULL ORDER BY created_at, id",
        &[text(user_id)],
    )?
    .all()
    .await
    .map_err(db_err("devices"))?;
    Ok(rows::<DeviceListRow>(&r)?
        .into_iter()
        .map(|d| {
            let info = DeviceInfo {
                id: d.id,
                name: d.name,
                created_at: d.created_at as i64,
                last_seen_at: d.last_seen_at as i64,
                current: false,
                online: false,
            };
            (info, d.expires_at as i64)
        })
        .collect())
}

// ---------------------------------------------------------------- sync data

#[derive(Deserialize)]
struct StateRow {
    cursor: f64,
    hist_seq: f64,
}

#[derive(Deserialize)]
struct MetaRow {
    key: String,
    version: f64,
    deleted: f64,
    updated_at: f64,
    hash: String,
    hist_id: f64,
}

#[derive(Deserialize)]
struct RequestRow {
    request_id: String,
    response: String,
}

/// How long a requestId is remembered for idempotent retries.
pub const REQUEST_ID_TTL_MS: i64 = 7 * 86_400_000;

/// Everything the hub needs in memory: counters, key metadata, recent answers.
pub async fn load_state(db: &D1Database, user_id: &str, now: i64) -> Result<UserState, SyncError> {
    let uid = text(user_id);
    let results = db
        .batch(vec![
            stmt(
                db,
                "INSERT INTO sync_state (user_id, cursor, hist_seq) VALUES (?, 0, 0) ON CONFLICT DO NOTHING",
                std::slice::from_ref(&uid),
            )?,
            stmt(db, "SELECT cursor, hist_seq FROM sync_state WHERE user_id = ?", std::slice::from_ref(&uid))?,
            stmt(
                db,
                "SELECT key, version, deleted, updated_at, hash, hist_id FROM sync_data WHERE user_id = ?",
                std::slice::from_ref(&uid),
            )?,
            // Answers older than the retry window are no longer needed.
            stmt(
                db,
                "DELETE FROM sync_requests WHERE user_id = ? AND created_at <= ?",
                &[uid.clone(), int(now - REQUEST_ID_TTL_MS)],
            )?,
            stmt(
                db,
                "SELECT request_id, response FROM sync_requests WHERE user_id = ?",
                &[uid],
            )?,
        ])
        .await
        .map_err(db_err("load state"))?;
    let [_, state, metas, _, requests] = results.as_slice() else {
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
                        hist_id: m.hist_id as u64,
                    },
                )
            })
            .collect(),
        requests: rows::<RequestRow>(requests)?
            .into_iter()
            .map(|r| (r.request_id, r.response))
            .collect(),
    })
}

/// Builds `INSERT ... VALUES (...), (...)` statements for `rows`, packed to
/// D1's limits. Each row is its parameters plus its size in bytes.
fn multi_insert(
    db: &D1Database,
    head: &str,
    tail: &str,
    cols: usize,
    rows: Vec<(Vec<JsValue>, usize)>,
    out: &mut Vec<D1PreparedStatement>,
) -> Result<(), SyncError> {
    let sizes: Vec<usize> = rows.iter().map(|r| r.1).collect();
    let mut rows = rows.into_iter();
    for range in pack_rows(&sizes, cols) {
        let n = range.len();
        let params: Vec<JsValue> = rows.by_ref().take(n).flat_map(|r| r.0).collect();
        let sql = format!("{head} VALUES {} {tail}", values_placeholders(n, cols));
        out.push(stmt(db, &sql, &params)?);
    }
    Ok(())
}

/// Persists a plan in one D1 transaction. The first statement fails (NOT
/// NULL) unless the counters are still what the plan started from, so a
/// stale hub can never overwrite newer data.
pub async fn commit(
    db: &D1Database,
    user_id: &str,
    plan: &Plan,
    now: i64,
    retention: Retention,
    usage: &Usage,
) -> Result<(), SyncError> {
    let uid = text(user_id);
    // The day's write count rides on the counter row the commit updates
    // anyway: a column more costs no billed row.
    let mut statements = vec![stmt(
        db,
        "UPDATE sync_state SET \
           cursor = CASE WHEN cursor = ? AND hist_seq = ? THEN ? ELSE NULL END, hist_seq = ?, \
           write_day = ?, write_units = ? \
         WHERE user_id = ?",
        &[
            uint(plan.prev_cursor),
            uint(plan.prev_hist_seq),
            uint(plan.cursor),
            uint(plan.hist_seq),
            int(usage.day),
            uint(usage.day_units),
            uid.clone(),
        ],
    )?];

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
                uint(h.hist_id),
                text(&h.key),
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
        "INSERT INTO sync_history (user_id, id, key, version, deleted, updated_at, device_id, size, chunks, hash, data, created_at)",
        "",
        12,
        history,
        &mut statements,
    )?;
    multi_insert(
        db,
        "INSERT INTO sync_chunks (user_id, hist_id, idx, data)",
        "",
        4,
        chunks,
        &mut statements,
    )?;
    let current = plan
        .current()
        .into_iter()
        .map(|h| {
            (
                vec![
                    uid.clone(),
                    text(&h.key),
                    h.version.map_or(JsValue::NULL, uint),
                    uint(h.hist_id),
                    num(u8::from(h.value.is_none())),
                    int(h.updated_at),
                    text(&h.device_id),
                    text(&h.hash),
                ],
                0,
            )
        })
        .collect();
    multi_insert(
        db,
        "INSERT INTO sync_data (user_id, key, version, hist_id, deleted, updated_at, device_id, hash)",
        "ON CONFLICT (user_id, key) DO UPDATE SET version = excluded.version, hist_id = excluded.hist_id, \
         deleted = excluded.deleted, updated_at = excluded.updated_at, device_id = excluded.device_id, \
         hash = excluded.hash",
        8,
        current,
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
        "INSERT INTO sync_requests (user_id, request_id, response, created_at)",
        "ON CONFLICT (user_id, request_id) DO NOTHING",
        4,
        requests,
        &mut statements,
    )?;
    prune_history(db, user_id, plan, now, retention, &mut statements)?;

    db.batch(statements).await.map_err(|e| {
        let msg = e.to_string();
        if msg.contains("NOT NULL") && msg.contains("sync_state") {
            SyncError::Unavailable
        } else {
            SyncError::Internal(format!("commit: {msg}"))
        }
    })?;
    Ok(())
}

/// Rows of the written keys' history that retention lets go: older than
/// the key's newest `versions` versions and older than `max_age_ms`. The
/// current version is always among the newest, so it always stays.
const DOOMED_HISTORY: &str = "WITH t AS MATERIALIZED (\
       SELECT k.value AS key, (SELECT x.id FROM sync_history x \
         WHERE x.user_id = ?1 AND x.key = k.value AND x.version IS NOT NULL \
         ORDER BY x.id DESC LIMIT 1 OFFSET ?2) AS keep_from \
       FROM json_each(?3) k), \
     doomed AS (SELECT h.id FROM sync_history h JOIN t ON h.key = t.key \
       WHERE h.user_id = ?1 AND h.id < t.keep_from AND h.created_at < ?4)";

fn prune_history(
    db: &D1Database,
    user_id: &str,
    plan: &Plan,
    now: i64,
    retention: Retention,
    out: &mut Vec<D1PreparedStatement>,
) -> Result<(), SyncError> {
    let mut keys: Vec<&str> = plan
        .history
        .iter()
        .filter(|h| h.version.is_some())
        .map(|h| h.key.as_str())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return Ok(());
    }
    let keys = serde_json::to_string(&keys).map_err(|e| SyncError::Internal(e.to_string()))?;
    let params = [
        text(user_id),
        num(retention.versions.saturating_sub(1)),
        text(&keys),
        int(now - retention.max_age_ms),
    ];
    for target in [
        "DELETE FROM sync_chunks WHERE user_id = ?1 AND hist_id IN (SELECT id FROM doomed)",
        "DELETE FROM sync_history WHERE user_id = ?1 AND id IN (SELECT id FROM doomed)",
    ] {
        out.push(stmt(db, &format!("{DOOMED_HISTORY} {target}"), &params)?);
    }
    Ok(())
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
    let r = stmt(
        db,
        "SELECT h.version, h.updated_at, h.device_id, d.name AS device_name, h.deleted, h.size, \
           (h.id = (SELECT s.hist_id FROM sync_data s WHERE s.user_id = h.user_id AND s.key = h.key)) AS current \
         FROM sync_history h LEFT JOIN devices d ON d.id = h.device_id \
         WHERE h.user_id = ? AND h.key = ? AND h.version IS NOT NULL AND h.version < ? \
         ORDER BY h.id DESC LIMIT ?",
        &[text(user_id), text(key), uint(before), uint(limit as u64)],
    )?
    .all()
    .await
    .map_err(db_err("history"))?;
    Ok(rows::<HistoryRowOut>(&r)?
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
    // Each pair is found through the (user_id, key, id) index.
    const PAIRS: &str = "FROM json_each(?2) p JOIN sync_history h ON h.user_id = ?1 \
        AND h.key = json_extract(p.value, '$[0]') AND h.version = json_extract(p.value, '$[1]')";
    let params = [text(user_id), text(&pairs)];
    let results = db
        .batch(vec![
            stmt(
                db,
                &format!("SELECT h.id, h.key, h.version, h.deleted, h.updated_at, h.device_id, h.data {PAIRS}"),
                &params,
            )?,
            stmt(
                db,
                &format!(
                    "SELECT c.hist_id, c.data {PAIRS} \
                     JOIN sync_chunks c ON c.user_id = h.user_id AND c.hist_id = h.id \
                     ORDER BY c.hist_id, c.idx"
                ),
                &params,
            )?,
        ])
        .await
        .map_err(db_err("versions"))?;
    let [found, chunks] = results.as_slice() else {
        return Err(SyncError::Internal("versions: wrong result count".into()));
    };
    let mut extra: HashMap<u64, Vec<String>> = HashMap::new();
    for c in rows::<ChunkRow>(chunks)? {
        extra.entry(c.hist_id as u64).or_default().push(c.data);
    }
    Ok(rows::<VersionRow>(found)?
        .into_iter()
        .map(|r| {
            let value =
                (r.deleted == 0.0).then(|| join_chunks(r.data, extra.remove(&(r.id as u64))));
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

fn join_chunks(first: Option<String>, rest: Option<Vec<String>>) -> String {
    let mut v = first.unwrap_or_default();
    v.extend(rest.into_iter().flatten());
    v
}

#[derive(Deserialize)]
struct CurrentRow {
    key: String,
    version: f64,
    deleted: f64,
    updated_at: f64,
    device_id: String,
    hist_id: f64,
    data: Option<String>,
}

#[derive(Deserialize)]
struct ChunkRow {
    hist_id: f64,
    data: String,
}

/// The cursor and every key changed after `since`, read in one transaction
/// so the cursor matches the data exactly.
pub async fn changes_since(
    db: &D1Database,
    user_id: &str,
    since: u64,
) -> Result<(u64, Vec<Change>), SyncError> {
    let uid = text(user_id);
    let results = db
        .batch(vec![
            stmt(
                db,
                "SELECT cursor, hist_seq FROM sync_state WHERE user_id = ?",
                std::slice::from_ref(&uid),
            )?,
            stmt(
                db,
                "SELECT d.key, d.version, d.deleted, d.updated_at, d.device_id, d.hist_id, h.data FROM sync_data d \
                 JOIN sync_history h ON h.user_id = d.user_id AND h.id = d.hist_id \
                 WHERE d.user_id = ? AND d.version > ? ORDER BY d.version",
                &[uid.clone(), uint(since)],
            )?,
            stmt(
                db,
                "SELECT c.hist_id, c.data FROM sync_chunks c \
                 JOIN sync_data d ON d.user_id = c.user_id AND d.hist_id = c.hist_id \
                 WHERE d.user_id = ? AND d.version > ? ORDER BY c.hist_id, c.idx",
                &[uid, uint(since)],
            )?,
        ])
        .await
        .map_err(db_err("changes"))?;
    let [state, current, chunks] = results.as_slice() else {
        return Err(SyncError::Internal("changes: wrong result count".into()));
    };
    let cursor = rows::<StateRow>(state)?
        .pop()
        .map_or(0, |s| s.cursor as u64);
    let mut extra: HashMap<u64, Vec<String>> = HashMap::new();
    for c in rows::<ChunkRow>(chunks)? {
        extra.entry(c.hist_id as u64).or_default().push(c.data);
    }
    let changes = rows::<CurrentRow>(current)?
        .into_iter()
        .map(|r| {
            let value =
                (r.deleted == 0.0).then(|| join_chunks(r.data, extra.remove(&(r.hist_id as u64))));
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
