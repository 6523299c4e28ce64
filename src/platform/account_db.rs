//! D1 statements for sign-in limits, sessions and quotas: attempts counted
//! atomically before any password is hashed, password change, signing out
//! every device, a socket's look at its device row, and an account's usage.

use super::d1::{int, rows, stmt, text};
use crate::error::SyncError;
use crate::quota::Usage;
use crate::ratelimit::{Window, WINDOW_MS};
use serde::Deserialize;
use worker::D1Database;

fn db_err(what: &'static str) -> impl Fn(worker::Error) -> SyncError {
    move |e| SyncError::Internal(format!("{what}: {e}"))
}

#[derive(Deserialize)]
struct WindowRow {
    window_start: f64,
    count: f64,
}

/// Counts an attempt in each `(bucket, limit)`'s current one-minute window,
/// in one transaction, and refuses it when any window is then over its
/// limit. Counting comes first and is atomic (an UPSERT ... RETURNING), so
/// concurrent attempts cannot all slip under the limit before the first is
/// counted. Windows that have ended are pruned on the way. Returns the
/// windows, for `forgive`.
pub async fn count_attempts(
    db: &D1Database,
    buckets: &[(&str, u32)],
    now: i64,
) -> Result<Vec<Window>, SyncError> {
    let mut statements = buckets
        .iter()
        .map(|(b, _)| {
            stmt(
                db,
                "INSERT INTO auth_failures (bucket, window_start, count) VALUES (?1, ?2, 1) \
                 ON CONFLICT(bucket) DO UPDATE SET \
                   count = CASE WHEN ?2 - window_start >= ?3 THEN 1 ELSE count + 1 END, \
                   window_start = CASE WHEN ?2 - window_start >= ?3 THEN ?2 ELSE window_start END \
                 RETURNING window_start, count",
                &[text(b), int(now), int(WINDOW_MS)],
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    statements.push(stmt(
        db,
        "DELETE FROM auth_failures WHERE window_start <= ?",
        &[int(now - WINDOW_MS)],
    )?);
    let results = db
        .batch(statements)
        .await
        .map_err(db_err("count attempt"))?;
    let mut windows = Vec::with_capacity(buckets.len());
    let mut retry = None;
    for ((_, limit), r) in buckets.iter().zip(&results) {
        let row = rows::<WindowRow>(r)?
            .pop()
            .ok_or_else(|| SyncError::Internal("count attempt: no row returned".into()))?;
        let w = Window {
            start_ms: row.window_start as i64,
            count: row.count as u32,
        };
        if let Err(secs) = w.admit(*limit, now) {
            retry = retry.max(Some(secs));
        }
        windows.push(w);
    }
    match retry {
        Some(retry_after_secs) => Err(SyncError::RateLimited { retry_after_secs }),
        None => Ok(windows),
    }
}

/// Takes back attempts that succeeded, so the limits count failures.
pub async fn forgive(
    db: &D1Database,
    buckets: &[(&str, u32)],
    windows: &[Window],
) -> Result<(), SyncError> {
    let statements = buckets
        .iter()
        .zip(windows)
        .map(|((b, _), w)| {
            stmt(
                db,
                "UPDATE auth_failures SET count = count - 1 \
                 WHERE bucket = ? AND window_start = ? AND count > 0",
                &[text(b), int(w.start_ms)],
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    db.batch(statements).await.map_err(db_err("forgive"))?;
    Ok(())
}

#[derive(Deserialize)]
pub struct Account {
    pub email: String,
    pub password: String,
}

pub async fn account(db: &D1Database, user_id: &str) -> Result<Option<Account>, SyncError> {
    stmt(
        db,
        "SELECT email, password FROM users WHERE id = ?",
        &[text(user_id)],
    )?
    .first::<Account>(None)
    .await
    .map_err(db_err("account"))
}

pub async fn set_password(db: &D1Database, user_id: &str, record: &str) -> Result<(), SyncError> {
    stmt(
        db,
        "UPDATE users SET password = ? WHERE id = ?",
        &[text(record), text(user_id)],
    )?
    .run()
    .await
    .map_err(db_err("set password"))?;
    Ok(())
}

#[derive(Deserialize)]
struct IdRow {
    id: String,
}

/// Revokes every live device of the user but `keep`; returns their ids.
pub async fn revoke_all(
    db: &D1Database,
    user_id: &str,
    keep: Option<&str>,
    now: i64,
) -> Result<Vec<String>, SyncError> {
    let r = stmt(
        db,
        "UPDATE devices SET revoked_at = ?1 \
         WHERE user_id = ?2 AND revoked_at IS NULL AND id IS NOT ?3 RETURNING id",
        &[
            int(now),
            text(user_id),
            keep.map_or(wasm_bindgen::JsValue::NULL, text),
        ],
    )?
    .all()
    .await
    .map_err(db_err("revoke all"))?;
    Ok(rows::<IdRow>(&r)?.into_iter().map(|d| d.id).collect())
}

#[derive(Deserialize)]
pub struct DeviceState {
    pub created_at: f64,
    pub last_seen_at: f64,
    pub expires_at: f64,
}

/// A device that is not revoked, for an open socket's check.
pub async fn live_device(db: &D1Database, id: &str) -> Result<Option<DeviceState>, SyncError> {
    stmt(
        db,
        "SELECT created_at, last_seen_at, expires_at FROM devices \
         WHERE id = ? AND revoked_at IS NULL",
        &[text(id)],
    )?
    .first::<DeviceState>(None)
    .await
    .map_err(db_err("device state"))
}

#[derive(Deserialize)]
struct UsageRow {
    bytes: f64,
    write_day: f64,
    write_units: f64,
}

/// The account's usage: every stored value's size (current and history:
/// one read of the user's history rows, done on the first write after the
/// object wakes and before refusing a write for space) and the day's count.
pub async fn usage(db: &D1Database, user_id: &str) -> Result<Usage, SyncError> {
    let row = stmt(
        db,
        "SELECT (SELECT COALESCE(SUM(size), 0) FROM sync_history WHERE user_id = ?1) AS bytes, \
           COALESCE((SELECT write_day FROM sync_state WHERE user_id = ?1), 0) AS write_day, \
           COALESCE((SELECT write_units FROM sync_state WHERE user_id = ?1), 0) AS write_units",
        &[text(user_id)],
    )?
    .first::<UsageRow>(None)
    .await
    .map_err(db_err("usage"))?
    .ok_or_else(|| SyncError::Internal("usage: no row".into()))?;
    Ok(Usage {
        bytes: row.bytes as u64,
        day: row.write_day as i64,
        day_units: row.write_units as u64,
    })
}
