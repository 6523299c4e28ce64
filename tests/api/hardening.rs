//! What a security review found (issue #15), on the real Worker: keys URLs
//! cannot name, bodies without a length, integers past 2^53, sign-in
//! attempts counted before hashing under concurrency, IPv6 buckets, who may
//! register, pruned attempt windows, and what a password hash costs.

use crate::client::{unique_email, unique_ip, Client, BIG_TIMEOUT};
use crate::live::open;
use crate::server::{sql_str, Server};
use crate::values::MIB;
use crate::{On, Test, STRICT_LOGIN_FAILURES_PER_IP, STRICT_REGISTRATIONS_PER_IP};
use libtest_mimic::Failed;
use serde_json::json;
use std::thread;
use std::time::{Duration, Instant};

pub fn tests() -> Vec<Test> {
    vec![
        Test::main("hardening::dot_keys_are_refused_on_every_write", dot_keys),
        Test::oversize(
            "hardening::chunked_bodies_just_over_the_limit_are_413",
            chunked_just_over,
        ),
        Test::main(
            "hardening::integers_above_2_53_are_refused",
            integers_above_2_53,
        ),
        Test::main(
            "hardening::concurrent_wrong_passwords_are_counted_before_hashing",
            concurrent_wrong_passwords,
        ),
        Test::strict(
            "hardening::concurrent_registrations_are_counted_before_hashing",
            concurrent_registrations,
        ),
        Test::strict("hardening::ipv6_clients_are_bucketed_by_64", ipv6_by_64),
        Test::strict("hardening::registration_allowlist", registration_allowlist),
        Test::on(
            On::Locked,
            "hardening::fresh_deployment_refuses_strangers",
            fresh_deployment_refuses_strangers,
        ),
        Test::main("hardening::ended_attempt_windows_are_pruned", pruned),
        Test::main(
            "hardening::pbkdf2_cost_is_only_paid_to_sign_in",
            pbkdf2_cost,
        ),
    ]
}

fn dot_keys(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("dot-keys")?;
    let t = &user.token;
    c.put_ok(t, "k", "v")?;
    let before = s.db_fingerprint(&user.user_id)?;
    for key in [".", ".."] {
        let e = c
            .batch(t, &json!({"data": {key: "x"}}))?
            .expect_error(400, "invalid_key")?;
        ensure!(
            e["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("\"..\""),
            "message {e}"
        );
        c.batch(t, &json!({"deleted": [key]}))?
            .expect_error(400, "invalid_key")?;
        let doc =
            json!({"format": "alternassist-sync-export", "formatVersion": 1, "data": {key: "x"}});
        c.req("POST", "/api/import")
            .bearer(t)
            .json(&doc)
            .send()?
            .expect_error(400, "invalid_key")?;
        // Percent-encoded in a path: never the key itself (URLs normalise
        // dot segments), so never a write of it either.
        for enc in ["%2E", "%2e%2E"] {
            let r = c
                .req("PUT", &format!("/api/sync/{enc}"))
                .bearer(t)
                .json(&json!({"value": "x"}))
                .send()?;
            ensure!(r.status >= 400 && r.status < 500, "PUT {enc}: {}", r.status);
        }
    }
    let mut ws = open(s, t)?;
    for (i, key) in [".", ".."].iter().enumerate() {
        let rid = format!("dot{i}");
        ws.send(&json!({"type": "put", "key": key, "value": "x", "requestId": rid}))?;
        let v = ws.wait_for("error", |v| v["requestId"] == json!(rid))?;
        ensure_eq!(v["type"], json!("error"), "frame type");
        ensure_eq!(v["code"], json!("invalid_key"), "frame code");
        let rid = format!("dotdel{i}");
        ws.send(&json!({"type": "delete", "key": key, "requestId": rid}))?;
        let v = ws.wait_for("error", |v| v["requestId"] == json!(rid))?;
        ensure_eq!(v["code"], json!("invalid_key"), "delete frame code");
    }
    ws.ping()?;
    ensure!(
        s.db_fingerprint(&user.user_id)? == before,
        "a refused dot key changed the database"
    );
    Ok(())
}

