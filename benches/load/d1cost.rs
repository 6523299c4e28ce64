//! D1 rows written and read per operation, from D1's own counters (the
//! Worker's `d1-cost` lines, `d1log.rs`), and what a wake costs: the first
//! write after a restart of `wrangler dev` on the same state, for a user
//! with many remembered requestIds beside one with few.

use crate::d1log::{Cost, Log};
use crate::inflight::{self, Pool, Until};
use crate::scenarios::{self, put_based, value, wait_ack, Room, Target};
use crate::server::Server;
use crate::stats::{f, ms};
use crate::{Progress, Table};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub struct Costs {
    pub edits: Table,
    pub wake: Table,
    pub json: Value,
}

/// Starts a Worker that logs its D1 costs, measures, runs `then` on it (the
/// record lists, `records.rs`, which need the same log), stops it.
pub fn run<T>(
    quick: bool,
    progress: &Progress,
    then: impl FnOnce(&Server) -> Result<T, String>,
) -> Result<(Costs, T), String> {
    let vars = crate::cost_vars();
    let s = Server::start("bench-cost", &vars)
        .map_err(|e| format!("the Worker (D1 cost log) did not start: {e}"))?;
    let mut log = Log::new(&s.state_dir);
    let reps = if quick { 1 } else { 3 };
    let t = Target::ours(&s);
    let edits = edits(&t, &mut log, reps)?;
    progress.note("D1 cost per edit done");

    // Users whose objects remember many and few requestIds, with the same
    // 20 keys each: a wake may cost something per key, and only the
    // requestIds should differ. 20 writes in flight.
    let many = if quick { 500 } else { 14_000 };
    let mut users = Vec::new();
    for requests in [many, 20] {
        let room = t.room(1)?;
        let mut pool = Pool::new("w", 20);
        let mut c = t.connect(&room, 0)?;
        let n = pool.keys.len();
        inflight::run(
            &mut c,
            &mut pool,
            n,
            Until::Writes(requests),
            &format!("rid{requests}"),
        )?;
        c.close();
        users.push((requests, room, pool));
    }
    progress.note(format!("{many} requestIds written"));
    drop(t);
    s.restart_with(&vars)?;
    // The restarted runtime has a new internal address.
    let t = Target::ours(&s);
    // The first request after a restart also starts the isolate: let another
    // user's object pay for that, so each figure below is the wake alone.
    {
        let room = t.room(1)?;
        let mut c = t.connect(&room, 0)?;
        c.send(&put_based("warm", "w", "warm", None))?;
        wait_ack(&mut c, "warm")?;
        c.close();
    }
    let mut wakes = Vec::new();
    for (requests, room, pool) in &mut users {
        wakes.push(wake(&t, &mut log, *requests, room, pool)?);
    }
    progress.note("restart and wakes done");
    drop(t);
    let then = then(&s)?;
    s.stop();

    let mut edit_table = Table::new(&[
        "D1 per edit (D1's meta, from the d1-cost log)",
        "rows written, by table",
        "rows read",
        "batches (all of those edits)",
    ]);
    for (kind, c) in &edits {
        edit_table.push(vec![
            format!("{kind} (mean of {reps})"),
            c.written_cell(),
            c.read_cell(),
            c.ops_cell(),
        ]);
    }
    let label = |w: &Wake| format!("user with {} remembered requestIds", w.requests);
    let mut wake_table = Table::new(&[
        "after a restart of `wrangler dev` (same state)",
        &label(&wakes[0]),
        &label(&wakes[1]),
    ]);
    let row = |what: &str, cell: &dyn Fn(&Wake) -> String| {
        vec![what.to_string(), cell(&wakes[0]), cell(&wakes[1])]
    };
    wake_table.push(row("first write: put → ack, ms", &|w| {
        f(ms(w.first_write))
    }));
    wake_table.push(row("  connecting the socket before it, ms", &|w| {
        f(ms(w.connect))
    }));
    wake_table.push(row(
        "D1 rows read by the wake (that write's batches but the commit)",
        &|w| w.wake.read_cell(),
    ));
    wake_table.push(row("  rows the wake wrote", &|w| w.wake.written_cell()));
    wake_table.push(row(
        "  D1 time of the wake's batches (Worker clock), ms",
        &|w| w.wake.ms_cell(),
    ));
    wake_table.push(row("  rows its commit read", &|w| w.commit.read_cell()));
    wake_table.push(row("  batches", &|w| w.all.ops_cell()));
    wake_table.push(row(
        "then `hello {since: cursor}` → `changes`, ms",
        &|w| f(ms(w.hello_time)),
    ));
    wake_table.push(row("D1 rows read by that hello", &|w| w.hello.read_cell()));

    let json = json!({
        "perEdit": edits.iter().map(|(k, c)| (k.to_string(), c.json())).collect::<serde_json::Map<_, _>>(),
        "editsPerKind": reps,
        "wake": wakes.iter().map(Wake::json).collect::<Vec<_>>(),
    });
    Ok((
        Costs {
            edits: edit_table,
            wake: wake_table,
            json,
        },
        then,
    ))
}

