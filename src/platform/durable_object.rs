//! UserHub: one Durable Object per user. It applies that user's writes one
//! group at a time (D1 awaits let other events run, so ordering is enforced
//! here, not by the input gate), acknowledges only after D1 committed, then
//! broadcasts each change to the user's other live sockets. Sockets use the
//! hibernation API, so idle devices cost nothing.

mod guard;

use super::config::Config;
use super::router::{
    DEVICE_EXPIRES_HEADER, DEVICE_HEADER, DEVICE_NAME_HEADER, INTERNAL_HEADER, INTERNAL_REVOKE,
    INTERNAL_REVOKE_MANY, USER_HEADER,
};
use super::{d1, http, now_ms};
use crate::error::SyncError;
use crate::hub::{self, Op, Shape, UserState};
use crate::protocol::{
    ack_from_answer, parse_frame, parse_json, BatchRequest, Change, ExportDocument,
    HistoryResponse, HistoryValueResponse, Incoming, OkResponse, PresenceDevice, PutRequest,
    RestoreRequest, ServerMessage, SnapshotResponse, Write, WriteOptions, EXPORT_FORMAT,
    EXPORT_FORMAT_VERSION, WS_PROTOCOL,
};
use crate::quota::Usage;
use crate::ratelimit::TokenBucket;
use crate::route::{route, Route};
use futures_channel::oneshot;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use worker::{
    durable_object, D1Database, DurableObject, Env, Headers, Request, Response, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair,
};

/// Writes planned and committed together: bounded so one D1 batch stays
/// well inside D1's statement and parameter limits.
const MAX_GROUP_WRITES: usize = 128;
/// A queue driver silent this long (D1 caps a query at 30 s) is replaced.
const DRIVER_STALL_MS: i64 = 60_000;
/// Close code telling a client its token was revoked: do not reconnect with it.
pub const CLOSE_REVOKED: u16 = 4001;

type Reply = oneshot::Sender<Result<String, SyncError>>;

/// Who a socket belongs to; survives hibernation as the socket's attachment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SocketInfo {
    user_id: String,
    device_id: String,
    name: String,
    /// The token's expiry when last read, and when that was: a frame reads
    /// the device again once either says so (see `guard::check_socket`).
    #[serde(default)]
    expires_at: i64,
    #[serde(default)]
    checked_at: i64,
}

struct Queued {
    op: Op,
    reply: Reply,
    /// The socket that sent the write; it gets an ack instead of a change.
    sender: Option<WebSocket>,
}

#[derive(Default)]
struct Inner {
    user_id: Option<String>,
    /// Loaded lazily; dropped after a failed commit so it is reloaded from D1.
    hub: Option<UserState>,
    queue: Vec<Queued>,
    /// When the request driving the queue last started a group; `None` when
    /// no commit is in flight.
    committing: Option<i64>,
    bucket: Option<TokenBucket>,
    /// Loaded with the first write (see `guard`).
    usage: Option<Usage>,
}

#[durable_object]
pub struct UserHub {
    state: State,
    env: Env,
    config: Config,
    inner: RefCell<Inner>,
}

