//! The UserHub's gatekeeping, kept apart from its write path: quotas and
//! the weighted write rate checked before a request is queued, the usage
//! answer, and the device checks of open WebSockets (expiry on frames, a
//! revocation that raced the handshake, devices listed while expired).

use super::{send, SocketInfo, UserHub, CLOSE_REVOKED};
use crate::account::{AccountLimits, AccountResponse, AccountUsage};
use crate::error::{Quota, SyncError};
use crate::hub::Op;
use crate::platform::{account_db as account, d1, http, now_ms};
use crate::protocol::{DevicesResponse, OkResponse, ServerMessage};
use crate::quota::{self, Usage, DAY_MS};
use crate::ratelimit::TokenBucket;
use worker::{D1Database, Request, Response, WebSocket};

impl UserHub {
    /// The account's usage, loaded from D1 the first time.
    async fn usage(&self, db: &D1Database, user_id: &str) -> Result<Usage, SyncError> {
        if let Some(u) = self.inner.borrow().usage {
            return Ok(u);
        }
        let loaded = account::usage(db, user_id).await?;
        Ok(*self.inner.borrow_mut().usage.get_or_insert(loaded))
    }

    /// Refuses a request that would exceed a quota or the write rate, both
    /// weighted by what it writes; counts it otherwise. Runs before the
    /// request is queued, so a refused one never reaches D1.
    pub(super) async fn admit(
        &self,
        db: &D1Database,
        user_id: &str,
        op: &Op,
    ) -> Result<(), SyncError> {
        self.state_of(db, user_id).await?;
        self.usage(db, user_id).await?;
        match self.admit_now(op) {
            // Stored bytes are an estimate that only grows between loads
            // (retention frees space unseen): count again before refusing.
            Err(SyncError::QuotaExceeded {
                quota: Quota::Bytes,
                ..
            }) => {
                let fresh = account::usage(db, user_id).await?;
                if let Some(u) = self.inner.borrow_mut().usage.as_mut() {
                    u.bytes = fresh.bytes;
                }
                self.admit_now(op)
            }
            other => other,
        }
    }

    fn admit_now(&self, op: &Op) -> Result<(), SyncError> {
        let now = now_ms();
        let config = &self.config;
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let (Some(state), Some(usage)) = (inner.hub.as_ref(), inner.usage.as_mut()) else {
            // Dropped by a failed commit meanwhile: the client retries.
            return Err(SyncError::Unavailable);
        };
        let live = |k: &str| state.keys.get(k).is_some_and(|m| !m.deleted);
        let weight = quota::weight(&op.writes, live);
        let live_keys = state.keys.values().filter(|m| !m.deleted).count() as u64;
        usage.check(&config.quota, live_keys, &weight, now)?;
        inner
            .bucket
            .get_or_insert_with(|| {
                TokenBucket::new(config.write_burst, config.writes_per_minute, now)
            })
            .take(weight.units, now)
            .map_err(|retry_after_secs| SyncError::RateLimited { retry_after_secs })?;
        usage.add(&weight, now);
        Ok(())
    }

    /// What a commit persists of the usage (the day's count).
    pub(super) async fn usage_to_commit(
        &self,
        db: &D1Database,
        user_id: &str,
    ) -> Result<Usage, SyncError> {
        self.usage(db, user_id).await
    }

    /// `GET /api/account`: usage against the limits.
    pub(super) async fn account(
        &self,
        db: &D1Database,
        user_id: &str,
        device_id: &str,
    ) -> Result<Response, SyncError> {
        let usage = self.usage(db, user_id).await?;
        let keys = self
            .state_of(db, user_id)
            .await?
            .keys
            .values()
            .filter(|m| !m.deleted)
            .count() as u64;
        let now = now_ms();
        let config = &self.config;
        Ok(http::json(
            200,
            &AccountResponse {
                success: true,
                user_id: user_id.to_owned(),
                device_id: device_id.to_owned(),
                usage: AccountUsage {
                    bytes: usage.bytes,
                    keys,
                    writes_today: usage.units_today(now),
                },
                limits: AccountLimits::new(
                    &config.quota,
                    config.write_burst,
                    config.writes_per_minute,
                ),
                writes_reset_at: (now.div_euclid(DAY_MS) + 1) * DAY_MS,
            },
        ))
    }

