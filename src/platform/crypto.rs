//! Randomness and PBKDF2 through the runtime's WebCrypto.

use crate::auth::{self, PasswordRecord, HASH_BYTES, PBKDF2_ITERATIONS, SALT_BYTES, TOKEN_BYTES};
use crate::error::SyncError;
use js_sys::{Array, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{CryptoKey, Pbkdf2Params, SubtleCrypto};

fn internal(what: &str) -> impl Fn(wasm_bindgen::JsValue) -> SyncError + '_ {
    move |e| SyncError::Internal(format!("{what}: {e:?}"))
}

pub fn random_bytes<const N: usize>() -> Result<[u8; N], SyncError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| SyncError::Internal(format!("getrandom: {e}")))?;
    Ok(buf)
}

pub fn new_token() -> Result<String, SyncError> {
    Ok(auth::token_from_bytes(&random_bytes::<TOKEN_BYTES>()?))
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn subtle() -> Result<SubtleCrypto, SyncError> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into()).map_err(internal("crypto"))?;
    let crypto: web_sys::Crypto = crypto
        .dyn_into()
        .map_err(|_| SyncError::Internal("globalThis.crypto is not Crypto".into()))?;
    Ok(crypto.subtle())
}

pub async fn pbkdf2(password: &[u8], salt: &[u8], iterations: u32) -> Result<Vec<u8>, SyncError> {
    let subtle = subtle()?;
    let usages = Array::of1(&"deriveBits".into());
    let key = subtle
        .import_key_with_str("raw", &Uint8Array::from(password), "PBKDF2", false, &usages)
        .map_err(internal("importKey"))?;
    let key: CryptoKey = JsFuture::from(key)
        .await
        .map_err(internal("importKey"))?
        .unchecked_into();
    let params =
        Pbkdf2Params::new_with_str("PBKDF2", "SHA-256", iterations, &Uint8Array::from(salt));
    let bits = subtle
        .derive_bits_with_object(&params, &key, (HASH_BYTES * 8) as u32)
        .map_err(internal("deriveBits"))?;
    let bits = JsFuture::from(bits).await.map_err(internal("deriveBits"))?;
    Ok(Uint8Array::new(&bits).to_vec())
}

pub async fn hash_password(password: &[u8]) -> Result<PasswordRecord, SyncError> {
    let salt = random_bytes::<SALT_BYTES>()?.to_vec();
    let hash = pbkdf2(password, &salt, PBKDF2_ITERATIONS).await?;
    Ok(PasswordRecord {
        iterations: PBKDF2_ITERATIONS,
        salt,
        hash,
    })
}

pub async fn verify_password(record: &PasswordRecord, password: &[u8]) -> Result<bool, SyncError> {
    let derived = pbkdf2(password, &record.salt, record.iterations).await?;
    Ok(record.matches(&derived))
}
