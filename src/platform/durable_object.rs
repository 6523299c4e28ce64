//! UserHub: one Durable Object per user. It applies that user's writes one
//! group at a time (D1 awaits let other events run, so ordering is enforced
//! here, not by the input gate), acknowledges only after D1 committed, then
//! broadcasts each change to the user's other live sockets. Sockets use the
//! hibernation API, so idle devices cost nothing.

mod guard;

use super::config::Config;
use super::d1::{self, Path};
use super::identity::{Command, Identity};
use super::{crypto, http, now_ms};
use crate::error::{SyncError, CLOSE_INTERNAL};
use crate::hub::session::{self, DriverId, Effect, Limits, Session, Step};
use crate::hub::{Answer, Op, Shape, UserState};
use crate::model::Key;
use crate::protocol::{
    parse_frame, parse_json, BatchRequest, ExportDocument, HistoryResponse, HistoryValueResponse,
    Incoming, OkResponse, PresenceDevice, PutRequest, RecordHistoryResponse, RestoreRequest,
    ServerMessage, SnapshotResponse, Write, WriteOptions, EXPORT_FORMAT, EXPORT_FORMAT_VERSION,
    WS_PROTOCOL,
};
use crate::records;
use crate::records::RecordSet;
use crate::route::{route, Route};
use futures_channel::oneshot;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;
use worker::{
    durable_object, D1Database, DurableObject, Env, Headers, Request, Response, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair,
};

type Reply = oneshot::Sender<Result<Answer, SyncError>>;

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
    /// The socket said `patches: true` in its `hello`.
    #[serde(default)]
    patches: bool,
}

