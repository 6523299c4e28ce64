//! The measurements, each run the same way against both targets.

use crate::client::{Client, User};
use crate::launch::{self, Proc};
use crate::server::{Endpoint, Server};
use crate::stats::{self, summarize, Summary};
use crate::ws::{self, Conn, PROTOCOL};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(20);
const VALUE_BYTES: usize = 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Ours,
    /// `bench/baseline/`: in memory only.
    Baseline,
    /// `bench/d1floor/`: the baseline plus one D1 upsert per write.
    D1Floor,
}

/// Where a scenario runs.
pub struct Target<'a> {
    pub kind: Kind,
    pub ep: Endpoint,
    client: Option<Client>,
    /// One connection pool for every HTTP request to this target.
    agent: ureq::Agent,
    _server: Option<&'a Server>,
}

static ROOMS: AtomicUsize = AtomicUsize::new(0);

impl<'a> Target<'a> {
    pub fn ours(s: &'a Server) -> Target<'a> {
        Target {
            kind: Kind::Ours,
            ep: s.endpoint(),
            client: Some(Client::new(s)),
            agent: agent(),
            _server: Some(s),
        }
    }

    /// One of the JavaScript floors.
    pub fn js(kind: Kind, p: &Proc) -> Target<'a> {
        Target {
            kind,
            ep: p.endpoint.clone(),
            client: None,
            agent: agent(),
            _server: None,
        }
    }

    /// A user with `n` devices (ours), or a room (the baseline).
    pub fn room(&self, n: usize) -> Result<Room, String> {
        match &self.client {
            Some(c) => {
                let user = c.register("bench").map_err(fail)?;
                let mut protocols = vec![format!("{PROTOCOL}, bearer.{}", user.token)];
                for _ in 1..n {
                    let d = c.login(&user.email, &user.password).map_err(fail)?;
                    protocols.push(format!("{PROTOCOL}, bearer.{}", d.token));
                }
                Ok(Room {
                    path: "/api/ws".into(),
                    protocols,
                    user: Some(user),
                })
            }
            None => Ok(Room {
                path: format!("/room/r{}/ws", ROOMS.fetch_add(1, Ordering::SeqCst)),
                protocols: vec![PROTOCOL.to_string(); n],
                user: None,
            }),
        }
    }

    pub fn connect(&self, room: &Room, device: usize) -> Result<Conn, String> {
        ws::connect(
            &self.ep,
            &room.path,
            &room.protocols[device % room.protocols.len()],
        )
    }

    /// One HTTP request with the endpoint's headers; (status, body, time).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>, Duration), String> {
        let agent = &self.agent;
        let mut b = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.ep.url));
        for (k, v) in &self.ep.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        if let Some(t) = token {
            b = b.header("Authorization", format!("Bearer {t}"));
        }
        let t0 = Instant::now();
        let result = match body {
            Some(bytes) => {
                let req = b
                    .header("Content-Type", "application/json")
                    .body(bytes.to_vec())
                    .map_err(|e| e.to_string())?;
                agent.run(req)
            }
            None => agent.run(b.body(()).map_err(|e| e.to_string())?),
        };
        let mut resp = result.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| format!("{method} {path}: {e}"))?;
        Ok((status, bytes, t0.elapsed()))
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn fail(e: libtest_mimic::Failed) -> String {
    e.message().unwrap_or("failed").to_string()
}

pub struct Room {
    path: String,
    protocols: Vec<String>,
    user: Option<User>,
}

impl Room {
    /// The account behind the room: ours only.
    pub fn user(&self) -> Result<&User, String> {
        self.user
            .as_ref()
            .ok_or_else(|| "a room without a user".into())
    }
}

/// A 1 KiB value that starts with `tag`.
pub fn value(tag: &str) -> String {
    let mut v = String::with_capacity(VALUE_BYTES);
    v.push_str(tag);
    while v.len() < VALUE_BYTES {
        v.push('x');
    }
    v
}