impl DurableObject for UserHub {
    fn new(state: State, env: Env) -> Self {
        // Heartbeats are answered by the runtime without waking the object.
        match worker::worker_sys::WebSocketRequestResponsePair::new(
            &ServerMessage::ping_json(),
            &ServerMessage::Pong.to_json(),
        ) {
            Ok(pair) => state.set_websocket_auto_response(&pair),
            Err(e) => worker::console_error!("auto-response: {e:?}"),
        }
        Self {
            config: Config::from_env(&env),
            state,
            env,
            inner: RefCell::new(Inner::default()),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        Ok(http::from_result(self.handle(&mut req).await))
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        let Some(info) = socket_info(&ws) else {
            let _ = ws.close(Some(1011), Some("socket identity lost"));
            return Ok(());
        };
        let reply = match message {
            WebSocketIncomingMessage::Binary(_) => {
                ServerMessage::error(None, &SyncError::BinaryFrame)
            }
            WebSocketIncomingMessage::String(text) => self.on_frame(&ws, &info, &text).await,
        };
        send(&ws, &reply.to_json());
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        reason: String,
        _clean: bool,
    ) -> worker::Result<()> {
        // 1005/1006 only describe a close; they may not be sent in one.
        let code = match u16::try_from(code) {
            Ok(c) if c == 1000 || (3000..5000).contains(&c) => c,
            _ => 1000,
        };
        let _ = ws.close(Some(code), Some(reason));
        self.broadcast_presence(|other, _| same_socket(other, &ws));
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        self.broadcast_presence(|other, _| same_socket(other, &ws));
        Ok(())
    }
}

fn header(req: &Request, name: &str) -> Result<String, SyncError> {
    req.headers()
        .get(name)
        .ok()
        .flatten()
        .ok_or_else(|| SyncError::Internal(format!("missing {name} from the Worker")))
}

fn socket_info(ws: &WebSocket) -> Option<SocketInfo> {
    ws.deserialize_attachment().ok().flatten()
}

fn same_socket(a: &WebSocket, b: &WebSocket) -> bool {
    let a: &wasm_bindgen::JsValue = a.as_ref();
    let b: &wasm_bindgen::JsValue = b.as_ref();
    a == b
}

/// A socket that is closing may refuse a send; it catches up on reconnect.
fn send(ws: &WebSocket, json: &str) {
    let _ = ws.send_with_str(json);
}

impl UserHub {
    fn db(&self) -> Result<D1Database, SyncError> {
        self.env
            .d1("DB")
            .map_err(|e| SyncError::Internal(format!("D1 binding: {e}")))
    }

    async fn handle(&self, req: &mut Request) -> Result<Response, SyncError> {
        let user_id = header(req, USER_HEADER)?;
        let device_id = header(req, DEVICE_HEADER)?;
        self.check_user(&user_id)?;
        match req.headers().get(INTERNAL_HEADER).ok().flatten().as_deref() {
            Some(INTERNAL_REVOKE) => return Ok(self.close_device(&device_id)),
            Some(INTERNAL_REVOKE_MANY) => return self.close_devices(req).await,
            _ => {}
        }
        let url = req
            .url()
            .map_err(|e| SyncError::Internal(format!("url: {e}")))?;
        let route = route(&req.inner().method(), url.path(), url.query())?;
        let db = self.db()?;
        let body = http::read_body(req, crate::model::MAX_BODY_BYTES).await?;
        let op = |shape, writes, request_id| Op {
            device_id: device_id.clone(),
            request_id,
            shape,
            writes,
        };
        let op = match route {
            Route::Snapshot { since } => return self.snapshot(&db, &user_id, since).await,
            Route::Socket => {
                let name = header(req, DEVICE_NAME_HEADER)?;
                let name = percent_decode_str(&name).decode_utf8_lossy().into_owned();
                let expires_at = header(req, DEVICE_EXPIRES_HEADER)?.parse().unwrap_or(0);
                let info = SocketInfo {
                    user_id,
                    device_id,
                    name,
                    expires_at,
                    checked_at: now_ms(),
                };
                return self.accept_checked(&db, info).await;
            }
            Route::Put(key) => {
                let p: PutRequest = parse_json(&body)?;
                let (w, rid) = p.options.into_write(key, Some(p.value))?;
                op(Shape::Single, vec![w], rid)
            }
            Route::Delete(key) => {
                let options: WriteOptions = if body.iter().all(u8::is_ascii_whitespace) {
                    WriteOptions::default()
                } else {
                    parse_json(&body)?
                };
                let (w, rid) = options.into_write(key, None)?;
                op(Shape::Single, vec![w], rid)
            }
            Route::Batch => {
                let b: BatchRequest = parse_json(&body)?;
                let (writes, rid) = b.into_writes()?;
                op(Shape::Batch, writes, rid)
            }
            Route::History { key, before, limit } => {
                let history = d1::history(&db, &user_id, key.as_str(), before, limit).await?;
                return Ok(http::json(
                    200,
                    &HistoryResponse {
                        success: true,
                        key: key.as_str().to_owned(),
                        history,
                    },
                ));
            }
            Route::HistoryVersion { key, version } => {
                let v = self
                    .stored_version(&db, &user_id, key.as_str(), version)
                    .await?;
                return Ok(http::json(
                    200,
                    &HistoryValueResponse {
                        success: true,
                        key: key.as_str().to_owned(),
                        version,
                        deleted: v.value.is_none(),
                        value: v.value,
                        updated_at: v.updated_at,
                        device_id: v.device_id,
                    },
                ));
            }
            Route::Restore(key) => {
                let r: RestoreRequest = parse_json(&body)?;
                r.validate()?;
                let v = self
                    .stored_version(&db, &user_id, key.as_str(), r.version)
                    .await?;
                // Based on the current version: a restore is a deliberate
                // edit, not a conflict (one arriving meanwhile still is).
                let current = self
                    .state_of(&db, &user_id)
                    .await?
                    .keys
                    .get(key.as_str())
                    .map(|m| m.version);
                let write = Write {
                    key,
                    value: v.value,
                    base_version: current,
                    updated_at: None,
                };
                op(Shape::Single, vec![write], r.request_id)
            }
            Route::Import => {
                let doc: ExportDocument = parse_json(&body)?;
                op(Shape::Batch, doc.into_writes()?, None)
            }
            Route::Export => return self.export(&db, &user_id).await,
            Route::Devices => return self.device_list(&db, &user_id, &device_id).await,
            Route::Account => return self.account(&db, &user_id, &device_id).await,
            Route::Register
            | Route::Login
            | Route::Logout
            | Route::LogoutAll
            | Route::ChangePassword
            | Route::RevokeDevice(_)
            | Route::OpenApi => return Err(SyncError::NotFound),
        };
        let answer = self.submit(&db, &user_id, op, None).await?;
        Ok(http::json_string(200, answer))
    }

