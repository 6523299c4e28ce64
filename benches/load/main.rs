//! Load tool: the real Worker against minimal JavaScript Durable Objects
//! under `wrangler dev` (`bench/baseline/`, in memory; `bench/d1floor/`, one
//! D1 upsert per write), in the same run, on the same machine, so each figure
//! also reads as a multiple of what the runtime itself costs. D1 costs come
//! from D1's own counters, which the Worker logs with `D1_COST_LOG=1`
//! (`d1log.rs`).
//!
//!   scripts/bench.sh            # full run, writes target/bench/load.json
//!   scripts/bench.sh --quick    # seconds; CI runs it to prove the tool works
//!   scripts/bench.sh --records  # only the record-list section (issues #12,
//!                               # #13; `records.rs`), target/bench/records.json
//!
//! Needs `scripts/build.sh` first. All latencies use one monotonic clock
//! (`Instant`) in this process. Nothing here asserts a timing.

#[allow(dead_code)]
#[path = "../../tests/api/server.rs"]
mod server;

#[allow(dead_code)]
#[path = "../../tests/api/client.rs"]
mod client;

mod d1cost;
mod d1log;
mod hardened;
mod inflight;
mod launch;
mod records;
mod scenarios;
mod stats;
mod ws;

use scenarios::{Kind, Target};
use serde_json::{json, Value};
use server::Server;
use stats::{f, ratio};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// Raised so the limits measure the object, not the rate limiter.
pub const VARS: &[(&str, &str)] = &[
    ("WRITE_BURST", "1000000"),
    ("WRITES_PER_MINUTE", "100000000"),
    ("REGISTRATIONS_PER_IP", "1000000"),
    ("WRITES_PER_DAY", "1000000000"),
    ("QUOTA_BYTES", "100000000000"),
];

/// `VARS` plus the Worker's `d1-cost` log lines. Only for the server that
/// measures D1 costs: a log line per batch would slow the others down.
pub fn cost_vars() -> Vec<(&'static str, &'static str)> {
    let mut v = VARS.to_vec();
    v.push(("D1_COST_LOG", "1"));
    v
}

pub struct Opts {
    pub quick: bool,
    pub out: PathBuf,
    /// Time allowed for giving keys a deep history before measuring again.
    pub deep_budget: Duration,
    /// Only the record-list section (`records.rs`).
    pub records_only: bool,
    /// Timed edits per list in that section (default 100; quick 5).
    pub record_edits: Option<usize>,
    /// Only issue #19's scenarios (`hardened.rs`).
    pub hardened_only: bool,
    /// Only the acks/s with N in flight (`inflight.rs`), ours beside both
    /// floors.
    pub inflight_only: bool,
    /// Rounds of ours and the upsert floor there, alternating (default 3).
    pub flight_rounds: usize,
}

