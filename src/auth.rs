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

/// Random bytes in a reset code: 100 bits, 20 characters of base32.
pub const RESET_CODE_BYTES: usize = 13;
const RESET_CODE_CHARS: usize = 20;
/// How long a reset code works after the operator issued it.
pub const RESET_CODE_TTL_MS: i64 = 60 * 60 * 1000;
/// Crockford's base32: no I, L, O or U, so a code read out over the phone
/// or copied by hand survives the usual mix-ups.
const BASE32: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A reset code as the operator hands it on: `XXXX-XXXX-XXXX-XXXX-XXXX`.
/// 100 random bits, so it is never guessed within its hour even without
/// the rate limit; a fast hash then stores it safely.
pub fn reset_code_from_bytes(random: &[u8; RESET_CODE_BYTES]) -> String {
    let mut bits: u128 = 0;
    for b in random {
        bits = (bits << 8) | u128::from(*b);
    }
    let mut out = String::with_capacity(RESET_CODE_CHARS + 4);
    for i in 0..RESET_CODE_CHARS {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        let shift = 5 * (RESET_CODE_CHARS - 1 - i);
        out.push(BASE32[((bits >> shift) & 31) as usize] as char);
    }
    out
}

/// A code as typed: any case, with or without dashes and spaces, O for 0
/// and I or L for 1. `None` when it cannot be a code at all.
pub fn normalize_reset_code(typed: &str) -> Option<String> {
    let mut out = String::with_capacity(RESET_CODE_CHARS);
    for c in typed.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !BASE32.contains(&(c as u8)) || out.len() == RESET_CODE_CHARS {
            return None;
        }
        out.push(c);
    }
    (out.len() == RESET_CODE_CHARS).then_some(out)
}

/// What the database stores for a reset code (its normalised form hashed).
pub fn reset_code_hash(normalized: &str) -> String {
    sha256_hex(format!("reset-code:{normalized}").as_bytes())
}

/// The shortest `ADMIN_TOKEN` that turns the admin API on.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// Whether `given` is the operator's admin token, in constant time: both
/// are hashed first, so neither their contents nor their lengths show in
/// the time taken.
pub fn admin_token_matches(configured: &str, given: &str) -> bool {
    let a = Sha256::digest(configured.as_bytes());
    let b = Sha256::digest(given.as_bytes());
    constant_time_eq(&a, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_codes_are_100_bits_and_survive_retyping() {
        let code = reset_code_from_bytes(&[0xff; RESET_CODE_BYTES]);
        assert_eq!(code, "ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ");
        let code = reset_code_from_bytes(&[0; RESET_CODE_BYTES]);
        assert_eq!(code, "0000-0000-0000-0000-0000");
        let code = reset_code_from_bytes(&[
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x0f, 0xed, 0xcb, 0xa9, 0x87,
        ]);
        assert_eq!(code.len(), 24);
        let normal = normalize_reset_code(&code).unwrap();
        assert_eq!(normal, code.replace('-', ""));
        // Lower case, spaces, no dashes, O/I/L mix-ups all read the same.
        let sloppy = code
            .to_lowercase()
            .replace('-', " ")
            .replace('0', "o")
            .replace('1', "l");
        assert_eq!(
            normalize_reset_code(&sloppy).as_deref(),
            Some(normal.as_str())
        );
        for bad in [
            "",
            "ZZZZ",
            "ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-Z",
            "ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZU",
            "é",
        ] {
            assert_eq!(normalize_reset_code(bad), None, "{bad}");
        }
        assert_eq!(reset_code_hash(&normal).len(), 64);
        assert_ne!(reset_code_hash(&normal), sha256_hex(normal.as_bytes()));
    }

    #[test]
    fn admin_token_compare() {
        let t = "x".repeat(40);
        assert!(admin_token_matches(&t, &t));
        assert!(!admin_token_matches(&t, &"x".repeat(39)));
        assert!(!admin_token_matches(&t, ""));
    }

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