fn put_frame(key: &str, value: &str, rid: &str) -> String {
    json!({"type": "put", "key": key, "value": value, "requestId": rid}).to_string()
}

/// A put based on `base`, the key's acked version (`None`: a new key).
pub fn put_based(key: &str, value: &str, rid: &str, base: Option<u64>) -> String {
    let mut f = json!({"type": "put", "key": key, "value": value, "requestId": rid});
    if let Some(b) = base {
        f["baseVersion"] = json!(b);
    }
    f.to_string()
}

/// Reads until the ack for `rid`; returns its version.
pub fn wait_ack(c: &mut Conn, rid: &str) -> Result<u64, String> {
    let deadline = Instant::now() + WAIT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if let Some(v) = c.read_json(left)? {
            if v["type"] == "ack" && v["requestId"] == rid {
                return v["version"]
                    .as_u64()
                    .ok_or_else(|| format!("ack without version: {v}"));
            }
            if v["type"] == "error" {
                return Err(format!("error frame: {v}"));
            }
        }
    }
    Err(format!("no ack for {rid} within {WAIT:?}"))
}

// ---------------------------------------------------------------- start-up

fn ours_ready(_status: u16, body: &str) -> bool {
    // A JSON error from the Worker itself (not a proxy page) is its answer.
    body.contains("\"success\":false")
}

/// From spawning `wrangler dev` to the first answer, `reps` times each,
/// alternating, each server alone on the machine.
pub fn cold_starts(tmp: &Path, reps: usize) -> Result<(Vec<Duration>, Vec<Duration>), String> {
    let project = tmp.join("project");
    launch::copy_project(&project)?;
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for i in 0..reps {
        let p = launch::start(
            &project.join("wrangler.toml"),
            &project,
            &tmp.join(format!("cold-ours-{i}")),
            crate::VARS,
            "/api/does-not-exist",
            ours_ready,
        )?;
        ours.push(p.first_answer);
        drop(p);
        let p = launch::start_js("baseline", &tmp.join(format!("cold-base-{i}")))?;
        base.push(p.first_answer);
    }
    Ok((ours, base))
}

// ---------------------------------------------------------------- fan-out

pub struct Fanout {
    /// Per put: until the change reached every other device.
    pub all: Summary,
    /// Per put and receiving device.
    pub each: Summary,
    /// Per put: until the sender's ack.
    pub ack: Summary,
}

impl Fanout {
    pub fn json(&self) -> Value {
        json!({"allDevices": self.all.json(), "eachDevice": self.each.json(), "ack": self.ack.json()})
    }
}

pub fn fanout(t: &Target, n: usize, puts: usize) -> Result<Fanout, String> {
    let room = t.room(n)?;
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        conns.push(t.connect(&room, i)?);
    }
    let mut sender = conns.remove(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(u64, Instant)>();
    let warm = 3;
    let result = thread::scope(|s| {
        for mut c in conns.drain(..) {
            let tx = tx.clone();
            let stop = &stop;
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match c.read(Duration::from_millis(200)) {
                        Ok(Some(text)) => {
                            let at = Instant::now();
                            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                            if v["type"] == "change" {
                                if let Some(ver) = v["version"].as_u64() {
                                    let _ = tx.send((ver, at));
                                }
                            }
                        }
                        Ok(None) => {}
                        Err(_) => break,
                    }
                }
                c.close();
            });
        }
        let mut run = || -> Result<Fanout, String> {
            let (mut all, mut each, mut ack) = (Vec::new(), Vec::new(), Vec::new());
            let mut early: HashMap<u64, Vec<Instant>> = HashMap::new();
            for i in 0..puts + warm {
                let rid = format!("f{n}-{i}");
                let body = put_frame(&format!("k{}", i % 8), &value(&rid), &rid);
                let t0 = Instant::now();
                sender.send(&body)?;
                let version = wait_ack(&mut sender, &rid)?;
                let t_ack = t0.elapsed();
                let mut got = early.remove(&version).unwrap_or_default();
                let deadline = Instant::now() + WAIT;
                while got.len() < n - 1 {
                    let left =
                        deadline
                            .checked_duration_since(Instant::now())
                            .ok_or_else(|| {
                                format!(
                                    "version {version} reached {} of {} devices in {WAIT:?}",
                                    got.len(),
                                    n - 1
                                )
                            })?;
                    match rx.recv_timeout(left) {
                        Ok((v, at)) if v == version => got.push(at),
                        Ok((v, at)) => early.entry(v).or_default().push(at),
                        Err(_) => {}
                    }
                }
                if i >= warm {
                    ack.push(t_ack);
                    for at in &got {
                        each.push(at.duration_since(t0));
                    }
                    let last = got.iter().max().copied().unwrap_or(t0);
                    all.push(last.duration_since(t0));
                }
            }
            Ok(Fanout {
                all: summarize(&all),
                each: summarize(&each),
                ack: summarize(&ack),
            })
        };
        let r = run();
        stop.store(true, Ordering::Relaxed);
        r
    });
    sender.close();
    crate::settle();
    result
}

