//! One error type for the whole service. Status, wire code and message are each
//! decided in exactly one place, so REST and (later) WebSocket answers agree.

use serde::Serialize;

/// Close code telling a client its device was signed out (or its token is
/// no longer valid): do not reconnect with that token.
pub const CLOSE_SIGNED_OUT: u16 = 4001;
/// Close code for a socket the server can no longer serve.
pub const CLOSE_INTERNAL: u16 = 1011;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidKey(String),
    #[error("email address is not valid")]
    InvalidEmail,
    #[error("password must be at least {min} characters")]
    WeakPassword { min: usize },
    #[error("missing, invalid, expired or revoked token")]
    Unauthorized,
    #[error("email or password is incorrect")]
    InvalidCredentials,
    #[error("not found")]
    NotFound,
    /// A thing the route names does not exist (a version, a device).
    #[error("{0}")]
    Missing(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("an account with this email already exists")]
    EmailTaken,
    /// `REGISTRATION` is `closed`, or `allowlist` without this email.
    #[error("{}", if *allowlist { "sign-up on this server is limited to the addresses its owner allowed" } else { "this server does not accept new accounts" })]
    RegistrationClosed { allowlist: bool },
    /// A password change with the wrong current password. Not a 401: the
    /// token is fine, and clients sign out on 401.
    #[error("the current password is incorrect")]
    WrongPassword,
    #[error("{}", quota.message(*limit))]
    QuotaExceeded { quota: Quota, limit: u64 },
    /// A record operation (a patch, a record restore) on a key that does
    /// not hold a record list (an array of objects with unique ids, as
    /// `JSON.stringify` writes it).
    #[error("key {key:?} does not hold a record list at that version: send the whole value")]
    NotRecords { key: String },
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("value of key {key:?} exceeds {limit} bytes")]
    ValueTooLarge { key: String, limit: usize },
    #[error("WebSocket frames are limited to {limit} bytes: send larger values with REST PUT /api/sync/:key")]
    FrameTooLarge { limit: usize },
    #[error("binary frames are not supported: send JSON text frames")]
    BinaryFrame,
    #[error("GET /api/ws must be a WebSocket upgrade")]
    UpgradeRequired,
    #[error("origin is not allowed")]
    OriginNotAllowed,
    #[error("too many requests, retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("storage is unavailable, retry later")]
    Unavailable,
    /// The text is for logs only; clients see a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl SyncError {
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidJson(_)
            | Self::InvalidRequest(_)
            | Self::InvalidKey(_)
            | Self::InvalidEmail
            | Self::WeakPassword { .. }
            | Self::BinaryFrame => 400,
            Self::OriginNotAllowed | Self::RegistrationClosed { .. } | Self::WrongPassword => 403,
            Self::UpgradeRequired => 426,
            Self::Unauthorized | Self::InvalidCredentials => 401,
            Self::NotFound | Self::Missing(_) => 404,
            Self::MethodNotAllowed => 405,
            Self::EmailTaken | Self::NotRecords { .. } => 409,
            Self::PayloadTooLarge { .. }
            | Self::ValueTooLarge { .. }
            | Self::FrameTooLarge { .. } => 413,
            Self::RateLimited { .. } => 429,
            Self::QuotaExceeded { quota, .. } => match quota {
                Quota::WritesPerDay { .. } => 429,
                Quota::Bytes | Quota::Keys => 507,
            },
            Self::Internal(_) => 500,
            Self::Unavailable => 503,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidKey(_) => "invalid_key",
            Self::InvalidEmail => "invalid_email",
            Self::WeakPassword { .. } => "weak_password",
            Self::Unauthorized => "unauthorized",
            Self::InvalidCredentials => "invalid_credentials",
            Self::NotFound | Self::Missing(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::EmailTaken => "email_taken",
            Self::NotRecords { .. } => "not_records",
            Self::RegistrationClosed { .. } => "registration_closed",
            Self::WrongPassword => "wrong_password",
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::ValueTooLarge { .. } => "value_too_large",
            Self::FrameTooLarge { .. } => "frame_too_large",
            Self::BinaryFrame => "binary_frame",
            Self::UpgradeRequired => "upgrade_required",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The WebSocket close code for an error that ends a socket; `None` for
    /// the rest, which are answered with an `error` frame on an open socket.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Self::Unauthorized => Some(CLOSE_SIGNED_OUT),
            Self::Internal(_) => Some(CLOSE_INTERNAL),
            Self::InvalidJson(_)
            | Self::InvalidRequest(_)
            | Self::InvalidKey(_)
            | Self::InvalidEmail
            | Self::WeakPassword { .. }
            | Self::InvalidCredentials
            | Self::NotFound
            | Self::Missing(_)
            | Self::MethodNotAllowed
            | Self::EmailTaken
            | Self::NotRecords { .. }
            | Self::RegistrationClosed { .. }
            | Self::WrongPassword
            | Self::QuotaExceeded { .. }
            | Self::PayloadTooLarge { .. }
            | Self::ValueTooLarge { .. }
            | Self::FrameTooLarge { .. }
            | Self::BinaryFrame
            | Self::UpgradeRequired
            | Self::OriginNotAllowed
            | Self::RateLimited { .. }
            | Self::Unavailable => None,
        }
    }

    /// What the client is told. Internal details never leave the server.
    pub fn public_message(&self) -> String {
        match self {
            Self::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        }
    }

    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs }
            | Self::QuotaExceeded {
                quota: Quota::WritesPerDay { retry_after_secs },
                ..
            } => Some(*retry_after_secs),
            Self::Unavailable => Some(1),
            _ => None,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            success: false,
            error: ErrorDetail {
                code: self.code(),
                message: self.public_message(),
            },
        }
    }
}

/// Which per-user quota a write would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    Bytes,
    Keys,
    WritesPerDay { retry_after_secs: u64 },
}

impl Quota {
    fn message(&self, limit: u64) -> String {
        match self {
            Self::Bytes => format!(
                "storage quota exceeded: this account may store {limit} bytes of values, \
                 current and history together; delete keys or wait for history retention"
            ),
            Self::Keys => format!("key quota exceeded: this account may hold {limit} keys"),
            Self::WritesPerDay { retry_after_secs } => format!(
                "daily write quota exceeded: this account may write {limit} units a UTC day \
                 (one per key written, plus one per 256 KiB), retry in {retry_after_secs} s"
            ),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub success: bool,
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail {
    pub code: &'static str,
    pub message: String,
}

pub type Result<T, E = SyncError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_are_not_sent() {
        let e = SyncError::Internal("D1_ERROR: no such table users".into());
        let body = serde_json::to_value(e.body()).unwrap();
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("users"));
        assert_eq!(e.status(), 500);
    }

    #[test]
    fn rate_limit_carries_retry_after() {
        let e = SyncError::RateLimited {
            retry_after_secs: 42,
        };
        assert_eq!(e.status(), 429);
        assert_eq!(e.retry_after_secs(), Some(42));
    }
}
