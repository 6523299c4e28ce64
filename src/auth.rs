//! Tokens and password records. Randomness and the PBKDF2 derivation itself
//! come from the runtime (WebCrypto); everything decided about them lives here.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const TOKEN_BYTES: usize = 32;
pub const SALT_BYTES: usize = 16;
pub const HASH_BYTES: usize = 32;
/// Cloudflare's production runtime refuses PBKDF2 above 100,000 iterations.
pub const PBKDF2_ITERATIONS: u32 = 100_000;
pub const PBKDF2_MAX_ITERATIONS: u32 = 100_000;
const RECORD_SCHEME: &str = "pbkdf2-sha256";

/// A device token: 256 random bits, base64url. Shown to the client once.
pub fn token_from_bytes(random: &[u8; TOKEN_BYTES]) -> String {
    URL_SAFE_NO_PAD.encode(random)
}

/// What the database stores instead of the token.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Cheap shape check, so garbage never reaches the database.
pub fn token_looks_valid(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A stored password: scheme, iterations, salt and derived key, so the
/// parameters can change later without invalidating old records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordRecord {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub hash: Vec<u8>,
}

impl PasswordRecord {
    pub fn encode(&self) -> String {
        format!(
            "{RECORD_SCHEME}${}${}${}",
            self.iterations,
            URL_SAFE_NO_PAD.encode(&self.salt),
            URL_SAFE_NO_PAD.encode(&self.hash)
        )
    }

    pub fn decode(stored: &str) -> Option<Self> {
        let mut parts = stored.split('$');
        if parts.next()? != RECORD_SCHEME {
            return None;
        }
        let iterations: u32 = parts.next()?.parse().ok()?;
        let salt = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
        let hash = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
        if parts.next().is_some()
            || iterations == 0
            || iterations > PBKDF2_MAX_ITERATIONS
            || hash.len() != HASH_BYTES
        {
            return None;
        }
        Some(Self {
            iterations,
            salt,
            hash,
        })
    }

    /// `derived` is PBKDF2(password, self.salt, self.iterations).
    pub fn matches(&self, derived: &[u8]) -> bool {
        constant_time_eq(&self.hash, derived)
    }
}

/// A record for login attempts on unknown emails, so they cost the same
/// hashing time as real ones and do not reveal which emails exist.
pub fn decoy_record() -> PasswordRecord {
    PasswordRecord {
        iterations: PBKDF2_ITERATIONS,
        salt: vec![0x5a; SALT_BYTES],
        hash: vec![0; HASH_BYTES],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterations_within_production_cap() {
        const { assert!(PBKDF2_ITERATIONS <= PBKDF2_MAX_ITERATIONS) };
        // No weaker than the cap allows.
        const { assert!(PBKDF2_ITERATIONS >= 100_000) };
    }

    #[test]
    fn tokens_are_256_bits_base64url() {
        let t = token_from_bytes(&[0xff; TOKEN_BYTES]);
        assert_eq!(t.len(), 43);
        assert!(token_looks_valid(&t));
        assert_eq!(URL_SAFE_NO_PAD.decode(&t).unwrap().len(), 32);
        assert!(!token_looks_valid("short"));
        assert!(!token_looks_valid(&format!("{}=", &t[..42])));
    }

    #[test]
    fn token_hash_is_sha256_hex() {
        // sha256("abc")
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn record_round_trip_and_rejects_garbage() {
        let r = PasswordRecord {
            iterations: 100_000,
            salt: vec![1; 16],
            hash: vec![2; 32],
        };
        assert_eq!(PasswordRecord::decode(&r.encode()), Some(r.clone()));
        assert!(r.matches(&[2; 32]));
        assert!(!r.matches(&[3; 32]));
        assert!(!r.matches(&[2; 31]));
        for bad in [
            "",
            "plain",
            "pbkdf2-sha256$0$AQ$Ag",
            "pbkdf2-sha256$999999$AQ$Ag",
            "md5$1$AQ$Ag",
            &format!("{}$extra", r.encode()),
        ] {
            assert_eq!(PasswordRecord::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
