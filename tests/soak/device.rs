//! One simulated device: a socket that comes and goes, a queue of writes
//! retried with their requestIds until acknowledged, and a model of the data
//! built only from what the server sent (acks, changes, catch-ups).

use crate::client::{self, Client};
use crate::server::Server;
use crate::ws::{self, Conn, PROTOCOL};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const KEYS: &[&str] = &["hot", "hot", "hot", "k1", "k2", "k3", "k4", "k5"];
const MAX_IN_FLIGHT: usize = 4;
/// Unacknowledged writes are sent again after this (same requestId).
const RESEND_AFTER: Duration = Duration::from_secs(2);
const QUIESCE_LIMIT: Duration = Duration::from_secs(90);

/// xorshift64*: reproducible from the seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

pub struct Write {
    pub key: String,
    /// `None` for a delete.
    pub value: Option<String>,
    frame: String,
    rest: bool,
    base_version: Option<u64>,
    updated_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub version: u64,
    /// Lost to the stored value: no new version.
    pub rejected: bool,
    pub conflict: Value,
}

/// What one socket saw between its opening and its end.
#[derive(Default)]
struct Session {
    /// The catch-up's cursor, once the `changes` answer arrived.
    catch_up: Option<u64>,
    /// Versions of `change` frames, in arrival order.
    live: Vec<u64>,
}

pub struct Report {
    pub id: usize,
    pub model: BTreeMap<String, (Option<String>, u64)>,
    pub cursor: u64,
    pub writes_by_rid: HashMap<String, Write>,
    pub acked: HashMap<String, Ack>,
    pub violations: Vec<String>,
    pub violation_counts: BTreeMap<&'static str, usize>,
    pub writes: usize,
    pub rest_writes: usize,
    pub conflicts: usize,
    pub rejected: usize,
    pub replays: usize,
    pub reconnects: usize,
    pub catch_ups: usize,
    pub changes_received: usize,
    pub rate_limited: usize,
}

impl Report {
    pub fn panicked() -> Report {
        Report {
            id: usize::MAX,
            model: BTreeMap::new(),
            cursor: 0,
            writes_by_rid: HashMap::new(),
            acked: HashMap::new(),
            violations: vec!["[liveness] device thread panicked".into()],
            violation_counts: BTreeMap::from([("liveness", 1)]),
            writes: 0,
            rest_writes: 0,
            conflicts: 0,
            rejected: 0,
            replays: 0,
            reconnects: 0,
            catch_ups: 0,
            changes_received: 0,
            rate_limited: 0,
        }
    }
}

pub struct Device<'a> {
    r: Report,
    token: String,
    server: &'a Server,
    rng: Rng,
    /// This device's clock skew, so last-write-wins sees disagreeing clocks.
    skew_ms: i64,
    conn: Option<Conn>,
    sessions: Vec<Session>,
    /// requestId → when it was last sent; in the order first sent.
    pending: Vec<(String, Instant)>,
    /// Versions this device's own writes were acked with.
    own_versions: std::collections::BTreeSet<u64>,
    next_write: usize,
}

