//! Wire types, one definition each: REST bodies (`rest`), WebSocket frames
//! (`ws`) and the number rules both share (`numbers`). Fields are camelCase
//! on the wire. Requests keep raw strings; `validate`/`into_write` turn them
//! into typed writes so every rule lives in one place.

mod numbers;
mod rest;
mod ws;

pub use rest::*;
pub use ws::*;

#[cfg(test)]
mod tests;
