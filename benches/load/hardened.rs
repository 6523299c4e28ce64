//! Issue #19's targets ("records, hardened"): what structural edits of long
//! record lists cost, a 25,000-record list end to end, what a retention run
//! reads as the list grows, what the hub's memory holds per record, and the
//! fresh-key dip of issue item 11. `--records-hardened` runs only this
//! (`target/bench/records-hardened.json`); the full and quick runs end with
//! it.
//!
//! On a Worker with `D1_COST_LOG=1` (`d1log.rs`):
//!
//! - **structural edits**: for each list (5,000 and 25,000 invoices of about
//!   200 bytes, `records::invoices`), a user of its own whose writer and other
//!   device hold sockets that said `hello {patches: true}`. The list is
//!   created with `PUT`, then rounds of five `patch` frames, one at a time,
//!   each based on the previous `ack`: a one-field edit (`upserts: [the
//!   element]`), an insert of a new record at a random place (`after:
//!   [[id, predecessor | null]]`, as `records.js` sends it), a removal of a
//!   random record (`removed: [id]`), an append (`after: [[id, last id]]`)
//!   and another removal, so the list keeps its length. ack = frame sent →
//!   its `ack`; fan-out = frame sent → the other socket's `change` for that
//!   version. Ratios are to the one-field edits of the same list in the same
//!   rounds, so the machine's load falls on every kind alike;
//! - **end to end** on the same lists: one-field edits by `PUT`, `GET
//!   /api/sync/{key}` and `GET /api/sync` warm, the key's history list, the
//!   first version read back (`GET .../history/{v}`, compared byte for byte
//!   with what was written), one record's history and its restore, and,
//!   after `wrangler dev` is restarted on the same state, the first `GET
//!   /api/sync/{key}` (the hub rebuilds the list from D1) and a second one.
//!   The list the server returns is compared with the tool's own copy;
//! - **retention**: for 500, 5,000 and 25,000 records, a user of its own
//!   creates the list and sends 64 one-field patches one at a time; the
//!   user's `d1-cost` lines of those edits are looked at one batch at a
//!   time. Retention runs inside the commit of one write in 8 of a key
//!   (`HISTORY_PRUNE_EVERY`) and on its first write after a wake: those
//!   commits have more statements than the others. Rows read per retention
//!   run = the rows that commit read minus the median of the plain commits
//!   (a batch of any other op during the edits counts whole). After the
//!   restart, the first write of each list: the rows its commit read.
//!
//! On a Worker without the log:
//!
//! - **hub memory**: the resident set (`VmRSS`, `/proc`) of the workerd
//!   process(es) of that `wrangler dev`, before and after one user writes 20
//!   lists of 5,000 records with `PUT` (2 s after the last, so the transient
//!   buffers of the requests can be freed), then after a second user writes
//!   the same bytes as whole values (the same arrays with `}, {` between
//!   elements, which are not record lists): a control for what the requests
//!   themselves leave behind. It includes everything in that process: the
//!   wasm heap of every object, V8, the local D1's SQLite caches;
//! - **fresh keys against deep keys (item 11)**: the in-flight scenario
//!   (`inflight.rs`) at 16 and 64 writes in flight, on new users' fresh keys
//!   and on one user's 64 keys first given 4,681 versions each, three times,
//!   alternating which goes first.
//!
//! Nothing asserts a timing.

use crate::d1log::{Cost, Line, Log};
use crate::inflight::{self, Flight, Pool, Until};
use crate::records::{
    await_frame, body, bytes, hello_patches_since, invoices, joined, listen, put, ws_write,
    Element, Frame, Rng,
};
use crate::scenarios::{put_based, wait_ack, Room, Target};
use crate::server::Server;
use crate::stats::{self, f, ms, ms2, summarize, Summary};
use crate::ws::Conn;
use crate::{Progress, Table};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Issue #19: each structural edit within ×1.5 of a one-field edit (p50).
const MAX_KIND_RATIO: f64 = 1.5;

pub struct Plan {
    /// Lists for the structural edits and the end-to-end figures.
    pub sizes: Vec<usize>,
    /// Rounds of the five patch frames (one not counted first).
    pub rounds: usize,
    /// One-field edits by `PUT` of each list.
    pub put_edits: usize,
    pub get_reps: usize,
    pub retention_sizes: Vec<usize>,
    pub retention_edits: usize,
    pub memory_lists: usize,
    pub memory_len: usize,
    pub flight_ns: Vec<usize>,
    pub flight_reps: usize,
    pub flight_depth: usize,
    pub flight_warm: Duration,
    pub flight_window: Duration,
    pub deep_budget: Duration,
}

impl Plan {
    pub fn new(quick: bool, deep_budget: Duration) -> Plan {
        if quick {
            Plan {
                sizes: vec![500],
                rounds: 2,
                put_edits: 1,
                get_reps: 1,
                retention_sizes: vec![100, 500],
                retention_edits: 8,
                memory_lists: 2,
                memory_len: 500,
                flight_ns: vec![16],
                flight_reps: 1,
                flight_depth: 60,
                flight_warm: Duration::from_millis(300),
                flight_window: Duration::from_millis(700),
                deep_budget,
            }
        } else {
            Plan {
                sizes: vec![5000, 25000],
                rounds: 40,
                put_edits: 10,
                get_reps: 5,
                retention_sizes: vec![500, 5000, 25000],
                retention_edits: 64,
                memory_lists: 20,
                memory_len: 5000,
                flight_ns: vec![16, 64],
                flight_reps: 3,
                flight_depth: 4681,
                flight_warm: Duration::from_secs(1),
                flight_window: Duration::from_secs(5),
                deep_budget,
            }
        }
    }
}

pub struct Hardened {
    pub tables: Vec<Table>,
    pub json: Value,
}

// ------------------------------------------------------------------ the list

/// The tool's copy of one user's list, edited by patch frames.
struct Model {
    key: String,
    elems: Vec<Element>,
    version: u64,
    rng: Rng,
    /// Frames sent (names requestIds and new records).
    n: usize,
    /// Ids given a one-field edit, oldest first.
    edited: Vec<String>,
}

/// The `id` of an invoice (`{"id":"…",…}`).
fn id_of(e: &Element) -> &str {
    let t = &e.text;
    let from = t.find("\"id\":\"").map_or(0, |i| i + 6);
    let to = from + t[from..].find('"').unwrap_or(0);
    &t[from..to]
}

