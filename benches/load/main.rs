//! Load tool: the real Worker against a minimal JavaScript Durable Object
//! (`bench/baseline/`) under `wrangler dev`, in the same run, on the same
//! machine, so each figure also reads as a multiple of what the runtime itself
//! costs.
//!
//!   scripts/bench.sh            # full run, writes target/bench/load.json
//!   scripts/bench.sh --quick    # seconds; CI runs it to prove the tool works
//!
//! Needs `scripts/build.sh` first. All latencies use one monotonic clock
//! (`Instant`) in this process. Nothing here asserts a timing.

#[allow(dead_code)]
#[path = "../../tests/api/server.rs"]
mod server;

#[allow(dead_code)]
#[path = "../../tests/api/client.rs"]
mod client;

mod launch;
mod scenarios;
mod stats;
mod ws;

use scenarios::Target;
use serde_json::{json, Value};
use server::Server;
use stats::{f, ratio};
use std::fmt::Write as _;
use std::path::PathBuf;
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

pub struct Opts {
    pub quick: bool,
    pub out: PathBuf,
}

impl Opts {
    fn parse() -> Result<Opts, String> {
        let mut quick = false;
        let mut out = None;
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--quick" => quick = true,
                "--out" => out = Some(PathBuf::from(args.next().ok_or("--out needs a path")?)),
                // `cargo bench` passes --bench to harness-less targets.
                "--bench" => {}
                "-h" | "--help" => {
                    println!("usage: load [--quick] [--out FILE.json]");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?} (try --help)")),
            }
        }
        let out = out.unwrap_or_else(|| {
            launch::repo_root().join(if quick {
                "target/bench/load-quick.json"
            } else {
                "target/bench/load.json"
            })
        });
        Ok(Opts { quick, out })
    }
}

/// One row of the table: what, ours, baseline, ratio.
struct Table(Vec<[String; 4]>);

impl Table {
    fn row(&mut self, what: impl Into<String>, ours: String, base: String, ratio: String) {
        self.0.push([what.into(), ours, base, ratio]);
    }

    fn markdown(&self) -> String {
        let mut s = String::from(
            "| Measure | alternassist-sync | baseline (JS DO) | ratio |\n|---|---|---|---|\n",
        );
        for r in &self.0 {
            let _ = writeln!(s, "| {} | {} | {} | {} |", r[0], r[1], r[2], r[3]);
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
    let t_run = Instant::now();
    let mut report = json!({"mode": if opts.quick {"quick"} else {"full"}, "machine": machine()});
    let mut table = Table(Vec::new());
    let tmp = std::env::temp_dir().join(format!("alternassist-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);

    // Start-up: spawn to first answer, one server at a time on a quiet machine.
    let cold_reps = if opts.quick { 1 } else { 3 };
    let (ours_cold, base_cold) = scenarios::cold_starts(&tmp, cold_reps)?;
    eprintln!("load: {:>4}s start-up measured", t_run.elapsed().as_secs());

    // The two servers for everything else, started together.
    let base_dir = tmp.join("baseline");
    let (ours, base) = thread::scope(|s| {
        let o = s.spawn(|| Server::start("bench", VARS));
        let b = s.spawn(|| scenarios::start_baseline(&base_dir));
        (
            o.join().unwrap_or_else(|_| Err("panicked".into())),
            b.join().unwrap_or_else(|_| Err("panicked".into())),
        )
    });
    let ours = ours.map_err(|e| format!("the Worker did not start: {e}"))?;
    let base = base.map_err(|e| format!("the baseline did not start: {e}"))?;
    let o = Target::ours(&ours);
    let b = Target::baseline(&base);
    eprintln!(
        "load: {:>4}s servers up (ours {}, baseline {})",
        t_run.elapsed().as_secs(),
        ours.base_url,
        base.base_url
    );

    let cold_o = stats::median(&ours_cold);
    let cold_b = stats::median(&base_cold);
    report["startup"] = json!({
        "ours_ms": ours_cold.iter().map(|d| stats::r2(stats::ms(*d))).collect::<Vec<_>>(),
        "baseline_ms": base_cold.iter().map(|d| stats::r2(stats::ms(*d))).collect::<Vec<_>>(),
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
        eprintln!("load: {:>4}s fan-out {n} done", t_run.elapsed().as_secs());
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
        eprintln!(
            "load: {:>4}s throughput {label} done",
            t_run.elapsed().as_secs()
        );
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
    eprintln!("load: {:>4}s REST done", t_run.elapsed().as_secs());

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
    eprintln!("load: {:>4}s catch-up done", t_run.elapsed().as_secs());

    table.row(
        format!("start: spawn `wrangler dev` → first answer, ms (median of {cold_reps})"),
        f(cold_o),
        f(cold_b),
        ratio(cold_o, cold_b),
    );

    // Costs of ours alone.
    let (wasm, wasm_gz) = scenarios::wasm_size()?;
    table.row(
        "optimised Worker wasm, bytes (gzip -9)",
        format!("{wasm} ({wasm_gz})"),
        "-".into(),
        String::new(),
    );
    report["wasm"] = json!({"bytes": wasm, "gzipBytes": wasm_gz});
    let edits = if opts.quick { 1 } else { 3 };
    let rows = scenarios::d1_rows(&ours, &o, edits, opts.quick)?;
    eprintln!("load: {:>4}s D1 rows done", t_run.elapsed().as_secs());
    for (kind, per_table) in &rows {
        let total: f64 = per_table.iter().map(|(_, n)| n).sum();
        let detail: Vec<String> = per_table
            .iter()
            .filter(|(_, n)| *n > 0.0)
            .map(|(t, n)| format!("{t} {}", f(*n)))
            .collect();
        table.row(
            format!("D1 table rows written per edit: {kind}"),
            format!("{} ({})", f(total), detail.join(", ")),
            "-".into(),
            String::new(),
        );
    }
    report["d1RowsPerEdit"] = json!(rows
        .iter()
        .map(|(k, t)| (
            k.to_string(),
            Value::Object(t.iter().map(|(n, v)| (n.to_string(), json!(v))).collect())
        ))
        .collect::<serde_json::Map<_, _>>());

    report["machine"]["loadavgEnd"] = json!(sh("cut -d' ' -f1-3 /proc/loadavg"));
    report["seconds"] = json!(t_run.elapsed().as_secs());
    report["table"] = json!(table.markdown());
    drop(base);
    ours.stop();
    let _ = std::fs::remove_dir_all(&tmp);

    if let Some(dir) = opts.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&opts.out, text)
        .map_err(|e| format!("cannot write {}: {e}", opts.out.display()))?;
    println!("\n{}", table.markdown());
    println!(
        "machine: {}; load average {} → {}; {} s",
        report["machine"]["cpu"].as_str().unwrap_or(""),
        report["machine"]["loadavg"].as_str().unwrap_or(""),
        report["machine"]["loadavgEnd"].as_str().unwrap_or(""),
        t_run.elapsed().as_secs()
    );
    println!("results: {}", opts.out.display());
    Ok(())
}

/// Sleeps a moment between steps so one step's tail does not land in the next.
pub fn settle() {
    thread::sleep(Duration::from_millis(500));
}
