//! Issues #12 / #13, record-level storage: what a one-field edit of a long
//! list costs. For arrays of 100, 1,000 and 5,000 invoice-like objects of
//! about 200 bytes (compact JSON, as `JSON.stringify` writes it), one user
//! with a writer (REST only) and one other device (a WebSocket):
//!
//! - the key is created with `PUT /api/sync/{key}`, then edited N times, one
//!   field of one element each time (an invoice's `amount`, same length, so
//!   the value's size stays put), each `PUT` based on the version the
//!   previous one returned, one at a time;
//! - per edit: **D1 growth** (D1's own `meta.size_after`, the database size
//!   in bytes after each statement, from the Worker's `d1-cost` log: the
//!   largest size logged by the user's batches after the N edits minus the
//!   largest before them, divided by N; SQLite grows in 4 KiB pages, hence
//!   many edits), **D1 rows written** (`meta.rows_written`, index entries
//!   included, summed over the user's batches and divided by N), `PUT` →
//!   answer (**ack**) and `PUT` sent → the other socket's frame for that
//!   version (**fan-out**), and **bytes on the wire**: the writer's `PUT`
//!   body, the answer's body, and the payload of the frame the other device
//!   got (a WebSocket text frame's payload length);
//! - the same for a 1 KiB whole value (not a list), for comparison;
//! - all of that again over WebSocket (#13), for another user whose writer
//!   and other device both hold sockets that said `hello {patches: true}`
//!   (and were answered `patches: true`): the key is created with `PUT` (the
//!   5,000-element list's frame would pass the 1 MiB frame limit), then each
//!   one-field edit is a `patch` frame `{upserts: [the edited element's text,
//!   verbatim], removed: []}` based on the version of the previous `ack`,
//!   one at a time (the 1 KiB whole value: a `put` frame); ack = frame sent
//!   → its `ack`, fan-out = frame sent → the other socket's `change` for
//!   that version, bytes = the frames' payloads;
//! - then N more edits of each of those keys, taking turns (one edit of
//!   each key, then again): the ack and fan-out latencies in the tables are
//!   these, so that a busy moment of the shared machine falls on every size
//!   alike (those of the edits alone are in the JSON, `alone`); the patch
//!   keys take turns among themselves;
//! - a full read of the largest list beside one of a whole value of about
//!   the same size that is not a record list: the same array with a space
//!   after each comma between elements (`"}, {"`), which no `JSON.stringify`
//!   writes, so a record store keeps it whole. Each is the only key of a
//!   user of its own, created and given the same few edits, and read with
//!   `GET /api/sync` (as before #12, when there was no single-key `GET`)
//!   and with `GET /api/sync/{key}` (median of 5 each);
//! - 200 one-field edits of a 500-element, about 119 KB
//!   `accountingTransactions` array: the database's growth.
//!
//! It runs on a Worker with `D1_COST_LOG=1` (`--records`: one of its own;
//! in the full and quick runs, the D1 cost server once `d1cost.rs` is done) (the log lines cost
//! the timed edits a little; every row of its tables pays the same). Where
//! the growth went: SQLite's `dbstat` (bytes of pages per table and index,
//! and the free pages) on a copy of the local D1 taken before and after the
//! timed edits, read with python3's sqlite3 ("n/a" without it). The local
//! D1 files' size (`*.sqlite` + `-wal`) is in the JSON as a cross-check
//! (`fileGrowthBytesPerEdit`): the WAL makes it lag and jump, so the tables
//! use `meta.size_after`.

use crate::d1log::{Cost, Line, Log};
use crate::scenarios::{Target, WAIT};
use crate::server::Server;
use crate::stats::{self, f, ms2, summarize, Summary};
use crate::ws::Conn;
use crate::{Progress, Table};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Targets from the issues, shown beside what was measured.
const MAX_GROWTH_PER_EDIT: f64 = 2048.0;
const MAX_ROWS_PER_EDIT: f64 = 4.0;
const MAX_LATENCY_RATIO: f64 = 1.5;
const MAX_WIRE_BYTES: f64 = 2048.0;
const MAX_ACCOUNTING_GROWTH: f64 = 500.0 * 1024.0;

pub struct Plan {
    pub sizes: Vec<usize>,
    /// Timed edits per list (and of the 1 KiB value).
    pub edits: usize,
    /// Edits before the timed ones (not counted anywhere).
    pub warm: usize,
    pub get_reps: usize,
    /// Edits of the accountingTransactions array.
    pub accounting_edits: usize,
    pub accounting_len: usize,
}

impl Plan {
    pub fn new(quick: bool, edits: Option<usize>) -> Plan {
        if quick {
            Plan {
                sizes: vec![100, 5000],
                edits: edits.unwrap_or(5),
                warm: 1,
                get_reps: 1,
                accounting_edits: 10,
                accounting_len: 500,
            }
        } else {
            Plan {
                sizes: vec![100, 1000, 5000],
                edits: edits.unwrap_or(100),
                warm: 3,
                get_reps: 5,
                accounting_edits: 200,
                accounting_len: 500,
            }
        }
    }
}

pub struct Records {
    pub tables: Vec<Table>,
    pub json: Value,
}

// ------------------------------------------------------------------ values

/// A small deterministic generator (xorshift), so every run edits the same
/// elements the same way.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const CLIENTS: &[&str] = &[
    "Harbor Lights Studio",
    "Northwind Pictures",
    "Blue Fern Media",
    "Kestrel & Finch",
    "Orchard Sound",
    "Marlow Films",
    "Copperline Games",
    "Sable Theatre Co.",
];
const STATUSES: &[&str] = &["draft", "sent", "paid", "overdue"];
const CATEGORIES: &[&str] = &[
    "Software",
    "Equipment",
    "Travel",
    "Studio rent",
    "Session players",
    "Licensing",
    "Income",
];

/// A money amount as `JSON.stringify` writes it, always `d+.dd` with a last
/// digit other than 0 (so no digit is dropped) and `digits` digits before
/// the point: an edit changes the value, never its length.
fn amount(rng: &mut Rng, digits: u32) -> String {
    let lo = 10u64.pow(digits - 1);
    let whole = lo + rng.next() % (9 * lo);
    let cents = 1 + rng.next() % 99;
    let cents = if cents.is_multiple_of(10) {
        cents + 1
    } else {
        cents
    };
    format!("{whole}.{cents:02}")
}

