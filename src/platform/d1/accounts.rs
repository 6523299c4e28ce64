//! Accounts: users, devices (token hashes), password changes, signing
//! every device out, and the sign-in attempt windows (counted atomically
//! before any password is hashed).

use super::{db_err, int, rows, stmt, text};
use crate::error::SyncError;
use crate::protocol::DeviceInfo;
use crate::ratelimit::{Window, WINDOW_MS};
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement};

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

/// The device row, inserted only while its user exists: in a registration
/// whose email was taken, no device is created for the user that was not.
fn insert_device(db: &D1Database, d: &NewDevice<'_>) -> Result<D1PreparedStatement, SyncError> {
    stmt(
        db,
        "INSERT INTO devices (id, user_id, name, token_hash, created_at, last_seen_at, expires_at) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?5, ?6 WHERE EXISTS (SELECT 1 FROM users WHERE id = ?2)",
        &[
            text(d.id),
            text(d.user_id),
            text(d.name),
            text(d.token_hash),
            int(d.now),
            int(d.expires_at),
        ],
    )
}

/// Creates the user, their sync counter and first device in one
/// transaction; `EmailTaken` when the email has an account already (told by
/// the insert changing nothing, not by the text of an error).
pub async fn create_user(
    db: &D1Database,
    email: &str,
    password: &str,
    device: &NewDevice<'_>,
) -> Result<(), SyncError> {
    let statements = vec![
        stmt(
            db,
            "INSERT INTO users (id, email, password, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (email) DO NOTHING",
            &[
                text(device.user_id),
                text(email),
                text(password),
                int(device.now),
            ],
        )?,
        stmt(
            db,
            "INSERT INTO sync_state (user_id, cursor, hist_seq) \
             SELECT ?1, 0, 0 WHERE EXISTS (SELECT 1 FROM users WHERE id = ?1)",
            &[text(device.user_id)],
        )?,
        insert_device(db, device)?,
    ];
    let results = db.batch(statements).await.map_err(db_err("create user"))?;
    let created = results
        .first()
        .and_then(|r| r.meta().ok().flatten())
        .and_then(|m| m.changes)
        .unwrap_or(0);
    if created == 0 {
        return Err(SyncError::EmailTaken);
    }
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
        &[int(now), text(user_id), keep.map_or(JsValue::NULL, text)],
    )?
    .all()
    .await
    .map_err(db_err("revoke all"))?;
    Ok(rows::<IdRow>(&r)?.into_iter().map(|d| d.id).collect())
}

#[derive(Deserialize)]
pub struct Account {
    pub email: String,
    pub password: String,
}

/// The user's email and password record, for a password change.
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
