//! D1's own counters, as the Worker logs them with `D1_COST_LOG=1`: one line
//! per D1 batch on the hub's paths,
//!
//!   d1-cost {"op":"commit","user":"<id>","ms":3,"stmts":[{"table":"sync_state","written":1,"read":1},...]}
//!
//! where `written` / `read` are the statement's `meta.rows_written` /
//! `meta.rows_read` (index entries included, as D1 bills them), `size`, if
//! present, `meta.size_after` (the database's size in bytes after that
//! statement), and `ms`, if present, the batch's wall time. The Worker's
//! `console.log` reaches wrangler's debug log files (`wrangler-logs/`, written
//! whatever `--log-level` says) and, at log level "log" or lower, its stdout
//! (`wrangler-dev.log`). A Worker that does not log them yields no lines, and
//! every figure built from them reads "n/a".

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

const MARKER: &str = "d1-cost ";

/// One logged D1 batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub op: String,
    pub user: String,
    /// The batch's wall time, when logged.
    pub ms: Option<f64>,
    /// (table, rows written, rows read) per statement.
    pub stmts: Vec<(String, f64, f64)>,
    /// The database's size after the batch (the largest `size` of its
    /// statements), when logged.
    pub size: Option<f64>,
}

/// The `d1-cost` record in one line of log text, if there is one.
pub fn parse_line(text: &str) -> Option<Line> {
    let at = text.find(MARKER)?;
    // The JSON object may be followed by anything (a wrapper's suffix).
    let v: Value = serde_json::Deserializer::from_str(&text[at + MARKER.len()..])
        .into_iter::<Value>()
        .next()?
        .ok()?;
    let stmts = v["stmts"]
        .as_array()?
        .iter()
        .map(|s| {
            (
                s["table"].as_str().unwrap_or("(no table)").to_string(),
                s["written"].as_f64().unwrap_or(0.0),
                s["read"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    let size = v["stmts"]
        .as_array()?
        .iter()
        .filter_map(|s| s["size"].as_f64())
        .reduce(f64::max);
    Some(Line {
        op: v["op"].as_str()?.to_string(),
        user: v["user"].as_str()?.to_string(),
        ms: v["ms"].as_f64(),
        stmts,
        size,
    })
}

/// Rows written and read, per table and per op, over some D1 batches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cost {
    /// Whether the log had any line for the user in the window: without one
    /// nothing is known ("n/a"); with one, no batch here means none was made.
    pub logged: bool,
    pub batches: usize,
    pub ops: BTreeMap<String, usize>,
    pub written: BTreeMap<String, f64>,
    pub read: BTreeMap<String, f64>,
    pub read_by_op: BTreeMap<String, f64>,
    /// Wall time of the batches that logged one.
    pub d1_ms: f64,
}

impl Cost {
    pub fn add(&mut self, l: &Line) {
        self.logged = true;
        self.batches += 1;
        *self.ops.entry(l.op.clone()).or_default() += 1;
        self.d1_ms += l.ms.unwrap_or(0.0);
        for (table, w, r) in &l.stmts {
            *self.written.entry(table.clone()).or_default() += w;
            *self.read.entry(table.clone()).or_default() += r;
            *self.read_by_op.entry(l.op.clone()).or_default() += r;
        }
    }

    pub fn of(lines: &[Line]) -> Cost {
        let mut c = Cost::default();
        for l in lines {
            c.add(l);
        }
        c
    }

    /// Only the batches whose op `keep` accepts (logged if any line was).
    pub fn filter(lines: &[Line], keep: impl Fn(&str) -> bool) -> Cost {
        let kept: Vec<Line> = lines.iter().filter(|l| keep(&l.op)).cloned().collect();
        Cost {
            logged: !lines.is_empty(),
            ..Cost::of(&kept)
        }
    }

    /// Every count divided by `n` (per edit over `n` edits); `batches` stays.
    pub fn per(&self, n: usize) -> Cost {
        let d = n.max(1) as f64;
        let div = |m: &BTreeMap<String, f64>| m.iter().map(|(k, v)| (k.clone(), v / d)).collect();
        Cost {
            logged: self.logged,
            batches: self.batches,
            ops: self.ops.clone(),
            written: div(&self.written),
            read: div(&self.read),
            read_by_op: div(&self.read_by_op),
            d1_ms: self.d1_ms / d,
        }
    }

    pub fn found(&self) -> bool {
        self.logged
    }

    pub fn written_total(&self) -> f64 {
        self.written.values().sum()
    }

    pub fn read_total(&self) -> f64 {
        self.read.values().sum()
    }

    /// "8 (sync_state 1, sync_history 3, ...)", or "n/a".
    pub fn written_cell(&self) -> String {
        self.cell(self.written_total(), &self.written)
    }

    /// "14012 (sync_requests 14000, ...)", or "n/a".
    pub fn read_cell(&self) -> String {
        self.cell(self.read_total(), &self.read)
    }

    fn cell(&self, total: f64, parts: &BTreeMap<String, f64>) -> String {
        if !self.found() {
            return "n/a".into();
        }
        let detail: Vec<String> = parts
            .iter()
            .filter(|(_, n)| **n > 0.0)
            .map(|(t, n)| format!("{t} {}", num(*n)))
            .collect();
        if detail.is_empty() {
            num(total)
        } else {
            format!("{} ({})", num(total), detail.join(", "))
        }
    }

    /// The batches' wall time in ms, or "n/a".
    pub fn ms_cell(&self) -> String {
        if self.found() {
            num((self.d1_ms * 100.0).round() / 100.0)
        } else {
            "n/a".into()
        }
    }

    /// "commit ×1, load ×1".
    pub fn ops_cell(&self) -> String {
        if !self.found() {
            return "n/a".into();
        }
        if self.ops.is_empty() {
            return "none".into();
        }
        let ops: Vec<String> = self.ops.iter().map(|(o, n)| format!("{o} ×{n}")).collect();
        ops.join(", ")
    }

    pub fn json(&self) -> Value {
        if !self.found() {
            return Value::Null;
        }
        json!({"batches": self.batches, "ops": self.ops,
               "rowsWritten": self.written, "rowsRead": self.read, "rowsReadByOp": self.read_by_op,
               "rowsWrittenTotal": self.written_total(), "rowsReadTotal": self.read_total(),
               "d1Ms": self.d1_ms})
    }
}

/// Whole numbers as such, fractions (averages) with two decimals.
fn num(x: f64) -> String {
    if x == 0.0 {
        // Also -0.0, the sum of nothing.
        "0".into()
    } else if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// Where one `wrangler dev` writes its logs: the debug log files under
/// `<state>/wrangler-logs/` and its captured stdout/stderr.
pub struct Log {
    debug_dir: PathBuf,
    stdout: PathBuf,
    /// Once no line has shown up in a whole wait, later waits are short:
    /// this Worker does not log them.
    patience: Duration,
}

/// Where each log file ended at some moment.
pub struct Mark(BTreeMap<PathBuf, u64>);

impl Log {
    /// The logs of a server whose state directory is `state` (see
    /// `server::spawn_dev`: `wrangler-logs/` and `wrangler-dev.log` there).
    pub fn new(state: &Path) -> Log {
        Log {
            debug_dir: state.join("wrangler-logs"),
            stdout: state.join("wrangler-dev.log"),
            patience: Duration::from_secs(2),
        }
    }

    fn debug_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.debug_dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    fn ends(&self) -> Mark {
        let mut ends = BTreeMap::new();
        for f in self.debug_files().into_iter().chain([self.stdout.clone()]) {
            if let Ok(m) = fs::metadata(&f) {
                ends.insert(f, m.len());
            }
        }
        Mark(ends)
    }

    /// Where the logs end once they have stopped growing for a moment
    /// (at most 3 s): lines reach the files a while after the answer that
    /// follows their batch, and those of a write acked just before must not
    /// count as the next one's.
    pub fn mark(&self) -> Mark {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut last = self.ends();
        let mut still = 0;
        while still < 3 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
            let now = self.ends();
            still = if now.0 == last.0 { still + 1 } else { 0 };
            last = now;
        }
        last
    }

    /// The complete `d1-cost` lines of `user` logged since `mark`. The same
    /// line can be in both kinds of file: the debug files win when they have
    /// any.
    pub fn since(&self, mark: &Mark, user: &str) -> Vec<Line> {
        let read = |files: &[PathBuf]| -> Vec<Line> {
            let mut out = Vec::new();
            for f in files {
                let Ok(bytes) = fs::read(f) else { continue };
                // A file shorter than its mark was recreated (a restart).
                let from = mark.0.get(f).copied().unwrap_or(0) as usize;
                let from = if from > bytes.len() { 0 } else { from };
                let text = String::from_utf8_lossy(&bytes[from..]);
                // Only whole lines: the last one may still be being written.
                let complete = text.rfind('\n').map_or("", |end| &text[..end]);
                out.extend(
                    complete
                        .lines()
                        .filter_map(parse_line)
                        .filter(|l| l.user == user),
                );
            }
            out
        };
        let from_debug = read(&self.debug_files());
        if from_debug.is_empty() {
            read(std::slice::from_ref(&self.stdout))
        } else {
            from_debug
        }
    }

    /// `since`, once the log has caught up: the lines reach the files a
    /// moment after the answer that follows them, so wait until a first line
    /// shows up and then until no new one has for a while.
    pub fn wait(&mut self, mark: &Mark, user: &str) -> Vec<Line> {
        let start = Instant::now();
        let quiet = Duration::from_millis(300);
        let mut lines = self.since(mark, user);
        let mut changed = Instant::now();
        loop {
            let now = Instant::now();
            if lines.is_empty() && now - start >= self.patience {
                self.patience = Duration::from_millis(300);
                return lines;
            }
            if !lines.is_empty() && now - changed >= quiet {
                self.patience = Duration::from_secs(2);
                return lines;
            }
            thread::sleep(Duration::from_millis(50));
            let again = self.since(mark, user);
            if again.len() != lines.len() {
                lines = again;
                changed = Instant::now();
            }
        }
    }
}

/// The parser and the reader on sample text; run at the start of every run
/// (the bench target has no test harness, and CI runs `--quick`).
pub fn self_test() -> Result<(), String> {
    let sample = r#"d1-cost {"op":"commit","user":"u-1","ms":4,"stmts":[{"table":"sync_state","written":1,"read":1},{"table":"sync_history","written":3,"read":0},{"table":"sync_data","written":2,"read":1},{"table":"sync_requests","written":2,"read":0}]}"#;
    let line = parse_line(sample).ok_or("the sample line did not parse")?;
    let want = Line {
        op: "commit".into(),
        user: "u-1".into(),
        ms: Some(4.0),
        stmts: vec![
            ("sync_state".into(), 1.0, 1.0),
            ("sync_history".into(), 3.0, 0.0),
            ("sync_data".into(), 2.0, 1.0),
            ("sync_requests".into(), 2.0, 0.0),
        ],
        size: None,
    };
    check(line == want, format!("parsed {line:?}"))?;
    // As wrangler's stdout may show it: a prefix before, a suffix after.
    let wrapped = format!("[wrangler:log] {sample} (log)");
    check(parse_line(&wrapped) == Some(want.clone()), "with a prefix")?;
    for bad in [
        "GET /api/sync 200 OK",
        "d1-cost not json",
        r#"d1-cost {"op":"commit","stmts":[]}"#,
    ] {
        check(parse_line(bad).is_none(), format!("accepted {bad:?}"))?;
    }
    // No `ms`, and D1 may leave a count out (null).
    let load = parse_line(
        r#"d1-cost {"op":"load","user":"u-1","stmts":[{"table":"sync_requests","written":null,"read":14000}]}"#,
    )
    .ok_or("load line")?;
    let c = Cost::of(&[line.clone(), line.clone(), load.clone()]);
    check(
        c.written_total() == 16.0 && c.read_total() == 14004.0,
        "totals",
    )?;
    check(c.d1_ms == 8.0, "batch time")?;
    check(
        c.per(2).written_cell() == "8 (sync_data 2, sync_history 3, sync_requests 2, sync_state 1)",
        format!("cell {}", c.per(2).written_cell()),
    )?;
    check(load.size.is_none(), "no size logged")?;
    let sized = parse_line(
        r#"d1-cost {"op":"commit","user":"u-1","stmts":[{"table":"a","written":1,"read":0,"size":8192},{"table":"b","written":1,"read":0,"size":12288},{"table":"c","written":0,"read":1,"size":null}]}"#,
    )
    .ok_or("sized line")?;
    check(
        sized.size == Some(12288.0),
        format!("size {:?}", sized.size),
    )?;
    let wake = Cost::filter(&[line.clone(), load], |op| op != "commit");
    check(wake.read_cell() == "14000 (sync_requests 14000)", "filter")?;
    let none = Cost::filter(&[line], |op| op == "load");
    check(
        none.read_cell() == "0" && none.ops_cell() == "none",
        "nothing kept",
    )?;
    check(
        Cost::default().written_cell() == "n/a",
        "an empty cost is n/a",
    )?;

    // The reader: only lines after the mark, only whole lines, one user, and
    // the debug files before stdout.
    let dir = std::env::temp_dir().join(format!("alternassist-d1log-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("wrangler-logs")).map_err(|e| e.to_string())?;
    let debug = dir.join("wrangler-logs/wrangler-1.log");
    let entry = |s: &str| format!("\n--- 2026-12-01T00:00:00.000Z log\n{s}\n---\n");
    let other = sample.replace("u-1", "u-2");
    let write = |p: &Path, s: &str| fs::write(p, s).map_err(|e| e.to_string());
    write(&debug, &entry(sample))?;
    write(&dir.join("wrangler-dev.log"), &format!("{sample}\n"))?;
    let log = Log::new(&dir);
    let mark = log.mark();
    check(log.since(&mark, "u-1").is_empty(), "lines before the mark")?;
    let more = format!(
        "{}{}{}{}",
        entry(sample),
        entry(&other),
        entry(sample),
        "d1-cost {\"op"
    );
    write(&debug, &format!("{}{more}", entry(sample)))?;
    let got = log.since(&mark, "u-1");
    let _ = fs::remove_dir_all(&dir);
    check(got.len() == 2, format!("read {} lines, not 2", got.len()))
}

fn check(ok: bool, what: impl Into<String>) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("d1log self-test: {}", what.into()))
    }
}
