//! Convergence soak test under faults, in the style of Jepsen's checks.
//!
//! K devices of one user, each keeping its own model of the data, write at
//! random over WebSockets and REST (puts, deletes, concurrent writes to a few
//! shared keys with stale or missing base versions and skewed clocks), replay
//! requestIds, drop and reopen their sockets, while `wrangler dev` is
//! restarted on the same state in the middle. Then writing stops, every
//! device catches up, and the test checks:
//!   - every device's state equals the server's `GET /api/sync`;
//!   - no acknowledged write is lost: each acked version holds that write in
//!     the key's history (the current value is its newest history row);
//!   - versions are 1..=cursor, each once; each socket saw changes in order,
//!     and together with its own acks without gaps after its catch-up;
//!   - nothing was applied twice: every value is stored at most once, and a
//!     replayed requestId gets the first answer again.
//!
//!   cargo test --test soak                  # short: 4 devices, ~30 s, one restart
//!   cargo test --test soak -- --ignored     # long: 8 devices, 5 min, three restarts
//!
//! SOAK_SEED=n replays a run's random choices (the network's timing still
//! varies); SOAK_SECONDS and SOAK_DEVICES override the size.

#[allow(dead_code)]
#[path = "../api/server.rs"]
mod server;

#[allow(dead_code)]
#[path = "../api/client.rs"]
mod client;

#[allow(dead_code)]
#[path = "../../benches/load/ws.rs"]
mod ws;

mod device;

use client::Client;
use device::{Device, Report};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;
use server::{sql_str, Server};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

/// Limits raised so the soak exercises sync, not the rate limiter.
const VARS: &[(&str, &str)] = &[
    ("WRITE_BURST", "1000000"),
    ("WRITES_PER_MINUTE", "100000000"),
    ("REGISTRATIONS_PER_IP", "1000000"),
    ("WRITES_PER_DAY", "1000000000"),
    ("QUOTA_BYTES", "100000000000"),
    // Keep every version, so each acknowledged one can be looked up.
    ("HISTORY_VERSIONS", "1000000"),
];

#[derive(Clone, Copy)]
struct Size {
    devices: usize,
    seconds: u64,
    restarts: usize,
}

