//! Accounts: users, devices (token hashes), password changes, signing
//! every device out, and the sign-in attempt windows (counted atomically
//! before any password is hashed).

use super::{db_err, int, num, rows, stmt, text, uint};
use crate::account::AdminUser;
use crate::error::SyncError;
use crate::protocol::DeviceInfo;
use crate::quota::Overrides;
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

/// The device row, inserted only while its user exists and is not
/// disabled: in a registration whose email was taken, no device is created
/// for the user that was not, and a sign-in racing a deletion or a
/// `disable` cannot leave a device behind it.
fn insert_device(db: &D1Database, d: &NewDevice<'_>) -> Result<D1PreparedStatement, SyncError> {
    stmt(
        db,
        "INSERT INTO devices (id, user_id, name, token_hash, created_at, last_seen_at, expires_at) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?5, ?6 \
         WHERE EXISTS (SELECT 1 FROM users WHERE id = ?2 AND disabled_at IS NULL)",
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

/// `false` when the user is gone or disabled (no device was created).
pub async fn create_device(db: &D1Database, device: &NewDevice<'_>) -> Result<bool, SyncError> {
    let r = insert_device(db, device)?
        .run()
        .await
        .map_err(db_err("create device"))?;
    Ok(changes(&r) > 0)
}

fn changes(r: &worker::D1Result) -> u64 {
    r.meta().ok().flatten().and_then(|m| m.changes).unwrap_or(0) as u64
}

#[derive(Deserialize)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub password: String,
    pub disabled_at: Option<f64>,
}

pub async fn user_by_email(db: &D1Database, email: &str) -> Result<Option<UserRow>, SyncError> {
    stmt(
        db,
        "SELECT id, email, password, disabled_at FROM users WHERE email = ?",
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

// ------------------------------------------------------- accounts' lifecycle

/// Deletes every row of the person in one transaction: each table of
/// `PERSON_TABLES` and their sign-in attempt window. Returns the ids of
/// the devices that were signed in, whose sockets the caller closes. A hub
/// still holding the person's state cannot write them back: its commits
/// need the counters row, and its wake does not recreate one for a user
/// who no longer exists (see commit.rs).
pub async fn delete_account(
    db: &D1Database,
    user_id: &str,
    email: &str,
) -> Result<Vec<String>, SyncError> {
    let mut statements = vec![stmt(
        db,
        "SELECT id FROM devices WHERE user_id = ? AND revoked_at IS NULL",
        &[text(user_id)],
    )?];
    for (table, column) in crate::account::PERSON_TABLES {
        statements.push(stmt(
            db,
            &format!("DELETE FROM {table} WHERE {column} = ?"),
            &[text(user_id)],
        )?);
    }
    statements.push(stmt(
        db,
        "DELETE FROM auth_failures WHERE bucket = ?",
        &[text(&format!("email:{email}"))],
    )?);
    let results = db
        .batch(statements)
        .await
        .map_err(db_err("delete account"))?;
    let devices = results
        .first()
        .map(rows::<IdRow>)
        .transpose()?
        .unwrap_or_default();
    Ok(devices.into_iter().map(|d| d.id).collect())
}

/// Disables the account and signs every device out, in one transaction;
/// returns the devices signed out.
pub async fn disable_account(
    db: &D1Database,
    user_id: &str,
    now: i64,
) -> Result<Vec<String>, SyncError> {
    let results = db
        .batch(vec![
            stmt(
                db,
                "UPDATE users SET disabled_at = ?1 WHERE id = ?2 AND disabled_at IS NULL",
                &[int(now), text(user_id)],
            )?,
            stmt(
                db,
                "UPDATE devices SET revoked_at = ?1 WHERE user_id = ?2 AND revoked_at IS NULL \
                 RETURNING id",
                &[int(now), text(user_id)],
            )?,
        ])
        .await
        .map_err(db_err("disable account"))?;
    let revoked = results
        .get(1)
        .map(rows::<IdRow>)
        .transpose()?
        .unwrap_or_default();
    Ok(revoked.into_iter().map(|d| d.id).collect())
}

pub async fn enable_account(db: &D1Database, user_id: &str) -> Result<(), SyncError> {
    stmt(
        db,
        "UPDATE users SET disabled_at = NULL WHERE id = ?",
        &[text(user_id)],
    )?
    .run()
    .await
    .map_err(db_err("enable account"))?;
    Ok(())
}

/// Stores a reset code's hash for the user, replacing any earlier one.
pub async fn issue_reset_code(
    db: &D1Database,
    user_id: &str,
    code_hash: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), SyncError> {
    stmt(
        db,
        "INSERT INTO reset_codes (user_id, code_hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (user_id) DO UPDATE SET code_hash = ?2, created_at = ?3, expires_at = ?4",
        &[text(user_id), text(code_hash), int(now), int(expires_at)],
    )?
    .run()
    .await
    .map_err(db_err("issue reset code"))?;
    Ok(())
}

#[derive(Deserialize)]
pub struct ResetCodeRow {
    pub code_hash: String,
    pub expires_at: f64,
}

pub async fn reset_code(db: &D1Database, user_id: &str) -> Result<Option<ResetCodeRow>, SyncError> {
    stmt(
        db,
        "SELECT code_hash, expires_at FROM reset_codes WHERE user_id = ?",
        &[text(user_id)],
    )?
    .first::<ResetCodeRow>(None)
    .await
    .map_err(db_err("reset code"))
}

/// Uses the reset code `code_hash`: in one transaction, only while that
/// code is still stored and unexpired, sets the password, signs every
/// device out and deletes the code, so two uses cannot both succeed.
/// `None` when the code no longer held; else the devices signed out.
pub async fn reset_password(
    db: &D1Database,
    user_id: &str,
    code_hash: &str,
    record: &str,
    now: i64,
) -> Result<Option<Vec<String>>, SyncError> {
    const VALID: &str = "EXISTS (SELECT 1 FROM reset_codes WHERE user_id = ?2 \
        AND code_hash = ?3 AND expires_at > ?4)";
    let p = [text(record), text(user_id), text(code_hash), int(now)];
    let results = db
        .batch(vec![
            stmt(
                db,
                &format!("UPDATE users SET password = ?1 WHERE id = ?2 AND {VALID}"),
                &p,
            )?,
            stmt(
                db,
                &format!(
                    "UPDATE devices SET revoked_at = ?4 WHERE user_id = ?2 AND revoked_at IS NULL \
                     AND {VALID} RETURNING id"
                ),
                &p,
            )?,
            stmt(
                db,
                "DELETE FROM reset_codes WHERE user_id = ?1 AND code_hash = ?2",
                &[text(user_id), text(code_hash)],
            )?,
        ])
        .await
        .map_err(db_err("reset password"))?;
    let set = results.first().map(changes).unwrap_or(0) > 0;
    if !set {
        return Ok(None);
    }
    let revoked = results
        .get(1)
        .map(rows::<IdRow>)
        .transpose()?
        .unwrap_or_default();
    Ok(Some(revoked.into_iter().map(|d| d.id).collect()))
}

#[derive(Deserialize)]
struct AllowRow {
    entry: String,
    allowed: f64,
}

/// The operator's allow-list rows: those for `entries`, or all of them.
pub async fn allowlist_rows(
    db: &D1Database,
    entries: Option<&[String]>,
) -> Result<Vec<(String, bool)>, SyncError> {
    let r = match entries {
        Some(entries) => {
            let json =
                serde_json::to_string(entries).map_err(|e| SyncError::Internal(e.to_string()))?;
            stmt(
                db,
                "SELECT entry, allowed FROM registration_allowlist \
                 WHERE entry IN (SELECT value FROM json_each(?))",
                &[text(&json)],
            )?
        }
        None => stmt(
            db,
            "SELECT entry, allowed FROM registration_allowlist ORDER BY entry",
            &[],
        )?,
    }
    .all()
    .await
    .map_err(db_err("allowlist"))?;
    Ok(rows::<AllowRow>(&r)?
        .into_iter()
        .map(|a| (a.entry, a.allowed != 0.0))
        .collect())
}

pub async fn set_allowlist(
    db: &D1Database,
    entry: &str,
    allowed: bool,
    now: i64,
) -> Result<(), SyncError> {
    stmt(
        db,
        "INSERT INTO registration_allowlist (entry, allowed, changed_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (entry) DO UPDATE SET allowed = ?2, changed_at = ?3",
        &[text(entry), num(u8::from(allowed)), int(now)],
    )?
    .run()
    .await
    .map_err(db_err("set allowlist"))?;
    Ok(())
}

#[derive(Deserialize)]
struct OverridesRow {
    quota_bytes: Option<f64>,
    quota_keys: Option<f64>,
    quota_writes_per_day: Option<f64>,
}

impl From<OverridesRow> for Overrides {
    fn from(r: OverridesRow) -> Self {
        Overrides {
            bytes: r.quota_bytes.map(|n| n as u64),
            keys: r.quota_keys.map(|n| n as u64),
            writes_per_day: r.quota_writes_per_day.map(|n| n as u64),
        }
    }
}

pub async fn quota_overrides(db: &D1Database, user_id: &str) -> Result<Overrides, SyncError> {
    let row = stmt(
        db,
        "SELECT quota_bytes, quota_keys, quota_writes_per_day FROM users WHERE id = ?",
        &[text(user_id)],
    )?
    .first::<OverridesRow>(None)
    .await
    .map_err(db_err("quota overrides"))?;
    Ok(row.map(Overrides::from).unwrap_or_default())
}

pub async fn set_quota(db: &D1Database, user_id: &str, o: &Overrides) -> Result<(), SyncError> {
    let opt = |v: Option<u64>| v.map_or(JsValue::NULL, uint);
    stmt(
        db,
        "UPDATE users SET quota_bytes = ?1, quota_keys = ?2, quota_writes_per_day = ?3 WHERE id = ?4",
        &[opt(o.bytes), opt(o.keys), opt(o.writes_per_day), text(user_id)],
    )?
    .run()
    .await
    .map_err(db_err("set quota"))?;
    Ok(())
}

#[derive(Deserialize)]
struct AdminUserRow {
    id: String,
    email: String,
    created_at: f64,
    disabled_at: Option<f64>,
    quota_bytes: Option<f64>,
    quota_keys: Option<f64>,
    quota_writes_per_day: Option<f64>,
    last_seen_at: Option<f64>,
    devices: f64,
    keys: Option<f64>,
    bytes: Option<f64>,
    writes_today: Option<f64>,
}

/// Every account with its use, oldest first (`scripts/admin.sh users`).
/// Keys are those whose newest version is not a deletion.
pub async fn admin_users(
    db: &D1Database,
    defaults: crate::quota::Limits,
    now: i64,
) -> Result<Vec<AdminUser>, SyncError> {
    let r = stmt(
        db,
        "SELECT u.id, u.email, u.created_at, u.disabled_at, \
           u.quota_bytes, u.quota_keys, u.quota_writes_per_day, \
           (SELECT max(d.last_seen_at) FROM devices d WHERE d.user_id = u.id) AS last_seen_at, \
           (SELECT count(*) FROM devices d WHERE d.user_id = u.id AND d.revoked_at IS NULL \
              AND d.expires_at > ?1) AS devices, \
           (SELECT count(*) FROM json_each(s.keys) k WHERE (SELECT h.deleted FROM sync_history h \
              WHERE h.user_id = u.id AND h.key = k.value AND h.version IS NOT NULL \
              ORDER BY h.id DESC LIMIT 1) = 0) AS keys, \
           s.bytes, CASE WHEN s.write_day = ?2 THEN s.write_units ELSE 0 END AS writes_today \
         FROM users u LEFT JOIN sync_state s ON s.user_id = u.id ORDER BY u.created_at, u.id",
        &[int(now), int(now.div_euclid(crate::quota::DAY_MS))],
    )?
    .all()
    .await
    .map_err(db_err("admin users"))?;
    Ok(rows::<AdminUserRow>(&r)?
        .into_iter()
        .map(|u| {
            let overrides = Overrides {
                bytes: u.quota_bytes.map(|n| n as u64),
                keys: u.quota_keys.map(|n| n as u64),
                writes_per_day: u.quota_writes_per_day.map(|n| n as u64),
            };
            AdminUser {
                user_id: u.id,
                email: u.email,
                created_at: u.created_at as i64,
                last_seen_at: u.last_seen_at.map(|t| t as i64),
                devices: u.devices as u64,
                keys: u.keys.unwrap_or(0.0) as u64,
                bytes: u.bytes.unwrap_or(0.0) as u64,
                writes_today: u.writes_today.unwrap_or(0.0) as u64,
                quota: overrides.apply(defaults),
                overrides,
                disabled_at: u.disabled_at.map(|t| t as i64),
            }
        })
        .collect())
}
