//! WebSocket frames: what a client sends, what the server answers.

use super::numbers as whole;
use super::rest::{Conflict, Write, WriteOptions, WriteResponse};
use crate::error::SyncError;
use crate::model::Key;
use serde::{Deserialize, Serialize};

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