fn env_num(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

fn main() {
    let args = Arguments::from_args();
    let short = Size {
        devices: 4,
        seconds: 30,
        restarts: 1,
    };
    let long = Size {
        devices: 8,
        seconds: 300,
        restarts: 3,
    };
    let trials = vec![
        Trial::test("soak::short", move || soak(short)),
        Trial::test("soak::long", move || soak(long)).with_ignored_flag(true),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn soak(size: Size) -> Result<(), Failed> {
    let size = Size {
        devices: env_num("SOAK_DEVICES").map_or(size.devices, |n| n as usize),
        seconds: env_num("SOAK_SECONDS").unwrap_or(size.seconds),
        ..size
    };
    let seed = env_num("SOAK_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!(
        "soak: seed {seed}, {} devices, {} s, {} restart(s)",
        size.devices, size.seconds, size.restarts
    );
    let s = Server::start("soak", VARS).map_err(Failed::from)?;
    let c = Client::new(&s);
    let user = c.register("soak")?;
    let mut tokens = vec![user.token.clone()];
    for _ in 1..size.devices {
        let d = c.login(&user.email, &user.password)?;
        tokens.push(d.token);
    }

    let stop = AtomicBool::new(false);
    let restarts = AtomicUsize::new(0);
    let quiet = Barrier::new(size.devices + 1);
    let caught_up = Barrier::new(size.devices + 1);
    let started = Instant::now();
    let reports: Vec<Report> = thread::scope(|scope| {
        let handles: Vec<_> = tokens
            .iter()
            .enumerate()
            .map(|(i, token)| {
                let (s, stop, quiet, caught_up) = (&s, &stop, &quiet, &caught_up);
                scope.spawn(move || {
                    let mut d = Device::new(i, token, seed, s);
                    d.run(stop);
                    d.quiesce();
                    quiet.wait();
                    d.final_catch_up();
                    caught_up.wait();
                    d.report()
                })
            })
            .collect();
        // Restarts spread over the writing period, then stop writing.
        let total = Duration::from_secs(size.seconds);
        for k in 1..=size.restarts {
            let at = total.mul_f64(k as f64 / (size.restarts + 1) as f64);
            if let Some(wait) = at.checked_sub(started.elapsed()) {
                thread::sleep(wait);
            }
            eprintln!(
                "soak: {:>4}s restarting wrangler dev",
                started.elapsed().as_secs()
            );
            match s.restart_with(VARS) {
                Ok(()) => {
                    restarts.fetch_add(1, Ordering::SeqCst);
                    eprintln!("soak: {:>4}s restarted", started.elapsed().as_secs());
                }
                Err(e) => eprintln!("soak: restart failed: {e}"),
            }
        }
        if let Some(wait) = total.checked_sub(started.elapsed()) {
            thread::sleep(wait);
        }
        stop.store(true, Ordering::SeqCst);
        eprintln!("soak: {:>4}s quiescing", started.elapsed().as_secs());
        quiet.wait();
        caught_up.wait();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Report::panicked()))
            .collect()
    });
    eprintln!("soak: {:>4}s checking", started.elapsed().as_secs());
    let restarts = restarts.load(Ordering::SeqCst);
    let result = check(&s, &user.token, &user.user_id, &reports, restarts, size);
    s.stop();
    result
}

/// The checks against the server, after every device caught up.
fn check(
    s: &Server,
    token: &str,
    user_id: &str,
    reports: &[Report],
    restarts: usize,
    size: Size,
) -> Result<(), Failed> {
    // Each entry starts with its kind in brackets.
    let mut bad: Vec<String> = Vec::new();
    let mut device_counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reports {
        for (k, n) in &r.violation_counts {
            *device_counts.entry(k).or_default() += n;
        }
        bad.extend(r.violations.iter().map(|v| {
            let (kind, rest) = v.split_at(v.find(']').map_or(0, |i| i + 1));
            format!("{kind} device {}:{rest}", r.id)
        }));
    }

    // Counts first, so a reader sees how much was exercised even on failure.
    let sum = |f: fn(&Report) -> usize| reports.iter().map(f).sum::<usize>();
    eprintln!(
        "soak: {} devices: {} writes ({} over REST), {} acked, {} conflicts ({} lost to the stored value), \
         {} replays, {} reconnects, {} catch-ups, {} changes received, {} rate-limited, {} restart(s)",
        size.devices,
        sum(|r| r.writes),
        sum(|r| r.rest_writes),
        sum(|r| r.acked.len()),
        sum(|r| r.conflicts),
        sum(|r| r.rejected),
        sum(|r| r.replays),
        sum(|r| r.reconnects),
        sum(|r| r.catch_ups),
        sum(|r| r.changes_received),
        sum(|r| r.rate_limited),
        restarts,
    );
    if restarts == 0 && size.restarts > 0 {
        bad.push("[faults] no restart happened".into());
    }

    // 1. Every device equals the server.
    let c = Client::new(s);
    let snap = c.snapshot(token, None)?;
    let server_data: BTreeMap<String, String> = obj(&snap["data"])
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
        .collect();
    let server_versions: BTreeMap<String, u64> = obj(&snap["versions"])
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.as_u64()?)))
        .collect();
    let server_deleted: BTreeSet<String> = snap["deleted"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let cursor = snap["cursor"].as_u64().unwrap_or(0);
    for r in reports {
        let data: BTreeMap<String, String> = r
            .model
            .iter()
            .filter_map(|(k, (v, _))| Some((k.clone(), v.clone()?)))
            .collect();
        let deleted: BTreeSet<String> = r
            .model
            .iter()
            .filter(|(_, (v, _))| v.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        if data != server_data {
            bad.push(format!(
                "[converge] device {}: data differs from the server's: {}",
                r.id,
                diff(&data, &server_data)
            ));
        }
        if deleted != server_deleted {
            bad.push(format!(
                "[converge] device {}: deleted keys {deleted:?}, server {server_deleted:?}",
                r.id
            ));
        }
        for (k, (_, v)) in &r.model {
            if server_versions.get(k).is_some_and(|sv| sv != v) {
                bad.push(format!(
                    "[converge] device {}: {k} at version {v}, server {:?}",
                    r.id,
                    server_versions.get(k)
                ));
            }
        }
        if r.cursor != cursor {
            bad.push(format!(
                "[converge] device {}: cursor {}, server {cursor}",
                r.id, r.cursor
            ));
        }
    }

    // 2. History, read from D1.
    let rows = s.db_rows(&format!(
        "SELECT key, version, deleted, data, chunks FROM sync_history WHERE user_id = {} ORDER BY id",
        sql_str(user_id)
    ))?;
    let mut by_version: HashMap<u64, (String, Option<String>)> = HashMap::new();
    let mut stored_values: HashMap<String, usize> = HashMap::new();
    let mut losers: BTreeSet<(String, String)> = BTreeSet::new();
    for row in &rows {
        let key = row["key"].as_str().unwrap_or("").to_string();
        let deleted = row["deleted"].as_i64() == Some(1);
        let data = if deleted {
            None
        } else {
            row["data"].as_str().map(String::from)
        };
        if let Some(d) = &data {
            *stored_values.entry(d.clone()).or_default() += 1;
        }
        match row["version"].as_u64() {
            Some(v) => {
                if by_version.insert(v, (key.clone(), data)).is_some() {
                    bad.push(format!("[versions] version {v} is stored twice"));
                }
            }
            None => {
                if let Some(d) = data {
                    losers.insert((key, d));
                }
            }
        }
    }
    let versions: BTreeSet<u64> = by_version.keys().copied().collect();
    let expected: BTreeSet<u64> = (1..=cursor).collect();
    if versions != expected {
        let missing: Vec<_> = expected.difference(&versions).take(10).collect();
        let extra: Vec<_> = versions.difference(&expected).take(10).collect();
        bad.push(format!(
            "[versions] history versions are not exactly 1..={cursor}: missing {missing:?}, extra {extra:?}"
        ));
    }
    for (value, n) in &stored_values {
        if *n > 1 {
            bad.push(format!(
                "[double-apply] value {:?} stored {n} times (a write applied twice)",
                cut(value)
            ));
        }
    }

    // 3. No acknowledged write lost; acked versions unique.
    let mut version_owner: HashMap<u64, String> = HashMap::new();
    let mut lost = 0;
    for r in reports {
        for (rid, ack) in &r.acked {
            let Some(w) = r.writes_by_rid.get(rid) else {
                bad.push(format!(
                    "[protocol] device {}: ack for unknown requestId {rid}",
                    r.id
                ));
                continue;
            };
            if ack.rejected {
                let kept = w
                    .value
                    .as_ref()
                    .is_none_or(|v| losers.contains(&(w.key.clone(), v.clone())));
                if !kept {
                    lost += 1;
                    bad.push(format!(
                        "[lost] device {}: {rid} lost to the stored value and its value is not in history",
                        r.id
                    ));
                }
                continue;
            }
            if ack.version == 0 && w.value.is_none() {
                continue; // deleting a key that never existed stores nothing
            }
            match by_version.get(&ack.version) {
                Some((key, data)) if *key == w.key && *data == w.value => {}
                Some((key, _)) if w.value.is_none() && *key == w.key => {}
                other => {
                    lost += 1;
                    bad.push(format!(
                        "[lost] device {}: acknowledged write LOST: {rid} ({} = {:?}) acked at version {}, history there holds {:?}",
                        r.id,
                        w.key,
                        w.value.as_deref().map(cut),
                        ack.version,
                        other.map(|(k, d)| (k, d.as_deref().map(cut)))
                    ));
                }
            }
            if w.value.is_some() {
                if let Some(prev) = version_owner.insert(ack.version, rid.clone()) {
                    bad.push(format!(
                        "[versions] version {} acked to two writes: {prev} and {rid}",
                        ack.version
                    ));
                }
            }
        }
    }
    // 4. The same through the history API, for a sample of acked writes.
    let probe = c
        .req("GET", "/api/sync/hot/history/0")
        .bearer(token)
        .send()?;
    if probe.status == 400 {
        let mut checked = 0;
        'sample: for r in reports {
            for (rid, ack) in r.acked.iter().filter(|(_, a)| !a.rejected && a.version > 0) {
                let Some(w) = r.writes_by_rid.get(rid) else {
                    continue;
                };
                if checked >= 100 {
                    break 'sample;
                }
                checked += 1;
                let path = format!("/api/sync/{}/history/{}", client::enc(&w.key), ack.version);
                let resp = c.req("GET", &path).bearer(token).send()?;
                let ok = resp.status == 200
                    && resp.json().is_ok_and(|v| match &w.value {
                        Some(value) => v["value"].as_str() == Some(value.as_str()),
                        None => v["deleted"] == serde_json::json!(true),
                    });
                if !ok {
                    bad.push(format!(
                        "[history-api] GET {path} (acked {rid}) answered {}: {}",
                        resp.status,
                        resp.excerpt()
                    ));
                }
            }
        }
        eprintln!("soak: {checked} acknowledged versions also read back through the history API");
    } else {
        eprintln!(
            "soak: no history API in this build ({}), history checked in D1 only",
            probe.status
        );
    }

    eprintln!(
        "soak: server cursor {cursor}, {} history rows ({} conflict losers kept), {} keys, {lost} acknowledged writes lost",
        rows.len(),
        losers.len(),
        server_versions.len()
    );
    if bad.is_empty() {
        return Ok(());
    }
    // Per kind: how many, then a few examples, the worst kinds first.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for b in &bad {
        let kind = b.split(']').next().unwrap_or("").trim_start_matches('[');
        *counts.entry(kind.to_string()).or_default() += 1;
    }
    for (k, n) in device_counts {
        // Devices keep only their first few examples of each kind.
        let e = counts.entry(k.to_string()).or_default();
        *e = (*e).max(n);
    }
    const ORDER: &[&str] = &[
        "lost",
        "double-apply",
        "versions",
        "converge",
        "replay",
        "order",
        "history-api",
        "liveness",
        "protocol",
        "faults",
    ];
    let mut out = format!(
        "violations by kind: {}",
        counts
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for kind in ORDER {
        let tag = format!("[{kind}]");
        for b in bad.iter().filter(|b| b.starts_with(&tag)).take(6) {
            out.push_str("\n  ");
            out.push_str(b);
        }
    }
    Err(out.into())
}

fn obj(v: &Value) -> Vec<(String, Value)> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn cut(s: &str) -> String {
    s.chars().take(40).collect()
}

fn diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> String {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            format!(
                "{k}: device {:?} server {:?}",
                a.get(k).map(|v| cut(v)),
                b.get(k).map(|v| cut(v))
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
