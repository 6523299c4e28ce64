//! UserHub: one Durable Object per user. It applies that user's writes one
//! group at a time (D1 awaits let other events run, so ordering is enforced
//! here, not by the input gate), acknowledges only after D1 committed, and
//! serves reads.

use super::config::Config;
use super::router::{DEVICE_HEADER, USER_HEADER};
use super::{d1, http, now_ms};
use crate::error::SyncError;
use crate::hub::{self, Op, Shape, UserState};
use crate::protocol::{parse_json, BatchRequest, PutRequest, SnapshotResponse, WriteOptions};
use crate::ratelimit::TokenBucket;
use crate::route::{route, Route};
use futures_channel::oneshot;
use std::cell::RefCell;
use worker::{durable_object, D1Database, DurableObject, Env, Request, Response, State};

/// Writes planned and committed together: bounded so one D1 batch stays
/// well inside D1's statement and parameter limits.
const MAX_GROUP_WRITES: usize = 128;

type Reply = oneshot::Sender<Result<String, SyncError>>;

#[derive(Default)]
struct Inner {
    user_id: Option<String>,
    /// Loaded lazily; dropped after a failed commit so it is reloaded from D1.
    hub: Option<UserState>,
    queue: Vec<(Op, Reply)>,
    committing: bool,
    bucket: Option<TokenBucket>,
}

#[durable_object]
pub struct UserHub {
    env: Env,
    config: Config,
    inner: RefCell<Inner>,
}

impl DurableObject for UserHub {
    fn new(_state: State, env: Env) -> Self {
        Self {
            config: Config::from_env(&env),
            env,
            inner: RefCell::new(Inner::default()),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        Ok(http::from_result(self.handle(&mut req).await))
    }
}

fn header(req: &Request, name: &str) -> Result<String, SyncError> {
    req.headers()
        .get(name)
        .ok()
        .flatten()
        .ok_or_else(|| SyncError::Internal(format!("missing {name} from the Worker")))
}

impl UserHub {
    async fn handle(&self, req: &mut Request) -> Result<Response, SyncError> {
        let user_id = header(req, USER_HEADER)?;
        let device_id = header(req, DEVICE_HEADER)?;
        self.check_user(&user_id)?;
        let url = req
            .url()
            .map_err(|e| SyncError::Internal(format!("url: {e}")))?;
        let route = route(&req.inner().method(), url.path(), url.query())?;
        let db = self
            .env
            .d1("DB")
            .map_err(|e| SyncError::Internal(format!("D1 binding: {e}")))?;
        let body = http::read_body(req, crate::model::MAX_BODY_BYTES).await?;
        let op = |shape, writes, request_id| Op {
            device_id: device_id.clone(),
            request_id,
            shape,
            writes,
        };
        let op = match route {
            Route::Snapshot { since } => return self.snapshot(&db, &user_id, since).await,
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
            Route::Register | Route::Login | Route::Logout => return Err(SyncError::NotFound),
        };
        let answer = self.submit(&db, &user_id, op).await?;
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

    /// Queues a write and waits for its answer. The first waiter with no
    /// commit in flight drives the queue until it is empty, so writes that
    /// arrive during a commit share the next D1 transaction.
    async fn submit(&self, db: &D1Database, user_id: &str, op: Op) -> Result<String, SyncError> {
        let (tx, rx) = oneshot::channel();
        let drive = {
            let mut inner = self.inner.borrow_mut();
            let now = now_ms();
            let config = &self.config;
            inner
                .bucket
                .get_or_insert_with(|| {
                    TokenBucket::new(config.write_burst, config.writes_per_minute, now)
                })
                .take(now)
                .map_err(|retry_after_secs| SyncError::RateLimited { retry_after_secs })?;
            inner.queue.push((op, tx));
            !std::mem::replace(&mut inner.committing, true)
        };
        if drive {
            self.drain(db, user_id).await;
        }
        rx.await
            .map_err(|_| SyncError::Internal("write was dropped".into()))?
    }

    async fn drain(&self, db: &D1Database, user_id: &str) {
        loop {
            let group: Vec<(Op, Reply)> = {
                let mut inner = self.inner.borrow_mut();
                if inner.queue.is_empty() {
                    inner.committing = false;
                    return;
                }
                let mut writes = 0;
                let take = inner
                    .queue
                    .iter()
                    .take_while(|(op, _)| {
                        writes += op.writes.len();
                        writes <= MAX_GROUP_WRITES
                    })
                    .count()
                    .max(1);
                inner.queue.drain(..take).collect()
            };
            let (ops, replies): (Vec<Op>, Vec<Reply>) = group.into_iter().unzip();
            match self.commit_group(db, user_id, ops).await {
                Ok(answers) => {
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(Ok(answer));
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

    async fn commit_group(
        &self,
        db: &D1Database,
        user_id: &str,
        ops: Vec<Op>,
    ) -> Result<Vec<String>, SyncError> {
        if self.inner.borrow().hub.is_none() {
            let state = d1::load_state(db, user_id, now_ms()).await?;
            self.inner.borrow_mut().hub = Some(state);
        }
        let now = now_ms();
        let plan = {
            let inner = self.inner.borrow();
            let state = inner
                .hub
                .as_ref()
                .ok_or_else(|| SyncError::Internal("hub state missing".into()))?;
            hub::plan(state, ops, now)
        };
        if plan.writes_anything() {
            d1::commit(db, user_id, &plan, now).await?;
        }
        let mut inner = self.inner.borrow_mut();
        let state = inner
            .hub
            .as_mut()
            .ok_or_else(|| SyncError::Internal("hub state missing".into()))?;
        Ok(state.adopt(plan))
    }
}

fn iso8601(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
