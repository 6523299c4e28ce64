//! Wire types of the account endpoints: password change, signing out every
//! device, and usage against the quotas.

use crate::quota::Limits;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
    /// Signs every other device out too; the default, since a password is
    /// usually changed because another device should no longer get in.
    #[serde(default)]
    pub sign_out_others: Option<bool>,
}

/// The answer to a password change or signing out everywhere.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedOutResponse {
    pub success: bool,
    /// How many devices were signed out.
    pub signed_out: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountUsage {
    /// Bytes of values stored, current and history together.
    pub bytes: u64,
    /// Keys holding a value.
    pub keys: u64,
    /// Write units used today (UTC).
    pub writes_today: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountLimits {
    pub bytes: u64,
    pub keys: u64,
    pub writes_per_day: u64,
    /// Write units at once, then `writesPerMinute`.
    pub write_burst: u32,
    pub writes_per_minute: u32,
}

impl AccountLimits {
    pub fn new(quota: &Limits, write_burst: u32, writes_per_minute: u32) -> Self {
        Self {
            bytes: quota.bytes,
            keys: quota.keys,
            writes_per_day: quota.writes_per_day,
            write_burst,
            writes_per_minute,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountResponse {
    pub success: bool,
    pub user_id: String,
    pub device_id: String,
    pub usage: AccountUsage,
    pub limits: AccountLimits,
    /// When `writesToday` starts again from 0 (ms, next UTC midnight).
    pub writes_reset_at: i64,
}