    /// One object serves one user; anything else is a routing bug.
    fn check_user(&self, user_id: &str) -> Result<(), SyncError> {
        let mut inner = self.inner.borrow_mut();
        match &inner.user_id {
            Some(known) if known != user_id => Err(SyncError::Internal(
                "request for another user reached this object".into(),
            )),
            Some(_) => Ok(()),
            None => {
                inner.user_id = Some(user_id.to_string());
                Ok(())
            }
        }
    }

    async fn snapshot(
        &self,
        db: &D1Database,
        user_id: &str,
        since: u64,
    ) -> Result<Response, SyncError> {
        let (cursor, changes) = d1::changes_since(db, user_id, since).await?;
        let mut resp = SnapshotResponse {
            success: true,
            data: Default::default(),
            versions: Default::default(),
            deleted: Vec::new(),
            cursor,
            last_sync: iso8601(now_ms()),
        };
        for c in changes {
            resp.versions.insert(c.key.clone(), c.version);
            match c.value {
                Some(v) => {
                    resp.data.insert(c.key, v);
                }
                None => resp.deleted.push(c.key),
            }
        }
        Ok(http::json(200, &resp))
    }

    async fn stored_version(
        &self,
        db: &D1Database,
        user_id: &str,
        key: &str,
        version: u64,
    ) -> Result<d1::StoredVersion, SyncError> {
        let wanted = (key.to_owned(), version);
        d1::versions(db, user_id, std::slice::from_ref(&wanted))
            .await?
            .remove(&wanted)
            .ok_or_else(|| {
                SyncError::Missing(format!(
                    "version {version} of key {key:?} is not in history"
                ))
            })
    }

    /// The current data as a backup document, downloaded as a file.
    async fn export(&self, db: &D1Database, user_id: &str) -> Result<Response, SyncError> {
        let (_, changes) = d1::changes_since(db, user_id, 0).await?;
        let mut doc = ExportDocument {
            format: EXPORT_FORMAT.to_owned(),
            format_version: EXPORT_FORMAT_VERSION,
            exported_at: Some(iso8601(now_ms())),
            data: Default::default(),
            versions: Default::default(),
        };
        for c in changes {
            if let Some(value) = c.value {
                doc.versions.insert(c.key.clone(), c.version);
                doc.data.insert(c.key, value);
            }
        }
        let resp = http::json(200, &doc);
        resp.headers()
            .set(
                "content-disposition",
                "attachment; filename=\"alternassist-sync-export.json\"",
            )
            .map_err(|e| SyncError::Internal(format!("header: {e}")))?;
        Ok(resp)
    }