impl Opts {
    fn parse() -> Result<Opts, String> {
        let mut quick = false;
        let mut out = None;
        let mut deep_secs = None;
        let mut records_only = false;
        let mut record_edits = None;
        let mut hardened_only = false;
        let mut inflight_only = false;
        let mut flight_rounds = 3;
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--quick" => quick = true,
                "--records" => records_only = true,
                "--records-hardened" => hardened_only = true,
                "--in-flight" => inflight_only = true,
                "--rounds" => {
                    let v = args.next().ok_or("--rounds needs a number")?;
                    flight_rounds = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or(format!("--rounds {v}: not a positive number"))?;
                }
                "--record-edits" => {
                    let v = args.next().ok_or("--record-edits needs a number")?;
                    record_edits = Some(
                        v.parse::<usize>()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or(format!("--record-edits {v}: not a positive number"))?,
                    );
                }
                "--out" => out = Some(PathBuf::from(args.next().ok_or("--out needs a path")?)),
                "--deep-seconds" => {
                    let v = args.next().ok_or("--deep-seconds needs a number")?;
                    deep_secs = Some(
                        v.parse::<u64>()
                            .map_err(|e| format!("--deep-seconds {v}: {e}"))?,
                    );
                }
                // `cargo bench` passes --bench to harness-less targets.
                "--bench" => {}
                "-h" | "--help" => {
                    println!("usage: load [--quick] [--records | --records-hardened | --in-flight] [--record-edits N] [--rounds N] [--out FILE.json] [--deep-seconds S]");
                    println!(
                        "  --deep-seconds: time for the deep-history setup (default 300; quick 8)"
                    );
                    println!("  --records: only the record-list section (issues #12, #13)");
                    println!("  --records-hardened: only issue #19's scenarios (structural edits, 25,000 records, retention, memory, fresh vs deep keys)");
                    println!("  --record-edits: timed one-field edits per list there (default 100; quick 5)");
                    println!("  --in-flight: only acks/s with 16 and 64 writes in flight, ours and the one-upsert floor in alternating rounds");
                    println!("  --rounds: rounds of each there (default 3, also with --quick)");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?} (try --help)")),
            }
        }
        if [records_only, hardened_only, inflight_only]
            .iter()
            .filter(|x| **x)
            .count()
            > 1
        {
            return Err("--records, --records-hardened, --in-flight: choose one".into());
        }
        let out = out.unwrap_or_else(|| {
            launch::repo_root().join(match (records_only, hardened_only, inflight_only, quick) {
                (true, _, _, true) => "target/bench/records-quick.json",
                (true, _, _, false) => "target/bench/records.json",
                (_, true, _, true) => "target/bench/records-hardened-quick.json",
                (_, true, _, false) => "target/bench/records-hardened.json",
                (_, _, true, true) => "target/bench/in-flight-quick.json",
                (_, _, true, false) => "target/bench/in-flight.json",
                (false, false, false, true) => "target/bench/load-quick.json",
                (false, false, false, false) => "target/bench/load.json",
            })
        });
        let deep_budget = Duration::from_secs(deep_secs.unwrap_or(if quick { 8 } else { 300 }));
        Ok(Opts {
            quick,
            out,
            deep_budget,
            records_only,
            record_edits,
            hardened_only,
            inflight_only,
            flight_rounds,
        })
    }
}

/// A Markdown table.
pub struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(head: &[&str]) -> Table {
        Table {
            head: head.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// A row of the main table: what, ours, baseline, ratio.
    fn row(&mut self, what: impl Into<String>, ours: String, base: String, ratio: String) {
        self.push(vec![what.into(), ours, base, ratio]);
    }

    pub fn markdown(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut s = line(&self.head);
        s.push_str(&line(&vec!["---".to_string(); self.head.len()]));
        for r in &self.rows {
            s.push_str(&line(r));
        }
        s
    }
}

fn sh(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .current_dir(launch::repo_root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> Value {
    json!({
        "date": sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
        "nproc": sh("nproc"),
        "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-"),
        "memory": sh("grep MemTotal /proc/meminfo | awk '{print $2 \" kB\"}'"),
        "kernel": sh("uname -r"),
        "wrangler": sh("node_modules/.bin/wrangler --version"),
        "workerd": sh("node -p \"require('./node_modules/miniflare/package.json').dependencies.workerd\""),
        "node": sh("node --version"),
        "loadavg": sh("cut -d' ' -f1-3 /proc/loadavg"),
        "uptime": sh("uptime"),
    })
}

fn main() {
    let opts = match Opts::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(2);
        }
    };
    match run(&opts) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("load: FAILED: {e}");
            std::process::exit(1);
        }
    }
}

