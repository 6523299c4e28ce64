//! alternassist-sync: the platform-free core (protocol, validation, merge,
//! auth records, per-user hub logic) plus, on wasm32 only, the Worker glue.

pub mod account;
pub mod auth;
pub mod error;
pub mod hub;
pub mod lifetime;
pub mod merge;
pub mod model;
pub mod protocol;
pub mod quota;
pub mod ratelimit;
pub mod records;
pub mod registration;
pub mod route;
pub mod sqlgen;

#[cfg(target_arch = "wasm32")]
mod platform;