fn q(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Op {
    Edit,
    Insert,
    Append,
    Remove,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Edit => "one-field edit",
            Op::Insert => "insert one record",
            Op::Append => "append one record",
            Op::Remove => "remove one record",
        }
    }
}

/// One round: the list ends it as long as it began.
const ROUND: [Op; 5] = [Op::Edit, Op::Insert, Op::Remove, Op::Append, Op::Remove];

impl Model {
    fn text(&self) -> String {
        joined(&self.elems, ",")
    }

    /// A new invoice whose id no other record has.
    fn fresh(&mut self) -> Element {
        let e = invoices(1, &mut self.rng).remove(0);
        let old = format!("\"id\":\"{}\"", id_of(&e));
        let new = format!("\"id\":\"add-{:06}\"", self.n);
        Element::new(e.text.replacen(&old, &new, 1))
    }

    /// Applies `op` to the copy and returns its frame (written by hand, so
    /// each record's text goes verbatim, as `records.js` splices it).
    fn frame(&mut self, op: Op) -> String {
        self.n += 1;
        let rid = format!("{}-{}", self.key, self.n);
        let len = self.elems.len();
        let (upserts, removed, after) = match op {
            Op::Edit => {
                let i = self.rng.below(len);
                self.elems[i].edit(&mut self.rng);
                self.edited.push(id_of(&self.elems[i]).to_string());
                (self.elems[i].text.clone(), String::new(), None)
            }
            Op::Insert => {
                let at = self.rng.below(len);
                let e = self.fresh();
                let pred = if at == 0 {
                    "null".to_string()
                } else {
                    q(id_of(&self.elems[at - 1]))
                };
                let after = format!("[[{},{pred}]]", q(id_of(&e)));
                let text = e.text.clone();
                self.elems.insert(at, e);
                (text, String::new(), Some(after))
            }
            Op::Append => {
                let e = self.fresh();
                let pred = self.elems.last().map_or("null".into(), |l| q(id_of(l)));
                let after = format!("[[{},{pred}]]", q(id_of(&e)));
                let text = e.text.clone();
                self.elems.push(e);
                (text, String::new(), Some(after))
            }
            Op::Remove => {
                let i = self.rng.below(len);
                let e = self.elems.remove(i);
                (String::new(), q(id_of(&e)), None)
            }
        };
        let after = after.map_or(String::new(), |a| format!(",\"after\":{a}"));
        format!(
            r#"{{"type":"patch","key":{},"requestId":{},"baseVersion":{},"upserts":[{upserts}],"removed":[{removed}]{after}}}"#,
            q(&self.key),
            q(&rid),
            self.version
        )
    }
}

/// Sends one patch frame for `op`, waits for its ack and the other
/// device's change; (ack, fan-out).
fn patch_one(
    w: &mut Conn,
    rx: &mpsc::Receiver<Frame>,
    m: &mut Model,
    op: Op,
    conflicts: &mut usize,
) -> Result<(Duration, Duration), String> {
    let frame = m.frame(op);
    let rid = format!("{}-{}", m.key, m.n);
    let t0 = Instant::now();
    let (v, _, took) = ws_write(w, &frame, &rid, conflicts)?;
    let (_, _, at) = await_frame(rx, &m.key, v)?;
    m.version = v;
    Ok((took, at.saturating_duration_since(t0)))
}

/// A user with a writer and another device, both on `patches: true`
/// sockets, and one list created with `PUT`.
struct Subject {
    size: usize,
    token: String,
    user_id: String,
    model: Model,
    value_bytes: usize,
    created: String,
    create_version: u64,
    create: Duration,
    create_fanout: Duration,
}

fn subject(
    t: &Target,
    size: usize,
    rx: &mpsc::Receiver<Frame>,
    room: Room,
) -> Result<Subject, String> {
    let user = room.user()?.clone();
    let mut rng = Rng(0x1900_0000 ^ size as u64);
    let elems = invoices(size, &mut rng);
    let key = format!("invoices-{size}");
    let mut model = Model {
        key: key.clone(),
        elems,
        version: 0,
        rng,
        n: 0,
        edited: Vec::new(),
    };
    let text = model.text();
    let mut c = 0;
    let t0 = Instant::now();
    let (v, _, took) = put(t, &user.token, &key, &body(&text, None, "create"), &mut c)?;
    let (_, _, at) = await_frame(rx, &key, v)?;
    model.version = v;
    Ok(Subject {
        size,
        token: user.token,
        user_id: user.user_id,
        value_bytes: text.len(),
        created: text,
        create_version: v,
        create: took,
        create_fanout: at.saturating_duration_since(t0),
        model,
    })
}

/// Everything measured on one list.
#[derive(Default)]
struct ListRun {
    size: usize,
    value_bytes: usize,
    create: Duration,
    create_fanout: Duration,
    /// Patch frames by kind: (ack, fan-out) samples.
    ops: BTreeMap<Op, (Vec<Duration>, Vec<Duration>)>,
    conflicts: usize,
    put_ack: Vec<Duration>,
    put_fanout: Vec<Duration>,
    get_key: Vec<Duration>,
    get_all: Vec<Duration>,
    get_key_read: Cost,
    history_list: Duration,
    history_entries: usize,
    version_read: Duration,
    version_matches: bool,
    record_history: Duration,
    record_history_entries: usize,
    restore: Duration,
    restore_fanout: Duration,
    restore_error: Option<String>,
    /// The server's list equals the tool's copy after the patch frames.
    matches: bool,
    final_bytes: usize,
    /// The list as the server returned it after the restore.
    final_text: String,
    /// After the restart.
    cold_get: Duration,
    cold_read: Cost,
    cold_matches: bool,
    warm_again: Duration,
    /// Requests refused (step → the answer), e.g. a 500.
    errors: BTreeMap<&'static str, String>,
}

impl ListRun {
    fn failed(&mut self, step: &'static str, e: String) {
        self.errors.insert(step, e.chars().take(300).collect());
    }

    /// The table's cell for `step`: `ok`, or that it was refused.
    fn cell(&self, step: &str, ok: (String, f64)) -> (String, f64) {
        match self.errors.get(step) {
            None => ok,
            Some(e) => (format!("**failed**: {e}"), f64::NAN),
        }
    }

    fn op(&self, op: Op) -> (Summary, Summary) {
        self.ops
            .get(&op)
            .map_or_else(Default::default, |(a, b)| (summarize(a), summarize(b)))
    }