/// Pads `notes` so the element's JSON text is `target` bytes long.
fn padded(make: impl Fn(&str) -> String, target: usize) -> String {
    let base = make("");
    let fill = "Net 30. Two revisions included; stems delivered as WAV 48k/24. ";
    let need = target.saturating_sub(base.len());
    let notes: String = fill.chars().cycle().take(need).collect();
    make(notes.trim_end())
}

/// One element of a list: its fields, so an edit can change one of them and
/// write the element again exactly as `JSON.stringify` would.
#[derive(Clone)]
pub(crate) struct Element {
    pub(crate) text: String,
    /// The `"amount":` value inside `text`: where an edit writes.
    amount_at: (usize, usize),
}

impl Element {
    pub(crate) fn new(text: String) -> Element {
        let at = text.find("\"amount\":").expect("an amount field") + "\"amount\":".len();
        let end = at + text[at..].find(',').expect("a field after amount");
        Element {
            text,
            amount_at: (at, end),
        }
    }

    /// The same element with another amount of the same length.
    pub(crate) fn edit(&mut self, rng: &mut Rng) {
        let (at, end) = self.amount_at;
        let old = &self.text[at..end];
        let digits = old.find('.').unwrap_or(old.len()) as u32;
        let mut new = amount(rng, digits.max(1));
        while new == old {
            new = amount(rng, digits.max(1));
        }
        self.text.replace_range(at..end, &new);
    }
}

/// `n` invoices of about 200 bytes each (190 to 210).
pub(crate) fn invoices(n: usize, rng: &mut Rng) -> Vec<Element> {
    (0..n)
        .map(|i| {
            let client = CLIENTS[i % CLIENTS.len()];
            let status = STATUSES[rng.below(STATUSES.len())];
            let amt = amount(rng, 4);
            let month = 1 + i % 12;
            let day = 1 + i % 28;
            let target = 190 + rng.below(21);
            let make = |notes: &str| {
                format!(
                    r#"{{"id":"inv-{i:05}-{tag:04x}","client":"{client}","project":"Score, episode {ep}","amount":{amt},"currency":"USD","status":"{status}","issued":"2026-{month:02}-{day:02}","due":"2026-{due:02}-{day:02}","notes":"{notes}"}}"#,
                    tag = (i * 2654435761) & 0xffff,
                    ep = 1 + i % 24,
                    due = 1 + (month % 12),
                )
            };
            Element::new(padded(make, target))
        })
        .collect()
}

/// `n` accounting transactions, sized so that 500 of them make about
/// 119 KB (238 bytes each, 228 to 248).
fn transactions(n: usize, rng: &mut Rng) -> Vec<Element> {
    (0..n)
        .map(|i| {
            let category = CATEGORIES[rng.below(CATEGORIES.len())];
            let kind = if category == "Income" {
                "income"
            } else {
                "expense"
            };
            let amt = amount(rng, 3);
            let target = 228 + rng.below(21);
            let make = |notes: &str| {
                format!(
                    r#"{{"id":"txn-{i:05}-{tag:04x}","date":"2026-{m:02}-{d:02}","description":"{category} for {client}","amount":{amt},"category":"{category}","type":"{kind}","account":"Business checking","reconciled":false,"notes":"{notes}"}}"#,
                    tag = (i * 40503) & 0xffff,
                    m = 1 + i % 12,
                    d = 1 + i % 28,
                    client = CLIENTS[i % CLIENTS.len()],
                )
            };
            Element::new(padded(make, target))
        })
        .collect()
}

/// `[` + the texts joined by `sep` + `]`: with "," what `JSON.stringify`
/// writes.
pub(crate) fn joined(elements: &[Element], sep: &str) -> String {
    let mut s = String::from("[");
    for (i, e) in elements.iter().enumerate() {
        if i > 0 {
            s.push_str(sep);
        }
        s.push_str(&e.text);
    }
    s.push(']');
    s
}

// ------------------------------------------------------------------ D1 size

/// The largest database size any of `lines` logged.
pub(crate) fn max_size(lines: &[Line]) -> Option<f64> {
    lines.iter().filter_map(|l| l.size).reduce(f64::max)
}

