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

/// Integers as JSON Schema counts them: `3` and `3.0` alike (some JSON
/// encoders write every number with a fraction). Anything with a fraction,
/// or beyond what a JavaScript number holds exactly, is refused.
mod whole {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};
    use serde_json::Number;
    use std::collections::BTreeMap;

    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

    fn as_u64(n: &Number) -> Option<u64> {
        n.as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && (0.0..=MAX_SAFE).contains(f))
                    .map(|f| f as u64)
            })
            .filter(|v| *v <= crate::model::MAX_SAFE_INTEGER)
    }

    fn as_i64(n: &Number) -> Option<i64> {
        n.as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && (-MAX_SAFE..=MAX_SAFE).contains(f))
                    .map(|f| f as i64)
            })
            .filter(|v| v.unsigned_abs() <= crate::model::MAX_SAFE_INTEGER)
    }

    fn read<'de, D: Deserializer<'de>, T>(
        n: Number,
        convert: fn(&Number) -> Option<T>,
        what: &str,
    ) -> Result<T, D::Error> {
        convert(&n).ok_or_else(|| D::Error::custom(format!("expected {what}, got {n}")))
    }

    pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        read::<D, _>(Number::deserialize(d)?, as_u64, "a non-negative integer")
    }

    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<Number>::deserialize(d)?
            .map(|n| read::<D, _>(n, as_u64, "a non-negative integer"))
            .transpose()
    }

    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Option::<Number>::deserialize(d)?
            .map(|n| read::<D, _>(n, as_i64, "an integer"))
            .transpose()
    }

    pub fn map_u64<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, u64>, D::Error> {
        BTreeMap::<String, Number>::deserialize(d)?
            .into_iter()
            .map(|(k, n)| Ok((k, read::<D, _>(n, as_u64, "a non-negative integer")?)))
            .collect()
    }

    pub fn map_i64<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, i64>, D::Error> {
        BTreeMap::<String, Number>::deserialize(d)?
            .into_iter()
            .map(|(k, n)| Ok((k, read::<D, _>(n, as_i64, "an integer")?)))
            .collect()
    }
}

// ------------------------------------------------------------ WebSocket

/// The subprotocol a client must offer (with `bearer.<token>`), and the one
/// the server answers with.
pub const WS_PROTOCOL: &str = "alternassist-sync.v1";
pub const WS_BEARER_PREFIX: &str = "bearer.";
/// Largest text frame the hub reads; bigger values go over REST.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Frames a client sends, tagged by `type`.
#[derive(Debug, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ClientMessage {
    Hello {
        #[serde(default, deserialize_with = "whole::u64")]
        since: u64,
    },
    Put {
        key: String,
        value: String,
        #[serde(default, deserialize_with = "whole::opt_u64")]
        base_version: Option<u64>,
        #[serde(default, deserialize_with = "whole::opt_i64")]
        updated_at: Option<i64>,
        request_id: String,
    },
    Delete {
        key: String,
        #[serde(default, deserialize_with = "whole::opt_u64")]
        base_version: Option<u64>,
        #[serde(default, deserialize_with = "whole::opt_i64")]
        updated_at: Option<i64>,
        request_id: String,
    },
    Ping,
}

/// One key's new state, as sent to devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub key: String,
    pub value: Option<String>,
    pub version: u64,
    pub deleted: bool,
    pub updated_at: i64,
    pub device_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceDevice {
    pub device_id: String,
    pub name: String,
}

/// Frames the server sends, tagged by `type`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ServerMessage {
    /// The answer to `hello`: everything after `since`, oldest first.
    Changes {
        changes: Vec<Change>,
        cursor: u64,
    },
    /// The answer to the sender's `put` or `delete`.
    Ack {
        request_id: String,
        key: String,
        version: u64,
        conflict: Option<Conflict>,
    },
    /// Another device's (or a REST) write, to every other socket.
    Change(Change),
    Presence {
        devices: Vec<PresenceDevice>,
    },
    Error {
        request_id: Option<String>,
        code: String,
        message: String,
    },
    Pong,
}