    fn json(&self) -> Value {
        let ops: serde_json::Map<String, Value> = self
            .ops
            .iter()
            .map(|(op, (a, b))| {
                (
                    op.name().to_string(),
                    json!({"ack": summarize(a).json(), "fanout": summarize(b).json(),
                       "ackMs": stats::ms2_all(a), "fanoutMs": stats::ms2_all(b)}),
                )
            })
            .collect();
        json!({
            "records": self.size, "valueBytes": self.value_bytes,
            "createMs": ms2(self.create), "createFanoutMs": ms2(self.create_fanout),
            "patchFrames": ops, "conflicts": self.conflicts,
            "put": {"ack": summarize(&self.put_ack).json(), "fanout": summarize(&self.put_fanout).json()},
            "getKeyMs": stats::ms2_all(&self.get_key), "getAllMs": stats::ms2_all(&self.get_all),
            "getKeyD1": self.get_key_read.json(),
            "historyListMs": ms2(self.history_list), "historyEntries": self.history_entries,
            "firstVersionReadMs": ms2(self.version_read), "firstVersionMatches": self.version_matches,
            "recordHistoryMs": ms2(self.record_history), "recordHistoryEntries": self.record_history_entries,
            "recordRestoreMs": ms2(self.restore), "recordRestoreFanoutMs": ms2(self.restore_fanout),
            "recordRestoreError": self.restore_error,
            "matchesAfterPatches": self.matches, "finalBytes": self.final_bytes,
            "afterRestart": {"firstGetMs": ms2(self.cold_get), "firstGetD1": self.cold_read.json(),
                             "matches": self.cold_matches, "secondGetMs": ms2(self.warm_again)},
            "errors": self.errors,
        })
    }
}

/// `get_json`, keeping a refusal as its text: (body or error, time).
fn try_get(t: &Target, token: &str, path: &str) -> (Result<Value, String>, Duration) {
    let t0 = Instant::now();
    match get_json(t, token, path) {
        Ok((v, took)) => (Ok(v), took),
        Err(e) => (Err(e), t0.elapsed()),
    }
}

/// `GET path` answered 200: (parsed body, time).
fn get_json(t: &Target, token: &str, path: &str) -> Result<(Value, Duration), String> {
    let (status, resp, took) = t.http("GET", path, Some(token), None)?;
    if status != 200 {
        return Err(format!(
            "GET {path}: {status} {}",
            String::from_utf8_lossy(&resp[..resp.len().min(300)])
        ));
    }
    let v = serde_json::from_slice(&resp).map_err(|e| format!("GET {path}: {e}"))?;
    Ok((v, took))
}

fn enc(s: &str) -> String {
    crate::client::enc(s)
}

/// The structural edits, the `PUT` edits, the reads, history and restore
/// of `sub`'s list (before the restart).
fn list_run(
    t: &Target,
    log: &mut Log,
    plan: &Plan,
    sub: &mut Subject,
    w: &mut Conn,
    rx: &mpsc::Receiver<Frame>,
    progress: &Progress,
) -> Result<ListRun, String> {
    let mut r = ListRun {
        size: sub.size,
        value_bytes: sub.value_bytes,
        create: sub.create,
        create_fanout: sub.create_fanout,
        ..Default::default()
    };
    let m = &mut sub.model;
    let mut conflicts = 0;
    for round in 0..=plan.rounds {
        for op in ROUND {
            let (ack, fan) = patch_one(w, rx, m, op, &mut conflicts)?;
            // Round 0 warms up (new code paths, the first retention run).
            if round > 0 {
                let e = r.ops.entry(op).or_default();
                e.0.push(ack);
                e.1.push(fan);
            }
        }
    }
    r.conflicts = conflicts;
    progress.note(format!(
        "hardened: {} records, {} rounds of patch frames",
        sub.size, plan.rounds
    ));

    // One-field edits by PUT: the writer sends the whole list.
    for i in 0..plan.put_edits {
        let at = m.rng.below(m.elems.len());
        m.elems[at].edit(&mut m.rng);
        let rid = format!("put-{i}");
        let b = body(&m.text(), Some(m.version), &rid);
        let t0 = Instant::now();
        let (v, _, took) = put(t, &sub.token, &m.key, &b, &mut r.conflicts)?;
        let (_, _, got) = await_frame(rx, &m.key, v)?;
        m.version = v;
        r.put_ack.push(took);
        r.put_fanout.push(got.saturating_duration_since(t0));
    }

    // Reads, warm (the hub has just written the list).
    let key_path = format!("/api/sync/{}", enc(&m.key));
    let want = m.text();
    let (v, _) = get_json(t, &sub.token, &key_path)?;
    r.matches = v["value"].as_str() == Some(want.as_str());
    r.final_bytes = v["value"].as_str().map_or(0, str::len);
    for _ in 0..plan.get_reps {
        r.get_key.push(get_json(t, &sub.token, &key_path)?.1);
        r.get_all.push(get_json(t, &sub.token, "/api/sync")?.1);
    }
    let mark = log.mark();
    get_json(t, &sub.token, &key_path)?;
    r.get_key_read = Cost::of(&log.wait(&mark, &sub.user_id));

    // The key's history, and its first version rebuilt. A refusal is a
    // finding, kept in the table, not the end of the run.
    let (h, took) = try_get(t, &sub.token, &format!("{key_path}/history"));
    r.history_list = took;
    match h {
        Ok(h) => r.history_entries = h["history"].as_array().map_or(0, Vec::len),
        Err(e) => r.failed("history", e),
    }
    let (v, took) = try_get(
        t,
        &sub.token,
        &format!("{key_path}/history/{}", sub.create_version),
    );
    r.version_read = took;
    match v {
        Ok(v) => r.version_matches = v["value"].as_str() == Some(sub.created.as_str()),
        Err(e) => r.failed("firstVersion", e),
    }

    // One record's history and its restore to its first kept version.
    let id = m
        .edited
        .iter()
        .rev()
        .find(|id| m.elems.iter().any(|e| id_of(e) == id.as_str()))
        .cloned()
        // Every edited record removed since (a short run): any record.
        .or_else(|| m.elems.first().map(|e| id_of(e).to_string()))
        .ok_or("an empty list")?;
    let rec_path = format!("{key_path}/records/{}", enc(&id));
    let (h, took) = try_get(t, &sub.token, &format!("{rec_path}/history"));
    r.record_history = took;
    let h = h.unwrap_or_else(|e| {
        r.failed("recordHistory", e);
        Value::Null
    });
    let entries = h["history"].as_array().cloned().unwrap_or_default();
    r.record_history_entries = entries.len();
    // Without a version to go back to, the restore goes to the current one.
    let oldest = entries
        .iter()
        .rev()
        .find_map(|e| e["version"].as_u64())
        .unwrap_or(m.version);
    let b = json!({"version": oldest, "requestId": "restore-1"}).to_string();
    let t0 = Instant::now();
    let (status, resp, took) = t.http(
        "POST",
        &format!("{rec_path}/restore"),
        Some(&sub.token),
        Some(b.as_bytes()),
    )?;
    r.restore = took;
    let v: Value = serde_json::from_slice(&resp).unwrap_or(Value::Null);
    match (status, v["version"].as_u64()) {
        (200, Some(version)) => {
            let (_, _, got) = await_frame(rx, &m.key, version)?;
            r.restore_fanout = got.saturating_duration_since(t0);
            m.version = version;
        }
        _ => r.restore_error = Some(format!("{status} {v}")),
    }
    // What the list should read back as after the restart.
    let (v, _) = get_json(t, &sub.token, &key_path)?;
    r.final_text = v["value"].as_str().unwrap_or_default().to_string();
    progress.note(format!(
        "hardened: {} records, PUT edits, reads, history, restore",
        sub.size
    ));
    Ok(r)
}

