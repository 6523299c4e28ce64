//! Wire types of the account endpoints: password change, signing out every
//! device, and usage against the quotas.

use crate::quota::Limits;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
    /// Signs every other device out too; the default, since a password is
    /// usually changed because another device should no longer get in.
    #[serde(default)]
    pub sign_out_others: Option<bool>,
}

/// The answer to a password change or signing out everywhere.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedOutResponse {
    pub success: bool,
    /// How many devices were signed out.
    pub signed_out: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountUsage {
    /// Bytes of values stored, current and history together.
    pub bytes: u64,
    /// Keys holding a value.
    pub keys: u64,
    /// Write units used today (UTC).
    pub writes_today: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountLimits {
    pub bytes: u64,
    pub keys: u64,
    pub writes_per_day: u64,
    /// Write units at once, then `writesPerMinute`.
    pub write_burst: u32,
    pub writes_per_minute: u32,
}

impl AccountLimits {
    pub fn new(quota: &Limits, write_burst: u32, writes_per_minute: u32) -> Self {
        Self {
            bytes: quota.bytes,
            keys: quota.keys,
            writes_per_day: quota.writes_per_day,
            write_burst,
            writes_per_minute,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountResponse {
    pub success: bool,
    pub user_id: String,
    pub device_id: String,
    pub usage: AccountUsage,
    pub limits: AccountLimits,
    /// When `writesToday` starts again from 0 (ms, next UTC midnight).
    pub writes_reset_at: i64,
}

/// `DELETE /api/account`: the current password, so a device left signed in
/// cannot erase its owner's data.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteAccountRequest {
    pub password: String,
}

/// `POST /api/auth/reset`: a code the operator issued, and the new password.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResetPasswordRequest {
    pub email: String,
    pub code: String,
    pub new_password: String,
}

/// Every table that holds rows of one person, with the column that names
/// them, in the order deleting an account empties them (`users` last).
/// `tests` below checks this against every table migrations/ creates, so a
/// new table cannot be forgotten by "delete my account".
pub const PERSON_TABLES: &[(&str, &str)] = &[
    ("sync_records", "user_id"),
    ("sync_chunks", "user_id"),
    ("sync_history", "user_id"),
    ("sync_requests", "user_id"),
    ("sync_state", "user_id"),
    ("reset_codes", "user_id"),
    ("devices", "user_id"),
    ("users", "id"),
];

/// Tables keyed otherwise. `auth_failures` counts attempts by bucket: a
/// person's is `email:<address>`, deleted with them (IP buckets belong to
/// no one). `registration_allowlist` is the operator's list, not a person's.
pub const SHARED_TABLES: &[&str] = &["auth_failures", "registration_allowlist"];

// ------------------------------------------------------------- the admin API

/// One account as `scripts/admin.sh users` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminUser {
    pub user_id: String,
    pub email: String,
    pub created_at: i64,
    /// The newest use of any of its devices (updated at most hourly).
    pub last_seen_at: Option<i64>,
    /// Devices signed in (not revoked, not expired).
    pub devices: u64,
    pub keys: u64,
    /// Stored bytes, current values and history (an upper bound, as the
    /// quota counts it).
    pub bytes: u64,
    pub writes_today: u64,
    /// The limits that hold for this person, and which of them the
    /// operator set.
    pub quota: Limits,
    pub overrides: crate::quota::Overrides,
    /// When the operator disabled the account; `null` when enabled.
    pub disabled_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminUsersResponse {
    pub success: bool,
    pub users: Vec<AdminUser>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResetCodeResponse {
    pub success: bool,
    pub email: String,
    /// Shown this once; the database keeps only its hash.
    pub code: String,
    pub expires_at: i64,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    let v = Option::<u64>::deserialize(d)?;
    if v.is_some_and(|n| n > crate::model::MAX_SAFE_INTEGER) {
        return Err(serde::de::Error::custom("limits are at most 2^53 - 1"));
    }
    Ok(Some(v))
}

/// `PUT /api/admin/users/{email}/quota`: a field left out stays as it is;
/// `null` goes back to the deployment's default.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaRequest {
    #[serde(default, deserialize_with = "present")]
    pub bytes: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    pub keys: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    pub writes_per_day: Option<Option<u64>>,
}

impl QuotaRequest {
    pub fn apply_to(&self, mut o: crate::quota::Overrides) -> crate::quota::Overrides {
        if let Some(v) = self.bytes {
            o.bytes = v;
        }
        if let Some(v) = self.keys {
            o.keys = v;
        }
        if let Some(v) = self.writes_per_day {
            o.writes_per_day = v;
        }
        o
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaResponse {
    pub success: bool,
    pub email: String,
    pub quota: Limits,
    pub overrides: crate::quota::Overrides,
}

/// `POST /api/admin/allowlist`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowRequest {
    pub entry: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowlistEntry {
    /// An email address or `@domain`.
    pub entry: String,
    pub allowed: bool,
    /// `variable` (`REGISTRATION_ALLOWLIST`, not changed since) or
    /// `database` (set with `allow`/`disallow`).
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowlistResponse {
    pub success: bool,
    /// `REGISTRATION`: the list matters only under `allowlist`.
    pub mode: String,
    pub entries: Vec<AllowlistEntry>,
}

/// The effective list: the variable's entries unless the database changed
/// them, then the database's rows, sorted.
pub fn allowlist_entries(seed: &[String], rows: &[(String, bool)]) -> Vec<AllowlistEntry> {
    let mut out: Vec<AllowlistEntry> = seed
        .iter()
        .filter(|e| !rows.iter().any(|(r, _)| r == *e))
        .map(|e| AllowlistEntry {
            entry: e.clone(),
            allowed: true,
            source: "variable".into(),
        })
        .collect();
    out.extend(rows.iter().map(|(e, allowed)| AllowlistEntry {
        entry: e.clone(),
        allowed: *allowed,
        source: "database".into(),
    }));
    out.sort_by(|a, b| a.entry.cmp(&b.entry));
    out.dedup_by(|a, b| a.entry == b.entry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The tables migrations/ leaves, read from its SQL: created, renamed,
    /// dropped.
    fn migrated_tables() -> BTreeSet<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        files.sort();
        let mut tables = BTreeSet::new();
        for f in files {
            let sql = std::fs::read_to_string(&f).unwrap();
            let sql: String = sql
                .lines()
                .map(|l| l.split("--").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join(" ");
            let words: Vec<String> = sql
                .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
                .filter(|w| !w.is_empty())
                .map(|w| w.to_ascii_lowercase())
                .collect();
            for i in 0..words.len() {
                let w = |k: usize| words.get(i + k).map(String::as_str).unwrap_or("");
                match (w(0), w(1)) {
                    ("create", "table") => {
                        let name = if w(2) == "if" { w(5) } else { w(2) };
                        tables.insert(name.to_owned());
                    }
                    ("drop", "table") => {
                        let name = if w(2) == "if" { w(4) } else { w(2) };
                        tables.remove(name);
                    }
                    ("alter", "table") if w(3) == "rename" && w(4) == "to" => {
                        tables.remove(w(2));
                        tables.insert(w(5).to_owned());
                    }
                    _ => {}
                }
            }
        }
        tables
    }

    #[test]
    fn every_table_is_either_a_persons_or_shared() {
        let migrated = migrated_tables();
        assert!(migrated.contains("sync_history"), "{migrated:?}");
        let known: BTreeSet<String> = PERSON_TABLES
            .iter()
            .map(|(t, _)| t.to_string())
            .chain(SHARED_TABLES.iter().map(|t| t.to_string()))
            .collect();
        assert_eq!(
            migrated, known,
            "a table in migrations/ is missing from PERSON_TABLES or SHARED_TABLES \
             (deleting an account must empty it), or one listed there no longer exists"
        );
        assert_eq!(PERSON_TABLES.last(), Some(&("users", "id")));
    }

    #[test]
    fn allowlist_listing() {
        let seed = vec!["a@x.org".to_string(), "@y.org".to_string()];
        let rows = vec![("@y.org".to_string(), false), ("b@z.org".to_string(), true)];
        let got: Vec<(String, bool, String)> = allowlist_entries(&seed, &rows)
            .into_iter()
            .map(|e| (e.entry, e.allowed, e.source))
            .collect();
        assert_eq!(
            got,
            [
                ("@y.org".into(), false, "database".into()),
                ("a@x.org".into(), true, "variable".into()),
                ("b@z.org".into(), true, "database".into()),
            ]
        );
    }

    #[test]
    fn quota_request_tells_absent_from_null() {
        let r: QuotaRequest = serde_json::from_str(r#"{"bytes": 5, "keys": null}"#).unwrap();
        let before = crate::quota::Overrides {
            keys: Some(9),
            writes_per_day: Some(7),
            ..Default::default()
        };
        let after = r.apply_to(before);
        assert_eq!(after.bytes, Some(5));
        assert_eq!(after.keys, None);
        assert_eq!(after.writes_per_day, Some(7));
        assert!(serde_json::from_str::<QuotaRequest>(r#"{"bytes": 9007199254740992}"#).is_err());
        assert!(serde_json::from_str::<QuotaRequest>(r#"{"bytes": -1}"#).is_err());
    }
}
