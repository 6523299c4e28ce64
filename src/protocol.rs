//! Wire types: REST bodies now, WebSocket messages later, one definition each.
//! Fields are camelCase on the wire. Requests keep raw strings; `validate`
//! turns them into typed writes so every rule lives in one place.

use crate::error::SyncError;
use crate::model::{self, Key, MAX_BATCH_KEYS};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Parses a JSON body, telling malformed JSON (`invalid_json`) apart from
/// well-formed JSON of the wrong shape (`invalid_request`).
pub fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, SyncError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => SyncError::InvalidRequest(e.to_string()),
        _ => SyncError::InvalidJson(e.to_string()),
    })
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
    #[serde(default)]
    pub base_version: Option<u64>,
    #[serde(default)]
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
    #[serde(default)]
    pub base_versions: BTreeMap<String, u64>,
    #[serde(default)]
    pub updated_at: BTreeMap<String, i64>,
    #[serde(default)]
    pub deleted: Vec<String>,
    #[serde(default)]
    pub request_id: Option<String>,
}

/// One validated change to one key. `value: None` is a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub key: Key,
    pub value: Option<String>,
    pub base_version: Option<u64>,
    pub updated_at: Option<i64>,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Winner {
    /// The write in this request became the current value.
    Incoming,
    /// The stored value stayed; the incoming one is kept in history.
    Stored,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteResponse {
    pub success: bool,
    pub key: String,
    pub version: u64,
    pub conflict: Option<Conflict>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_and_misshapen_json_differ() {
        let e = parse_json::<PutRequest>(b"{\"value\": ").unwrap_err();
        assert_eq!(e.code(), "invalid_json");
        let e = parse_json::<PutRequest>(b"{\"value\": 5}").unwrap_err();
        assert_eq!(e.code(), "invalid_request");
        let e = parse_json::<PutRequest>(b"{}").unwrap_err();
        assert_eq!(e.code(), "invalid_request");
        let e = parse_json::<PutRequest>(b"{\"value\":\"v\",\"baseVersion\":-1}").unwrap_err();
        assert_eq!(e.code(), "invalid_request");
        let p = parse_json::<PutRequest>(
            br#"{"value":"v","baseVersion":3,"updatedAt":17,"requestId":"r1","extra":true}"#,
        )
        .unwrap();
        assert_eq!(p.options.base_version, Some(3));
        assert_eq!(p.options.request_id.as_deref(), Some("r1"));
    }

    #[test]
    fn batch_validation() {
        let b: BatchRequest = parse_json(
            br#"{"data":{"a":"1","b":"2"},"baseVersions":{"a":4},"updatedAt":{"b":9},"deleted":["c"]}"#,
        )
        .unwrap();
        let (w, rid) = b.into_writes().unwrap();
        assert_eq!(rid, None);
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].base_version, Some(4));
        assert_eq!(w[1].updated_at, Some(9));
        assert_eq!(w[2].value, None);

        let dup: BatchRequest = parse_json(br#"{"data":{"a":"1"},"deleted":["a"]}"#).unwrap();
        assert_eq!(dup.into_writes().unwrap_err().code(), "invalid_request");
        let bad_key: BatchRequest = parse_json(br#"{"data":{"":"1"}}"#).unwrap();
        assert_eq!(bad_key.into_writes().unwrap_err().code(), "invalid_key");
        let neg: BatchRequest = parse_json(br#"{"data":{"a":"1"},"updatedAt":{"a":-5}}"#).unwrap();
        assert_eq!(neg.into_writes().unwrap_err().code(), "invalid_request");
    }

    #[test]
    fn conflict_wire_shape() {
        let c = Conflict {
            key: "k".into(),
            resolution: Resolution::LastWriteWins,
            winner: Winner::Stored,
            version: 3,
            stored_version: 3,
            base_version: Some(1),
            incoming_updated_at: 1,
            stored_updated_at: 2,
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["resolution"], "last-write-wins");
        assert_eq!(v["winner"], "stored");
        assert_eq!(v["storedVersion"], 3);
        assert_eq!(v["incomingUpdatedAt"], 1);
    }
}