// ------------------------------------------------------------------ retention

/// One list's retention figures.
#[derive(Default)]
struct Retention {
    size: usize,
    edits: usize,
    /// Per batch of the edits: (op, statements, rows read, rows written).
    batches: Vec<(String, usize, f64, f64)>,
    /// Rows read by a plain commit (median).
    plain_read: f64,
    plain_written: f64,
    /// Rows read (and written) by each retention run, above a plain commit.
    runs: Vec<(f64, f64)>,
    total_read: f64,
    /// The first write after the restart: its time, its commit, the rest.
    wake_write: Duration,
    wake_commit: Cost,
    wake_other: Cost,
    wake_error: Option<String>,
}

impl Retention {
    fn classify(&mut self, lines: &[Line]) {
        let stmts = |l: &Line| l.stmts.len();
        let read = |l: &Line| l.stmts.iter().map(|s| s.2).sum::<f64>();
        let written = |l: &Line| l.stmts.iter().map(|s| s.1).sum::<f64>();
        self.batches = lines
            .iter()
            .map(|l| (l.op.clone(), stmts(l), read(l), written(l)))
            .collect();
        self.total_read = lines.iter().map(read).sum();
        let commits: Vec<&Line> = lines.iter().filter(|l| l.op == "commit").collect();
        let fewest = commits.iter().map(|l| stmts(l)).min().unwrap_or(0);
        let plain: Vec<&&Line> = commits.iter().filter(|l| stmts(l) == fewest).collect();
        let med = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        self.plain_read = med(plain.iter().map(|l| read(l)).collect());
        self.plain_written = med(plain.iter().map(|l| written(l)).collect());
        self.runs = lines
            .iter()
            .filter_map(|l| {
                if l.op != "commit" {
                    Some((read(l), written(l)))
                } else if stmts(l) > fewest {
                    Some((read(l) - self.plain_read, written(l) - self.plain_written))
                } else {
                    None
                }
            })
            .collect();
    }

    fn mean_run(&self) -> (f64, f64) {
        let n = self.runs.len().max(1) as f64;
        (
            self.runs.iter().map(|r| r.0).sum::<f64>() / n,
            self.runs.iter().map(|r| r.1).sum::<f64>() / n,
        )
    }

    fn json(&self) -> Value {
        json!({
            "records": self.size, "edits": self.edits,
            "batches": self.batches.iter().map(|(op, n, r, w)| json!({"op": op, "statements": n, "rowsRead": r, "rowsWritten": w})).collect::<Vec<_>>(),
            "plainCommitRowsRead": self.plain_read, "plainCommitRowsWritten": self.plain_written,
            "retentionRuns": self.runs.iter().map(|(r, w)| json!({"rowsRead": r, "rowsWritten": w})).collect::<Vec<_>>(),
            "meanRowsReadPerRun": self.mean_run().0, "meanRowsWrittenPerRun": self.mean_run().1,
            "rowsReadPerEdit": self.total_read / self.edits.max(1) as f64,
            "afterRestart": {"firstWriteMs": ms2(self.wake_write), "commit": self.wake_commit.json(), "otherBatches": self.wake_other.json(), "error": self.wake_error},
        })
    }
}

/// A user whose only key is a list of `size`: created, then `edits`
/// one-field patches, one at a time, their batches classified.
fn retention_run(
    t: &Target,
    log: &mut Log,
    size: usize,
    edits: usize,
) -> Result<(Retention, Room, Model), String> {
    let room = t.room(1)?;
    let user = room.user()?.clone();
    let mut w = t.connect(&room, 0)?;
    hello_patches_since(&mut w, 0)?;
    let mut rng = Rng(0x1909_0000 ^ size as u64);
    let elems = invoices(size, &mut rng);
    let mut m = Model {
        key: format!("list-{size}"),
        elems,
        version: 0,
        rng,
        n: 0,
        edited: Vec::new(),
    };
    let mut c = 0;
    m.version = put(
        t,
        &user.token,
        &m.key,
        &body(&m.text(), None, "create"),
        &mut c,
    )?
    .0;
    let mark = log.mark();
    for _ in 0..edits {
        let frame = m.frame(Op::Edit);
        let rid = format!("{}-{}", m.key, m.n);
        m.version = ws_write(&mut w, &frame, &rid, &mut c)?.0;
    }
    let lines = log.wait(&mark, &user.user_id);
    w.close();
    let mut r = Retention {
        size,
        edits,
        ..Default::default()
    };
    r.classify(&lines);
    Ok((r, room, m))
}

/// The first write of `m`'s user after the restart: the wake, then
/// retention in that write's commit.
fn wake_write(
    t: &Target,
    log: &mut Log,
    r: &mut Retention,
    room: &Room,
    m: &mut Model,
) -> Result<(), String> {
    let user = room.user()?.user_id.clone();
    let mut w = t.connect(room, 0)?;
    hello_patches_since(&mut w, m.version)?;
    let mark = log.mark();
    let frame = m.frame(Op::Edit);
    let rid = format!("{}-{}", m.key, m.n);
    let mut c = 0;
    let t0 = Instant::now();
    match ws_write(&mut w, &frame, &rid, &mut c) {
        Ok((v, _, took)) => {
            m.version = v;
            r.wake_write = took;
        }
        // A refusal (an `error` frame) is a finding: kept, with its cost.
        Err(e) => {
            r.wake_write = t0.elapsed();
            r.wake_error = Some(e.chars().take(300).collect());
        }
    }
    let lines = log.wait(&mark, &user);
    r.wake_commit = Cost::filter(&lines, |op| op == "commit");
    r.wake_other = Cost::filter(&lines, |op| op != "commit");
    w.close();
    Ok(())
}