fn run(opts: &Opts) -> Result<(), String> {
    let progress = &Progress::new();
    let t_run = progress.t0;
    let mut report = json!({"mode": if opts.quick {"quick"} else {"full"}, "machine": machine()});
    d1log::self_test()?;
    records::self_test()?;
    if opts.records_only {
        return run_records(opts, progress, report);
    }
    if opts.hardened_only {
        return run_hardened(opts, progress, report);
    }
    if opts.inflight_only {
        return run_inflight(opts, progress, report);
    }
    let mut table = Table::new(&["Measure", "alternassist-sync", "baseline (JS DO)", "ratio"]);
    let tmp = std::env::temp_dir().join(format!("alternassist-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);

    // Start-up: spawn to first answer, one server at a time on a quiet machine.
    let cold_reps = if opts.quick { 1 } else { 3 };
    let (ours_cold, base_cold) = scenarios::cold_starts(&tmp, cold_reps)?;
    progress.note("start-up measured");

    // The servers for everything else, started together.
    let (ours, base, floor) = start_servers(&tmp)?;
    let o = Target::ours(&ours);
    let b = Target::js(Kind::Baseline, &base);
    let d = Target::js(Kind::D1Floor, &floor);
    progress.note(format!(
        "servers up (ours {}, baseline {}, D1 floor {})",
        ours.base_url, base.base_url, floor.base_url
    ));

    let cold_o = stats::median(&ours_cold);
    let cold_b = stats::median(&base_cold);
    report["startup"] = json!({
        "ours_ms": stats::ms2_all(&ours_cold),
        "baseline_ms": stats::ms2_all(&base_cold),
    });

    // Fan-out latency.
    let sizes: &[usize] = &[2, 10, 50, 100];
    let mut fan = serde_json::Map::new();
    for &n in sizes {
        let puts = match (opts.quick, n) {
            (true, _) => 5,
            (false, n) if n <= 10 => 200,
            _ => 100,
        };
        if opts.quick && n > 10 {
            continue;
        }
        let rb = scenarios::fanout(&b, n, puts)?;
        let ro = scenarios::fanout(&o, n, puts)?;
        table.row(
            format!(
                "fan-out to all {} other devices, ms p50 / p95 / p99 / max ({puts} puts of 1 KiB)",
                n - 1
            ),
            ro.all.cell(),
            rb.all.cell(),
            format!(
                "{} / {}",
                ratio(ro.all.p50, rb.all.p50),
                ratio(ro.all.p99, rb.all.p99)
            ),
        );
        fan.insert(
            n.to_string(),
            json!({"puts": puts, "ours": ro.json(), "baseline": rb.json()}),
        );
        progress.note(format!("fan-out {n} done"));
    }
    report["fanout"] = Value::Object(fan);

    // Sustained writes.
    for (label, users, sockets) in [
        ("one user", 1usize, if opts.quick { 2 } else { 4 }),
        ("many users", if opts.quick { 4 } else { 20 }, 1),
    ] {
        let lb = scenarios::ladder(&b, users, sockets, opts.quick)?;
        let lo = scenarios::ladder(&o, users, sockets, opts.quick)?;
        let best = |l: &scenarios::Ladder| l.best().map_or(f64::NAN, |s| s.acked_per_s);
        let sat = |l: &scenarios::Ladder| match l.saturation() {
            Some(s) => format!(
                "{} offered → {} acked/s, p99 {} ms",
                f(s.offered),
                f(s.acked_per_s),
                f(s.lat.p99)
            ),
            None => "not reached on the ladder".into(),
        };
        table.row(
            format!("{label} ({users} × {sockets} sockets): writes/s with ack p99 < 100 ms"),
            f(best(&lo)),
            f(best(&lb)),
            ratio(best(&lo), best(&lb)),
        );
        table.row(
            format!("{label}: saturates at (acks < 90% of offered, or p99 > 1 s)"),
            sat(&lo),
            sat(&lb),
            String::new(),
        );
        report["throughput"][label] = json!({"users": users, "socketsPerUser": sockets, "ours": lo.json(), "baseline": lb.json()});
        progress.note(format!("throughput {label} done"));
    }

    // REST with 5 MiB, and catch-up.
    let reps = if opts.quick { 1 } else { 5 };
    let rb = scenarios::rest(&b, reps)?;
    let ro = scenarios::rest(&o, reps)?;
    table.row(
        format!("POST 7 keys, 5 MiB, ms (median of {reps})"),
        f(ro.post_ms),
        f(rb.post_ms),
        ratio(ro.post_ms, rb.post_ms),
    );
    table.row(
        format!("GET all 7 keys, 5 MiB, ms (median of {reps})"),
        f(ro.get_ms),
        f(rb.get_ms),
        ratio(ro.get_ms, rb.get_ms),
    );
    report["rest"] =
        json!({"reps": reps, "bytes": ro.bytes, "ours": ro.json(), "baseline": rb.json()});
    progress.note("REST done");

    let (missed, creps) = if opts.quick { (100, 1) } else { (1000, 3) };
    let cb = scenarios::catch_up(&b, missed, creps)?;
    let co = scenarios::catch_up(&o, missed, creps)?;
    table.row(
        format!("catch-up of {missed} missed changes: connect + hello → changes, ms (median of {creps})"),
        f(co.total_ms),
        f(cb.total_ms),
        ratio(co.total_ms, cb.total_ms),
    );
    table.row(
        "  of which hello → changes, ms",
        f(co.hello_ms),
        f(cb.hello_ms),
        ratio(co.hello_ms, cb.hello_ms),
    );
    report["catchUp"] =
        json!({"missed": missed, "reps": creps, "ours": co.json(), "baseline": cb.json()});
    progress.note("catch-up done");

    table.row(
        format!("start: spawn `wrangler dev` → first answer, ms (median of {cold_reps})"),
        f(cold_o),
        f(cold_b),
        ratio(cold_o, cold_b),
    );

    // Acks/s with N writes in flight, fresh and deep, beside both floors.
    let flights = inflight_all(opts, &o, &b, &d, progress)?;
    report["inFlight"] = flights.json;
    drop(base);
    drop(floor);
    ours.stop();

    // D1 costs, on a server of its own that logs them; then the record
    // lists (issues #12, #13) on the same server.
    let plan = records::Plan::new(opts.quick, opts.record_edits);
    let (costs, recs) = d1cost::run(opts.quick, progress, |s| {
        records::run_on(s, &plan, progress)
    })?;
    report["d1Cost"] = costs.json;
    report["records"] = recs.json;

    // Issue #19's scenarios, on Workers of their own.
    let hard = hardened::run(&hardened::Plan::new(opts.quick, opts.deep_budget), progress)?;
    report["recordsHardened"] = hard.json;

    // Size of ours.
    let (wasm, wasm_gz) = scenarios::wasm_size()?;
    table.row(
        "optimised Worker wasm, bytes (gzip -9)",
        format!("{wasm} ({wasm_gz})"),
        "-".into(),
        String::new(),
    );
    report["wasm"] = json!({"bytes": wasm, "gzipBytes": wasm_gz});

    stamp_end(&mut report, progress);
    let mut markdown = format!(
        "{}\n{}\n{}\n{}",
        table.markdown(),
        flights.table.markdown(),
        costs.edits.markdown(),
        costs.wake.markdown()
    );
    for t in recs.tables.iter().chain(&hard.tables) {
        markdown.push('\n');
        markdown.push_str(&t.markdown());
    }
    report["table"] = json!(markdown);
    let _ = std::fs::remove_dir_all(&tmp);
    finish(opts, report, &markdown, t_run)
}

/// `--records`: only the record-list section.
fn run_records(opts: &Opts, progress: &Progress, mut report: Value) -> Result<(), String> {
    let t_run = progress.t0;
    report["mode"] = json!(if opts.quick {
        "records-quick"
    } else {
        "records"
    });
    let recs = records::run(&records::Plan::new(opts.quick, opts.record_edits), progress)?;
    report["records"] = recs.json;
    let (wasm, wasm_gz) = scenarios::wasm_size()?;
    report["wasm"] = json!({"bytes": wasm, "gzipBytes": wasm_gz});
    stamp_end(&mut report, progress);
    let markdown: Vec<String> = recs.tables.iter().map(Table::markdown).collect();
    let markdown = markdown.join("\n");
    report["table"] = json!(markdown);
    println!(
        "\nrecords (issues #12, #13): commit {}, Worker wasm {wasm} bytes ({wasm_gz} gzip -9)",
        report["commit"].as_str().unwrap_or("?")
    );
    finish(opts, report, &markdown, t_run)
}

/// `--records-hardened`: only issue #19's scenarios.
fn run_hardened(opts: &Opts, progress: &Progress, mut report: Value) -> Result<(), String> {
    let t_run = progress.t0;
    report["mode"] = json!(if opts.quick {
        "records-hardened-quick"
    } else {
        "records-hardened"
    });
    let hard = hardened::run(&hardened::Plan::new(opts.quick, opts.deep_budget), progress)?;
    report["recordsHardened"] = hard.json;
    let (wasm, wasm_gz) = scenarios::wasm_size()?;
    report["wasm"] = json!({"bytes": wasm, "gzipBytes": wasm_gz});
    stamp_end(&mut report, progress);
    let markdown: Vec<String> = hard.tables.iter().map(Table::markdown).collect();
    let markdown = markdown.join("\n");
    report["table"] = json!(markdown);
    println!(
        "\nrecords hardened (issue #19): commit {}, Worker wasm {wasm} bytes ({wasm_gz} gzip -9)",
        report["commit"].as_str().unwrap_or("?")
    );
    finish(opts, report, &markdown, t_run)
}

/// `--in-flight`: only the acks/s with N in flight, ours beside both floors.
fn run_inflight(opts: &Opts, progress: &Progress, mut report: Value) -> Result<(), String> {
    let t_run = progress.t0;
    report["mode"] = json!(if opts.quick {
        "in-flight-quick"
    } else {
        "in-flight"
    });
    let tmp = std::env::temp_dir().join(format!("alternassist-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (ours, base, floor) = start_servers(&tmp)?;
    progress.note("servers up");
    let flights = inflight_all(
        opts,
        &Target::ours(&ours),
        &Target::js(Kind::Baseline, &base),
        &Target::js(Kind::D1Floor, &floor),
        progress,
    );
    drop(base);
    drop(floor);
    ours.stop();
    let _ = std::fs::remove_dir_all(&tmp);
    let flights = flights?;
    report["inFlight"] = flights.json;
    stamp_end(&mut report, progress);
    let markdown = flights.table.markdown();
    report["table"] = json!(markdown);
    finish(opts, report, &markdown, t_run)
}

/// Writes the JSON and prints the tables and the machine's load.
/// Ours, the in-memory JS baseline and the one-upsert D1 floor, started
/// together (each JS server keeps its state under `tmp`).
fn start_servers(tmp: &Path) -> Result<(Server, launch::Proc, launch::Proc), String> {
    let (base_dir, floor_dir) = (tmp.join("baseline"), tmp.join("d1floor"));
    let (ours, base, floor) = thread::scope(|s| {
        let o = s.spawn(|| Server::start("bench", VARS));
        let b = s.spawn(|| launch::start_js("baseline", &base_dir));
        let d = s.spawn(|| launch::start_js("d1floor", &floor_dir));
        (
            o.join().unwrap_or_else(|_| Err("panicked".into())),
            b.join().unwrap_or_else(|_| Err("panicked".into())),
            d.join().unwrap_or_else(|_| Err("panicked".into())),
        )
    });
    Ok((
        ours.map_err(|e| format!("the Worker did not start: {e}"))?,
        base.map_err(|e| format!("the baseline did not start: {e}"))?,
        floor.map_err(|e| format!("the D1 floor did not start: {e}"))?,
    ))
}

/// What every mode records when it ends: load, duration, steps, commit.
fn stamp_end(report: &mut Value, progress: &Progress) {
    report["machine"]["loadavgEnd"] = json!(sh("cut -d' ' -f1-3 /proc/loadavg"));
    report["seconds"] = json!(progress.t0.elapsed().as_secs());
    report["steps"] = progress.json();
    report["commit"] = json!(sh("git rev-parse --short HEAD"));
}

fn finish(opts: &Opts, mut report: Value, markdown: &str, t_run: Instant) -> Result<(), String> {
    report["machine"]["uptimeEnd"] = json!(sh("uptime"));
    if let Some(dir) = opts.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&opts.out, text)
        .map_err(|e| format!("cannot write {}: {e}", opts.out.display()))?;
    println!("\n{markdown}");
    println!(
        "machine: {}; load average {} → {}; {} s",
        report["machine"]["cpu"].as_str().unwrap_or(""),
        report["machine"]["loadavg"].as_str().unwrap_or(""),
        report["machine"]["loadavgEnd"].as_str().unwrap_or(""),
        t_run.elapsed().as_secs()
    );
    println!(
        "uptime at the start: {}\nuptime at the end:   {}",
        report["machine"]["uptime"].as_str().unwrap_or(""),
        report["machine"]["uptimeEnd"].as_str().unwrap_or("")
    );
    println!("results: {}", opts.out.display());
    Ok(())
}

/// Progress on stderr, with the load average at each step (the machine is
/// shared: the JSON keeps them, to tell a quiet step from a busy one).
pub struct Progress {
    t0: Instant,
    steps: std::sync::Mutex<Vec<Value>>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            t0: Instant::now(),
            steps: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn note(&self, what: impl Into<String>) {
        let what = what.into();
        let secs = self.t0.elapsed().as_secs();
        let load = sh("cut -d' ' -f1-3 /proc/loadavg");
        eprintln!("load: {secs:>4}s {what} (load average {load})");
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        steps.push(json!({"seconds": secs, "step": what, "loadavg": load}));
    }

    fn json(&self) -> Value {
        json!(*self.steps.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Sleeps a moment between steps so one step's tail does not land in the next.
pub fn settle() {
    thread::sleep(Duration::from_millis(500));
}

/// The in-flight figures: their table and JSON.
struct Flights {
    table: Table,
    json: Value,
}

/// Acks/s with 16 (and 64) writes in flight on one socket of one user:
/// ours on fresh keys in rounds alternating with the one-upsert floor, the
/// bare object once, then ours again once every key has a deep history, in
/// rounds alternating with the floor again (issue #23: the median of
/// several rounds, not one noisy round, gives the ratio).
fn inflight_all(
    opts: &Opts,
    o: &Target,
    b: &Target,
    d: &Target,
    progress: &Progress,
) -> Result<Flights, String> {
    use inflight::{Pool, Rounds, Until};
    let ns: &[usize] = if opts.quick { &[16] } else { &[16, 64] };
    let rounds = opts.flight_rounds;
    let warm = Duration::from_millis(if opts.quick { 200 } else { 1000 });
    let window = Duration::from_millis(if opts.quick { 400 } else { 5000 });
    // Quick: just past what retention keeps by count (50), so it has work.
    let depth = if opts.quick { 60 } else { 10_000 };
    let once = |t: &Target, room: &scenarios::Room, pool: &mut Pool, n: usize, tag: &str| {
        let mut c = t.connect(room, 0)?;
        let r = inflight::run(&mut c, pool, n, Until::Timed { warm, window }, tag);
        c.close();
        crate::settle();
        r
    };
    // A new user (or room) and new keys for each run.
    let fresh = |t: &Target, n: usize, tag: &str| {
        let room = t.room(1)?;
        let mut pool = Pool::new("p", n);
        once(t, &room, &mut pool, n, tag)
    };
    let mut fresh_rounds = Vec::new();
    let mut bare = Vec::new();
    for &n in ns {
        bare.push(fresh(b, n, &format!("bare{n}"))?);
        let r = inflight::alternate(
            rounds,
            |i| fresh(o, n, &format!("fresh{n}-{i}")),
            |i| fresh(d, n, &format!("floor{n}-{i}")),
        )?;
        progress.note(format!(
            "{n} in flight, fresh, {rounds} rounds: ours {:.0}/s, floor {:.0}/s (medians)",
            r.ours_median(),
            r.floor_median()
        ));
        fresh_rounds.push(r);
    }

    // One user whose keys (enough for the largest N) get a deep history.
    let room = o.room(1)?;
    let token = room.user()?.token.clone();
    let mut pool = Pool::new("d", ns.iter().copied().max().unwrap_or(16));
    let deep = inflight::deepen(o, &token, &mut pool, depth, opts.deep_budget)?;
    progress.note(format!(
        "history of {} keys at {} versions each ({} writes in {:.0} s)",
        pool.keys.len(),
        deep.versions,
        deep.writes,
        deep.secs
    ));
    let mut deep_rounds = Vec::new();
    for &n in ns {
        let pool = &mut pool;
        let r = inflight::alternate(
            rounds,
            |i| once(o, &room, pool, n, &format!("deep{n}-{i}")),
            |i| fresh(d, n, &format!("dfloor{n}-{i}")),
        )?;
        progress.note(format!(
            "{n} in flight, deep history, {rounds} rounds: ours {:.0}/s, floor {:.0}/s (medians)",
            r.ours_median(),
            r.floor_median()
        ));
        deep_rounds.push(r);
    }

    let mut table = Table::new(&[
        "writes in flight (1 user, 1 socket, 1 KiB)",
        "keys",
        &format!("ours: acks/s, median of {rounds} rounds (each round; ack ms, median of the rounds' p50 / p99)"),
        "JS DO + 1 D1 upsert per write, the rounds between ours",
        "ours ÷ upsert floor: median ÷ median (each round)",
        "bare JS DO (one run)",
    ]);
    let deep_label = format!("at {} versions", deep.versions);
    let mut json_rows = Vec::new();
    for (((&n, fr), dr), bare) in ns.iter().zip(&fresh_rounds).zip(&deep_rounds).zip(&bare) {
        for (keys, r) in [("fresh", fr), (deep_label.as_str(), dr)] {
            table.push(vec![
                n.to_string(),
                keys.to_string(),
                Rounds::cell(&r.ours),
                Rounds::cell(&r.floor),
                r.ratio_cell(),
                if keys == "fresh" {
                    bare.cell()
                } else {
                    "".into()
                },
            ]);
        }
        json_rows.push(json!({"inFlight": n, "fresh": fr.json(), "deep": dr.json(),
                              "baseline": bare.json()}));
    }
    Ok(Flights {
        table,
        json: json!({"warmSeconds": warm.as_secs_f64(), "windowSeconds": window.as_secs_f64(),
                     "rounds": rounds, "deepSetup": deep.json(), "runs": json_rows}),
    })
}
