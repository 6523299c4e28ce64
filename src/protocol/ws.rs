//! WebSocket frames: what a client sends, what the server answers.

use super::numbers as whole;
use super::rest::{Conflict, Write, WriteOptions, WriteResponse};
use crate::error::SyncError;
use crate::model::Key;
use crate::records::{self, Patch};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::rc::Rc;

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
        /// The client takes and sends record patches.
        #[serde(default)]
        patches: bool,
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

/// The fields of a `patch` frame, as asyncapi.yaml documents them.
pub const PATCH_FRAME_FIELDS: [&str; 8] = [
    "type",
    "key",
    "requestId",
    "baseVersion",
    "updatedAt",
    "upserts",
    "removed",
    "after",
];

/// A `patch` frame: a record list written as what changed since
/// `base_version`. Parsed on its own (not as a `ClientMessage` variant):
/// the records' verbatim texts (`RawValue`) cannot pass through serde's
/// buffering of tagged enums.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PatchFrame {
    #[serde(rename = "type")]
    kind: String,
    key: String,
    request_id: String,
    #[serde(deserialize_with = "whole::u64")]
    base_version: u64,
    #[serde(default, deserialize_with = "whole::opt_i64")]
    updated_at: Option<i64>,
    upserts: Vec<Box<RawValue>>,
    removed: Vec<RecordId>,
    #[serde(default)]
    after: Vec<(RecordId, Option<RecordId>)>,
}

/// A record's id on the wire: a string, or a number as written (ids
/// compare as strings, so `1` and `"1"` are one record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordId(pub String);

impl<'de> Deserialize<'de> for RecordId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Str(String),
            Num(serde_json::Number),
        }
        Ok(RecordId(match Repr::deserialize(d)? {
            Repr::Str(s) => s,
            Repr::Num(n) => n.to_string(),
        }))
    }
}

impl Serialize for RecordId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// One key's new state, as sent to devices. A record list's change also
/// carries its patch (the key's version it applies to, and what changed),
/// sent instead of the value to sockets that take patches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub key: String,
    pub value: Option<String>,
    pub version: u64,
    pub deleted: bool,
    pub updated_at: i64,
    pub device_id: String,
    #[serde(skip)]
    pub patch: Option<Rc<(u64, Patch)>>,
    /// A record list's change carries the list instead of `value`: it is
    /// joined only for devices that take whole values (`whole`).
    #[serde(skip)]
    pub list: Option<Rc<records::RecordSet>>,
}

/// A record patch as the wire carries it (asyncapi.yaml `RecordPatch`).
#[derive(Debug, Serialize)]
pub struct WirePatch<'a> {
    pub upserts: Vec<&'a RawValue>,
    pub removed: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub after: &'a [(String, Option<String>)],
}

/// A `change` frame carrying a patch instead of the value (and, without
/// `type`, such a change inside `changes`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PatchChangeFrame<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    key: &'a str,
    version: u64,
    deleted: bool,
    updated_at: i64,
    device_id: &'a str,
    base_version: u64,
    patch: WirePatch<'a>,
}

impl Change {
    /// The key's value after this change (`None` for a deletion).
    pub fn value_text(&self) -> Option<String> {
        match &self.list {
            Some(list) => Some(list.value()),
            None => self.value.clone(),
        }
    }

    /// This change with its value written out (a record list's joined).
    pub fn whole(&self) -> Change {
        Change {
            value: self.value_text(),
            list: None,
            ..self.clone()
        }
    }

    /// The `change` frame for a socket that takes patches: with the patch
    /// when this change has one, else the whole value.
    pub fn patch_json(&self) -> String {
        self.patch_form(Some("change"))
            .unwrap_or_else(|| ServerMessage::Change(self.whole()).to_json())
    }

    /// The change inside `changes`, patch form when it has a patch.
    fn entry_json(&self) -> String {
        self.patch_form(None)
            .unwrap_or_else(|| serde_json::to_string(self).unwrap_or_default())
    }