// ---------------------------------------------------------------- throughput

pub struct Step {
    pub offered: f64,
    pub sent: usize,
    pub acked: usize,
    pub acked_per_s: f64,
    pub lat: Summary,
}

impl Step {
    /// Sustained: every write acked, p99 under 100 ms.
    pub fn ok(&self) -> bool {
        self.acked == self.sent && self.lat.p99 < 100.0
    }

    /// Past what the object can take: acks fall behind the offered rate, or
    /// p99 grows past a second (a queue that keeps growing).
    pub fn saturated(&self) -> bool {
        self.acked_per_s < 0.9 * self.offered || self.lat.p99 > 1000.0
    }

    fn json(&self) -> Value {
        json!({"offeredPerS": self.offered, "sent": self.sent, "acked": self.acked,
               "ackedPerS": stats::r2(self.acked_per_s), "ackLatency": self.lat.json(), "ok": self.ok()})
    }
}

pub struct Ladder(pub Vec<Step>);

impl Ladder {
    /// The fastest step that met the target (a noisy machine can fail a
    /// slower step and pass a faster one; the JSON keeps every step).
    pub fn best(&self) -> Option<&Step> {
        self.0
            .iter()
            .filter(|s| s.ok())
            .max_by(|a, b| a.offered.total_cmp(&b.offered))
    }

    pub fn saturation(&self) -> Option<&Step> {
        self.0.iter().find(|s| s.saturated())
    }

    pub fn json(&self) -> Value {
        json!({
            "steps": self.0.iter().map(Step::json).collect::<Vec<_>>(),
            "sustainedPerS": self.best().map(|s| s.acked_per_s),
            "saturatedAtOfferedPerS": self.saturation().map(|s| s.offered),
        })
    }
}

/// Open-loop writes at rising rates until the object saturates; `users`
/// rooms with `sockets` connections each share the total rate.
pub fn ladder(t: &Target, users: usize, sockets: usize, quick: bool) -> Result<Ladder, String> {
    let rates: &[f64] = if quick {
        &[50.0, 200.0]
    } else {
        &[25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0]
    };
    let dur = Duration::from_secs(if quick { 1 } else { 5 });
    let mut conns = Vec::new();
    for _ in 0..users {
        let room = t.room(sockets)?;
        for d in 0..sockets {
            conns.push(t.connect(&room, d)?);
        }
    }
    // Wake every object (ours loads the user's state on its first write)
    // before anything is timed.
    for (i, c) in conns.iter_mut().enumerate() {
        let rid = format!("warm-{i}");
        c.send(&put_frame("warm", &value(&rid), &rid))?;
        wait_ack(c, &rid)?;
    }
    let mut steps = Vec::new();
    for (si, &rate) in rates.iter().enumerate() {
        let step = step(&mut conns, si, rate, dur)?;
        let saturated = step.saturated();
        steps.push(step);
        crate::settle();
        if saturated {
            break;
        }
    }
    for c in conns {
        c.close();
    }
    Ok(Ladder(steps))
}

