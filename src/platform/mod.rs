//! Worker glue, compiled for wasm32 only: the entry point and router
//! (`router`), the per-user Durable Object (`durable_object`), every D1
//! statement (`d1`), HTTP helpers (`http`) and WebCrypto/randomness (`crypto`).

mod config;
mod crypto;
mod d1;
mod durable_object;
mod http;
mod identity;
mod router;

/// Milliseconds since the epoch, from the runtime's clock.
pub(crate) fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}