    fn patch_form(&self, kind: Option<&'static str>) -> Option<String> {
        let p = self.patch.as_deref()?;
        let (base_version, patch) = (p.0, &p.1);
        // Stored texts are JSON objects (they were parsed when written).
        let upserts: Option<Vec<&RawValue>> = patch
            .upserts
            .iter()
            .map(|(_, t)| serde_json::from_str::<&RawValue>(t).ok())
            .collect();
        let frame = PatchChangeFrame {
            kind,
            key: &self.key,
            version: self.version,
            deleted: false,
            updated_at: self.updated_at,
            device_id: &self.device_id,
            base_version,
            patch: WirePatch {
                upserts: upserts?,
                removed: &patch.removed,
                after: &patch.after,
            },
        };
        serde_json::to_string(&frame).ok()
    }
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
        /// The socket may send `patch` frames and is sent patches.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        patches: Option<bool>,
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
        if let Self::Changes {
            changes,
            cursor,
            patches: Some(true),
        } = self
        {
            if changes.iter().any(|c| c.patch.is_some()) {
                let entries: Vec<String> = changes.iter().map(Change::entry_json).collect();
                return format!(
                    r#"{{"type":"changes","changes":[{}],"cursor":{cursor},"patches":true}}"#,
                    entries.join(",")
                );
            }
        }
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
    Hello { since: u64, patches: bool },
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
    let msg: ClientMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(_) => match serde_json::from_str::<PatchFrame>(text) {
            Ok(p) if p.kind == "patch" => return patch_frame(p),
            _ => return Err(diagnose_frame(text)),
        },
    };
    let (key, value, base_version, updated_at, request_id) = match msg {
        ClientMessage::Hello { since, patches } => return Ok(Incoming::Hello { since, patches }),
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

fn patch_frame(p: PatchFrame) -> Result<Incoming, (Option<String>, SyncError)> {
    let request_id = p.request_id;
    let fail = |e: SyncError| (Some(request_id.clone()), e);
    let key = Key::parse(&p.key).map_err(fail)?;
    let patch = patch_of(p.upserts, p.removed, p.after).map_err(fail)?;
    let options = WriteOptions {
        base_version: Some(p.base_version),
        updated_at: p.updated_at,
        request_id: Some(request_id.clone()),
    };
    let (mut write, _) = options.into_write(key, None).map_err(fail)?;
    write.patch = Some(Rc::new(patch));
    Ok(Incoming::Write { write, request_id })
}

/// A patch frame's parts, checked: each upsert an object with an id, no id
/// upserted twice.
fn patch_of(
    upserts: Vec<Box<RawValue>>,
    removed: Vec<RecordId>,
    after: Vec<(RecordId, Option<RecordId>)>,
) -> Result<Patch, SyncError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(upserts.len());
    for u in upserts {
        let text = u.get();
        let id = records::id_of(text)
            .filter(|_| text.starts_with('{'))
            .ok_or_else(|| {
                SyncError::InvalidRequest(
                    "each upsert must be an object with a string or number id".into(),
                )
            })?;
        if !seen.insert(id.clone()) {
            return Err(SyncError::InvalidRequest(format!(
                "record {id:?} is upserted twice"
            )));
        }
        out.push((id, text.to_owned()));
    }
    Ok(Patch {
        upserts: out,
        removed: removed.into_iter().map(|r| r.0).collect(),
        after: after
            .into_iter()
            .map(|(id, prev)| (id.0, prev.map(|p| p.0)))
            .collect(),
    })
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
    let error = if !matches!(kind, "hello" | "put" | "delete" | "patch" | "ping") {
        SyncError::InvalidRequest(format!(
            "unknown message type {kind:?}: expected hello, put, delete, patch or ping"
        ))
    } else if kind == "patch" {
        match serde_json::from_str::<PatchFrame>(text) {
            Err(e) => SyncError::InvalidRequest(e.to_string()),
            Ok(_) => SyncError::InvalidRequest("malformed message".into()),
        }
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