/// `{"data":{"k":"` padded with `x` to `len` bytes and never closed.
fn unterminated(len: usize) -> Vec<u8> {
    let mut body = b"{\"data\":{\"k\":\"".to_vec();
    body.resize(len, b'x');
    body
}

fn chunked_just_over(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("chunked-1k")?;
    let t = &user.token;
    c.put_ok(t, "k", "v")?;
    let before = s.db_fingerprint(&user.user_id)?;
    for (method, path) in [("POST", "/api/sync"), ("PUT", "/api/sync/k")] {
        c.req(method, path)
            .bearer(t)
            .raw(unterminated(16 * MIB + 1024))
            .chunked()
            .timeout(BIG_TIMEOUT)
            .send()?
            .expect_error(413, "payload_too_large")
            .map_err(|e| format!("{method} {path}: {}", e.message().unwrap_or_default()))?;
    }
    // The auth bodies' limit is 16 KiB: 17 KiB without a length.
    let mut auth = json!({"email": user.email, "password": "x"})
        .to_string()
        .into_bytes();
    auth.pop();
    auth.extend(std::iter::repeat_n(b' ', 17 * 1024));
    auth.push(b'}');
    for path in ["/api/auth/login", "/api/auth/register"] {
        c.req("POST", path)
            .raw(auth.clone())
            .chunked()
            .send()?
            .expect_error(413, "payload_too_large")
            .map_err(|e| format!("{path}: {}", e.message().unwrap_or_default()))?;
    }
    ensure!(
        s.db_fingerprint(&user.user_id)? == before,
        "a refused chunked body changed the database"
    );
    Ok(())
}