/// Rows written and read per edit, for each kind of edit, `reps` edits of
/// each on one user.
fn edits(t: &Target, log: &mut Log, reps: usize) -> Result<Vec<(&'static str, Cost)>, String> {
    let room = t.room(1)?;
    let user = room.user()?.clone();
    let mut c = t.connect(&room, 0)?;
    // The user's counters exist before anything is measured, and so do the
    // keys the REST edits change.
    let mut versions = std::collections::HashMap::new();
    for (i, key) in std::iter::once("warm".to_string())
        .chain((0..reps).map(|i| format!("rest-{i}")))
        .enumerate()
    {
        let rid = format!("setup-{i}");
        c.send(&put_based(&key, &value(&rid), &rid, None))?;
        versions.insert(key, wait_ack(&mut c, &rid)?);
    }
    let kinds: [&'static str; 4] = [
        "WebSocket put, new key",
        "WebSocket put, existing key",
        "WebSocket delete",
        "REST PUT, existing key",
    ];
    let mut out = Vec::new();
    for (ki, kind) in kinds.into_iter().enumerate() {
        let mark = log.mark();
        for i in 0..reps {
            let rid = format!("edit-{ki}-{i}");
            let key = if ki == 3 {
                format!("rest-{i}")
            } else {
                format!("k{i}")
            };
            let base = versions.get(&key).copied();
            let version = match ki {
                0 | 1 => {
                    c.send(&put_based(&key, &value(&rid), &rid, base))?;
                    wait_ack(&mut c, &rid)?
                }
                2 => {
                    let mut frame = json!({"type": "delete", "key": key, "requestId": rid});
                    frame["baseVersion"] = json!(base);
                    c.send(&frame.to_string())?;
                    wait_ack(&mut c, &rid)?
                }
                _ => {
                    let body = json!({"value": value(&rid), "baseVersion": base, "requestId": rid})
                        .to_string();
                    let path = format!("/api/sync/{key}");
                    let (status, resp, _) =
                        t.http("PUT", &path, Some(&user.token), Some(body.as_bytes()))?;
                    let v: Value = serde_json::from_slice(&resp).unwrap_or(Value::Null);
                    if status != 200 {
                        return Err(format!("PUT {path}: {status} {v}"));
                    }
                    v["version"]
                        .as_u64()
                        .ok_or_else(|| format!("PUT {path}: no version in {v}"))?
                }
            };
            versions.insert(key, version);
        }
        out.push((kind, Cost::of(&log.wait(&mark, &user.user_id)).per(reps)));
    }
    c.close();
    Ok(out)
}

struct Wake {
    requests: usize,
    connect: Duration,
    first_write: Duration,
    /// The first write's batches other than the commit: what waking costs.
    wake: Cost,
    commit: Cost,
    all: Cost,
    hello_time: Duration,
    hello: Cost,
}

impl Wake {
    fn json(&self) -> Value {
        json!({"rememberedRequestIds": self.requests,
               "connectMs": crate::stats::ms2(self.connect),
               "firstWriteMs": crate::stats::ms2(self.first_write),
               "wake": self.wake.json(), "firstCommit": self.commit.json(),
               "helloMs": crate::stats::ms2(self.hello_time), "hello": self.hello.json()})
    }
}

/// The first request after a restart to `room`'s object: a put on a socket
/// opened for it, then `hello {since: cursor}` on that socket.
fn wake(
    t: &Target,
    log: &mut Log,
    requests: usize,
    room: &Room,
    pool: &mut Pool,
) -> Result<Wake, String> {
    let user = room.user()?.user_id.clone();
    let mark = log.mark();
    let t0 = Instant::now();
    let mut c = t.connect(room, 0)?;
    let t1 = Instant::now();
    let key = pool.keys[0].clone();
    let rid = "after-restart";
    c.send(&put_based(
        &key,
        &value(rid),
        rid,
        pool.versions.get(&key).copied(),
    ))?;
    let version = wait_ack(&mut c, rid)?;
    let t2 = Instant::now();
    pool.versions.insert(key, version);
    let first = log.wait(&mark, &user);

    let mark = log.mark();
    let t3 = Instant::now();
    scenarios::hello(&mut c, pool.cursor())?;
    let t4 = Instant::now();
    let hello = Cost::of(&log.wait(&mark, &user));
    c.close();
    Ok(Wake {
        requests,
        connect: t1 - t0,
        first_write: t2 - t1,
        wake: Cost::filter(&first, |op| op != "commit"),
        commit: Cost::filter(&first, |op| op == "commit"),
        all: Cost::of(&first),
        hello_time: t4 - t3,
        hello,
    })
}