/// Bytes of the local D1's SQLite files (database and WAL) under `dir`.
fn d1_file_bytes(dir: &Path) -> u64 {
    fn walk(p: &Path, in_d1: bool, total: &mut u64) {
        let Ok(entries) = std::fs::read_dir(p) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let in_d1 = in_d1 || name.contains("D1DatabaseObject");
            if path.is_dir() {
                walk(&path, in_d1, total);
            } else if in_d1 && (name.ends_with(".sqlite") || name.ends_with(".sqlite-wal")) {
                *total += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    let mut total = 0;
    walk(dir, false, &mut total);
    total
}

/// Bytes of pages by table or index name.
type Pages = BTreeMap<String, f64>;

/// Bytes of pages per table and index of the local D1 (SQLite's `dbstat`,
/// on a copy of the files at rest, read by python3's sqlite3), plus the free
/// pages; `None` when that cannot be read (no python3, say).
fn d1_pages(state_dir: &Path) -> Option<Pages> {
    let src = state_dir.join("data/v3/d1/miniflare-D1DatabaseObject");
    let dst = state_dir.join("records-dbstat");
    let listing = || -> Option<Vec<(String, u64)>> {
        let mut v: Vec<(String, u64)> = std::fs::read_dir(&src)
            .ok()?
            .flatten()
            .map(|e| {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                (e.file_name().to_string_lossy().into_owned(), len)
            })
            .filter(|(n, _)| !n.ends_with("-shm"))
            .collect();
        v.sort();
        Some(v)
    };
    for _ in 0..5 {
        let before = listing()?;
        let _ = std::fs::remove_dir_all(&dst);
        std::fs::create_dir_all(&dst).ok()?;
        for (name, _) in &before {
            let _ = std::fs::copy(src.join(name), dst.join(name));
        }
        if listing()? != before {
            thread::sleep(Duration::from_millis(100));
            continue;
        }
        let script = r#"
import glob, json, sqlite3, sys
out = {}
for db in glob.glob(sys.argv[1] + "/*.sqlite"):
    c = sqlite3.connect(db)
    for name, size in c.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
        out[name] = out.get(name, 0) + size
    free = c.execute("PRAGMA freelist_count").fetchone()[0] * c.execute("PRAGMA page_size").fetchone()[0]
    out["(free pages)"] = out.get("(free pages)", 0) + free
print(json.dumps(out))
"#;
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&dst)
            .output()
            .ok();
        let _ = std::fs::remove_dir_all(&dst);
        let out = out?;
        if !out.status.success() {
            return None;
        }
        return serde_json::from_slice(&out.stdout).ok();
    }
    let _ = std::fs::remove_dir_all(&dst);
    None
}

/// `after - before` per table and index, divided by `n`, those that changed.
fn pages_delta(before: &Option<Pages>, after: &Option<Pages>, n: usize) -> Option<Pages> {
    let (b, a) = (before.as_ref()?, after.as_ref()?);
    let names: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    Some(
        names
            .into_iter()
            .filter_map(|k| {
                let d = a.get(k).copied().unwrap_or(0.0) - b.get(k).copied().unwrap_or(0.0);
                (d != 0.0).then(|| (k.clone(), d / n.max(1) as f64))
            })
            .collect(),
    )
}

// ------------------------------------------------------------------ edits

/// What the other device's socket got: (key, version, type, payload bytes, when).
pub(crate) type Frame = (String, Option<u64>, String, usize, Instant);

/// One key edited `edits` times through `PUT`, the other device listening.
struct Edits {
    label: String,
    elements: Option<usize>,
    value_bytes: usize,
    create: Duration,
    /// Edits of this key alone, one after another (growth and rows are theirs).
    ack: Vec<Duration>,
    fanout: Vec<Duration>,
    /// Edits taking turns with the other keys' (`mixed`): the latencies the
    /// tables show, so that a busy moment of the shared machine falls on
    /// every size alike.
    mixed_ack: Vec<Duration>,
    mixed_fanout: Vec<Duration>,
    put_body: Vec<usize>,
    answer_body: Vec<usize>,
    frame_bytes: Vec<usize>,
    frame_types: std::collections::BTreeSet<String>,
    conflicts: usize,
    cost: Cost,
    /// D1's size before and after the timed edits (`meta.size_after`).
    size: (Option<f64>, Option<f64>),
    files: (u64, u64),
    /// Page bytes per table and index (`dbstat`) before and after.
    pages: (Option<Pages>, Option<Pages>),
    edits: usize,
}

impl Edits {
    fn growth(&self) -> Option<f64> {
        match self.size {
            (Some(a), Some(b)) => Some((b - a) / self.edits as f64),
            _ => None,
        }
    }

    fn file_growth(&self) -> f64 {
        (self.files.1 as f64 - self.files.0 as f64) / self.edits as f64
    }

    /// (ack, fan-out): of the edits taking turns with the other keys', or,
    /// for a key that had none, of its own.
    fn latency(&self) -> (Summary, Summary) {
        if self.mixed_ack.is_empty() {
            (summarize(&self.ack), summarize(&self.fanout))
        } else {
            (summarize(&self.mixed_ack), summarize(&self.mixed_fanout))
        }
    }

    /// Growth per edit by table and index, from `dbstat`.
    fn pages_growth(&self) -> Option<Pages> {
        pages_delta(&self.pages.0, &self.pages.1, self.edits)
    }

    fn rows(&self) -> Option<f64> {
        self.cost
            .found()
            .then(|| self.cost.written_total() / self.edits as f64)
    }

    fn json(&self) -> Value {
        let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len().max(1) as f64;
        json!({
            "label": self.label, "elements": self.elements, "valueBytes": self.value_bytes,
            "edits": self.edits, "createMs": ms2(self.create),
            "ack": self.latency().0.json(), "fanout": self.latency().1.json(),
            "takingTurns": {"ackMs": stats::ms2_all(&self.mixed_ack), "fanoutMs": stats::ms2_all(&self.mixed_fanout)},
            "alone": {"ack": summarize(&self.ack).json(), "fanout": summarize(&self.fanout).json(),
                      "ackMs": stats::ms2_all(&self.ack), "fanoutMs": stats::ms2_all(&self.fanout)},
            "putBodyBytes": mean(&self.put_body), "answerBodyBytes": mean(&self.answer_body),
            "frameBytes": mean(&self.frame_bytes), "frameTypes": self.frame_types,
            "conflicts": self.conflicts,
            "d1SizeBefore": self.size.0, "d1SizeAfter": self.size.1,
            "growthBytesPerEdit": self.growth(),
            "fileBytesBefore": self.files.0, "fileBytesAfter": self.files.1,
            "fileGrowthBytesPerEdit": self.file_growth(),
            "dbstatGrowthBytesPerEdit": self.pages_growth(),
            "rowsWrittenPerEdit": self.rows(),
            "d1PerEdit": self.cost.per(self.edits).json(),
        })
    }
}

/// The key's value, edited one field at a time.
enum Subject {
    List(Vec<Element>),
    /// A whole value (not a list): each edit writes a new one of the same size.
    Whole(usize),
}

impl Subject {
    fn text(&self, i: usize) -> String {
        match self {
            Subject::List(e) => joined(e, ","),
            Subject::Whole(n) => {
                let mut v = format!("whole value {i:06} ");
                v.extend(std::iter::repeat_n('x', n.saturating_sub(v.len())));
                v
            }
        }
    }

    /// Edits one field; the index of the element edited (a list's).
    fn edit(&mut self, rng: &mut Rng) -> Option<usize> {
        if let Subject::List(e) = self {
            let i = rng.below(e.len());
            e[i].edit(rng);
            Some(i)
        } else {
            None
        }
    }

    /// The WebSocket frame of edit `n` (element `at` edited): a `patch` of a
    /// list, the edited element's text verbatim (written by hand, not
    /// through `serde_json::Value`, which would rewrite its numbers); a
    /// `put` of a whole value.
    fn frame(&self, key: &str, rid: &str, base: u64, at: Option<usize>, n: usize) -> String {
        let q = |s: &str| Value::String(s.to_string()).to_string();
        match (self, at) {
            (Subject::List(e), Some(i)) => format!(
                r#"{{"type":"patch","key":{},"requestId":{},"baseVersion":{base},"upserts":[{}],"removed":[]}}"#,
                q(key),
                q(rid),
                e[i].text
            ),
            _ => format!(
                r#"{{"type":"put","key":{},"value":{},"baseVersion":{base},"requestId":{}}}"#,
                q(key),
                q(&self.text(n)),
                q(rid)
            ),
        }
    }
}

/// How the writer sends its edits.
enum Writer {
    /// `PUT /api/sync/{key}`.
    Rest,
    /// A socket that said `patches: true` (and was answered so): a `patch`
    /// frame for a list, a `put` frame for a whole value, each answered by
    /// an `ack`.
    Ws(Box<Conn>),
}

/// Sends `frame` on the writer's socket and waits for its `ack` (skipping
/// other frames: presence, the changes of the REST creates); (version, ack
/// bytes, time).
pub(crate) fn ws_write(
    conn: &mut Conn,
    frame: &str,
    rid: &str,
    conflicts: &mut usize,
) -> Result<(u64, usize, Duration), String> {
    let t0 = Instant::now();
    conn.send(frame)?;
    let deadline = t0 + WAIT;
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .ok_or_else(|| format!("no ack for {rid} within {WAIT:?}"))?;
        let Some(text) = conn.read(left)? else {
            continue;
        };
        let took = t0.elapsed();
        // Only small frames can be the answer; the rest are skipped unparsed.
        if text.len() > 4096 || !text.contains(rid) {
            continue;
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if v["requestId"] != rid {
            continue;
        }
        match v["type"].as_str() {
            Some("ack") => {
                if !v["conflict"].is_null() {
                    *conflicts += 1;
                }
                let version = v["version"]
                    .as_u64()
                    .ok_or_else(|| format!("ack for {rid} without a version: {v}"))?;
                return Ok((version, text.len(), took));
            }
            _ => return Err(format!("{rid}: answered {text}")),
        }
    }
}

/// Sends `hello {since: 0, patches: true}`; an error unless the answer
/// says `patches: true`.
fn hello_patches(c: &mut Conn) -> Result<(), String> {
    hello_patches_since(c, 0)
}

/// `hello {since, patches: true}`, as `hello_patches`.
pub(crate) fn hello_patches_since(c: &mut Conn, since: u64) -> Result<(), String> {
    c.send(&format!(
        r#"{{"type":"hello","since":{since},"patches":true}}"#
    ))?;
    let deadline = Instant::now() + WAIT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if let Some(v) = c.read_json(left)? {
            if v["type"] == "changes" {
                return if v["patches"] == true {
                    Ok(())
                } else {
                    Err(format!(
                        "hello with patches: true answered without patches: true ({v})"
                    ))
                };
            }
        }
    }
    Err("no changes frame".into())
}

