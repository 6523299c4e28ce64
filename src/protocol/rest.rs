//! REST request and answer bodies, and the validated `Write` they become.

use super::numbers as whole;
use crate::error::SyncError;
use crate::model::{self, Key, MAX_BATCH_KEYS};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Parses a JSON body, telling malformed JSON (`invalid_json`) apart from
/// well-formed JSON of the wrong shape (`invalid_request`).
pub fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, SyncError> {
    let parsed = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => SyncError::InvalidRequest(e.to_string()),
        _ => SyncError::InvalidJson(e.to_string()),
    })?;
    // serde also reads a struct from an array of its fields in order;
    // a request body is always an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(SyncError::InvalidRequest(
            "request body must be a JSON object".into(),
        ));
    }
    Ok(parsed)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthRequest {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub device_name: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthResponse {
    pub success: bool,
    pub token: String,
    pub user_id: String,
    pub device_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OkResponse {
    pub success: bool,
}

/// Options shared by single-key writes.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteOptions {
    #[serde(default, deserialize_with = "whole::opt_u64")]
    pub base_version: Option<u64>,
    #[serde(default, deserialize_with = "whole::opt_i64")]
    pub updated_at: Option<i64>,
    #[serde(default)]
    pub request_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutRequest {
    pub value: String,
    #[serde(flatten)]
    pub options: WriteOptions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRequest {
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "whole::map_u64")]
    pub base_versions: BTreeMap<String, u64>,
    #[serde(default, deserialize_with = "whole::map_i64")]
    pub updated_at: BTreeMap<String, i64>,
    #[serde(default)]
    pub deleted: Vec<String>,
    #[serde(default)]
    pub request_id: Option<String>,
}

/// One validated change to one key. `value: None` is a deletion, unless
/// `patch` is set: then the write is the stored record list with the patch
/// applied (a WebSocket `patch` frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub key: Key,
    pub value: Option<String>,
    pub base_version: Option<u64>,
    pub updated_at: Option<i64>,
    pub patch: Option<std::rc::Rc<crate::records::Patch>>,
}

fn check_updated_at(updated_at: Option<i64>) -> Result<(), SyncError> {
    match updated_at {
        Some(ms) if ms < 0 => Err(SyncError::InvalidRequest(
            "updatedAt must be a non-negative time in milliseconds".into(),
        )),
        _ => Ok(()),
    }
}

pub fn check_request_id(id: &Option<String>) -> Result<(), SyncError> {
    match id {
        Some(id) => model::check_request_id(id),
        None => Ok(()),
    }
}

impl WriteOptions {
    fn validate(&self) -> Result<(), SyncError> {
        check_updated_at(self.updated_at)?;
        check_request_id(&self.request_id)
    }

    /// The write and its requestId, or why the write is refused.
    pub fn into_write(
        self,
        key: Key,
        value: Option<String>,
    ) -> Result<(Write, Option<String>), SyncError> {
        self.validate()?;
        if let Some(v) = &value {
            model::check_value(&key, v)?;
        }
        let write = Write {
            key,
            value,
            base_version: self.base_version,
            updated_at: self.updated_at,
            patch: None,
        };
        Ok((write, self.request_id))
    }
}

impl BatchRequest {
    /// All writes of the batch, or the first reason the batch is refused.
    pub fn into_writes(self) -> Result<(Vec<Write>, Option<String>), SyncError> {
        check_request_id(&self.request_id)?;
        let count = self.data.len() + self.deleted.len();
        if count > MAX_BATCH_KEYS {
            return Err(SyncError::InvalidRequest(format!(
                "a batch holds at most {MAX_BATCH_KEYS} keys, got {count}"
            )));
        }
        for ms in self.updated_at.values() {
            check_updated_at(Some(*ms))?;
        }
        let mut seen = BTreeSet::new();
        let mut writes = Vec::with_capacity(count);
        let data = self.data.into_iter().map(|(k, v)| (k, Some(v)));
        let deleted = self.deleted.into_iter().map(|k| (k, None));
        for (raw, value) in data.chain(deleted) {
            let key = Key::parse(&raw)?;
            if !seen.insert(raw.clone()) {
                return Err(SyncError::InvalidRequest(format!(
                    "key {raw:?} appears more than once in the batch"
                )));
            }
            if let Some(v) = &value {
                model::check_value(&key, v)?;
            }
            writes.push(Write {
                base_version: self.base_versions.get(&raw).copied(),
                updated_at: self.updated_at.get(&raw).copied(),
                key,
                value,
                patch: None,
            });
        }
        Ok((writes, self.request_id))
    }
}