impl<'a> Device<'a> {
    pub fn new(id: usize, token: &str, seed: u64, server: &'a Server) -> Self {
        let mut rng = Rng(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let skew_ms = rng.below(3001) as i64 - 1500;
        Device {
            r: Report {
                id,
                ..Report::panicked()
            },
            token: token.to_string(),
            server,
            rng,
            skew_ms,
            conn: None,
            sessions: Vec::new(),
            pending: Vec::new(),
            own_versions: Default::default(),
            next_write: 0,
        }
        .with_no_violations()
    }

    fn with_no_violations(mut self) -> Self {
        self.r.violations.clear();
        self.r.violation_counts.clear();
        self
    }

    /// Records a failed check under its kind (the first few of each kind).
    fn violation(&mut self, kind: &'static str, v: String) {
        let n = self.r.violation_counts.entry(kind).or_default();
        *n += 1;
        if *n <= 10 {
            self.r.violations.push(format!("[{kind}] {v}"));
        }
    }

    // ------------------------------------------------------------ socket

    /// Opens a socket if there is none: `hello` from the cursor, then every
    /// unacknowledged WebSocket write again. False while the server is down.
    fn ensure_connected(&mut self) -> bool {
        if self.conn.is_some() {
            return true;
        }
        let offer = format!("{PROTOCOL}, bearer.{}", self.token);
        let mut conn = match ws::connect(&self.server.endpoint(), "/api/ws", &offer) {
            Ok(c) => c,
            Err(_) => return false,
        };
        if !self.sessions.is_empty() {
            self.r.reconnects += 1;
        }
        self.sessions.push(Session::default());
        let hello = json!({"type": "hello", "since": self.r.cursor}).to_string();
        if conn.send(&hello).is_err() {
            return false;
        }
        self.conn = Some(conn);
        self.r.catch_ups += 1;
        let rids: Vec<String> = self.pending.iter().map(|(r, _)| r.clone()).collect();
        for rid in rids {
            self.resend(&rid);
        }
        true
    }

    fn drop_conn(&mut self, clean: bool) {
        if let Some(c) = self.conn.take() {
            if clean {
                c.close();
            }
        }
    }

    fn send(&mut self, frame: &str) {
        let failed = match self.conn.as_mut() {
            Some(c) => c.send(frame).is_err(),
            None => false,
        };
        if failed {
            self.drop_conn(false);
        }
    }

    fn resend(&mut self, rid: &str) {
        let Some(w) = self.r.writes_by_rid.get(rid) else {
            return;
        };
        if w.rest {
            self.rest_send(rid);
        } else {
            let frame = w.frame.clone();
            self.send(&frame);
        }
        if let Some(p) = self.pending.iter_mut().find(|(r, _)| r == rid) {
            p.1 = Instant::now();
        }
    }

    /// Reads what has arrived, for up to `window`.
    fn pump(&mut self, window: Duration) {
        let until = Instant::now() + window;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let got = match self.conn.as_mut() {
                Some(c) => c.read_json(left.max(Duration::from_millis(1))),
                None => return,
            };
            match got {
                Ok(Some(v)) => self.on_frame(v),
                Ok(None) => {
                    if Instant::now() >= until {
                        return;
                    }
                }
                Err(_) => {
                    self.drop_conn(false);
                    return;
                }
            }
        }
    }

    fn apply(&mut self, key: &str, value: Option<String>, version: u64) {
        let current = self.r.model.get(key).map_or(0, |(_, v)| *v);
        if version > current {
            self.r.model.insert(key.to_string(), (value, version));
        }
        self.r.cursor = self.r.cursor.max(version);
    }

    fn on_frame(&mut self, v: Value) {
        match v["type"].as_str().unwrap_or("") {
            "changes" => {
                let cursor = v["cursor"].as_u64().unwrap_or(0);
                let changes = v["changes"].as_array().cloned().unwrap_or_default();
                let versions: Vec<u64> = changes
                    .iter()
                    .filter_map(|c| c["version"].as_u64())
                    .collect();
                if versions.windows(2).any(|w| w[0] >= w[1]) {
                    self.violation(
                        "order",
                        format!("catch-up not in version order: {versions:?}"),
                    );
                }
                if versions.iter().any(|&x| x > cursor) {
                    self.violation(
                        "order",
                        format!("catch-up beyond its cursor {cursor}: {versions:?}"),
                    );
                }
                for c in &changes {
                    self.on_change(c);
                }
                self.r.cursor = self.r.cursor.max(cursor);
                if let Some(s) = self.sessions.last_mut() {
                    if s.catch_up.is_none() {
                        s.catch_up = Some(cursor);
                    }
                }
            }
            "change" => {
                self.r.changes_received += 1;
                let version = v["version"].as_u64().unwrap_or(0);
                if let Some(s) = self.sessions.last_mut() {
                    let last = s.live.last().copied();
                    s.live.push(version);
                    if last.is_some_and(|l| version <= l) {
                        let msg = format!("change {version} arrived after {last:?} on one socket");
                        self.violation("order", msg);
                    }
                }
                self.on_change(&v);
            }
            "ack" => {
                let rid = v["requestId"].as_str().unwrap_or("").to_string();
                self.on_answer(&rid, &v);
            }
            "error" => {
                let rid = v["requestId"].as_str().unwrap_or("").to_string();
                if v["code"] == "rate_limited" || v["code"] == "unavailable" {
                    // Refused, not stored: the periodic resend retries it.
                    self.r.rate_limited += 1;
                } else {
                    self.violation("protocol", format!("error frame for {rid}: {v}"));
                }
            }
            _ => {} // presence, pong
        }
    }

