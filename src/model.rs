//! Validated domain values. Anything a client sends passes through one of
//! these constructors before the service uses it.

use crate::error::SyncError;
use serde::Serialize;
use std::fmt;

/// Largest value a key may hold: localStorage's own per-origin budget.
pub const MAX_VALUE_BYTES: usize = 5 * 1024 * 1024;
/// Largest request body. JSON escaping of a 5 MiB JSON value can nearly
/// double it, and a batch may carry several keys.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
pub const MAX_KEY_BYTES: usize = 256;
/// Keys per `POST /api/sync`: keeps one batch inside D1's per-invocation limits.
pub const MAX_BATCH_KEYS: usize = 64;
/// Keys one import may hold (all land in one transaction).
pub const MAX_IMPORT_KEYS: usize = 1000;
pub const MIN_PASSWORD_CHARS: usize = 8;
/// A password longer than this is surely not typed; it only costs hashing time.
pub const MAX_PASSWORD_BYTES: usize = 1024;
pub const MAX_DEVICE_NAME_CHARS: usize = 100;
pub const MAX_REQUEST_ID_BYTES: usize = 128;
/// The largest integer a JavaScript number holds exactly (2^53 - 1): no
/// version, time or cursor on the wire may exceed it.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
/// D1 stores at most 2,000,000 bytes per row; values are split well below that.
pub const CHUNK_BYTES: usize = 1_000_000;

/// A localStorage key: 1–256 bytes of UTF-8 without control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Key(String);

impl Key {
    pub fn parse(raw: &str) -> Result<Self, SyncError> {
        if raw.is_empty() {
            return Err(SyncError::InvalidKey("key must not be empty".into()));
        }
        if raw.len() > MAX_KEY_BYTES {
            return Err(SyncError::InvalidKey(format!(
                "key is longer than {MAX_KEY_BYTES} bytes"
            )));
        }
        if raw.chars().any(char::is_control) {
            return Err(SyncError::InvalidKey(
                "key must not contain control characters".into(),
            ));
        }
        // URLs normalise these path segments away, so history, restore and
        // DELETE could never name such a key.
        if raw == "." || raw == ".." {
            return Err(SyncError::InvalidKey(
                "key must not be \".\" or \"..\"".into(),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address, normalised to lower case so lookups ignore case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, SyncError> {
        let trimmed = raw.trim();
        let lower = trimmed.to_lowercase();
        let valid = (3..=254).contains(&lower.len())
            && !lower.chars().any(|c| c.is_whitespace() || c.is_control())
            && match lower.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && local.len() <= 64
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                        && !domain.contains("..")
                }
                None => false,
            };
        if valid {
            Ok(Self(lower))
        } else {
            Err(SyncError::InvalidEmail)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as typed. Length is counted in characters, as a person would.
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, SyncError> {
        if raw.chars().count() < MIN_PASSWORD_CHARS {
            return Err(SyncError::WeakPassword {
                min: MIN_PASSWORD_CHARS,
            });
        }
        if raw.len() > MAX_PASSWORD_BYTES {
            return Err(SyncError::InvalidRequest(format!(
                "password is longer than {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A device's display name; control characters are dropped, length capped.
pub fn device_name(raw: Option<&str>) -> String {
    let cleaned: String = raw
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DEVICE_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        "Unnamed device".to_string()
    } else {
        cleaned.to_string()
    }
}

pub fn check_value(key: &Key, value: &str) -> Result<(), SyncError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(SyncError::ValueTooLarge {
            key: key.to_string(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

pub fn check_request_id(id: &str) -> Result<(), SyncError> {
    if id.is_empty() || id.len() > MAX_REQUEST_ID_BYTES || id.chars().any(char::is_control) {
        return Err(SyncError::InvalidRequest(format!(
            "requestId must be 1–{MAX_REQUEST_ID_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

/// Splits a value into pieces of at most `max` bytes, never inside a UTF-8
/// character, so every piece is itself a valid string for a TEXT column.
pub fn split_chunks(value: &str, max: usize) -> Vec<&str> {
    assert!(max >= 4, "a chunk must hold any UTF-8 character");
    let mut chunks = Vec::with_capacity(value.len() / max + 1);
    let mut rest = value;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        chunks.push(head);
        rest = tail;
    }
    chunks.push(rest);
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys() {
        assert!(Key::parse("kanban-projects").is_ok());
        assert!(Key::parse("ключ 🔑 with spaces/and:punct").is_ok());
        assert!(Key::parse(&"a".repeat(256)).is_ok());
        assert!(Key::parse(&"a".repeat(257)).is_err());
        assert!(Key::parse("").is_err());
        assert!(Key::parse("a\nb").is_err());
        assert!(Key::parse("a\u{0}b").is_err());
        assert!(Key::parse("a\u{7f}").is_err());
        assert_eq!(Key::parse(".").unwrap_err().code(), "invalid_key");
        assert_eq!(Key::parse("..").unwrap_err().code(), "invalid_key");
        assert!(Key::parse("...").is_ok());
        assert!(Key::parse(".hidden").is_ok());
    }

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse(" Alice@Example.COM ").unwrap().as_str(),
            "alice@example.com"
        );
        // Shared with the API tests, so both layers refuse the same inputs.
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/validation.json")).unwrap();
        for bad in fixture["invalidEmails"].as_array().unwrap() {
            let bad = bad.as_str().unwrap();
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn passwords() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        // Eight characters, more bytes.
        assert!(Password::parse("éééééééé").is_ok());
        assert!(Password::parse("ééééééé").is_err());
        assert!(Password::parse(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("secret-pw").unwrap()),
            "Password(***)"
        );
    }

    #[test]
    fn device_names() {
        assert_eq!(device_name(None), "Unnamed device");
        assert_eq!(device_name(Some("  \n ")), "Unnamed device");
        assert_eq!(device_name(Some("Laptop\u{0}")), "Laptop");
        assert_eq!(
            device_name(Some(&"x".repeat(500))).len(),
            MAX_DEVICE_NAME_CHARS
        );
    }

    #[test]
    fn value_limit() {
        let k = Key::parse("k").unwrap();
        assert!(check_value(&k, &"x".repeat(MAX_VALUE_BYTES)).is_ok());
        assert_eq!(
            check_value(&k, &"x".repeat(MAX_VALUE_BYTES + 1))
                .unwrap_err()
                .status(),
            413
        );
    }

    #[test]
    fn chunks_respect_char_boundaries() {
        let v = "aé🙂".repeat(10);
        for max in 4..12 {
            let parts = split_chunks(&v, max);
            assert!(parts.iter().all(|p| p.len() <= max && !p.is_empty()));
            assert_eq!(parts.concat(), v);
        }
        assert_eq!(split_chunks("", 10), vec![""]);
    }

    proptest! {
        #[test]
        fn chunking_round_trips(v in ".{0,300}", max in 4usize..64) {
            let parts = split_chunks(&v, max);
            prop_assert!(parts.iter().all(|p| p.len() <= max));
            prop_assert_eq!(parts.concat(), v);
        }

        #[test]
        fn key_parse_never_panics(s in "\\PC{0,300}|.{0,10}") {
            let _ = Key::parse(&s);
        }
    }
}