/// How a conflicting write was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resolution {
    LastWriteWins,
    /// Both sides were arrays of objects with an `id`: merged three-way.
    Merged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Winner {
    /// The write in this request became the current value.
    Incoming,
    /// The stored value stayed; the incoming one is kept in history.
    Stored,
    /// A merge of both became current; the incoming value is kept in history.
    Merged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    pub key: String,
    pub resolution: Resolution,
    pub winner: Winner,
    /// The key's version after the write.
    pub version: u64,
    /// The version the write found stored.
    pub stored_version: u64,
    pub base_version: Option<u64>,
    pub incoming_updated_at: i64,
    pub stored_updated_at: i64,
    /// For a record list: the ids of the records edited on both sides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteResponse {
    pub success: bool,
    pub key: String,
    pub version: u64,
    pub conflict: Option<Conflict>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    pub success: bool,
    pub synced: Vec<String>,
    pub conflicts: Vec<Conflict>,
    pub versions: BTreeMap<String, u64>,
    pub cursor: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotResponse {
    pub success: bool,
    pub data: BTreeMap<String, String>,
    pub versions: BTreeMap<String, u64>,
    pub deleted: Vec<String>,
    pub cursor: u64,
    pub last_sync: String,
}

// ------------------------------------------------- history, backup, devices

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub version: u64,
    pub updated_at: i64,
    pub device_id: String,
    /// `None` when the device that wrote it is unknown.
    pub device_name: Option<String>,
    pub deleted: bool,
    /// Bytes of the value (0 for a deletion).
    pub size: u64,
    /// This is the key's current version.
    pub current: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryResponse {
    pub success: bool,
    pub key: String,
    /// Newest first.
    pub history: Vec<HistoryEntry>,
}

/// One kept row of a record: a version of it (a removal included), or what
/// a stale write sent for it that did not win (`version` null).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordHistoryEntry {
    /// The key's version that wrote it; null for a value that never became
    /// current.
    pub version: Option<u64>,
    pub deleted: bool,
    pub updated_at: i64,
    pub device_id: String,
    pub device_name: Option<String>,
    /// This is the record as it stands now (or its removal).
    pub current: bool,
    /// The record's JSON text; null for a removal.
    pub value: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordHistoryResponse {
    pub success: bool,
    pub key: String,
    pub id: String,
    pub history: Vec<RecordHistoryEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryValueResponse {
    pub success: bool,
    pub key: String,
    pub version: u64,
    pub value: Option<String>,
    pub deleted: bool,
    pub updated_at: i64,
    pub device_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRequest {
    #[serde(deserialize_with = "whole::u64")]
    pub version: u64,
    #[serde(default)]
    pub request_id: Option<String>,
}

impl RestoreRequest {
    pub fn validate(&self) -> Result<(), SyncError> {
        if self.version == 0 {
            return Err(SyncError::InvalidRequest(
                "version must be a positive integer".into(),
            ));
        }
        check_request_id(&self.request_id)
    }
}

pub const EXPORT_FORMAT: &str = "alternassist-sync-export";
pub const EXPORT_FORMAT_VERSION: u64 = 1;

/// A backup of a user's current data: what `GET /api/export` writes and
/// `POST /api/import` reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportDocument {
    pub format: String,
    #[serde(deserialize_with = "whole::u64")]
    pub format_version: u64,
    #[serde(default)]
    pub exported_at: Option<String>,
    pub data: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "whole::map_u64")]
    pub versions: BTreeMap<String, u64>,
}

impl ExportDocument {
    /// The document's keys as writes based on the versions it was exported
    /// at (so merge and conflict rules apply), or why it is not an export.
    pub fn into_writes(self) -> Result<Vec<Write>, SyncError> {
        if self.format != EXPORT_FORMAT {
            return Err(SyncError::InvalidRequest(format!(
                "not an export: format must be {EXPORT_FORMAT:?}"
            )));
        }
        if self.format_version != EXPORT_FORMAT_VERSION {
            return Err(SyncError::InvalidRequest(format!(
                "unsupported formatVersion {} (this server reads {EXPORT_FORMAT_VERSION})",
                self.format_version
            )));
        }
        if self.data.len() > model::MAX_IMPORT_KEYS {
            return Err(SyncError::InvalidRequest(format!(
                "an import holds at most {} keys, got {}",
                model::MAX_IMPORT_KEYS,
                self.data.len()
            )));
        }
        // `versions` may name keys `data` no longer holds: a part of an
        // export (keys taken out of `data`) is still a valid export.
        let mut writes = Vec::with_capacity(self.data.len());
        for (raw, value) in self.data {
            let key = Key::parse(&raw)?;
            model::check_value(&key, &value)?;
            writes.push(Write {
                base_version: self.versions.get(&raw).copied(),
                updated_at: None,
                key,
                value: Some(value),
                patch: None,
            });
        }
        Ok(writes)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// The device making this request.
    pub current: bool,
    /// Has a live WebSocket now.
    pub online: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicesResponse {
    pub success: bool,
    pub devices: Vec<DeviceInfo>,
}
