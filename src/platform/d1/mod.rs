//! Every D1 statement the service runs, by concern: `accounts` (users,
//! devices, login attempts), `commit` (what a hub loads and persists) and
//! `reads` (changes, history, past versions).

mod accounts;
mod commit;
mod reads;

pub use accounts::*;
pub use commit::*;
pub use reads::*;

use crate::error::SyncError;
use serde::Deserialize;
use std::cell::Cell;
use std::collections::HashMap;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result};

fn text(s: &str) -> JsValue {
    JsValue::from_str(s)
}

fn num<T: Into<f64>>(n: T) -> JsValue {
    JsValue::from_f64(n.into())
}

/// Integers here (ms times, versions) stay far below 2^53, so f64 is exact.
fn int(n: i64) -> JsValue {
    JsValue::from_f64(n as f64)
}

fn uint(n: u64) -> JsValue {
    JsValue::from_f64(n as f64)
}

fn db_err(what: &'static str) -> impl Fn(worker::Error) -> SyncError {
    move |e| SyncError::Internal(format!("{what}: {e}"))
}

fn stmt(db: &D1Database, sql: &str, params: &[JsValue]) -> Result<D1PreparedStatement, SyncError> {
    db.prepare(sql).bind(params).map_err(db_err("bind"))
}

fn rows<T: for<'de> Deserialize<'de>>(r: &D1Result) -> Result<Vec<T>, SyncError> {
    r.results::<T>().map_err(db_err("decode rows"))
}

thread_local! {
    static COST_LOG: Cell<bool> = const { Cell::new(false) };
}

/// With `D1_COST_LOG=1`, every batch on the hub's paths logs D1's own
/// counters (rows read and written, index entries included) per statement,
/// D1's size after each statement (`meta.size_after`, bytes) and the batch's
/// wall time in ms, for the benchmarks:
/// `d1-cost {"op":..,"user":..,"ms":..,"stmts":[..]}`.
pub fn set_cost_log(on: bool) {
    COST_LOG.with(|c| c.set(on));
}

/// A statement of a batch, named by the table it is about (for the log).
type Labelled = (&'static str, D1PreparedStatement);

/// Runs `statements` as one D1 transaction.
async fn batch(
    db: &D1Database,
    op: &str,
    user_id: &str,
    statements: Vec<Labelled>,
) -> worker::Result<Vec<D1Result>> {
    let (tables, statements): (Vec<&str>, Vec<_>) = statements.into_iter().unzip();
    let started = super::now_ms();
    let results = db.batch(statements).await?;
    if COST_LOG.with(Cell::get) {
        let ms = super::now_ms() - started;
        let stmts: Vec<serde_json::Value> = tables
            .iter()
            .zip(&results)
            .map(|(table, r)| {
                let meta = r.meta().ok().flatten();
                serde_json::json!({
                    "table": table,
                    "written": meta.as_ref().and_then(|m| m.rows_written),
                    "read": meta.as_ref().and_then(|m| m.rows_read),
                    "size": meta.as_ref().and_then(|m| m.size_after),
                })
            })
            .collect();
        let line = serde_json::json!({"op": op, "user": user_id, "ms": ms, "stmts": stmts});
        worker::console_log!("d1-cost {line}");
    }
    Ok(results)
}

#[derive(Deserialize)]
struct ChunkRow {
    hist_id: f64,
    data: String,
}

/// Chunks 1.. of the values a read returned, by history row.
struct Chunks(HashMap<u64, Vec<String>>);

impl Chunks {
    fn read(r: &D1Result) -> Result<Self, SyncError> {
        let mut map: HashMap<u64, Vec<String>> = HashMap::new();
        for c in rows::<ChunkRow>(r)? {
            map.entry(c.hist_id as u64).or_default().push(c.data);
        }
        Ok(Self(map))
    }

    /// The whole value of history row `hist_id` whose first chunk is `first`.
    fn join(&mut self, hist_id: u64, first: Option<String>) -> String {
        let mut v = first.unwrap_or_default();
        v.extend(self.0.remove(&hist_id).into_iter().flatten());
        v
    }
}