/// `PUT /api/sync/{key}`; (version, answer bytes, time).
pub(crate) fn put(
    t: &Target,
    token: &str,
    key: &str,
    body: &[u8],
    conflicts: &mut usize,
) -> Result<(u64, usize, Duration), String> {
    let path = format!("/api/sync/{key}");
    let (status, resp, took) = t.http("PUT", &path, Some(token), Some(body))?;
    let v: Value = serde_json::from_slice(&resp).unwrap_or(Value::Null);
    if status != 200 {
        let text = String::from_utf8_lossy(&resp);
        return Err(format!(
            "PUT {path}: {status} {}",
            &text[..text.len().min(300)]
        ));
    }
    if !v["conflict"].is_null() {
        *conflicts += 1;
    }
    let version = v["version"]
        .as_u64()
        .ok_or_else(|| format!("PUT {path}: no version in {v}"))?;
    Ok((version, resp.len(), took))
}

pub(crate) fn body(value: &str, base: Option<u64>, rid: &str) -> Vec<u8> {
    let mut b = json!({"value": value, "requestId": rid});
    if let Some(v) = base {
        b["baseVersion"] = json!(v);
    }
    b.to_string().into_bytes()
}

/// Waits for the other device's frame about `key` at `version`: any frame
/// naming the key with that version (or none), so a new frame type for
/// record edits counts too.
pub(crate) fn await_frame(
    rx: &mpsc::Receiver<Frame>,
    key: &str,
    version: u64,
) -> Result<(String, usize, Instant), String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .ok_or_else(|| format!("no frame for {key} v{version} within {WAIT:?}"))?;
        match rx.recv_timeout(left) {
            Ok((k, v, ty, len, at)) if k == key && v.is_none_or(|v| v == version) => {
                return Ok((ty, len, at))
            }
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(e) => return Err(format!("the listening socket stopped: {e}")),
        }
    }
}

/// A key being edited: its value, its version, its own edits.
struct Cursor {
    key: String,
    subject: Subject,
    version: u64,
    rng: Rng,
    /// Edits made so far (also what makes a whole value new each time).
    n: usize,
}

/// One edit of one field and what it cost: (ack, fan-out, PUT body bytes,
/// answer bytes, frame bytes, frame type).
type One = (Duration, Duration, usize, usize, usize, String);

/// Edits `c` once (through `PUT`, or a frame on the writer's socket),
/// waits for the other device's frame.
fn edit_one(
    t: &Target,
    token: &str,
    w: &mut Writer,
    rx: &mpsc::Receiver<Frame>,
    c: &mut Cursor,
    conflicts: &mut usize,
) -> Result<One, String> {
    let at = c.subject.edit(&mut c.rng);
    c.n += 1;
    let rid = format!("{}-edit-{}", c.key, c.n);
    let (t0, (v, answer, took), sent) = match w {
        Writer::Rest => {
            let b = body(&c.subject.text(c.n), Some(c.version), &rid);
            let t0 = Instant::now();
            (t0, put(t, token, &c.key, &b, conflicts)?, b.len())
        }
        Writer::Ws(conn) => {
            let frame = c.subject.frame(&c.key, &rid, c.version, at, c.n);
            let t0 = Instant::now();
            (t0, ws_write(conn, &frame, &rid, conflicts)?, frame.len())
        }
    };
    let (ty, len, at) = await_frame(rx, &c.key, v)?;
    c.version = v;
    Ok((
        took,
        at.saturating_duration_since(t0),
        sent,
        answer,
        len,
        ty,
    ))
}