    fn on_change(&mut self, c: &Value) {
        let (Some(key), Some(version)) = (c["key"].as_str(), c["version"].as_u64()) else {
            self.violation("protocol", format!("malformed change {c}"));
            return;
        };
        let value = if c["deleted"] == json!(true) {
            None
        } else {
            c["value"].as_str().map(String::from)
        };
        self.apply(key, value, version);
    }

    /// An ack frame or a REST answer (same fields: key, version, conflict).
    fn on_answer(&mut self, rid: &str, v: &Value) {
        let Some(version) = v["version"].as_u64() else {
            self.violation("protocol", format!("answer without version: {v}"));
            return;
        };
        let conflict = v["conflict"].clone();
        let rejected = conflict["winner"] == "stored";
        let ack = Ack {
            version,
            rejected,
            conflict: conflict.clone(),
        };
        if let Some(first) = self.r.acked.get(rid) {
            if *first != ack {
                let msg = format!("{rid} answered {ack:?}, first answered {first:?}");
                self.violation("replay", msg);
            }
            return;
        }
        let Some(w) = self.r.writes_by_rid.get(rid) else {
            self.violation(
                "protocol",
                format!("answer for a requestId never sent: {v}"),
            );
            return;
        };
        let (key, value) = (w.key.clone(), w.value.clone());
        if !conflict.is_null() {
            self.r.conflicts += 1;
        }
        if conflict["winner"] == "merged" {
            self.violation(
                "protocol",
                format!("unexpected merge of plain strings: {v}"),
            );
        }
        if rejected {
            self.r.rejected += 1;
        } else {
            self.own_versions.insert(version);
            self.apply(&key, value, version);
        }
        self.r.acked.insert(rid.to_string(), ack);
        self.pending.retain(|(r, _)| r != rid);
    }

    // ------------------------------------------------------------ writes

    fn new_write(&mut self, rest: bool, delete: bool) {
        let key = KEYS[self.rng.below(KEYS.len() as u64) as usize].to_string();
        let rid = format!("d{}-w{}", self.r.id, self.next_write);
        self.next_write += 1;
        let known = self.r.model.get(&key).map(|(_, v)| *v);
        let base_version = match (self.rng.below(100), known) {
            (0..=69, k) => k,
            (70..=84, Some(k)) => Some(k.saturating_sub(1 + self.rng.below(3))),
            _ => None,
        };
        let updated_at = client::now_ms() + self.skew_ms;
        // Unique per write, so a value stored twice means a write applied twice.
        let value = (!delete).then(|| format!("{rid}-{:x}", self.rng.next()));
        let frame = json!({
            "type": if delete { "delete" } else { "put" },
            "key": key,
            "value": value,
            "baseVersion": base_version,
            "updatedAt": updated_at,
            "requestId": rid,
        });
        let mut frame = frame;
        if let Some(o) = frame.as_object_mut() {
            o.retain(|_, v| !v.is_null());
        }
        self.r.writes_by_rid.insert(
            rid.clone(),
            Write {
                key,
                value,
                frame: frame.to_string(),
                rest,
                base_version,
                updated_at,
            },
        );
        self.r.writes += 1;
        if rest {
            self.r.rest_writes += 1;
        }
        self.pending.push((rid.clone(), Instant::now()));
        self.resend(&rid);
    }

    /// A REST write; on any failure it stays pending and is sent again.
    fn rest_send(&mut self, rid: &str) {
        let Some(w) = self.r.writes_by_rid.get(rid) else {
            return;
        };
        let c = Client::new(self.server);
        let path = format!("/api/sync/{}", client::enc(&w.key));
        let mut body = json!({"updatedAt": w.updated_at, "requestId": rid});
        if let Some(b) = w.base_version {
            body["baseVersion"] = json!(b);
        }
        let method = match &w.value {
            Some(v) => {
                body["value"] = json!(v);
                "PUT"
            }
            None => "DELETE",
        };
        let resp = c
            .req(method, &path)
            .bearer(&self.token)
            .json(&body)
            .timeout(Duration::from_secs(10))
            .send();
        if let Ok(r) = resp {
            match r.status {
                200 => match r.json() {
                    Ok(v) => self.on_answer(rid, &v),
                    Err(e) => self.violation("protocol", format!("REST answer: {e:?}")),
                },
                429 => self.r.rate_limited += 1,
                // Down or restarting (the runtime, or wrangler's proxy): retry.
                500 | 502 | 503 => {}
                other => {
                    let msg = format!("{method} {path} answered {other}: {}", r.excerpt());
                    self.violation("protocol", msg);
                }
            }
        }
    }

