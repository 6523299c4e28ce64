//! One user, one socket, N writes in flight: how many acks per second the
//! object gives when it always has N writes to group. Each key has at most
//! one write in flight and each write is based on its key's acked version
//! (`baseVersion`), as a client's would be, so there are no conflicts to
//! settle. Also the setup that gives keys a deep history first.

use crate::scenarios::{put_based, value, Target, WAIT};
use crate::stats::{summarize, Summary};
use crate::ws::Conn;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

/// A user's keys and the version each was last acked at.
pub struct Pool {
    pub keys: Vec<String>,
    pub versions: HashMap<String, u64>,
}

impl Pool {
    /// `n` keys named `<prefix>0`..; none written yet.
    pub fn new(prefix: &str, n: usize) -> Pool {
        Pool {
            keys: (0..n).map(|i| format!("{prefix}{i}")).collect(),
            versions: HashMap::new(),
        }
    }

    /// The highest version acked so far: the user's cursor when this pool
    /// is all the user wrote.
    pub fn cursor(&self) -> u64 {
        self.versions.values().copied().max().unwrap_or(0)
    }
}

/// When a run stops sending.
#[derive(Clone, Copy)]
pub enum Until {
    /// After `warm` (a new object loads, code warms up), count the acks of
    /// `window`.
    Timed { warm: Duration, window: Duration },
    /// Exactly this many writes, all counted.
    Writes(usize),
}

pub struct Flight {
    pub in_flight: usize,
    /// Acks counted, and over how long.
    pub acked: usize,
    pub secs: f64,
    pub per_s: f64,
    /// Send → ack of the counted writes.
    pub lat: Summary,
    /// Acks that reported a conflict (should be none: every write is based
    /// on its key's acked version).
    pub conflicts: usize,
}

impl Flight {
    pub fn json(&self) -> Value {
        json!({"inFlight": self.in_flight, "acked": self.acked, "seconds": crate::stats::r2(self.secs),
               "acksPerS": crate::stats::r2(self.per_s), "ackLatency": self.lat.json(),
               "conflicts": self.conflicts})
    }

    /// "509 acks/s (p50 30.1 / p99 61.0 ms)".
    pub fn cell(&self) -> String {
        use crate::stats::f;
        let conflicts = if self.conflicts > 0 {
            format!(", {} conflicts", self.conflicts)
        } else {
            String::new()
        };
        format!(
            "{} acks/s (p50 {} / p99 {} ms{conflicts})",
            f(self.per_s),
            f(self.lat.p50),
            f(self.lat.p99)
        )
    }
}

/// Keeps `n` writes in flight on `c` over the first `n` keys of `pool`
/// (which must have that many) until `until`, then waits for the last acks,
/// so the pool's versions are exact again when it returns.
pub fn run(
    c: &mut Conn,
    pool: &mut Pool,
    n: usize,
    until: Until,
    tag: &str,
) -> Result<Flight, String> {
    if pool.keys.len() < n {
        return Err(format!("{n} in flight needs {n} keys"));
    }
    let total = match until {
        Until::Writes(w) => w,
        Until::Timed { .. } => usize::MAX,
    };
    let mut out = Outbox {
        tag,
        sent: 0,
        pending: HashMap::new(),
    };
    let started = Instant::now();
    for k in 0..n.min(total) {
        out.send(c, pool, k)?;
    }
    let (mut counted, mut conflicts) = (Vec::new(), 0usize);
    // (from, until): counting starts at once (Writes) or after the warm-up.
    let mut window: Option<(Instant, Option<Instant>)> = match until {
        Until::Writes(_) => Some((started, None)),
        Until::Timed { .. } => None,
    };
    let mut last_ack = Instant::now();
    while !out.pending.is_empty() {
        let Some(v) = c.read_json(Duration::from_millis(200))? else {
            if last_ack.elapsed() > WAIT {
                return Err(format!(
                    "{} writes unanswered for {WAIT:?} ({tag})",
                    out.pending.len()
                ));
            }
            continue;
        };
        if v["type"] == "error" {
            return Err(format!("error frame ({tag}): {v}"));
        }
        let Some((k, at)) = v["requestId"]
            .as_str()
            .filter(|_| v["type"] == "ack")
            .and_then(|r| out.pending.remove(r))
        else {
            continue;
        };
        let now = Instant::now();
        last_ack = now;
        let version = v["version"]
            .as_u64()
            .ok_or_else(|| format!("ack without version: {v}"))?;
        pool.versions.insert(pool.keys[k].clone(), version);
        let mut sending = out.sent < total;
        match window {
            None => {
                if let Until::Timed { warm, window: w } = until {
                    if now - started >= warm {
                        window = Some((now, Some(now + w)));
                    }
                }
            }
            Some((_, Some(end))) if now > end => sending = false,
            Some(_) => {
                counted.push(now - at);
                conflicts += usize::from(!v["conflict"].is_null());
            }
        }
        if sending {
            out.send(c, pool, k)?;
        }
    }
    let secs = match window {
        Some((from, Some(end))) => (end - from).as_secs_f64(),
        Some((from, None)) => (last_ack - from).as_secs_f64(),
        None => 0.0,
    };
    Ok(Flight {
        in_flight: n,
        acked: counted.len(),
        secs,
        per_s: if secs > 0.0 {
            counted.len() as f64 / secs
        } else {
            f64::NAN
        },
        lat: summarize(&counted),
        conflicts,
    })
}

