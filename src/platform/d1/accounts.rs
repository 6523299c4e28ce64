//! Accounts: users, devices (token hashes) and the login-attempt windows.

use super::{db_err, int, rows, stmt, text};
use crate::error::SyncError;
use crate::protocol::DeviceInfo;
use crate::ratelimit::{Window, WINDOW_MS};
use serde::Deserialize;
use std::collections::HashMap;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement};

#[derive(Deserialize)]
pub struct DeviceRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub token_hash: String,
    pub last_seen_at: f64,
    pub expires_at: f64,
}

pub async fn device_by_token_hash(
    db: &D1Database,
    hash: &str,
) -> Result<Option<DeviceRow>, SyncError> {
    stmt(
        db,
        "SELECT id, user_id, name, token_hash, last_seen_at, expires_at FROM devices \
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

/// Signs a device of `user_id` out; `false` when it has no such live device.
pub async fn revoke_device(
    db: &D1Database,
    user_id: &str,
    id: &str,
    now: i64,
) -> Result<bool, SyncError> {
    let result = stmt(
        db,
        "UPDATE devices SET revoked_at = ? \
         WHERE id = ? AND user_id = ? AND revoked_at IS NULL AND expires_at > ?",
        &[int(now), text(id), text(user_id), int(now)],
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
}

/// The user's signed-in devices, oldest first; `online` is left false.
pub async fn devices(
    db: &D1Database,
    user_id: &str,
    now: i64,
) -> Result<Vec<DeviceInfo>, SyncError> {
    let r = stmt(
        db,
        "SELECT id, name, created_at, last_seen_at FROM devices \
         WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? ORDER BY created_at, id",
        &[text(user_id), int(now)],
    )?
    .all()
    .await
    .map_err(db_err("devices"))?;
    Ok(rows::<DeviceListRow>(&r)?
        .into_iter()
        .map(|d| DeviceInfo {
            id: d.id,
            name: d.name,
            created_at: d.created_at as i64,
            last_seen_at: d.last_seen_at as i64,
            current: false,
            online: false,
        })
        .collect())
}

#[derive(Deserialize)]
struct WindowRow {
    bucket: String,
    window_start: f64,
    count: f64,
}

pub async fn attempt_windows(
    db: &D1Database,
    buckets: &[&str],
) -> Result<HashMap<String, Window>, SyncError> {
    let sql = format!(
        "SELECT bucket, window_start, count FROM auth_failures WHERE bucket IN ({})",
        vec!["?"; buckets.len()].join(", ")
    );
    let params: Vec<JsValue> = buckets.iter().map(|b| text(b)).collect();
    let r = stmt(db, &sql, &params)?
        .all()
        .await
        .map_err(db_err("failures"))?;
    Ok(rows::<WindowRow>(&r)?
        .into_iter()
        .map(|w| {
            (
                w.bucket,
                Window {
                    start_ms: w.window_start as i64,
                    count: w.count as u32,
                },
            )
        })
        .collect())
}

/// Counts an attempt (a failed login, a registration) in each bucket's
/// current one-minute window.
pub async fn record_attempt(db: &D1Database, buckets: &[&str], now: i64) -> Result<(), SyncError> {
    let statements = buckets
        .iter()
        .map(|b| {
            stmt(
                db,
                "INSERT INTO auth_failures (bucket, window_start, count) VALUES (?1, ?2, 1) \
                 ON CONFLICT(bucket) DO UPDATE SET \
                   count = CASE WHEN ?2 - window_start >= ?3 THEN 1 ELSE count + 1 END, \
                   window_start = CASE WHEN ?2 - window_start >= ?3 THEN ?2 ELSE window_start END",
                &[text(b), int(now), int(WINDOW_MS)],
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    db.batch(statements)
        .await
        .map_err(db_err("record failure"))?;
    Ok(())
}