fn integers_above_2_53(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("int-53")?;
    let t = &user.token;
    c.put_ok(t, "k", "v")?;
    let before = s.db_fingerprint(&user.user_id)?;
    let big = "9007199254740992";
    let bodies = [
        (
            "PUT",
            "/api/sync/k",
            format!(r#"{{"value":"w","baseVersion":{big}}}"#),
        ),
        (
            "PUT",
            "/api/sync/k",
            format!(r#"{{"value":"w","updatedAt":{big}}}"#),
        ),
        (
            "PUT",
            "/api/sync/k",
            r#"{"value":"w","baseVersion":18446744073709551615}"#.into(),
        ),
        (
            "DELETE",
            "/api/sync/k",
            format!(r#"{{"baseVersion":{big}}}"#),
        ),
        (
            "POST",
            "/api/sync",
            format!(r#"{{"data":{{"k":"w"}},"baseVersions":{{"k":{big}}}}}"#),
        ),
        (
            "POST",
            "/api/sync",
            format!(r#"{{"data":{{"k":"w"}},"updatedAt":{{"k":{big}}}}}"#),
        ),
        (
            "POST",
            "/api/sync/k/restore",
            format!(r#"{{"version":{big}}}"#),
        ),
        (
            "POST",
            "/api/import",
            format!(
                r#"{{"format":"alternassist-sync-export","formatVersion":1,"data":{{"k":"w"}},"versions":{{"k":{big}}}}}"#
            ),
        ),
    ];
    for (method, path, body) in &bodies {
        c.req(method, path)
            .bearer(t)
            .header("content-type", "application/json")
            .raw(body.clone().into_bytes())
            .send()?
            .expect_error(400, "invalid_request")
            .map_err(|e| {
                format!(
                    "{method} {path} {body}: {}",
                    e.message().unwrap_or_default()
                )
            })?;
    }
    for path in [
        format!("/api/sync?since={big}"),
        format!("/api/sync/k/history?before={big}"),
        format!("/api/sync/k/history/{big}"),
    ] {
        c.req("GET", &path)
            .bearer(t)
            .send()?
            .expect_error(400, "invalid_request")?;
    }
    let mut ws = open(s, t)?;
    ws.send_text(&format!(
        r#"{{"type":"put","key":"k","value":"w","baseVersion":{big},"requestId":"big"}}"#
    ))?;
    let v = ws.wait_for("error", |v| v["requestId"] == json!("big"))?;
    ensure_eq!(v["code"], json!("invalid_request"), "frame code");
    ws.send_text(&format!(r#"{{"type":"hello","since":{big}}}"#))?;
    let v = ws.wait_type("error")?;
    ensure_eq!(v["code"], json!("invalid_request"), "hello code");
    ensure!(
        s.db_fingerprint(&user.user_id)? == before,
        "a refused integer changed the database"
    );
    // The largest exact integer is fine.
    c.req("GET", "/api/sync?since=9007199254740991")
        .bearer(t)
        .send()?
        .expect_ok(200)?;
    Ok(())
}

/// Sends `n` requests at once, each from its own thread; their statuses.
fn at_once(
    n: usize,
    send: impl Fn(usize) -> Result<u16, Failed> + Sync,
) -> Result<Vec<u16>, Failed> {
    let send = &send;
    thread::scope(|scope| {
        let handles: Vec<_> = (0..n).map(|i| scope.spawn(move || send(i))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| Failed::from("a request thread panicked"))?
            })
            .collect()
    })
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

fn concurrent_wrong_passwords(s: &Server) -> Result<(), Failed> {
    // The main server allows 10 failed logins per email and minute.
    const LIMIT: usize = 10;
    let c = Client::new(s);
    let user = c.register("conc-login")?;
    let statuses = at_once(25, |_| {
        let r = c
            .req("POST", "/api/auth/login")
            .header("CF-Connecting-IP", &unique_ip())
            .json(&json!({"email": user.email, "password": "wrong password"}))
            .send()?;
        Ok(r.status)
    })?;
    ensure_eq!(
        count(&statuses, 401),
        LIMIT,
        "wrong passwords checked: {statuses:?}"
    );
    ensure_eq!(
        count(&statuses, 429),
        25 - LIMIT,
        "refused unchecked: {statuses:?}"
    );
    let rows = s.db_rows(&format!(
        "SELECT count FROM auth_failures WHERE bucket = {}",
        sql_str(&format!("email:{}", user.email))
    ))?;
    ensure_eq!(rows.len(), 1, "the email's window");
    ensure_eq!(rows[0]["count"], json!(25), "every attempt counted");
    let devices = s.db_rows(&format!(
        "SELECT id FROM devices WHERE user_id = {}",
        sql_str(&user.user_id)
    ))?;
    ensure_eq!(devices.len(), 1, "no device was signed in");
    Ok(())
}

fn concurrent_registrations(s: &Server) -> Result<(), Failed> {
    let limit = STRICT_REGISTRATIONS_PER_IP as usize;
    let c = Client::new(s);
    let ip = unique_ip();
    let emails: Vec<String> = (0..12).map(|_| unique_email("conc-reg")).collect();
    let statuses = at_once(emails.len(), |i| {
        let r = c
            .req("POST", "/api/auth/register")
            .header("CF-Connecting-IP", &ip)
            .json(&json!({"email": emails[i], "password": "correct horse battery"}))
            .send()?;
        Ok(r.status)
    })?;
    ensure_eq!(
        count(&statuses, 201),
        limit,
        "registrations hashed: {statuses:?}"
    );
    ensure_eq!(
        count(&statuses, 429),
        emails.len() - limit,
        "refused: {statuses:?}"
    );
    let list = emails
        .iter()
        .map(|e| sql_str(e))
        .collect::<Vec<_>>()
        .join(", ");
    let users = s.db_rows(&format!("SELECT id FROM users WHERE email IN ({list})"))?;
    ensure_eq!(users.len(), limit, "accounts created");
    // One email registered many times at once: only the email's limit is hashed.
    let email = unique_email("conc-same");
    let statuses = at_once(12, |_| {
        let r = c
            .req("POST", "/api/auth/register")
            .header("CF-Connecting-IP", &unique_ip())
            .json(&json!({"email": email, "password": "correct horse battery"}))
            .send()?;
        Ok(r.status)
    })?;
    ensure_eq!(count(&statuses, 201), 1, "one account: {statuses:?}");
    ensure!(
        count(&statuses, 201) + count(&statuses, 409)
            <= crate::STRICT_LOGIN_FAILURES_PER_EMAIL as usize + 1,
        "more attempts on one email were hashed than its limit allows: {statuses:?}"
    );
    ensure_eq!(
        count(&statuses, 201) + count(&statuses, 409) + count(&statuses, 429),
        12,
        "answers: {statuses:?}"
    );
    Ok(())
}

fn ipv6_by_64(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    // A /64 of its own per run: the counter in the last groups.
    let n = crate::client::now_ms() as u64;
    let prefix = format!("2001:db8:{:x}:{:x}", (n >> 16) & 0xffff, n & 0xffff);
    let login = |ip: &str| {
        c.req("POST", "/api/auth/login")
            .header("CF-Connecting-IP", ip)
            .json(&json!({"email": unique_email("v6"), "password": "guess guess"}))
            .send()
    };
    for i in 0..STRICT_LOGIN_FAILURES_PER_IP {
        login(&format!("{prefix}:{:x}::{:x}", i + 1, i + 7))?
            .expect_error(401, "invalid_credentials")?;
    }
    // Another address of the same /64 is the same client.
    let r = login(&format!("{prefix}:ffff:1:2:3"))?;
    r.expect_error(429, "rate_limited")?;
    ensure!(r.retry_after()? <= 60, "Retry-After");
    // The next /64 is not.
    let other = format!(
        "2001:db8:{:x}:{:x}::1",
        (n >> 16) & 0xffff,
        (n + 1) & 0xffff
    );
    login(&other)?.expect_error(401, "invalid_credentials")?;
    Ok(())
}

fn registration_allowlist(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let stranger = format!("stranger-{}@elsewhere.org", crate::client::now_ms());
    let e = c
        .req("POST", "/api/auth/register")
        .json(&json!({"email": stranger, "password": "correct horse battery"}))
        .send()?
        .expect_error(403, "registration_closed")?;
    ensure!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("allowed"),
        "message {e}"
    );
    let rows = s.db_rows(&format!(
        "SELECT id FROM users WHERE email = {}",
        sql_str(&stranger)
    ))?;
    ensure!(rows.is_empty(), "the stranger got an account");
    // Listed addresses (any case) and domains get in.
    let owner = c.register_as("OWNER@family.test", "correct horse battery");
    let owner = match owner {
        Ok(u) => u,
        // A second run against the same server: the owner exists already.
        Err(_) => c.login("owner@family.test", "correct horse battery")?,
    };
    c.snapshot(&owner.token, None)?;
    c.register("allowed-domain")?;
    Ok(())
}

fn fresh_deployment_refuses_strangers(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let e = c
        .req("POST", "/api/auth/register")
        .json(&json!({"email": unique_email("stranger"), "password": "correct horse battery"}))
        .send()?
        .expect_error(403, "registration_closed")?;
    ensure!(e["success"] == json!(false), "body {e}");
    let rows = s.db_rows("SELECT id FROM users")?;
    ensure!(rows.is_empty(), "an account was created: {rows:?}");
    // Refused before any hashing or counting.
    let rows = s.db_rows("SELECT bucket FROM auth_failures")?;
    ensure!(rows.is_empty(), "refusals were counted: {rows:?}");
    Ok(())
}

fn pruned(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let old = format!("email:{}", unique_email("pruned-old"));
    let fail = |email: &str| {
        c.req("POST", "/api/auth/login")
            .header("CF-Connecting-IP", &unique_ip())
            .json(&json!({"email": email, "password": "wrong password"}))
            .send()?
            .expect_error(401, "invalid_credentials")
    };
    fail(old.trim_start_matches("email:"))?;
    let rows = s.db_rows(&format!(
        "SELECT count FROM auth_failures WHERE bucket = {}",
        sql_str(&old)
    ))?;
    ensure_eq!(rows.len(), 1, "the attempt is counted");
    // Once its minute is over, the next attempt anywhere deletes it.
    thread::sleep(Duration::from_millis(61_000));
    fail(&unique_email("pruned-new"))?;
    let rows = s.db_rows(&format!(
        "SELECT count FROM auth_failures WHERE bucket = {}",
        sql_str(&old)
    ))?;
    ensure!(rows.is_empty(), "an ended window is still stored: {rows:?}");
    let stale = s.db_rows(&format!(
        "SELECT bucket FROM auth_failures WHERE window_start <= {}",
        crate::client::now_ms() - 120_000
    ))?;
    ensure!(stale.is_empty(), "ended windows are kept: {stale:?}");
    Ok(())
}

/// CPU seconds used so far by every process in a process group (Linux).
fn group_cpu_secs(pgid: u32) -> Option<f64> {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the command name, which is in parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(2).and_then(|p| p.parse::<u32>().ok()) != Some(pgid) {
            continue;
        }
        let utime: f64 = f.get(11)?.parse().ok()?;
        let stime: f64 = f.get(12)?.parse().ok()?;
        total += (utime + stime) / ticks;
    }
    Some(total)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A login costs a PBKDF2 hash; a sync request must not. Measured as the
/// server's CPU time per request and as latency, printed for the README.
fn pbkdf2_cost(s: &Server) -> Result<(), Failed> {
    const N: usize = 20;
    let c = Client::new(s);
    let user = c.register("pbkdf2-cost")?;
    c.put_ok(&user.token, "k", "v")?;
    let measure = |f: &dyn Fn() -> Result<(), Failed>| -> Result<(f64, f64), Failed> {
        let cpu0 = s.pgid().and_then(group_cpu_secs);
        let mut wall = Vec::new();
        for _ in 0..N {
            let t = Instant::now();
            f()?;
            wall.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let cpu1 = s.pgid().and_then(group_cpu_secs);
        let cpu = match (cpu0, cpu1) {
            (Some(a), Some(b)) => (b - a) * 1000.0 / N as f64,
            _ => f64::NAN,
        };
        Ok((cpu, median(wall)))
    };
    let login = || -> Result<(), Failed> {
        c.req("POST", "/api/auth/login")
            .header("CF-Connecting-IP", &unique_ip())
            .json(&json!({"email": user.email, "password": user.password}))
            .send()?
            .expect_ok(200)
            .map(|_| ())
    };
    let wrong = || -> Result<(), Failed> {
        c.req("POST", "/api/auth/login")
            .header("CF-Connecting-IP", &unique_ip())
            .json(&json!({"email": unique_email("pbkdf2-unknown"), "password": "wrong password"}))
            .send()?
            .expect_error(401, "invalid_credentials")
            .map(|_| ())
    };
    // The same work up to the hash (the attempt counted in D1), refused
    // there: the email is over its limit.
    let limited_email = unique_email("pbkdf2-limited");
    let limited = || -> Result<(), Failed> {
        let r = c
            .req("POST", "/api/auth/login")
            .header("CF-Connecting-IP", &unique_ip())
            .json(&json!({"email": limited_email, "password": "wrong password"}))
            .send()?;
        ensure!(r.status == 401 || r.status == 429, "status {}", r.status);
        Ok(())
    };
    for _ in 0..10 {
        limited()?;
    }
    let sync = || -> Result<(), Failed> { c.snapshot(&user.token, None).map(|_| ()) };
    let write = || -> Result<(), Failed> {
        c.put(&user.token, "k", &json!({"value": unique_ip()}))?
            .expect_ok(200)
            .map(|_| ())
    };
    let (login_cpu, login_ms) = measure(&login)?;
    let (wrong_cpu, wrong_ms) = measure(&wrong)?;
    let (limited_cpu, limited_ms) = measure(&limited)?;
    let (sync_cpu, sync_ms) = measure(&sync)?;
    let (write_cpu, write_ms) = measure(&write)?;
    eprintln!(
        "pbkdf2 cost (server CPU ms per request / median latency ms, {N} each): \
         login {login_cpu:.1} / {login_ms:.1}; unknown email {wrong_cpu:.1} / {wrong_ms:.1}; \
         refused before hashing {limited_cpu:.1} / {limited_ms:.1} (so the hash: {:.1} / {:.1}); \
         GET /api/sync {sync_cpu:.1} / {sync_ms:.1}; PUT {write_cpu:.1} / {write_ms:.1}",
        wrong_cpu - limited_cpu,
        wrong_ms - limited_ms
    );
    ensure!(
        sync_ms < login_ms && write_ms < login_ms,
        "a sync request is as slow as a login: login {login_ms:.1} ms, GET {sync_ms:.1} ms, PUT {write_ms:.1} ms"
    );
    Ok(())
}