impl ServerMessage {
    pub fn to_json(&self) -> String {
        // Plain strings, integers and options: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The heartbeat frame the runtime answers by itself (exact text match).
    pub fn ping_json() -> String {
        r#"{"type":"ping"}"#.to_string()
    }

    pub fn error(request_id: Option<String>, e: &SyncError) -> Self {
        Self::Error {
            request_id,
            code: e.code().to_string(),
            message: e.public_message(),
        }
    }
}

/// What a text frame asks for, validated; or the error frame to answer with.
#[derive(Debug)]
pub enum Incoming {
    Hello { since: u64 },
    Write { write: Write, request_id: String },
    Ping,
}

/// Parses and validates one text frame. Errors carry the frame's
/// `requestId` when it had one, so the client can match them.
pub fn parse_frame(text: &str) -> Result<Incoming, (Option<String>, SyncError)> {
    if text.len() > MAX_FRAME_BYTES {
        return Err((
            None,
            SyncError::FrameTooLarge {
                limit: MAX_FRAME_BYTES,
            },
        ));
    }
    // One typed parse on the hot path; only a refused frame is parsed again,
    // loosely, to say why and to echo its requestId.
    let msg: ClientMessage = serde_json::from_str(text).map_err(|_| diagnose_frame(text))?;
    let (key, value, base_version, updated_at, request_id) = match msg {
        ClientMessage::Hello { since } => return Ok(Incoming::Hello { since }),
        ClientMessage::Ping => return Ok(Incoming::Ping),
        ClientMessage::Put {
            key,
            value,
            base_version,
            updated_at,
            request_id,
        } => (key, Some(value), base_version, updated_at, request_id),
        ClientMessage::Delete {
            key,
            base_version,
            updated_at,
            request_id,
        } => (key, None, base_version, updated_at, request_id),
    };
    let fail = |e: SyncError| (Some(request_id.clone()), e);
    let key = Key::parse(&key).map_err(fail)?;
    let options = WriteOptions {
        base_version,
        updated_at,
        request_id: Some(request_id.clone()),
    };
    let (write, _) = options.into_write(key, value).map_err(fail)?;
    Ok(Incoming::Write { write, request_id })
}

/// Why a text frame does not parse as a `ClientMessage`, with its requestId.
fn diagnose_frame(text: &str) -> (Option<String>, SyncError) {
    let raw: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return (None, SyncError::InvalidJson(e.to_string())),
    };
    let request_id = raw
        .get("requestId")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let kind = raw.get("type").and_then(|t| t.as_str()).unwrap_or("");
    let error = if !matches!(kind, "hello" | "put" | "delete" | "ping") {
        SyncError::InvalidRequest(format!(
            "unknown message type {kind:?}: expected hello, put, delete or ping"
        ))
    } else {
        match serde_json::from_value::<ClientMessage>(raw) {
            Err(e) => SyncError::InvalidRequest(e.to_string()),
            // Not reached: the typed parse of the same text failed.
            Ok(_) => SyncError::InvalidRequest("malformed message".into()),
        }
    };
    (request_id, error)
}

/// Turns the stored answer to a single-key write into the sender's `ack`.
pub fn ack_from_answer(request_id: &str, answer: &str) -> ServerMessage {
    match serde_json::from_str::<WriteResponse>(answer) {
        Ok(r) => ServerMessage::Ack {
            request_id: request_id.to_owned(),
            key: r.key,
            version: r.version,
            conflict: r.conflict,
        },
        // The requestId was first used for a REST batch: say so.
        Err(_) => ServerMessage::error(
            Some(request_id.to_owned()),
            &SyncError::InvalidRequest("requestId was already used for another request".into()),
        ),
    }
}