    // ------------------------------------------------------------ sockets

    fn accept_socket(&self, info: SocketInfo) -> Result<Response, SyncError> {
        let fail = |e: worker::Error| SyncError::Internal(format!("websocket: {e}"));
        let pair = WebSocketPair::new().map_err(fail)?;
        self.state
            .accept_websocket_with_tags(&pair.server, &[info.device_id.as_str()]);
        pair.server.serialize_attachment(&info).map_err(fail)?;
        self.broadcast_presence(|_, _| false);
        let headers = Headers::new();
        headers
            .set("sec-websocket-protocol", WS_PROTOCOL)
            .map_err(fail)?;
        Ok(Response::from_websocket(pair.client)
            .map_err(fail)?
            .with_headers(headers))
    }

    async fn on_frame(&self, ws: &WebSocket, info: &SocketInfo, text: &str) -> ServerMessage {
        if let Err(e) = self.check_user(&info.user_id) {
            return ServerMessage::error(None, &e);
        }
        let incoming = match parse_frame(text) {
            Ok(i) => i,
            Err((request_id, e)) => return ServerMessage::error(request_id, &e),
        };
        let db = match self.db() {
            Ok(db) => db,
            Err(e) => return ServerMessage::error(None, &e),
        };
        if !matches!(incoming, Incoming::Ping) {
            if let Err(e) = self.check_socket(&db, ws, info).await {
                return ServerMessage::error(None, &e);
            }
        }
        match incoming {
            Incoming::Ping => ServerMessage::Pong,
            Incoming::Hello { since } => match self.catch_up(&db, &info.user_id, since).await {
                Ok(m) => m,
                Err(e) => ServerMessage::error(None, &e),
            },
            Incoming::Write { write, request_id } => {
                let op = Op {
                    device_id: info.device_id.clone(),
                    request_id: Some(request_id.clone()),
                    shape: Shape::Single,
                    writes: vec![write],
                };
                match self.submit(&db, &info.user_id, op, Some(ws.clone())).await {
                    Ok(answer) => ack_from_answer(&request_id, &answer),
                    Err(e) => ServerMessage::error(Some(request_id), &e),
                }
            }
        }
    }

    /// Everything after `since`. A cursor from the future (the server's data
    /// was reset or restored) gets the whole state instead of nothing.
    async fn catch_up(
        &self,
        db: &D1Database,
        user_id: &str,
        since: u64,
    ) -> Result<ServerMessage, SyncError> {
        let (cursor, mut changes) = d1::changes_since(db, user_id, since).await?;
        if since > cursor {
            changes = d1::changes_since(db, user_id, 0).await?.1;
        }
        Ok(ServerMessage::Changes { changes, cursor })
    }

    fn close_device(&self, device_id: &str) -> Response {
        for ws in self.state.get_websockets_with_tag(device_id) {
            let _ = ws.close(Some(CLOSE_REVOKED), Some("device signed out"));
        }
        self.broadcast_presence(|_, info| info.device_id == device_id);
        http::json(200, &OkResponse { success: true })
    }

    /// Sends the set of connected devices to every socket not `excluded`.
    fn broadcast_presence(&self, excluded: impl Fn(&WebSocket, &SocketInfo) -> bool) {
        let live: Vec<(WebSocket, SocketInfo)> = self
            .state
            .get_websockets()
            .into_iter()
            .filter_map(|ws| socket_info(&ws).map(|i| (ws, i)))
            .filter(|(ws, i)| !excluded(ws, i))
            .collect();
        let mut devices: Vec<PresenceDevice> = live
            .iter()
            .map(|(_, i)| PresenceDevice {
                device_id: i.device_id.clone(),
                name: i.name.clone(),
            })
            .collect();
        devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        devices.dedup_by(|a, b| a.device_id == b.device_id);
        let json = ServerMessage::Presence { devices }.to_json();
        for (ws, _) in &live {
            send(ws, &json);
        }
    }