// ------------------------------------------------------------------ cost server

struct OnCost {
    lists: Vec<ListRun>,
    retention: Vec<Retention>,
}

fn on_cost_server(s: &Server, plan: &Plan, progress: &Progress) -> Result<OnCost, String> {
    let mut log = Log::new(&s.state_dir);
    let t = Target::ours(s);
    let stop = AtomicBool::new(false);
    let mut subjects = Vec::new();
    let mut lists = Vec::new();
    thread::scope(|scope| -> Result<(), String> {
        let stop = &stop;
        let r = (|| -> Result<(), String> {
            for &size in &plan.sizes {
                let room = t.room(2)?;
                let mut w = t.connect(&room, 0)?;
                let mut other = t.connect(&room, 1)?;
                hello_patches_since(&mut w, 0)?;
                hello_patches_since(&mut other, 0)?;
                let (tx, rx) = mpsc::channel::<Frame>();
                scope.spawn(move || listen(other, tx, stop));
                let mut sub = subject(&t, size, &rx, room)?;
                progress.note(format!(
                    "hardened: {size} records created ({} bytes)",
                    sub.value_bytes
                ));
                lists.push(list_run(
                    &t, &mut log, plan, &mut sub, &mut w, &rx, progress,
                )?);
                w.close();
                subjects.push(sub);
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        r
    })?;

    let mut retention = Vec::new();
    for &size in &plan.retention_sizes {
        retention.push(retention_run(&t, &mut log, size, plan.retention_edits)?);
        progress.note(format!(
            "hardened: retention, {size} records, {} edits",
            plan.retention_edits
        ));
    }

    // A restart on the same state: every hub wakes from D1.
    drop(t);
    s.restart_with(&crate::cost_vars())?;
    let t = Target::ours(s);
    {
        // The isolate's own start goes to another user's object.
        let room = t.room(1)?;
        let mut c = t.connect(&room, 0)?;
        c.send(&put_based("warm", "w", "warm", None))?;
        wait_ack(&mut c, "warm")?;
        c.close();
    }
    for (sub, r) in subjects.iter().zip(lists.iter_mut()) {
        let key_path = format!("/api/sync/{}", enc(&sub.model.key));
        let mark = log.mark();
        let (v, took) = try_get(&t, &sub.token, &key_path);
        r.cold_get = took;
        r.cold_read = Cost::of(&log.wait(&mark, &sub.user_id));
        match v {
            Ok(v) => r.cold_matches = v["value"].as_str() == Some(r.final_text.as_str()),
            Err(e) => r.failed("coldGet", e),
        }
        let (v, took) = try_get(&t, &sub.token, &key_path);
        r.warm_again = took;
        if let Err(e) = v {
            r.failed("secondGet", e);
        }
    }
    let mut out = Vec::new();
    for (mut r, room, mut m) in retention {
        wake_write(&t, &mut log, &mut r, &room, &mut m)?;
        out.push(r);
    }
    progress.note("hardened: restart, cold reads, first writes after the wake");
    Ok(OnCost {
        lists,
        retention: out,
    })
}

// ------------------------------------------------------------------ memory

/// Resident and peak resident kB of the workerd processes in process
/// group `pgid`, and how many there are.
fn workerd_rss(pgid: u32) -> (u64, u64, usize) {
    let (mut rss, mut hwm, mut n) = (0, 0, 0);
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return (0, 0, 0);
    };
    for e in dir.flatten() {
        let p = e.path();
        let Ok(stat) = std::fs::read_to_string(p.join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let pgrp = stat[close + 1..]
            .split_whitespace()
            .nth(2)
            .and_then(|x| x.parse::<u32>().ok());
        if pgrp != Some(pgid) || !comm.starts_with("workerd") {
            continue;
        }
        let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or(0)
        };
        rss += field("VmRSS:");
        hwm += field("VmHWM:");
        n += 1;
    }
    (rss, hwm, n)
}

struct Memory {
    lists: usize,
    len: usize,
    list_bytes: usize,
    whole_bytes: usize,
    /// (what, rss kB, peak kB) at each step.
    steps: Vec<(String, u64, u64)>,
    /// RSS kB right after each list's `PUT` was answered.
    trace: Vec<u64>,
    procs: usize,
}

impl Memory {
    fn at(&self, i: usize) -> f64 {
        self.steps.get(i).map_or(f64::NAN, |s| s.1 as f64 * 1024.0)
    }

    /// Bytes per record from the end of the first quarter of the lists to
    /// the end (settled): what one more held record adds once the heap has
    /// grown; (from list, per record).
    fn marginal(&self) -> Option<(usize, f64)> {
        let k = self.lists / 4;
        let from = *self.trace.get(k.checked_sub(1)?)? as f64 * 1024.0;
        Some((
            k,
            (self.at(1) - from) / ((self.lists - k) * self.len) as f64,
        ))
    }

    fn json(&self) -> Value {
        json!({"lists": self.lists, "recordsPerList": self.len, "listBytes": self.list_bytes,
               "rssKbAfterEachList": self.trace,
               "marginalBytesPerRecord": self.marginal().map(|m| json!({"fromList": m.0, "bytes": m.1})),
               "wholeBytes": self.whole_bytes, "workerdProcesses": self.procs,
               "steps": self.steps.iter().map(|(w, r, h)| json!({"step": w, "rssKb": r, "peakRssKb": h})).collect::<Vec<_>>(),
               "bytesPerHeldRecord": (self.at(1) - self.at(0)) / (self.lists * self.len) as f64,
               "rssPerListTextByte": (self.at(1) - self.at(0)) / self.list_bytes as f64,
               "wholeControlPerByte": (self.at(2) - self.at(1)) / self.whole_bytes as f64})
    }
}

fn memory(s: &Server, plan: &Plan, progress: &Progress) -> Result<Memory, String> {
    let pgid = s.pgid().ok_or("no process group")?;
    let t = Target::ours(s);
    let mut c = 0;
    // Before the first figure the isolate is up and has served one list and
    // one whole value of the same size (another user's), so that what grows
    // once (the wasm heap's first growth, V8's buffers) is not counted as
    // the held records'.
    let warm = t.room(1)?;
    let token = warm.user()?.token.clone();
    let elems = invoices(plan.memory_len, &mut Rng(0x19_0007));
    for (key, sep) in [("warm-list", ","), ("warm-whole", ", ")] {
        put(
            &t,
            &token,
            key,
            &body(&joined(&elems, sep), None, key),
            &mut c,
        )?;
    }
    let settle = || thread::sleep(Duration::from_secs(2));
    settle();
    let sample = |what: &str| {
        let (r, h, n) = workerd_rss(pgid);
        (what.to_string(), r, h, n)
    };
    let mut steps = Vec::new();
    let first =
        sample("before (isolate up; another user wrote one list and one whole value of that size)");
    let procs = first.3;
    steps.push(first);
    let mut list_bytes = 0;
    let mut whole_bytes = 0;
    let mut trace = Vec::new();
    for (sep, label) in [
        (",", "record lists"),
        (", ", "the same bytes as whole values"),
    ] {
        let room = t.room(1)?;
        let token = room.user()?.token.clone();
        for i in 0..plan.memory_lists {
            let mut rng = Rng(0x19_0008 ^ ((i as u64) << 24));
            let text = joined(&invoices(plan.memory_len, &mut rng), sep);
            if sep == "," {
                list_bytes += text.len();
            } else {
                whole_bytes += text.len();
            }
            put(
                &t,
                &token,
                &format!("list-{i}"),
                &body(&text, None, &format!("m{i}")),
                &mut c,
            )?;
            if sep == "," {
                trace.push(workerd_rss(pgid).0);
            }
        }
        settle();
        steps.push(sample(&format!(
            "after one more user wrote {} {label} of {} records",
            plan.memory_lists, plan.memory_len
        )));
    }
    progress.note("hardened: memory");
    Ok(Memory {
        lists: plan.memory_lists,
        len: plan.memory_len,
        list_bytes,
        whole_bytes,
        steps: steps.into_iter().map(|(w, r, h, _)| (w, r, h)).collect(),
        trace,
        procs,
    })
}

// ------------------------------------------------------------------ item 11

struct Flights {
    depth: inflight::Depth,
    /// (rep, in flight, fresh first?, fresh, deep).
    runs: Vec<(usize, usize, bool, Flight, Flight)>,
}

fn fresh_vs_deep(s: &Server, plan: &Plan, progress: &Progress) -> Result<Flights, String> {
    let t = Target::ours(s);
    let max_n = plan.flight_ns.iter().copied().max().unwrap_or(16);
    let room = t.room(1)?;
    let token = room.user()?.token.clone();
    let mut pool = Pool::new("d", max_n);
    let depth = inflight::deepen(&t, &token, &mut pool, plan.flight_depth, plan.deep_budget)?;
    progress.note(format!(
        "hardened: {} keys at {} versions ({} writes in {:.0} s)",
        pool.keys.len(),
        depth.versions,
        depth.writes,
        depth.secs
    ));
    let until = Until::Timed {
        warm: plan.flight_warm,
        window: plan.flight_window,
    };
    let once = |room: &Room, pool: &mut Pool, n: usize, tag: &str| -> Result<Flight, String> {
        let mut c = t.connect(room, 0)?;
        let r = inflight::run(&mut c, pool, n, until, tag);
        c.close();
        crate::settle();
        r
    };
    let mut runs = Vec::new();
    for rep in 0..plan.flight_reps {
        for &n in &plan.flight_ns {
            let fresh_first = (rep + runs.len()) % 2 == 0;
            let mut fresh = None;
            let mut deep = None;
            for turn in 0..2 {
                if (turn == 0) == fresh_first {
                    let froom = t.room(1)?;
                    let mut fpool = Pool::new("p", n);
                    fresh = Some(once(&froom, &mut fpool, n, &format!("f{rep}-{n}"))?);
                } else {
                    deep = Some(once(&room, &mut pool, n, &format!("d{rep}-{n}"))?);
                }
            }
            let (Some(fr), Some(dp)) = (fresh, deep) else {
                return Err("a run is missing".into());
            };
            progress.note(format!(
                "hardened: {n} in flight, rep {}: fresh {:.0}/s, deep {:.0}/s",
                rep + 1,
                fr.per_s,
                dp.per_s
            ));
            runs.push((rep, n, fresh_first, fr, dp));
        }
    }
    Ok(Flights { depth, runs })
}

// ------------------------------------------------------------------ run

/// Starts its two Workers one after the other, measures, stops them.
pub fn run(plan: &Plan, progress: &Progress) -> Result<Hardened, String> {
    let s = Server::start("bench-hardened", &crate::cost_vars())
        .map_err(|e| format!("the Worker (hardened, D1 cost log) did not start: {e}"))?;
    let cost = on_cost_server(&s, plan, progress);
    s.stop();
    let cost = cost?;
    let s = Server::start("bench-hardened-plain", crate::VARS)
        .map_err(|e| format!("the Worker (hardened) did not start: {e}"))?;
    let plain =
        memory(&s, plan, progress).and_then(|m| Ok((m, fresh_vs_deep(&s, plan, progress)?)));
    s.stop();
    let (mem, flights) = plain?;
    Ok(report(plan, &cost, &mem, &flights))
}

fn p50_p99(s: &Summary) -> String {
    format!("{} / {}", f(s.p50), f(s.p99))
}

fn num(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x.fract() == 0.0 {
        bytes(x)
    } else {
        format!("{x:.1}")
    }
}

fn yes(b: bool) -> String {
    String::from(if b { "yes" } else { "**no**" })
}

fn report(plan: &Plan, cost: &OnCost, mem: &Memory, fl: &Flights) -> Hardened {
    // Structural edits beside the one-field edit of the same list.
    let mut kinds = Table::new(&[
        &format!(
            "patch frame on a record list ({} rounds of edit, insert, remove, append, remove; one at a time)",
            plan.rounds
        ),
        "frames",
        "frame sent → ack, ms p50 / p99",
        "frame sent → other device's change, ms p50 / p99",
        "ack p50 ÷ one-field edit's",
        "fan-out p50 ÷ one-field edit's",
        "within ×1.5 (issue #19)",
    ]);
    let mut verdicts = Vec::new();
    for r in &cost.lists {
        let (ea, ef) = r.op(Op::Edit);
        for op in [Op::Edit, Op::Insert, Op::Append, Op::Remove] {
            let (a, fo) = r.op(op);
            let (ra, rf) = (a.p50 / ea.p50, fo.p50 / ef.p50);
            let ok = ra <= MAX_KIND_RATIO && rf <= MAX_KIND_RATIO;
            if op != Op::Edit {
                verdicts.push((r.size, op, ra, rf, ok));
            }
            kinds.push(vec![
                format!("{} records: {}", bytes(r.size as f64), op.name()),
                a.n.to_string(),
                p50_p99(&a),
                p50_p99(&fo),
                format!("×{ra:.2}"),
                format!("×{rf:.2}"),
                if op == Op::Edit {
                    "(the reference)".into()
                } else if ok {
                    "met".into()
                } else {
                    "**not met**".into()
                },
            ]);
        }
    }

    // End to end, the lists side by side.
    let mut head = vec!["end to end".to_string()];
    head.extend(
        cost.lists
            .iter()
            .map(|r| format!("{} records", bytes(r.size as f64))),
    );
    if cost.lists.len() == 2 {
        head.push("ratio".into());
    }
    let head_refs: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut e2e = Table::new(&head_refs);
    let row = |what: &str, cell: &dyn Fn(&ListRun) -> (String, f64)| {
        let mut v = vec![what.to_string()];
        let cells: Vec<(String, f64)> = cost.lists.iter().map(cell).collect();
        v.extend(cells.iter().map(|c| c.0.clone()));
        if cells.len() == 2 {
            let r = cells[1].1 / cells[0].1;
            v.push(if r.is_finite() {
                format!("×{r:.2}")
            } else {
                String::new()
            });
        }
        v
    };
    let msd = |d: Duration| (f(ms(d)), ms(d));
    let p50 = |v: &[Duration]| {
        let s = summarize(v);
        (p50_p99(&s), s.p50)
    };
    let textual = |s: String| (s, f64::NAN);
    let medms = |v: &[Duration]| {
        let m = stats::median(v);
        (f(m), m)
    };
    e2e.push(row("value bytes", &|r| {
        (bytes(r.value_bytes as f64), r.value_bytes as f64)
    }));
    e2e.push(row("create: `PUT` → answer, ms", &|r| msd(r.create)));
    e2e.push(row(
        "create: `PUT` sent → other device's frame, ms",
        &|r| msd(r.create_fanout),
    ));
    e2e.push(row(
        &format!(
            "one-field edit by `PUT` ({} each): ack ms p50 / p99",
            plan.put_edits
        ),
        &|r| p50(&r.put_ack),
    ));
    e2e.push(row("  fan-out ms p50 / p99", &|r| p50(&r.put_fanout)));
    for op in [Op::Edit, Op::Insert, Op::Append, Op::Remove] {
        e2e.push(row(
            &format!("patch frame, {}: ack ms p50 / p99", op.name()),
            &|r| {
                let s = r.op(op).0;
                (p50_p99(&s), s.p50)
            },
        ));
        e2e.push(row("  fan-out ms p50 / p99", &|r| {
            let s = r.op(op).1;
            (p50_p99(&s), s.p50)
        }));
    }
    e2e.push(row(
        &format!(
            "`GET /api/sync/{{key}}`, warm, ms (median of {})",
            plan.get_reps
        ),
        &|r| medms(&r.get_key),
    ));
    e2e.push(row("  D1 rows read by one such `GET`", &|r| {
        (r.get_key_read.read_cell(), r.get_key_read.read_total())
    }));
    e2e.push(row(
        &format!("`GET /api/sync`, warm, ms (median of {})", plan.get_reps),
        &|r| medms(&r.get_all),
    ));
    e2e.push(row(
        "after a restart: first `GET /api/sync/{key}` (the hub rebuilds the list from D1), ms",
        &|r| r.cell("coldGet", msd(r.cold_get)),
    ));
    e2e.push(row("  D1 rows read by it", &|r| {
        (r.cold_read.read_cell(), r.cold_read.read_total())
    }));
    e2e.push(row("  then a second `GET /api/sync/{key}`, ms", &|r| {
        r.cell("secondGet", msd(r.warm_again))
    }));
    e2e.push(row(
        "`GET /api/sync/{key}/history` (the key's versions), ms",
        &|r| {
            r.cell(
                "history",
                (
                    format!("{} ({} entries)", f(ms(r.history_list)), r.history_entries),
                    ms(r.history_list),
                ),
            )
        },
    ));
    e2e.push(row(
        "`GET /api/sync/{key}/history/{v}` of the first version, ms",
        &|r| r.cell("firstVersion", msd(r.version_read)),
    ));
    e2e.push(row(
        "`GET …/records/{id}/history` of an edited record, ms",
        &|r| {
            r.cell(
                "recordHistory",
                (
                    format!(
                        "{} ({} entries)",
                        f(ms(r.record_history)),
                        r.record_history_entries
                    ),
                    ms(r.record_history),
                ),
            )
        },
    ));
    e2e.push(row(
        "`POST …/records/{id}/restore` to its oldest kept version: answer, ms",
        &|r| match &r.restore_error {
            None => msd(r.restore),
            Some(e) => textual(format!("refused: {e}")),
        },
    ));
    e2e.push(row("  sent → other device's change, ms", &|r| {
        if r.restore_error.is_none() {
            msd(r.restore_fanout)
        } else {
            textual("-".into())
        }
    }));
    e2e.push(row(
        "the server's list equals the tool's copy after the patch frames",
        &|r| textual(yes(r.matches)),
    ));
    e2e.push(row("the first version reads back byte for byte", &|r| {
        textual(yes(r.version_matches))
    }));
    e2e.push(row(
        "after the restart the list reads back as before it",
        &|r| textual(yes(r.cold_matches)),
    ));
    e2e.push(row("conflicts reported (there should be none)", &|r| {
        textual(r.conflicts.to_string())
    }));

    // Retention.
    let mut ret = Table::new(&[
        &format!(
            "retention: a list, then {} one-field patch frames, one at a time (D1's counters, d1-cost log)",
            plan.retention_edits
        ),
        "rows read by a plain edit's commit",
        "retention runs seen",
        "rows read per retention run (above a plain commit), mean",
        "rows written per run",
        "rows read per edit, all batches",
        "first write after a restart: ms; rows its commit read; rows the wake's other batches read",
    ]);
    for r in &cost.retention {
        let (rr, rw) = r.mean_run();
        let runs: Vec<String> = r.runs.iter().map(|x| num(x.0)).collect();
        ret.push(vec![
            format!("{} records", bytes(r.size as f64)),
            num(r.plain_read),
            format!("{} ({})", r.runs.len(), runs.join(", ")),
            num(rr),
            num(rw),
            num(r.total_read / r.edits.max(1) as f64),
            match &r.wake_error {
                None => format!(
                    "{}; {}; {}",
                    f(ms(r.wake_write)),
                    r.wake_commit.read_cell(),
                    r.wake_other.read_cell()
                ),
                Some(e) => format!(
                    "**failed** after {} ms: {e}; rows read {}",
                    f(ms(r.wake_write)),
                    r.wake_other.read_cell()
                ),
            },
        ]);
    }

    // Memory.
    let mut memt = Table::new(&[
        "workerd resident memory (VmRSS of the workerd process, /proc)",
        "MiB",
        "peak so far (VmHWM), MiB",
        "growth, MiB",
    ]);
    let mib = |kb: u64| f(kb as f64 / 1024.0);
    for (i, (what, rss, hwm)) in mem.steps.iter().enumerate() {
        let growth = if i == 0 {
            String::new()
        } else {
            f((*rss as f64 - mem.steps[i - 1].1 as f64) / 1024.0)
        };
        memt.push(vec![what.clone(), mib(*rss), mib(*hwm), growth]);
    }
    let lists_growth = mem.at(1) - mem.at(0);
    let records = (mem.lists * mem.len) as f64;
    memt.push(vec![
        format!(
            "per record held ({} lists × {} records, {} bytes of text)",
            mem.lists,
            mem.len,
            bytes(mem.list_bytes as f64)
        ),
        format!(
            "{} bytes per record; ×{:.2} the text",
            bytes(lists_growth / records),
            lists_growth / mem.list_bytes as f64
        ),
        String::new(),
        String::new(),
    ]);
    if let Some((k, per)) = mem.marginal() {
        memt.push(vec![
            format!("per record, from the {k}th list's answer to the end (settled)",),
            format!("{} bytes per record", bytes(per)),
            String::new(),
            String::new(),
        ]);
    }
    memt.push(vec![
        "the whole values beside them (control)".into(),
        format!(
            "×{:.2} their text",
            (mem.at(2) - mem.at(1)) / mem.whole_bytes as f64
        ),
        String::new(),
        String::new(),
    ]);

    // Item 11.
    let mut flt = Table::new(&[
        "in flight (1 user, 1 socket, 1 KiB puts)",
        "run",
        "first",
        "fresh keys (a new user): acks/s (ack p50 / p99 ms)",
        &format!(
            "keys at {} versions: acks/s (ack p50 / p99 ms)",
            fl.depth.versions
        ),
        "fresh ÷ deep",
    ]);
    for (rep, n, fresh_first, fr, dp) in &fl.runs {
        flt.push(vec![
            n.to_string(),
            (rep + 1).to_string(),
            if *fresh_first { "fresh" } else { "deep" }.into(),
            fr.cell(),
            dp.cell(),
            format!("×{:.2}", fr.per_s / dp.per_s),
        ]);
    }

    // Targets.
    let mut targets = Table::new(&["target (issue #19)", "measured", "verdict"]);
    for (size, op, ra, rf, ok) in &verdicts {
        targets.push(vec![
            format!(
                "{} records, {}: ack and fan-out p50 within ×1.5 of a one-field edit",
                bytes(*size as f64),
                op.name()
            ),
            format!("×{ra:.2} / ×{rf:.2}"),
            if *ok { "met" } else { "**not met**" }.into(),
        ]);
    }
    if let (Some(a), Some(b)) = (cost.retention.first(), cost.retention.last()) {
        let (ra, rb) = (a.mean_run().0, b.mean_run().0);
        targets.push(vec![
            format!(
                "retention run cost independent of list length ({} → {} records)",
                bytes(a.size as f64),
                bytes(b.size as f64)
            ),
            format!(
                "{} → {} rows read per run (×{:.1})",
                num(ra),
                num(rb),
                rb / ra
            ),
            "see the table (no bound given)".into(),
        ]);
    }
    for r in &cost.lists {
        let all = r.matches
            && r.version_matches
            && r.cold_matches
            && r.restore_error.is_none()
            && r.errors.is_empty();
        targets.push(vec![
            format!(
                "{} records work end to end (patches, PUT, reads warm and cold, history, restore)",
                bytes(r.size as f64)
            ),
            format!(
                "list equal after patches: {}; first version: {}; after restart: {}; restore: {}{}",
                yes(r.matches),
                yes(r.version_matches),
                yes(r.cold_matches),
                if r.restore_error.is_none() {
                    "answered 200".to_string()
                } else {
                    "**refused**".into()
                },
                if r.errors.is_empty() {
                    String::new()
                } else {
                    let steps: Vec<&str> = r.errors.keys().copied().collect();
                    format!("; **refused**: {}", steps.join(", "))
                }
            ),
            if all { "met" } else { "**not met**" }.into(),
        ]);
    }
    targets.push(vec![
        "hub memory per held record".into(),
        format!(
            "{} bytes per record (workerd RSS growth over {} records)",
            bytes(lists_growth / records),
            bytes(records)
        ),
        "measured".into(),
    ]);

    let json = json!({
        "method": "see benches/load/hardened.rs",
        "plan": {"sizes": plan.sizes, "rounds": plan.rounds, "putEdits": plan.put_edits, "getReps": plan.get_reps,
                 "retentionSizes": plan.retention_sizes, "retentionEdits": plan.retention_edits,
                 "memoryLists": plan.memory_lists, "memoryLen": plan.memory_len,
                 "inFlight": plan.flight_ns, "reps": plan.flight_reps, "depth": plan.flight_depth,
                 "warmMs": ms2(plan.flight_warm), "windowMs": ms2(plan.flight_window)},
        "lists": cost.lists.iter().map(ListRun::json).collect::<Vec<_>>(),
        "retention": cost.retention.iter().map(Retention::json).collect::<Vec<_>>(),
        "memory": mem.json(),
        "freshVsDeep": {"deepSetup": fl.depth.json(),
                        "runs": fl.runs.iter().map(|(rep, n, ff, fr, dp)| json!({"rep": rep + 1, "inFlight": n, "freshFirst": ff, "fresh": fr.json(), "deep": dp.json()})).collect::<Vec<_>>()},
    });
    Hardened {
        tables: vec![kinds, e2e, ret, memt, flt, targets],
        json,
    }
}