    /// Devices not signed out; an expired one only while it is connected,
    /// so it can still be seen and revoked.
    pub(super) async fn device_list(
        &self,
        db: &D1Database,
        user_id: &str,
        device_id: &str,
    ) -> Result<Response, SyncError> {
        let now = now_ms();
        let devices = d1::devices(db, user_id)
            .await?
            .into_iter()
            .filter_map(|(mut d, expires_at)| {
                d.current = d.id == device_id;
                d.online = !self.state.get_websockets_with_tag(&d.id).is_empty();
                (expires_at > now || d.online).then_some(d)
            })
            .collect();
        Ok(http::json(
            200,
            &DevicesResponse {
                success: true,
                devices,
            },
        ))
    }

    /// Closes the sockets of every device the body lists.
    pub(super) async fn close_devices(&self, req: &mut Request) -> Result<Response, SyncError> {
        let body = http::read_body(req, crate::model::MAX_BODY_BYTES).await?;
        let ids: Vec<String> = serde_json::from_slice(&body)
            .map_err(|e| SyncError::Internal(format!("device ids: {e}")))?;
        for id in &ids {
            self.close_device(id);
        }
        Ok(http::json(200, &OkResponse { success: true }))
    }

    /// Accepts a socket, then reads its device: a revocation that landed
    /// between the Worker's check and the accept closes it here, and one
    /// that lands later finds the socket to close.
    pub(super) async fn accept_checked(
        &self,
        db: &D1Database,
        info: SocketInfo,
    ) -> Result<Response, SyncError> {
        let device_id = info.device_id.clone();
        let resp = self.accept_socket(info)?;
        let live = account::live_device(db, &device_id).await?;
        if live.is_none_or(|d| d.expires_at as i64 <= now_ms()) {
            self.close_device(&device_id);
            return Err(SyncError::Unauthorized);
        }
        Ok(resp)
    }

    /// On a frame: whether the socket's device is still signed in. Reads D1
    /// only when the expiry the socket knows has passed or it has not
    /// looked for a while; slides the expiry as REST use does. A device
    /// signed out or expired gets its sockets closed with 4001.
    pub(super) async fn check_socket(
        &self,
        db: &D1Database,
        ws: &WebSocket,
        info: &SocketInfo,
    ) -> Result<(), SyncError> {
        let now = now_ms();
        let lifetimes = self.config.lifetimes;
        if !lifetimes.socket_recheck_due(info.expires_at, info.checked_at, now) {
            return Ok(());
        }
        match account::live_device(db, &info.device_id).await? {
            Some(d) if d.expires_at as i64 > now => {
                let mut expires_at = d.expires_at as i64;
                if lifetimes.touch_due(d.last_seen_at as i64, now) {
                    expires_at = lifetimes.expires_at(d.created_at as i64, now);
                    d1::touch_device(db, &info.device_id, now, expires_at).await?;
                }
                let info = SocketInfo {
                    expires_at,
                    checked_at: now,
                    ..info.clone()
                };
                let _ = ws.serialize_attachment(&info);
                Ok(())
            }
            _ => {
                // Said before the close, which would drop a later frame.
                send(
                    ws,
                    &ServerMessage::error(None, &SyncError::Unauthorized).to_json(),
                );
                let _ = ws.close(Some(CLOSE_REVOKED), Some("token expired or revoked"));
                self.close_device(&info.device_id);
                Err(SyncError::Unauthorized)
            }
        }
    }
}