/// Creates `key` with `subject`, then `warm` + `edits` one-field edits, one
/// after another; the cursor goes on from there.
#[allow(clippy::too_many_arguments)]
fn edit_run(
    t: &Target,
    s: &Server,
    log: &mut Log,
    (token, uid): (&str, &str),
    w: &mut Writer,
    rx: &mpsc::Receiver<Frame>,
    label: String,
    key: &str,
    subject: Subject,
    edits: usize,
    warm: usize,
    rng: Rng,
) -> Result<(Edits, Cursor), String> {
    let mut conflicts = 0;
    let text = subject.text(0);
    let value_bytes = text.len();
    let elements = match &subject {
        Subject::List(e) => Some(e.len()),
        Subject::Whole(_) => None,
    };
    let mark = log.mark();
    let rid = format!("{key}-create");
    // Created with `PUT` whatever the writer (the 5,000-element list's frame
    // would be above the 1 MiB frame limit).
    let (version, _, create) = put(t, token, key, &body(&text, None, &rid), &mut conflicts)?;
    await_frame(rx, key, version)?;
    let mut c = Cursor {
        key: key.to_string(),
        subject,
        version,
        rng,
        n: 0,
    };
    for _ in 0..warm {
        edit_one(t, token, w, rx, &mut c, &mut conflicts)?;
    }
    let before = max_size(&log.wait(&mark, uid));
    let mark = log.mark();
    let files_before = d1_file_bytes(&s.state_dir);
    let pages_before = d1_pages(&s.state_dir);
    let mut e = Edits {
        label,
        elements,
        value_bytes,
        create,
        ack: Vec::new(),
        fanout: Vec::new(),
        mixed_ack: Vec::new(),
        mixed_fanout: Vec::new(),
        put_body: Vec::new(),
        answer_body: Vec::new(),
        frame_bytes: Vec::new(),
        frame_types: Default::default(),
        conflicts: 0,
        cost: Cost::default(),
        size: (before, None),
        files: (files_before, 0),
        pages: (pages_before, None),
        edits,
    };
    for _ in 0..edits {
        let (ack, fan, sent, answer, got, ty) = edit_one(t, token, w, rx, &mut c, &mut conflicts)?;
        e.ack.push(ack);
        e.fanout.push(fan);
        e.put_body.push(sent);
        e.answer_body.push(answer);
        e.frame_bytes.push(got);
        e.frame_types.insert(ty);
    }
    let lines = log.wait(&mark, uid);
    e.cost = Cost::of(&lines);
    e.size.1 = max_size(&lines);
    e.files.1 = d1_file_bytes(&s.state_dir);
    e.pages.1 = d1_pages(&s.state_dir);
    e.conflicts = conflicts;
    Ok((e, c))
}

/// `edits` more edits of every key, taking turns (one edit of each, then
/// again), for the latencies.
fn mixed(
    t: &Target,
    token: &str,
    w: &mut Writer,
    rx: &mpsc::Receiver<Frame>,
    keys: &mut [(Edits, Cursor)],
    edits: usize,
) -> Result<(), String> {
    for _ in 0..edits {
        for (e, c) in keys.iter_mut() {
            let (ack, fan, ..) = edit_one(t, token, w, rx, c, &mut e.conflicts)?;
            e.mixed_ack.push(ack);
            e.mixed_fanout.push(fan);
        }
    }
    Ok(())
}

/// A new user whose only key is `key`: `elements` joined by `sep`, then
/// `edits` one-field edits (the same ones for any `sep`); (token, value
/// bytes).
fn get_setup(
    t: &Target,
    key: &str,
    elements: &[Element],
    sep: &str,
    edits: usize,
) -> Result<(String, usize), String> {
    let room = t.room(1)?;
    let token = room.user()?.token.clone();
    let mut elements = elements.to_vec();
    let mut rng = Rng(0x6e7);
    let mut c = 0;
    let text = joined(&elements, sep);
    let mut version = put(t, &token, key, &body(&text, None, "get-0"), &mut c)?.0;
    for i in 0..edits {
        let at = rng.below(elements.len());
        elements[at].edit(&mut rng);
        let rid = format!("get-{}", i + 1);
        let b = body(&joined(&elements, sep), Some(version), &rid);
        version = put(t, &token, key, &b, &mut c)?.0;
    }
    Ok((token, joined(&elements, sep).len()))
}

/// `GET path` (the user's whole `/api/sync`, or one key's
/// `/api/sync/{key}`), `reps` times: (times, answer bytes).
fn get(t: &Target, token: &str, path: &str, reps: usize) -> Result<(Vec<Duration>, usize), String> {
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..reps {
        let (status, resp, took) = t.http("GET", path, Some(token), None)?;
        if status != 200 {
            return Err(format!("GET {path}: {status}"));
        }
        bytes = resp.len();
        times.push(took);
    }
    Ok((times, bytes))
}

/// Reads of one path: (times, answer bytes) of the list, of the whole value.
type Pair = ((Vec<Duration>, usize), (Vec<Duration>, usize));

/// A full read, both ways, of a list and of the whole value of its size.
struct Reads {
    /// `GET /api/sync`.
    all: Pair,
    /// `GET /api/sync/{key}`.
    one: Pair,
}

// ------------------------------------------------------------------ run

/// Starts a Worker that logs its D1 costs, measures, stops it.
pub fn run(plan: &Plan, progress: &Progress) -> Result<Records, String> {
    let s = Server::start("bench-records", &crate::cost_vars())
        .map_err(|e| format!("the Worker (records) did not start: {e}"))?;
    let r = run_on(&s, plan, progress);
    s.stop();
    r
}

