//! The per-user hub as pure state plus effects: `plan` turns one group of
//! writes into the rows to persist and the answers; `session` is the policy
//! around it (the write queue, grouping, who drives a commit, stall
//! takeover, the rate bucket, what a failed commit means, who gets a
//! broadcast). The Durable Object only carries out the steps and effects
//! the session returns.

mod plan;
pub mod session;

pub use plan::*;