fn step(conns: &mut [Conn], si: usize, rate: f64, dur: Duration) -> Result<Step, String> {
    let k = conns.len();
    let interval = Duration::from_secs_f64(k as f64 / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + dur;
    let drain_until = end + Duration::from_secs(5);
    let per: Vec<Result<(usize, Vec<Duration>), String>> = thread::scope(|s| {
        let handles: Vec<_> = conns
            .iter_mut()
            .enumerate()
            .map(|(ci, c)| {
                s.spawn(move || -> Result<(usize, Vec<Duration>), String> {
                    let prefix = format!("s{si}c{ci}-");
                    let mut next = start + interval.mul_f64(ci as f64 / k as f64);
                    let mut sent_at: Vec<Instant> = Vec::new();
                    let mut lat = Vec::new();
                    loop {
                        let now = Instant::now();
                        if now >= next && next < end {
                            let rid = format!("{prefix}{}", sent_at.len());
                            let key = format!("k{}", sent_at.len() % 16);
                            c.send(&put_frame(&key, &value(&rid), &rid))?;
                            // The intended time, so a stall counts against the server.
                            sent_at.push(next);
                            next += interval;
                            continue;
                        }
                        if now >= end && lat.len() == sent_at.len() || now >= drain_until {
                            break;
                        }
                        let wait = if next < end {
                            next.saturating_duration_since(now)
                        } else {
                            drain_until.saturating_duration_since(now)
                        };
                        if let Some(text) = c.read(wait.min(Duration::from_millis(100)))? {
                            let at = Instant::now();
                            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                            let idx = v["requestId"]
                                .as_str()
                                .and_then(|r| r.strip_prefix(&prefix))
                                .and_then(|i| i.parse::<usize>().ok());
                            if let (Some(i), true) = (idx, v["type"] == "ack") {
                                if let Some(t0) = sent_at.get(i) {
                                    lat.push(at.saturating_duration_since(*t0));
                                }
                            }
                        }
                    }
                    Ok((sent_at.len(), lat))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("panicked".into())))
            .collect()
    });
    let mut sent = 0;
    let mut lat = Vec::new();
    for r in per {
        let (s, l) = r?;
        sent += s;
        lat.extend(l);
    }
    let acked = lat.len();
    let mut all = lat.clone();
    // Writes never acked count as slower than anything measured.
    all.extend(std::iter::repeat_n(Duration::from_secs(3600), sent - acked));
    Ok(Step {
        offered: rate,
        sent,
        acked,
        acked_per_s: acked as f64 / dur.as_secs_f64(),
        lat: summarize(&all),
    })
}

// ---------------------------------------------------------------- REST

pub struct Rest {
    pub post_ms: f64,
    pub get_ms: f64,
    pub bytes: usize,
    post: Vec<Duration>,
    get: Vec<Duration>,
}

impl Rest {
    pub fn json(&self) -> Value {
        json!({"postMs": stats::ms2_all(&self.post),
               "getMs": stats::ms2_all(&self.get)})
    }
}

/// 7 keys totalling 5 MiB: written with one `POST /api/sync`, read back with
/// a full `GET /api/sync` (the baseline keeps and returns the same body).
pub fn rest(t: &Target, reps: usize) -> Result<Rest, String> {
    let room = t.room(1)?;
    let total = 5 << 20;
    let (mut post, mut get) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for rep in 0..reps {
        let mut data = serde_json::Map::new();
        for k in 0..7 {
            let len = total / 7 + usize::from(k < total % 7);
            // A different value each time, so every POST is a real write.
            let mut v = format!("rep {rep} key {k} ");
            v.push_str(&"y".repeat(len - v.len()));
            data.insert(format!("bulk-{k}"), Value::String(v));
        }
        bytes = data.values().map(|v| v.as_str().map_or(0, str::len)).sum();
        let body = json!({ "data": data }).to_string().into_bytes();
        let (post_path, get_path, token) = match (&room.user, t.kind) {
            (Some(u), Kind::Ours) => (
                "/api/sync".to_string(),
                "/api/sync".to_string(),
                Some(u.token.as_str()),
            ),
            _ => {
                let blob = room.path.replace("/ws", "/blob");
                (blob.clone(), blob, None)
            }
        };
        let (status, resp, took) = t.http("POST", &post_path, token, Some(&body))?;
        if status != 200 {
            return Err(format!(
                "POST {post_path}: {status} {}",
                String::from_utf8_lossy(&resp)
            ));
        }
        post.push(took);
        let (status, resp, took) = t.http("GET", &get_path, token, None)?;
        if status != 200 || resp.len() < total {
            return Err(format!("GET {get_path}: {status}, {} bytes", resp.len()));
        }
        get.push(took);
    }
    crate::settle();
    Ok(Rest {
        post_ms: stats::median(&post),
        get_ms: stats::median(&get),
        bytes,
        post,
        get,
    })
}

// ---------------------------------------------------------------- catch-up

pub struct CatchUp {
    pub total_ms: f64,
    pub hello_ms: f64,
    total: Vec<Duration>,
    hello: Vec<Duration>,
}

impl CatchUp {
    pub fn json(&self) -> Value {
        json!({"connectAndHelloMs": stats::ms2_all(&self.total),
               "helloMs": stats::ms2_all(&self.hello)})
    }
}

/// Sends `hello {since}`; (cursor, number of changes) of the answer.
pub fn hello(c: &mut Conn, since: u64) -> Result<(u64, usize), String> {
    c.send(&json!({"type": "hello", "since": since}).to_string())?;
    let deadline = Instant::now() + WAIT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if let Some(v) = c.read_json(left)? {
            if v["type"] == "changes" {
                let n = v["changes"].as_array().map_or(0, Vec::len);
                return Ok((v["cursor"].as_u64().unwrap_or(0), n));
            }
        }
    }
    Err("no changes frame".into())
}

/// A device goes away, another writes `missed` keys, the first comes back
/// and asks for everything since its cursor.
pub fn catch_up(t: &Target, missed: usize, reps: usize) -> Result<CatchUp, String> {
    let room = t.room(2)?;
    let mut writer = t.connect(&room, 0)?;
    let (mut total, mut hello_t) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let mut reader = t.connect(&room, 1)?;
        let (cursor, _) = hello(&mut reader, 0)?;
        reader.close();
        let mut pending: BTreeSet<String> = BTreeSet::new();
        for i in 0..missed {
            let rid = format!("c{rep}-{i}");
            writer.send(&put_frame(&format!("key-{rep}-{i:04}"), &value(&rid), &rid))?;
            pending.insert(rid);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while !pending.is_empty() {
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or("writes for catch-up were not all acknowledged")?;
            if let Some(v) = writer.read_json(left)? {
                if v["type"] == "ack" {
                    if let Some(r) = v["requestId"].as_str() {
                        pending.remove(r);
                    }
                }
            }
        }
        crate::settle();
        let t0 = Instant::now();
        let mut reader = t.connect(&room, 1)?;
        let t1 = Instant::now();
        let (_, n) = hello(&mut reader, cursor)?;
        let done = Instant::now();
        if n != missed {
            return Err(format!("catch-up sent {n} changes, expected {missed}"));
        }
        total.push(done - t0);
        hello_t.push(done - t1);
        reader.close();
    }
    writer.close();
    Ok(CatchUp {
        total_ms: stats::median(&total),
        hello_ms: stats::median(&hello_t),
        total,
        hello: hello_t,
    })
}

// ---------------------------------------------------------------- ours only

pub fn wasm_size() -> Result<(u64, usize), String> {
    let path = launch::repo_root().join("build/index_bg.wasm");
    let size = std::fs::metadata(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    let gz = std::process::Command::new("gzip")
        .arg("-9c")
        .arg(&path)
        .output()
        .map_err(|e| format!("gzip: {e}"))?;
    Ok((size, gz.stdout.len()))
}