    /// A previously acknowledged write sent again with its requestId: the
    /// answer must be the first one, and nothing may change.
    fn replay(&mut self) {
        let acked: Vec<&String> = self
            .r
            .acked
            .keys()
            .filter(|r| self.r.writes_by_rid.get(*r).is_some_and(|w| !w.rest))
            .collect();
        if acked.is_empty() {
            return;
        }
        let rid = acked[self.rng.below(acked.len() as u64) as usize].clone();
        let frame = self.r.writes_by_rid[&rid].frame.clone();
        self.r.replays += 1;
        self.send(&frame);
    }

    // ------------------------------------------------------------ phases

    pub fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if !self.ensure_connected() {
                thread::sleep(Duration::from_millis(100 + self.rng.below(200)));
                continue;
            }
            self.resend_stale();
            let roll = self.rng.below(100);
            let room = self.pending.len() < MAX_IN_FLIGHT;
            match roll {
                0..=49 if room => self.new_write(false, false),
                50..=59 if room => self.new_write(false, true),
                60..=64 if room => {
                    let delete = self.rng.below(4) == 0;
                    self.new_write(true, delete)
                }
                65..=69 => self.replay(),
                70..=71 => {
                    // A drop: half the time abrupt (no close frame).
                    let clean = self.rng.below(2) == 0;
                    self.drop_conn(clean);
                    thread::sleep(Duration::from_millis(self.rng.below(300)));
                    continue;
                }
                _ => {}
            }
            let window = Duration::from_millis(2 + self.rng.below(25));
            self.pump(window);
        }
    }

    fn resend_stale(&mut self) {
        let stale: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, at)| at.elapsed() > RESEND_AFTER)
            .map(|(r, _)| r.clone())
            .collect();
        for rid in stale {
            self.resend(&rid);
        }
    }

    /// Stops writing and waits until every write of this device is acked.
    pub fn quiesce(&mut self) {
        let deadline = Instant::now() + QUIESCE_LIMIT;
        while !self.pending.is_empty() && Instant::now() < deadline {
            if !self.ensure_connected() {
                thread::sleep(Duration::from_millis(200));
                continue;
            }
            self.resend_stale();
            self.pump(Duration::from_millis(50));
        }
        if !self.pending.is_empty() {
            let rids: Vec<&String> = self.pending.iter().map(|(r, _)| r).collect();
            let msg = format!(
                "{} writes never acknowledged within {QUIESCE_LIMIT:?}: {rids:?}",
                rids.len()
            );
            self.violation("liveness", msg);
        }
        // Let the last broadcasts arrive before everyone catches up.
        self.pump(Duration::from_millis(300));
    }

    /// Once every device is quiet: a fresh socket from the cursor, as after
    /// any disconnect.
    pub fn final_catch_up(&mut self) {
        self.drop_conn(true);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ensure_connected() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(200));
        }
        while Instant::now() < deadline
            && self.conn.is_some()
            && self.sessions.last().is_some_and(|s| s.catch_up.is_none())
        {
            self.pump(Duration::from_millis(100));
        }
        if self.sessions.last().is_none_or(|s| s.catch_up.is_none()) {
            self.violation("liveness", "the final catch-up never answered".into());
        }
        self.pump(Duration::from_millis(500));
        self.drop_conn(true);
    }

    /// Checks every socket's view for gaps, then hands over the results.
    pub fn report(mut self) -> Report {
        let sessions = std::mem::take(&mut self.sessions);
        for (i, s) in sessions.iter().enumerate() {
            let (Some(c), Some(&top)) = (s.catch_up, s.live.iter().max()) else {
                continue;
            };
            let seen: std::collections::BTreeSet<u64> = s.live.iter().copied().collect();
            let gaps: Vec<u64> = (c + 1..=top)
                .filter(|v| !seen.contains(v) && !self.own_versions.contains(v))
                .take(10)
                .collect();
            if !gaps.is_empty() {
                self.violation("order", format!(
                    "socket {i}: after catching up to {c}, versions {gaps:?} never arrived (saw up to {top})"
                ));
            }
        }
        self.r
    }
}
