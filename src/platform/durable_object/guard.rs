//! The UserHub's gatekeeping, kept apart from its write path (where the
//! session applies the write rate and the quotas): the usage answer, and
//! the device checks of open WebSockets (expiry on frames, a revocation
//! that raced the handshake, devices listed while expired).

use super::{send, SocketInfo, UserHub};
use crate::account::{AccountLimits, AccountResponse, AccountUsage};
use crate::error::SyncError;
use crate::platform::{d1, http, now_ms};
use crate::protocol::{DevicesResponse, ServerMessage};
use crate::quota::DAY_MS;
use worker::{D1Database, Response, WebSocket};

impl UserHub {
    /// `GET /api/account`: usage against the limits.
    pub(super) async fn account(
        &self,
        db: &D1Database,
        user_id: &str,
        device_id: &str,
    ) -> Result<Response, SyncError> {
        let now = now_ms();
        let usage = self
            .read_state(db, user_id, |s| AccountUsage {
                bytes: s.usage.bytes,
                keys: s.live_keys(),
                writes_today: s.usage.units_today(now),
            })
            .await?;
        let config = &self.config;
        Ok(http::json(
            200,
            &AccountResponse {
                success: true,
                user_id: user_id.to_owned(),
                device_id: device_id.to_owned(),
                usage,
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
        let live = d1::live_device(db, &device_id).await?;
        if live.is_none_or(|d| d.expires_at as i64 <= now_ms()) {
            self.close_devices(&[device_id]);
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
        match d1::live_device(db, &info.device_id).await? {
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
                // Unsaved, the next frame only looks again: nothing is lost.
                let _ = ws.serialize_attachment(&info);
                Ok(())
            }
            _ => {
                // Said before the close, which would drop a later frame.
                send(
                    ws,
                    &ServerMessage::error(None, &SyncError::Unauthorized).to_json(),
                );
                self.close_devices(std::slice::from_ref(&info.device_id));
                Err(SyncError::Unauthorized)
            }
        }
    }
}