/// Writes sent and not yet acked.
struct Outbox<'a> {
    tag: &'a str,
    sent: usize,
    /// requestId → (key index, sent at)
    pending: HashMap<String, (usize, Instant)>,
}

impl Outbox<'_> {
    /// The next write for key `k`, based on its acked version.
    fn send(&mut self, c: &mut Conn, pool: &Pool, k: usize) -> Result<(), String> {
        let rid = format!("{}-{}", self.tag, self.sent);
        self.sent += 1;
        let key = &pool.keys[k];
        let base = pool.versions.get(key).copied();
        c.send(&put_based(key, &value(&rid), &rid, base))?;
        self.pending.insert(rid, (k, Instant::now()));
        Ok(())
    }
}

/// How deep the setup got.
pub struct Depth {
    /// Versions every key of the pool has (the target unless time ran out).
    pub versions: usize,
    pub target: usize,
    pub writes: usize,
    pub secs: f64,
    pub conflicts: usize,
}

impl Depth {
    pub fn json(&self) -> Value {
        json!({"versionsPerKey": self.versions, "target": self.target, "writes": self.writes,
               "seconds": crate::stats::r2(self.secs), "conflicts": self.conflicts})
    }
}

/// Gives every key of `pool` `target` versions (or as many as fit in
/// `budget`) with `POST /api/sync` batches of up to 64 keys (the most one
/// batch may hold): one writer per batch-sized share of the keys, each
/// sending one batch at a time, each write based on the version the previous
/// answer gave. (One 64-key batch at a time wrote fastest here: 1,800
/// writes/s, against 1,100 for two 32-key writers and 600 for eight 8-key
/// ones, which pay a request each for fewer writes.) No requestId: the
/// object would remember every one. Small values: depth is what counts.
pub fn deepen(
    t: &Target,
    token: &str,
    pool: &mut Pool,
    target: usize,
    budget: Duration,
) -> Result<Depth, String> {
    let started = Instant::now();
    let deadline = started + budget;
    let threads = pool.keys.len().div_ceil(64);
    let shares: Vec<Vec<String>> = pool
        .keys
        .chunks(pool.keys.len().div_ceil(threads).max(1))
        .map(<[String]>::to_vec)
        .collect();
    let results: Vec<Result<Share, String>> = thread::scope(|s| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|keys| {
                let versions = keys
                    .iter()
                    .filter_map(|k| pool.versions.get(k).map(|v| (k.clone(), *v)))
                    .collect();
                s.spawn(move || write_share(t, token, keys, versions, target, deadline))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("panicked".into())))
            .collect()
    });
    let (mut depth, mut writes, mut conflicts) = (usize::MAX, 0, 0);
    for r in results {
        let share = r?;
        writes += share.rounds * share.versions.len();
        depth = depth.min(share.rounds);
        conflicts += share.conflicts;
        pool.versions.extend(share.versions);
    }
    Ok(Depth {
        versions: if depth == usize::MAX { 0 } else { depth },
        target,
        writes,
        secs: started.elapsed().as_secs_f64(),
        conflicts,
    })
}

/// What one writer of `deepen` did.
struct Share {
    rounds: usize,
    conflicts: usize,
    versions: HashMap<String, u64>,
}

/// One batch of all of `keys` at a time, `target` times or until `deadline`.
fn write_share(
    t: &Target,
    token: &str,
    keys: Vec<String>,
    mut versions: HashMap<String, u64>,
    target: usize,
    deadline: Instant,
) -> Result<Share, String> {
    let (mut rounds, mut conflicts) = (0, 0);
    while rounds < target && Instant::now() < deadline {
        let data: serde_json::Map<String, Value> = keys
            .iter()
            .map(|k| (k.clone(), json!(format!("{k} {rounds}"))))
            .collect();
        let bases: serde_json::Map<String, Value> = keys
            .iter()
            .filter_map(|k| versions.get(k).map(|v| (k.clone(), json!(v))))
            .collect();
        let body = json!({"data": data, "baseVersions": bases}).to_string();
        let (status, resp, _) = t.http("POST", "/api/sync", Some(token), Some(body.as_bytes()))?;
        let v: Value = serde_json::from_slice(&resp).unwrap_or(Value::Null);
        if status != 200 {
            return Err(format!("POST /api/sync: {status} {v}"));
        }
        conflicts += v["conflicts"].as_array().map_or(0, Vec::len);
        for k in &keys {
            let ver = v["versions"][k]
                .as_u64()
                .ok_or_else(|| format!("no version for {k} in {v}"))?;
            versions.insert(k.clone(), ver);
        }
        rounds += 1;
    }
    Ok(Share {
        rounds,
        conflicts,
        versions,
    })
}