/// Measures on `s`, a Worker started with `crate::cost_vars()`.
pub fn run_on(s: &Server, plan: &Plan, progress: &Progress) -> Result<Records, String> {
    let mut log = Log::new(&s.state_dir);
    let t = Target::ours(s);
    let room = t.room(2)?;
    let user = room.user()?;
    let me = (user.token.as_str(), user.user_id.as_str());
    let listener = t.connect(&room, 1)?;
    // The patch scenario: a user of its own, whose writer and other device
    // both hold sockets that said `patches: true`.
    let proom = t.room(2)?;
    let puser = proom.user()?;
    let pme = (puser.token.as_str(), puser.user_id.as_str());
    let mut pwriter = t.connect(&proom, 0)?;
    let mut pother = t.connect(&proom, 1)?;
    hello_patches(&mut pwriter)?;
    hello_patches(&mut pother)?;
    let mut pw = Writer::Ws(Box::new(pwriter));
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<Frame>();
    let (ptx, prx) = mpsc::channel::<Frame>();
    // Each list its own seed: the same data and edits whatever the plan.
    let seed = |n: usize, kind: u64| Rng(0x5eed_0012_0013 ^ ((n as u64) << 20) ^ kind);

    let result = thread::scope(|scope| {
        let stop = &stop;
        scope.spawn(move || listen(listener, tx, stop));
        scope.spawn(move || listen(pother, ptx, stop));
        let r = (|| -> Result<Records, String> {
            // The PUT edits (issue #12's figures), then the same edits as
            // patch frames (#13), each with a 1 KiB whole value beside it.
            let mut all_runs = Vec::new();
            let mut largest: Option<(usize, Vec<Element>)> = None;
            for (w, who, rx, suffix) in [
                (&mut Writer::Rest, me, &rx, ""),
                (&mut pw, pme, &prx, ", patch frame"),
            ] {
                let mut runs = Vec::new();
                for &n in &plan.sizes {
                    let mut rng = seed(n, 1);
                    let elements = invoices(n, &mut rng);
                    let key = format!("invoices-{n}");
                    let r = edit_run(
                        &t,
                        s,
                        &mut log,
                        who,
                        w,
                        rx,
                        format!("{n} invoices{suffix}"),
                        &key,
                        Subject::List(elements.clone()),
                        plan.edits,
                        plan.warm,
                        rng,
                    )?;
                    progress.note(format!(
                        "records: {n} elements ({} bytes), {} edits{suffix}",
                        r.0.value_bytes, plan.edits
                    ));
                    runs.push(r);
                    largest = Some((n, elements));
                }
                let rng = seed(1024, 2);
                let label = if suffix.is_empty() {
                    "1 KiB whole value (not a list)"
                } else {
                    "1 KiB whole value (not a list), put frame"
                };
                let whole = edit_run(
                    &t,
                    s,
                    &mut log,
                    who,
                    w,
                    rx,
                    label.into(),
                    "note-1k",
                    Subject::Whole(1024),
                    plan.edits,
                    plan.warm,
                    rng,
                )?;
                runs.push(whole);
                progress.note(format!("records: {label} done"));
                mixed(&t, who.0, w, rx, &mut runs, plan.edits)?;
                progress.note(format!(
                    "records: {} more edits of each key, taking turns{suffix}",
                    plan.edits
                ));
                all_runs.push(runs.into_iter().map(|(e, _)| e).collect::<Vec<Edits>>());
            }
            let patches = all_runs.pop().unwrap_or_default();
            let runs = all_runs.pop().unwrap_or_default();

            // A full read of the largest list beside a whole value of about
            // its size: each the only key of a user of its own, read with
            // `GET /api/sync` (as before #12) and `GET /api/sync/{key}`. Both
            // get the same edits first (the list as records, the other whole).
            let (n, elements) = largest.ok_or("no sizes")?;
            let list_key = format!("invoices-{n}");
            let (list_token, list_value) = get_setup(&t, &list_key, &elements, ",", plan.warm)?;
            let (spaced_token, spaced_value) =
                get_setup(&t, &list_key, &elements, ", ", plan.warm)?;
            let one_path = format!("/api/sync/{list_key}");
            let mut reads = Reads {
                all: Default::default(),
                one: Default::default(),
            };
            for (path, out) in [
                ("/api/sync", &mut reads.all),
                (one_path.as_str(), &mut reads.one),
            ] {
                // One warm read each, then alternating.
                get(&t, &list_token, path, 1)?;
                get(&t, &spaced_token, path, 1)?;
                for _ in 0..plan.get_reps {
                    let (a, b) = get(&t, &list_token, path, 1)?;
                    out.0 .0.extend(a);
                    out.0 .1 = b;
                    let (a, b) = get(&t, &spaced_token, path, 1)?;
                    out.1 .0.extend(a);
                    out.1 .1 = b;
                }
            }
            progress.note("records: GET done");

            // 200 edits of a 500-element accountingTransactions array.
            let mut rng = seed(plan.accounting_len, 3);
            let tx_elems = transactions(plan.accounting_len, &mut rng);
            let (acct, _) = edit_run(
                &t,
                s,
                &mut log,
                me,
                &mut Writer::Rest,
                &rx,
                format!("{} accountingTransactions", plan.accounting_len),
                "accountingTransactions",
                Subject::List(tx_elems),
                plan.accounting_edits,
                0,
                rng,
            )?;
            progress.note(format!(
                "records: {} edits of accountingTransactions ({} bytes) done",
                plan.accounting_edits, acct.value_bytes
            ));

            let read_json = |path: &str, (list, whole): &Pair| {
                json!({
                    "request": path,
                    "recordList": {"key": list_key, "valueBytes": list_value, "answerBytes": list.1,
                                   "ms": stats::ms2_all(&list.0), "medianMs": stats::r2(stats::median(&list.0))},
                    "wholeValue": {"key": list_key, "separator": ", ", "valueBytes": spaced_value, "answerBytes": whole.1,
                                   "ms": stats::ms2_all(&whole.0), "medianMs": stats::r2(stats::median(&whole.0))},
                })
            };
            let get_json = json!({
                "elements": n,
                "request": "GET /api/sync of a user whose only key it is",
                "recordList": read_json("GET /api/sync", &reads.all)["recordList"],
                "wholeValue": read_json("GET /api/sync", &reads.all)["wholeValue"],
                "oneKey": read_json("GET /api/sync/{key}", &reads.one),
            });
            let tables = tables(
                plan,
                &runs,
                &patches,
                &acct,
                n,
                (list_value, spaced_value),
                &reads,
            );
            Ok(Records {
                tables,
                json: json!({
                    "method": "one user: a REST writer (PUT /api/sync/{key}, each based on the version the previous answer gave, one at a time) and one other device on a WebSocket (no hello: whole values); growth = D1 meta.size_after (largest logged after the timed edits minus largest before) / edits; rows = sum of meta.rows_written of the user's batches / edits; fan-out = PUT sent -> the other socket's frame for that version; frame bytes = WebSocket text payload length. patches: another user, the same keys and edits, whose writer and other device hold sockets that said hello {patches: true} (answered patches: true); each edit a patch frame {upserts: [the edited element verbatim], removed: []} (the 1 KiB whole value: a put frame), based on the version of the previous ack, one at a time; ack = frame sent -> ack; fan-out = frame sent -> the other socket's change for that version",
                    "editsPerKey": plan.edits, "warmEdits": plan.warm,
                    "edits": runs.iter().map(Edits::json).collect::<Vec<_>>(),
                    "patches": patches.iter().map(Edits::json).collect::<Vec<_>>(),
                    "get": get_json,
                    "accounting": acct.json(),
                }),
            })
        })();
        stop.store(true, Ordering::Relaxed);
        r
    });
    if let Writer::Ws(c) = pw {
        c.close();
    }
    drop(t);
    result
}

/// Reads the other device's socket until `stop`, passing on every frame
/// that names a key.
pub(crate) fn listen(mut c: Conn, tx: mpsc::Sender<Frame>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match c.read(Duration::from_millis(200)) {
            Ok(Some(text)) => {
                let at = Instant::now();
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if let Some(key) = v["key"].as_str() {
                    let mut ty = v["type"].as_str().unwrap_or("?").to_string();
                    if v["patch"].is_object() {
                        ty.push_str(" (patch)");
                    } else if v["value"].is_string() {
                        ty.push_str(" (value)");
                    }
                    let _ = tx.send((key.to_string(), v["version"].as_u64(), ty, text.len(), at));
                }
            }
            Ok(None) => {}
            Err(_) => break,
        }
    }
    c.close();
}