    /// Sends committed changes to every socket but the one that made each.
    fn broadcast(&self, changes: Vec<(usize, Change)>, senders: &[Option<WebSocket>]) {
        if changes.is_empty() {
            return;
        }
        let sockets = self.state.get_websockets();
        for (op, change) in changes {
            let sender = senders.get(op).and_then(Option::as_ref);
            let json = ServerMessage::Change(change).to_json();
            for ws in &sockets {
                if !sender.is_some_and(|s| same_socket(s, ws)) {
                    send(ws, &json);
                }
            }
        }
    }

    // ------------------------------------------------------------- writes

    /// Queues a write and waits for its answer. The first waiter with no
    /// commit in flight drives the queue until it is empty, so writes that
    /// arrive during a commit share the next D1 transaction.
    async fn submit(
        &self,
        db: &D1Database,
        user_id: &str,
        op: Op,
        sender: Option<WebSocket>,
    ) -> Result<String, SyncError> {
        self.admit(db, user_id, &op).await?;
        let (reply, answer) = oneshot::channel();
        let drive = {
            let mut inner = self.inner.borrow_mut();
            let now = now_ms();
            inner.queue.push(Queued { op, reply, sender });
            // Take over from a driver that made no progress for a long time
            // (its request may be gone); should it wake up after all, the
            // guarded commit makes one of the two fail instead of both landing.
            let drive = inner
                .committing
                .is_none_or(|since| now - since > DRIVER_STALL_MS);
            if drive {
                inner.committing = Some(now);
            }
            drive
        };
        if drive {
            self.drain(db, user_id).await;
        }
        answer
            .await
            .map_err(|_| SyncError::Internal("write was dropped".into()))?
    }

    async fn drain(&self, db: &D1Database, user_id: &str) {
        loop {
            let group: Vec<Queued> = {
                let mut inner = self.inner.borrow_mut();
                if inner.queue.is_empty() {
                    inner.committing = None;
                    return;
                }
                inner.committing = Some(now_ms());
                let mut writes = 0;
                let take = inner
                    .queue
                    .iter()
                    .take_while(|q| {
                        writes += q.op.writes.len();
                        writes <= MAX_GROUP_WRITES
                    })
                    .count()
                    .max(1);
                inner.queue.drain(..take).collect()
            };
            let mut ops = Vec::with_capacity(group.len());
            let mut replies = Vec::with_capacity(group.len());
            let mut senders = Vec::with_capacity(group.len());
            for q in group {
                ops.push(q.op);
                replies.push(q.reply);
                senders.push(q.sender);
            }
            match self.commit_group(db, user_id, ops).await {
                Ok((answers, changes)) => {
                    self.broadcast(changes, &senders);
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(answer);
                    }
                }
                Err(e) => {
                    // The in-memory state may be stale now: reload it next time.
                    self.inner.borrow_mut().hub = None;
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// The hub's state, loaded from D1 the first time (and after a failed
    /// commit dropped it).
    async fn state_of(
        &self,
        db: &D1Database,
        user_id: &str,
    ) -> Result<std::cell::Ref<'_, UserState>, SyncError> {
        if self.inner.borrow().hub.is_none() {
            let state = d1::load_state(db, user_id, now_ms()).await?;
            self.inner.borrow_mut().hub.get_or_insert(state);
        }
        std::cell::Ref::filter_map(self.inner.borrow(), |i| i.hub.as_ref())
            .map_err(|_| SyncError::Internal("hub state missing".into()))
    }

    async fn commit_group(
        &self,
        db: &D1Database,
        user_id: &str,
        ops: Vec<Op>,
    ) -> Result<(Vec<Result<String, SyncError>>, Vec<(usize, Change)>), SyncError> {
        let wanted = hub::merge_inputs(&*self.state_of(db, user_id).await?, &ops);
        let values = d1::merge_values(db, user_id, &wanted).await?;
        let now = now_ms();
        let plan = hub::plan(&*self.state_of(db, user_id).await?, ops, now, &values);
        if plan.writes_anything() {
            let usage = self.usage_to_commit(db, user_id).await?;
            d1::commit(db, user_id, &plan, now, self.config.retention, &usage).await?;
        }
        let changes = plan.changes();
        let mut inner = self.inner.borrow_mut();
        let state = inner
            .hub
            .as_mut()
            .ok_or_else(|| SyncError::Internal("hub state missing".into()))?;
        Ok((state.adopt(plan), changes))
    }
}

fn iso8601(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