/// Picks `bearer.<token>` out of a `Sec-WebSocket-Protocol` header, and
/// whether our protocol was offered at all.
pub fn ws_offer(header: &str) -> (bool, Option<&str>) {
    let mut ours = false;
    let mut token = None;
    for p in header.split(',').map(str::trim) {
        if p == WS_PROTOCOL {
            ours = true;
        } else if let Some(t) = p.strip_prefix(WS_BEARER_PREFIX) {
            token = Some(t);
        }
    }
    (ours, token)
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
        // Serde would read a struct from an array of its fields.
        let e = parse_json::<PutRequest>(br#"["v"]"#).unwrap_err();
        assert_eq!(e.code(), "invalid_request");
        let e = parse_json::<BatchRequest>(br#"[{"k":"v"}]"#).unwrap_err();
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
    fn whole_numbers_may_be_written_as_floats() {
        let p: PutRequest =
            parse_json(br#"{"value":"v","baseVersion":3.0,"updatedAt":-2.0}"#).unwrap();
        assert_eq!(
            (p.options.base_version, p.options.updated_at),
            (Some(3), Some(-2))
        );
        let p: PutRequest = parse_json(br#"{"value":"v","baseVersion":null}"#).unwrap();
        assert_eq!(p.options.base_version, None);
        for bad in [
            r#"{"value":"v","baseVersion":3.5}"#,
            r#"{"value":"v","baseVersion":-1.0}"#,
            r#"{"value":"v","baseVersion":-1}"#,
            r#"{"value":"v","baseVersion":1e300}"#,
            r#"{"value":"v","baseVersion":"3"}"#,
            r#"{"value":"v","updatedAt":0.5}"#,
            r#"{"value":"v","baseVersion":9007199254740992}"#,
            r#"{"value":"v","updatedAt":9007199254740992}"#,
            r#"{"value":"v","updatedAt":-9007199254740992}"#,
        ] {
            let e = parse_json::<PutRequest>(bad.as_bytes()).unwrap_err();
            assert_eq!(e.code(), "invalid_request", "{bad}");
        }
        let b: BatchRequest =
            parse_json(br#"{"data":{"a":"1"},"baseVersions":{"a":4.0},"updatedAt":{"a":9.0}}"#)
                .unwrap();
        assert_eq!((b.base_versions["a"], b.updated_at["a"]), (4, 9));
        let r: RestoreRequest = parse_json(br#"{"version":2.0}"#).unwrap();
        assert_eq!(r.version, 2);
        assert!(matches!(
            parse_frame(r#"{"type":"hello","since":4.0}"#),
            Ok(Incoming::Hello { since: 4 })
        ));
        let frame = r#"{"type":"put","key":"k","value":"v","baseVersion":2.0,"requestId":"r"}"#;
        let Ok(Incoming::Write { write, .. }) = parse_frame(frame) else {
            panic!("{frame}");
        };
        assert_eq!(write.base_version, Some(2));
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
    fn frames() {
        assert!(matches!(
            parse_frame(r#"{"type":"hello","since":4}"#),
            Ok(Incoming::Hello { since: 4 })
        ));
        assert!(matches!(
            parse_frame(r#"{"type":"hello"}"#),
            Ok(Incoming::Hello { since: 0 })
        ));
        assert!(matches!(
            parse_frame(r#"{"type":"ping"}"#),
            Ok(Incoming::Ping)
        ));
        match parse_frame(r#"{"type":"put","key":"k","value":"v","baseVersion":2,"requestId":"r"}"#)
        {
            Ok(Incoming::Write { write, request_id }) => {
                assert_eq!(request_id, "r");
                assert_eq!(write.value.as_deref(), Some("v"));
                assert_eq!(write.base_version, Some(2));
            }
            other => panic!("{other:?}"),
        }
        match parse_frame(r#"{"type":"delete","key":"k","requestId":"r"}"#) {
            Ok(Incoming::Write { write, .. }) => assert_eq!(write.value, None),
            other => panic!("{other:?}"),
        }
        let code = |f: &str| parse_frame(f).unwrap_err().1.code();
        assert_eq!(code("{nope"), "invalid_json");
        assert_eq!(code(r#"{"type":"dance"}"#), "invalid_request");
        assert_eq!(code(r#"[1,2]"#), "invalid_request");
        assert_eq!(
            code(r#"{"type":"put","key":"k","requestId":"r"}"#),
            "invalid_request"
        );
        assert_eq!(
            code(r#"{"type":"put","key":"k","value":"v"}"#),
            "invalid_request"
        );
        assert_eq!(
            code(r#"{"type":"put","key":"","value":"v","requestId":"r"}"#),
            "invalid_key"
        );
        let (rid, _) =
            parse_frame(r#"{"type":"put","key":"","value":"v","requestId":"r9"}"#).unwrap_err();
        assert_eq!(rid.as_deref(), Some("r9"));
        let big = format!(
            r#"{{"type":"put","key":"k","value":"{}","requestId":"r"}}"#,
            "x".repeat(MAX_FRAME_BYTES)
        );
        assert_eq!(code(&big), "frame_too_large");
    }

    #[test]
    fn server_messages_wire_shape() {
        let m = ServerMessage::Change(Change {
            key: "k".into(),
            value: None,
            version: 3,
            deleted: true,
            updated_at: 5,
            device_id: "d".into(),
        });
        assert_eq!(
            m.to_json(),
            r#"{"type":"change","key":"k","value":null,"version":3,"deleted":true,"updatedAt":5,"deviceId":"d"}"#
        );
        assert_eq!(ServerMessage::Pong.to_json(), r#"{"type":"pong"}"#);
        let ack = ack_from_answer(
            "r1",
            r#"{"success":true,"key":"k","version":7,"conflict":null}"#,
        );
        assert_eq!(
            ack.to_json(),
            r#"{"type":"ack","requestId":"r1","key":"k","version":7,"conflict":null}"#
        );
        let e = ServerMessage::error(Some("r".into()), &SyncError::InvalidKey("bad".into()));
        assert_eq!(
            e.to_json(),
            r#"{"type":"error","requestId":"r","code":"invalid_key","message":"bad"}"#
        );
    }

    /// The fixture the JS client's tests read too: every frame and answer
    /// round-trips through the Rust types unchanged.
    #[test]
    fn shared_fixtures_round_trip() {
        let f: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/protocol.json")).unwrap();
        for frame in f["client"].as_array().unwrap() {
            assert!(parse_frame(&frame.to_string()).is_ok(), "{frame}");
        }
        for frame in f["server"].as_array().unwrap() {
            let typed: ServerMessage = serde_json::from_value(frame.clone()).unwrap();
            assert_eq!(&serde_json::to_value(&typed).unwrap(), frame);
        }
        fn round_trip<T: Serialize + for<'de> Deserialize<'de>>(v: &serde_json::Value) {
            let typed: T = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(&serde_json::to_value(&typed).unwrap(), v);
        }
        round_trip::<WriteResponse>(&f["rest"]["write"]);
        round_trip::<BatchResponse>(&f["rest"]["batch"]);
        round_trip::<SnapshotResponse>(&f["rest"]["snapshot"]);
        round_trip::<AuthResponse>(&f["rest"]["auth"]);
        let e = SyncError::InvalidKey("key must not be empty".into());
        assert_eq!(serde_json::to_value(e.body()).unwrap(), f["rest"]["error"]);
    }

    #[test]
    fn subprotocol_offer() {
        let (ours, token) = ws_offer("alternassist-sync.v1, bearer.abc_DEF-1");
        assert!(ours);
        assert_eq!(token, Some("abc_DEF-1"));
        assert_eq!(ws_offer("bearer.x"), (false, Some("x")));
        assert_eq!(ws_offer("alternassist-sync.v1"), (true, None));
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