/// Alternating rounds of ours and the one-upsert floor at one N: a busy
/// moment of the shared machine then falls on both, and the median of each
/// side (not one round) gives the ratio.
pub struct Rounds {
    pub ours: Vec<Flight>,
    pub floor: Vec<Flight>,
    /// Round i: did ours go first? (Round 1 ours, then each round the other.)
    pub ours_first: Vec<bool>,
}

/// `rounds` rounds of `ours` and `floor` (each called with the round's
/// number), the order swapped every round.
pub fn alternate(
    rounds: usize,
    mut ours: impl FnMut(usize) -> Result<Flight, String>,
    mut floor: impl FnMut(usize) -> Result<Flight, String>,
) -> Result<Rounds, String> {
    let mut r = Rounds {
        ours: Vec::new(),
        floor: Vec::new(),
        ours_first: Vec::new(),
    };
    for i in 0..rounds {
        let ours_first = i % 2 == 0;
        if ours_first {
            r.ours.push(ours(i)?);
            r.floor.push(floor(i)?);
        } else {
            r.floor.push(floor(i)?);
            r.ours.push(ours(i)?);
        }
        r.ours_first.push(ours_first);
    }
    Ok(r)
}

fn per_s(v: &[Flight]) -> Vec<f64> {
    v.iter().map(|f| f.per_s).collect()
}

impl Rounds {
    pub fn ours_median(&self) -> f64 {
        crate::stats::median_f64(&per_s(&self.ours))
    }

    pub fn floor_median(&self) -> f64 {
        crate::stats::median_f64(&per_s(&self.floor))
    }

    /// Ours ÷ floor of each round (the two runs next to each other).
    pub fn round_ratios(&self) -> Vec<f64> {
        self.ours
            .iter()
            .zip(&self.floor)
            .map(|(o, d)| o.per_s / d.per_s)
            .collect()
    }

    /// The headline: median ours ÷ median floor.
    pub fn ratio(&self) -> f64 {
        self.ours_median() / self.floor_median()
    }

    /// "1218 acks/s (1242, 1214, 1218; p50 13.1 / p99 25.0 ms)": the median,
    /// each round in order, the median of the rounds' p50s and p99s.
    pub fn cell(side: &[Flight]) -> String {
        use crate::stats::{f, median_f64};
        let rounds: Vec<String> = side.iter().map(|x| f(x.per_s)).collect();
        let p50 = median_f64(&side.iter().map(|x| x.lat.p50).collect::<Vec<_>>());
        let p99 = median_f64(&side.iter().map(|x| x.lat.p99).collect::<Vec<_>>());
        let conflicts: usize = side.iter().map(|x| x.conflicts).sum();
        let conflicts = if conflicts > 0 {
            format!(", {conflicts} conflicts")
        } else {
            String::new()
        };
        format!(
            "{} acks/s ({}; p50 {} / p99 {} ms{conflicts})",
            f(median_f64(&per_s(side))),
            rounds.join(", "),
            f(p50),
            f(p99)
        )
    }

    /// "×2.60 (×2.48, ×3.33, ×2.60)": ratio of the medians, then each round's.
    pub fn ratio_cell(&self) -> String {
        let each: Vec<String> = self
            .round_ratios()
            .iter()
            .map(|r| format!("×{r:.2}"))
            .collect();
        format!("×{:.2} ({})", self.ratio(), each.join(", "))
    }

    pub fn json(&self) -> Value {
        use crate::stats::r2;
        json!({"rounds": self.ours.len(), "oursFirst": self.ours_first,
               "ours": self.ours.iter().map(Flight::json).collect::<Vec<_>>(),
               "d1Floor": self.floor.iter().map(Flight::json).collect::<Vec<_>>(),
               "oursMedianAcksPerS": r2(self.ours_median()),
               "floorMedianAcksPerS": r2(self.floor_median()),
               "ratioOfMedians": r2(self.ratio()),
               "roundRatios": self.round_ratios().into_iter().map(r2).collect::<Vec<_>>(),
               "medianRoundRatio": r2(crate::stats::median_f64(&self.round_ratios()))})
    }
}