struct Inner {
    user_id: Option<String>,
    session: Session<Reply, WebSocket>,
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
        let config = Config::from_env(&env);
        d1::set_cost_log(config.d1_cost_log);
        let limits = Limits {
            write_burst: config.write_burst,
            writes_per_minute: config.writes_per_minute,
            history_prune_every: config.retention.every,
            quota: config.quota,
            linger_ms: config.group_linger_ms,
            ..Limits::default()
        };
        let nonce = crypto::new_id();
        Self {
            config,
            state,
            env,
            inner: RefCell::new(Inner {
                user_id: None,
                session: Session::new(limits, nonce),
            }),
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
            let _ = ws.close(Some(CLOSE_INTERNAL), Some("socket identity lost"));
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
        let Identity {
            user_id,
            device_id,
            device_name,
            expires_at,
        } = Identity::from_request(req)?;
        self.check_user(&user_id)?;
        match Command::from_request(req).await? {
            Some(Command::CloseDevice(device)) => return Ok(self.close_devices(&[device])),
            Some(Command::CloseDevices(devices)) => return Ok(self.close_devices(&devices)),
            None => {}
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
                let info = SocketInfo {
                    user_id,
                    device_id,
                    name: device_name,
                    expires_at,
                    checked_at: now_ms(),
                    patches: false,
                };
                return self.accept_checked(&db, info).await;
            }
            Route::Get(key) => {
                let current = self
                    .current_version(&db, &user_id, key.as_str())
                    .await?
                    .ok_or_else(|| {
                        SyncError::Missing(format!("key {:?} does not exist", key.as_str()))
                    })?;
                // A record list the object holds at that version is not
                // rebuilt from D1: only who wrote it last is read.
                let held = self
                    .known_lists()
                    .remove(key.as_str())
                    .filter(|(v, _)| *v == current);
                let last = match &held {
                    Some(_) => d1::last_record_write(&db, &user_id, key.as_str()).await?,
                    None => None,
                };
                let v = match (held, last) {
                    (Some((_, set)), Some((updated_at, device_id))) => d1::StoredVersion {
                        value: Some(set.value()),
                        updated_at,
                        device_id,
                    },
                    _ => {
                        self.stored_version(&db, &user_id, key.as_str(), current)
                            .await?
                    }
                };
                return Ok(version_response(&key, current, v));
            }
            Route::Put(key) => {
                let p: PutRequest = parse_json(&body)?;
                let (w, rid) = p.options.into_write(key, Some(p.value))?;
                op(Shape::Single, vec![w], rid)
            }
            Route::Delete(key) => {
                let options: WriteOptions = if body.is_empty() {
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
                return Ok(version_response(&key, version, v));
            }
            Route::Restore(key) => {
                let r: RestoreRequest = parse_json(&body)?;
                r.validate()?;
                let v = self
                    .stored_version(&db, &user_id, key.as_str(), r.version)
                    .await?;
                // Based on the current version: a restore is a deliberate
                // edit, not a conflict (one arriving meanwhile still is).
                let current = self.current_version(&db, &user_id, key.as_str()).await?;
                let write = Write {
                    key,
                    value: v.value,
                    base_version: current,
                    updated_at: None,
                    patch: None,
                };
                op(Shape::Single, vec![write], r.request_id)
            }
            Route::RecordHistory { key, id, limit } => {
                let history = d1::record_history(&db, &user_id, key.as_str(), &id, limit).await?;
                return Ok(http::json(
                    200,
                    &RecordHistoryResponse {
                        success: true,
                        key: key.as_str().to_owned(),
                        id,
                        history,
                    },
                ));
            }
            Route::RecordRestore { key, id } => {
                let r: RestoreRequest = parse_json(&body)?;
                r.validate()?;
                let write = self
                    .record_restore(&db, &user_id, key, &id, r.version)
                    .await?;
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
        Ok(http::json_string(200, answer.to_json()))
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
        let d1::Changes {
            cursor, changes, ..
        } = d1::changes_since(db, user_id, since, self.path(since), &self.known_lists()).await?;
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

    /// The write that puts record `id` of `key` back as it was at version
    /// `version`, every other record as it is now; based on the current
    /// version, so a write arriving meanwhile merges record by record.
    async fn record_restore(
        &self,
        db: &D1Database,
        user_id: &str,
        key: Key,
        id: &str,
        version: u64,
    ) -> Result<Write, SyncError> {
        let current = self
            .current_version(db, user_id, key.as_str())
            .await?
            .ok_or_else(|| SyncError::Missing(format!("key {:?} does not exist", key.as_str())))?;
        if version > current {
            return Err(SyncError::Missing(format!(
                "version {version} of key {:?} does not exist",
                key.as_str()
            )));
        }
        let now = self
            .stored_version(db, user_id, key.as_str(), current)
            .await?;
        let not_records = || SyncError::NotRecords {
            key: key.as_str().to_owned(),
        };
        let value = now.value.ok_or_else(not_records)?;
        let list = records::split(&value).ok_or_else(not_records)?;
        let then = d1::record_at(db, user_id, key.as_str(), id, version).await?;
        let (text, prev) = then.map_or((None, None), |(t, p)| (Some(t), p));
        let restored = records::put_record(&list, id, text.as_deref(), prev.as_deref())
            .ok_or_else(|| {
                SyncError::Missing(format!(
                    "record {id:?} of key {:?} is not kept at version {version}",
                    key.as_str()
                ))
            })?;
        Ok(Write {
            key,
            value: Some(restored),
            base_version: Some(current),
            updated_at: None,
            patch: None,
        })
    }

    /// The current data as a backup document, downloaded as a file.
    async fn export(&self, db: &D1Database, user_id: &str) -> Result<Response, SyncError> {
        let changes = d1::changes_since(db, user_id, 0, Path::Keys, &self.known_lists())
            .await?
            .changes;
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
            return error_frame(None, &e);
        }
        let incoming = match parse_frame(text) {
            Ok(i) => i,
            Err((request_id, e)) => return error_frame(request_id, &e),
        };
        let db = match self.db() {
            Ok(db) => db,
            Err(e) => return error_frame(None, &e),
        };
        if !matches!(incoming, Incoming::Ping) {
            if let Err(e) = self.check_socket(&db, ws, info).await {
                return error_frame(None, &e);
            }
        }
        match incoming {
            Incoming::Ping => ServerMessage::Pong,
            Incoming::Hello { since, patches } => {
                if patches != info.patches {
                    let info = SocketInfo {
                        patches,
                        ..info.clone()
                    };
                    if let Err(e) = ws.serialize_attachment(&info) {
                        worker::console_error!("socket attachment: {e:?}");
                    }
                }
                match self.catch_up(&db, &info.user_id, since, patches).await {
                    Ok(m) => m,
                    Err(e) => error_frame(None, &e),
                }
            }
            Incoming::Write { write, request_id } => {
                let op = Op {
                    device_id: info.device_id.clone(),
                    request_id: Some(request_id.clone()),
                    shape: Shape::Single,
                    writes: vec![write],
                };
                match self.submit(&db, &info.user_id, op, Some(ws.clone())).await {
                    Ok(answer) => answer.ack(&request_id),
                    Err(e) => error_frame(Some(request_id), &e),
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
        patches: bool,
    ) -> Result<ServerMessage, SyncError> {
        let known = self.known_lists();
        let found = d1::changes_since(db, user_id, since, self.path(since), &known).await?;
        let cursor = found.cursor;
        if let Some(from) = session::catch_up_from(since, cursor) {
            let changes = d1::changes_since(db, user_id, from, Path::Keys, &known)
                .await?
                .changes;
            return Ok(ServerMessage::Changes {
                changes,
                cursor,
                patches: patches.then_some(true),
            });
        }
        let mut changes = found.changes;
        if patches && since > 0 {
            // A record list that was one at `since` goes as what changed
            // since then (the client holds it as of `since`).
            let lists: Vec<(String, u64)> = found
                .lists
                .into_iter()
                .filter(|(_, start)| *start <= since)
                .collect();
            let mut then = d1::lists_at(db, user_id, &lists, since).await?;
            for change in &mut changes {
                let (Some(old), Some(value)) = (then.remove(&change.key), change.value.as_deref())
                else {
                    continue;
                };
                let Some(new) = records::split(value) else {
                    continue;
                };
                let patch = records::diff(&old.records(), &new);
                let sent: usize = patch.upserts.iter().map(|(_, t)| t.len()).sum();
                // Only when it is the smaller message.
                if sent < value.len() / 2 {
                    change.patch = Some(std::rc::Rc::new((since, patch)));
                }
            }
        }
        Ok(ServerMessage::Changes {
            changes,
            cursor,
            patches: patches.then_some(true),
        })
    }

    /// Closes the sockets of devices signed out; the others hear of it once.
    fn close_devices(&self, device_ids: &[String]) -> Response {
        let code = SyncError::Unauthorized.close_code().unwrap_or(1000);
        for id in device_ids {
            for ws in self.state.get_websockets_with_tag(id) {
                let _ = ws.close(Some(code), Some("device signed out"));
            }
        }
        self.broadcast_presence(|_, info| device_ids.contains(&info.device_id));
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

    /// Carries out what the session decided: answers, then broadcasts.
    fn apply(&self, effects: Vec<Effect<Reply, WebSocket>>) {
        let mut sockets: Option<Vec<WebSocket>> = None;
        for effect in effects {
            match effect {
                Effect::Reply { to, answer } => {
                    // The request may be gone (a closed socket): nothing to do.
                    let _ = to.send(answer);
                }
                Effect::Broadcast { change, except } => {
                    let all = sockets.get_or_insert_with(|| self.state.get_websockets());
                    // Each form made once, only if some socket wants it.
                    let (mut whole, mut patch) = (None, None);
                    for ws in all.iter() {
                        if except.as_ref().is_some_and(|s| same_socket(s, ws)) {
                            continue;
                        }
                        let json = if change.patch.is_some()
                            && socket_info(ws).is_some_and(|i| i.patches)
                        {
                            patch.get_or_insert_with(|| change.patch_json())
                        } else {
                            whole.get_or_insert_with(|| {
                                ServerMessage::Change(change.whole()).to_json()
                            })
                        };
                        send(ws, json);
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------- writes

    /// Queues a write and waits for its answer; drives the queue when the
    /// session says so.
    async fn submit(
        &self,
        db: &D1Database,
        user_id: &str,
        op: Op,
        socket: Option<WebSocket>,
    ) -> Result<Answer, SyncError> {
        let (reply, answer) = oneshot::channel();
        let driver = self
            .inner
            .borrow_mut()
            .session
            .submit(op, reply, socket, now_ms())?;
        if let Some(d) = driver {
            self.drive(db, user_id, d).await;
        }
        answer
            .await
            .map_err(|_| SyncError::Internal("write was dropped".into()))?
    }

    /// Makes the D1 calls the session asks for until it says `Done`. No
    /// borrow of the session is held across an await.
    async fn drive(&self, db: &D1Database, user_id: &str, d: DriverId) {
        let mut next = self.inner.borrow_mut().session.next(d, now_ms());
        loop {
            self.apply(std::mem::take(&mut next.effects));
            next = match next.step {
                Step::Done => return,
                Step::Wait(ms) => {
                    worker::Delay::from(std::time::Duration::from_millis(ms)).await;
                    self.inner.borrow_mut().session.next(d, now_ms())
                }
                Step::Load { count_bytes } => {
                    let state = logged(d1::load_state(db, user_id, count_bytes).await);
                    self.inner.borrow_mut().session.loaded(d, state, now_ms())
                }
                Step::Read { group, wanted } => {
                    let values = logged(d1::merge_values(db, user_id, &wanted).await);
                    let mut inner = self.inner.borrow_mut();
                    inner.session.values_read(d, group, values, now_ms())
                }
                Step::Commit { group, plan } => {
                    let retention = self.config.retention;
                    let result = logged(d1::commit(db, user_id, &plan, now_ms(), retention).await);
                    let mut inner = self.inner.borrow_mut();
                    inner.session.committed(d, group, plan, result, now_ms())
                }
                Step::Check { group, plan } => {
                    let check = logged(d1::check(db, user_id, &plan).await);
                    let mut inner = self.inner.borrow_mut();
                    inner.session.checked(d, group, plan, check, now_ms())
                }
            };
        }
    }

    /// The record lists this object holds, with the version each is at
    /// (cheap: the lists are persistent and shared).
    fn known_lists(&self) -> HashMap<String, (u64, RecordSet)> {
        let inner = self.inner.borrow();
        let Some(state) = inner.session.state() else {
            return HashMap::new();
        };
        state
            .records
            .iter()
            .filter_map(|(key, set)| {
                Some((key.clone(), (state.keys.get(key)?.version, set.clone())))
            })
            .collect()
    }

    /// The cheaper way to read changes after `since`, from what is known.
    fn path(&self, since: u64) -> Path {
        let inner = self.inner.borrow();
        let state = inner.session.state();
        Path::for_read(since, state.map(|s| s.cursor), state.map(|s| s.keys.len()))
    }

    /// The key's current version, from the session's state or from D1.
    async fn current_version(
        &self,
        db: &D1Database,
        user_id: &str,
        key: &str,
    ) -> Result<Option<u64>, SyncError> {
        self.read_state(db, user_id, |s| s.keys.get(key).map(|m| m.version))
            .await
    }

    /// Reads the user's state: the session's when it is current, else D1's
    /// (which the session adopts if no commit could be changing it).
    async fn read_state<T>(
        &self,
        db: &D1Database,
        user_id: &str,
        read: impl Fn(&UserState) -> T,
    ) -> Result<T, SyncError> {
        if let Some(known) = self.inner.borrow().session.state().map(&read) {
            return Ok(known);
        }
        let state = d1::load_state(db, user_id, false).await?;
        let value = read(&state);
        self.inner.borrow_mut().session.offer_state(state);
        Ok(value)
    }
}

/// The answer naming one version of a key and its value.
fn version_response(key: &Key, version: u64, v: d1::StoredVersion) -> Response {
    http::json(
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
    )
}

/// Logs an internal error where it happens (D1 failures above all); the
/// client sees only a generic message.
fn logged<T>(r: Result<T, SyncError>) -> Result<T, SyncError> {
    if let Err(SyncError::Internal(detail)) = &r {
        worker::console_error!("internal error: {detail}");
    }
    r
}

/// An `error` frame, with internal errors logged (as HTTP does).
fn error_frame(request_id: Option<String>, e: &SyncError) -> ServerMessage {
    if let SyncError::Internal(detail) = e {
        worker::console_error!("internal error on a socket: {detail}");
    }
    ServerMessage::error(request_id, e)
}

fn iso8601(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