// ------------------------------------------------------------------ tables

pub(crate) fn bytes(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let r = x.round() as i64;
    let s = r.abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if r < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn opt_bytes(x: Option<f64>) -> String {
    x.map_or("n/a".into(), bytes)
}

fn p50_p99(s: &Summary) -> String {
    format!("{} / {}", f(s.p50), f(s.p99))
}

fn verdict(ok: Option<bool>) -> String {
    match ok {
        Some(true) => "met".into(),
        Some(false) => "**not met**".into(),
        None => "n/a".into(),
    }
}

/// The table of one way of editing: PUT (`frame` false) or frames.
fn edit_table(plan: &Plan, runs: &[Edits], frame: bool) -> Table {
    let first = if frame {
        format!(
            "one-field edit as a WebSocket `patch` frame (the 1 KiB value: a `put` frame), writer and other device on `patches: true` sockets, one at a time: {} of each key alone (D1, bytes), then {} more taking turns with the other keys (times)",
            plan.edits, plan.edits
        )
    } else {
        format!(
            "one-field edit via `PUT /api/sync/{{key}}`, one at a time: {} of each key alone (D1, bytes), then {} more taking turns with the other keys (times)",
            plan.edits, plan.edits
        )
    };
    let mut head = vec![
        first.as_str(),
        "value bytes",
        "D1 growth per edit, bytes (meta.size_after)",
        "D1 rows written per edit (by table)",
    ];
    if frame {
        head.extend([
            "frame sent → ack, ms p50 / p99 (keys taking turns)",
            "frame sent → other device's change, ms p50 / p99 (keys taking turns)",
            "writer sends (frame payload), bytes",
            "other device receives (frame payload), bytes",
            "frame the other device got",
        ]);
    } else {
        head.extend([
            "PUT → answer, ms p50 / p99 (keys taking turns)",
            "PUT sent → other device's frame, ms p50 / p99 (keys taking turns)",
            "writer sends (PUT body), bytes",
            "other device receives (frame payload), bytes",
        ]);
    }
    let mut table = Table::new(&head);
    for r in runs {
        let mut row = vec![
            r.label.clone(),
            bytes(r.value_bytes as f64),
            opt_bytes(r.growth()),
            r.cost.per(r.edits).written_cell(),
            p50_p99(&r.latency().0),
            p50_p99(&r.latency().1),
            bytes(mean(&r.put_body)),
            bytes(mean(&r.frame_bytes)),
        ];
        if frame {
            row.push(
                r.frame_types
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        table.push(row);
    }
    table
}

fn mean(v: &[usize]) -> f64 {
    v.iter().sum::<usize>() as f64 / v.len().max(1) as f64
}

/// Issue #12's "today's" full read of the 5,000-element key (before, main
/// 9bf6719, `GET /api/sync`).
const BEFORE_GET_MS: f64 = 33.9;

fn tables(
    plan: &Plan,
    runs: &[Edits],
    patches: &[Edits],
    acct: &Edits,
    n: usize,
    (list_value, whole_value): (usize, usize),
    reads: &Reads,
) -> Vec<Table> {
    let edits = edit_table(plan, runs, false);
    let patch_table = edit_table(plan, patches, true);

    let mut get = Table::new(&[
        &format!(
            "full read of the {n}-element key, a user with only that key (median of {})",
            plan.get_reps
        ),
        "value bytes",
        "answer bytes",
        "ms (median)",
        "samples, ms",
    ]);
    let samples = |v: &[Duration]| {
        stats::ms2_all(v)
            .iter()
            .map(|x| f(*x))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (path, (list, whole)) in [
        ("`GET /api/sync`", &reads.all),
        ("`GET /api/sync/{key}`", &reads.one),
    ] {
        get.push(vec![
            format!("{path}: the list, compact JSON (a record list)"),
            bytes(list_value as f64),
            bytes(list.1 as f64),
            f(stats::median(&list.0)),
            samples(&list.0),
        ]);
        get.push(vec![
            format!("{path}: the same array with `}}, {{` between elements (not a record list: kept whole)"),
            bytes(whole_value as f64),
            bytes(whole.1 as f64),
            f(stats::median(&whole.0)),
            samples(&whole.0),
        ]);
    }

    let mut accounting = Table::new(&[
        &format!(
            "{} one-field edits of a {}-element `accountingTransactions` array",
            acct.edits, plan.accounting_len
        ),
        "value bytes",
        "D1 growth, all edits, bytes (meta.size_after)",
        "per edit",
        "D1 rows written per edit",
        "PUT → answer, ms p50 / p99",
    ]);
    accounting.push(vec![
        format!("`accountingTransactions` ({} edits)", acct.edits),
        bytes(acct.value_bytes as f64),
        opt_bytes(acct.growth().map(|g| g * acct.edits as f64)),
        opt_bytes(acct.growth()),
        acct.cost.per(acct.edits).written_cell(),
        p50_p99(&acct.latency().0),
    ]);

    let mut growth = Table::new(&[
        "where D1's growth went, bytes per edit (SQLite `dbstat` on a copy of the local D1: pages per table and index)",
        "meta.size_after",
        "by table and index",
    ]);
    for r in runs.iter().chain(patches).chain([acct]) {
        let cell = match r.pages_growth() {
            None => "n/a".to_string(),
            Some(m) if m.is_empty() => "0".to_string(),
            Some(m) => {
                let mut v: Vec<(String, f64)> = m.into_iter().collect();
                v.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
                v.iter()
                    .map(|(k, d)| format!("{k} {}", bytes(*d)))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        growth.push(vec![
            format!("{} ({} edits)", r.label, r.edits),
            opt_bytes(r.growth()),
            cell,
        ]);
    }

    // The issues' targets beside what this run measured.
    let mut targets = Table::new(&["target (issues #12, #13)", "measured", "verdict"]);
    for set in [runs, patches] {
        let lists: Vec<&Edits> = set.iter().filter(|r| r.elements.is_some()).collect();
        for r in &lists {
            let g = r.growth();
            targets.push(vec![
                format!("{}: a one-field edit adds ≤ 2 KB to D1", r.label),
                format!("{} bytes", opt_bytes(g)),
                verdict(g.map(|g| g <= MAX_GROWTH_PER_EDIT)),
            ]);
            let rows = r.rows();
            targets.push(vec![
                format!("{}: ≤ 4 rows written per edit (meta.rows_written)", r.label),
                rows.map_or("n/a".into(), |x| format!("{x:.2}")),
                verdict(rows.map(|x| x <= MAX_ROWS_PER_EDIT)),
            ]);
        }
        if let (Some(small), Some(big)) = (lists.first(), lists.last()) {
            if small.elements != big.elements {
                for (what, pick) in [
                    ("ack", (|r: &Edits| r.latency().0) as fn(&Edits) -> Summary),
                    ("fan-out", |r: &Edits| r.latency().1),
                ] {
                    let (a, b) = (pick(small), pick(big));
                    let (r50, r99) = (b.p50 / a.p50, b.p99 / a.p99);
                    targets.push(vec![
                        format!(
                            "{what} latency, {} ÷ {}: ≤ ×1.5 (p50 / p99)",
                            big.label, small.label
                        ),
                        format!(
                            "×{r50:.2} / ×{r99:.2} ({} / {} ms against {} / {})",
                            f(b.p50),
                            f(b.p99),
                            f(a.p50),
                            f(a.p99)
                        ),
                        verdict(Some(r50 <= MAX_LATENCY_RATIO && r99 <= MAX_LATENCY_RATIO)),
                    ]);
                }
            }
        }
    }
    let plists: Vec<&Edits> = patches.iter().filter(|r| r.elements.is_some()).collect();
    if let Some(big) = plists.last() {
        let big_label = &big.label;
        let sent = mean(&big.put_body);
        let got = mean(&big.frame_bytes);
        targets.push(vec![
            format!("#13: {big_label}, bytes the writer sends per edit ≤ 2 KB (frame payload)"),
            format!("{} bytes", bytes(sent)),
            verdict(Some(sent <= MAX_WIRE_BYTES)),
        ]);
        targets.push(vec![
            format!(
                "#13: {big_label}, bytes the other device receives per edit ≤ 2 KB (frame payload)"
            ),
            format!("{} bytes", bytes(got)),
            verdict(Some(got <= MAX_WIRE_BYTES)),
        ]);
        if let Some(whole) = patches.iter().find(|r| r.elements.is_none()) {
            let (a, b) = (whole.latency().1, big.latency().1);
            targets.push(vec![
                format!(
                    "#13: fan-out of {big_label} beside {} (p50 / p99)",
                    whole.label
                ),
                format!(
                    "{} / {} ms against {} / {} ms (×{:.2} / ×{:.2})",
                    f(b.p50),
                    f(b.p99),
                    f(a.p50),
                    f(a.p99),
                    b.p50 / a.p50,
                    b.p99 / a.p99
                ),
                "shown beside (no bound given)".into(),
            ]);
        }
    }
    for (path, (list, whole)) in [
        ("GET /api/sync", &reads.all),
        ("GET /api/sync/{key}", &reads.one),
    ] {
        let (lm, wm) = (stats::median(&list.0), stats::median(&whole.0));
        targets.push(vec![
            format!("full read ({path}) of the {n}-element key ≤ ×1.5 the before run's {BEFORE_GET_MS} ms (`GET /api/sync`); beside it the whole value of its size in this run"),
            format!(
                "{} ms (×{:.2} of {BEFORE_GET_MS}); whole value {} ms (list ÷ whole ×{:.2})",
                f(lm),
                lm / BEFORE_GET_MS,
                f(wm),
                lm / wm
            ),
            if n == 5000 {
                verdict(Some(lm <= MAX_LATENCY_RATIO * BEFORE_GET_MS))
            } else {
                "n/a (not 5,000 elements)".into()
            },
        ]);
    }
    let total = acct.growth().map(|g| g * acct.edits as f64);
    targets.push(vec![
        format!(
            "{} edits of the {}-element accountingTransactions array grow D1 < 500 KB",
            acct.edits, plan.accounting_len
        ),
        format!("{} bytes", opt_bytes(total)),
        if acct.edits == 200 {
            verdict(total.map(|g| g < MAX_ACCOUNTING_GROWTH))
        } else {
            "n/a (not 200 edits)".into()
        },
    ]);
    vec![edits, patch_table, get, accounting, growth, targets]
}

/// Checks the generated values: sizes, compact JSON that round-trips
/// through a parser unchanged (as `JSON.stringify` output would), unique
/// ids, and that an edit changes exactly one field and keeps the length.
pub fn self_test() -> Result<(), String> {
    let check = |ok: bool, what: String| {
        if ok {
            Ok(())
        } else {
            Err(format!("records self-test: {what}"))
        }
    };
    let mut rng = Rng(7);
    for (name, elems, lo, hi) in [
        ("invoices", invoices(1000, &mut rng), 185.0, 215.0),
        ("transactions", transactions(500, &mut rng), 228.0, 248.0),
    ] {
        let text = joined(&elems, ",");
        let avg = (text.len() - 2) as f64 / elems.len() as f64;
        check(
            (lo..=hi).contains(&avg),
            format!("{name}: {avg} bytes each"),
        )?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
        let arr = v.as_array().ok_or("not an array")?;
        let ids: std::collections::HashSet<&str> =
            arr.iter().filter_map(|e| e["id"].as_str()).collect();
        check(ids.len() == elems.len(), format!("{name}: ids not unique"))?;
        // Compact, fields in order, numbers as written: serde_json (with
        // `preserve_order`) writes each element back as its text, as
        // `JSON.stringify` would.
        for (e, parsed) in elems.iter().zip(arr) {
            let again = parsed.to_string();
            check(again == e.text, format!("{name}: {} != {again}", e.text))?;
        }
        let mut edited = elems.clone();
        edited[3].edit(&mut rng);
        check(
            edited[3].text.len() == elems[3].text.len() && edited[3].text != elems[3].text,
            format!("{name}: edit changed the length or nothing"),
        )?;
        let (a, b): (Value, Value) = (
            serde_json::from_str(&elems[3].text).map_err(|e| e.to_string())?,
            serde_json::from_str(&edited[3].text).map_err(|e| e.to_string())?,
        );
        let changed = a
            .as_object()
            .map(|o| o.iter().filter(|(k, v)| b[k.as_str()] != **v).count());
        check(
            changed == Some(1),
            format!("{name}: edit changed {changed:?} fields"),
        )?;
    }
    let text = joined(&transactions(500, &mut Rng(1)), ",");
    check(
        (115_000..=125_000).contains(&text.len()),
        format!("accountingTransactions: {} bytes", text.len()),
    )
}
