//! Per-user quotas (issue #15) on the `quota` server's tiny limits: stored
//! bytes (current and history together), keys, write units per day, and
//! the write rate weighted by what a request writes. Every refusal states
//! its limit and changes nothing; `GET /api/account` shows the usage.

use crate::client::{Client, User};
use crate::live::open;
use crate::server::Server;
use crate::{On, Test, QUOTA_BYTES, QUOTA_KEYS, QUOTA_WRITES_PER_DAY};
use libtest_mimic::Failed;
use serde_json::{json, Map, Value};

pub fn tests() -> Vec<Test> {
    vec![
        Test::on(On::Quota, "quotas::stored_bytes", stored_bytes),
        Test::on(On::Quota, "quotas::keys", keys),
        Test::on(On::Quota, "quotas::write_units_per_day", writes_per_day),
        Test::main("quotas::account_shows_usage", account_shows_usage),
        Test::strict(
            "quotas::write_rate_is_weighted_by_what_a_request_writes",
            weighted_rate,
        ),
    ]
}

fn account(c: &Client, token: &str) -> Result<Value, Failed> {
    c.req("GET", "/api/account")
        .bearer(token)
        .send()?
        .expect_ok(200)
}

/// Expects a quota refusal whose message names `limit`.
fn refused(r: crate::client::Resp, status: u16, limit: u64) -> Result<(), Failed> {
    let e = r.expect_error(status, "quota_exceeded")?;
    let msg = e["error"]["message"].as_str().unwrap_or_default();
    ensure!(
        msg.contains(&limit.to_string()),
        "message {msg:?} lacks the limit {limit}"
    );
    Ok(())
}

fn stored_bytes(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("q-bytes")?;
    let t = &user.token;
    c.put_ok(t, "a", &"x".repeat(15_000))?;
    let before = s.db_fingerprint(&user.user_id)?;
    // 15,000 + 6,000 > 20,000.
    refused(
        c.put(t, "b", &json!({"value": "y".repeat(6_000)}))?,
        507,
        QUOTA_BYTES,
    )?;
    // History counts: rewriting "a" would keep the old 15,000 bytes too.
    refused(
        c.put(
            t,
            "a",
            &json!({"value": "z".repeat(15_000), "baseVersion": 1}),
        )?,
        507,
        QUOTA_BYTES,
    )?;
    refused(
        c.batch(
            t,
            &json!({"data": {"c": "y".repeat(3_000), "d": "y".repeat(3_000)}}),
        )?,
        507,
        QUOTA_BYTES,
    )?;
    let mut ws = open(s, t)?;
    ws.send(&json!({"type": "put", "key": "w", "value": "y".repeat(6_000), "requestId": "qb"}))?;
    let v = ws.wait_for("error", |v| v["requestId"] == json!("qb"))?;
    ensure_eq!(v["code"], json!("quota_exceeded"), "frame");
    ensure!(
        s.db_fingerprint(&user.user_id)? == before,
        "a refused write changed the database"
    );
    let a = account(&c, t)?;
    ensure_eq!(a["usage"]["bytes"], json!(15_000), "bytes used");
    ensure_eq!(a["limits"]["bytes"], json!(QUOTA_BYTES), "bytes limit");
    // What fits is taken; deleting is never refused for space.
    c.put_ok(t, "b", &"y".repeat(4_000))?;
    c.delete(t, "b", None)?.expect_ok(200)?;
    ensure_eq!(
        account(&c, t)?["usage"]["bytes"],
        json!(19_000),
        "bytes after"
    );
    Ok(())
}

fn import(keys: impl Iterator<Item = String>) -> Value {
    let data: Map<String, Value> = keys.map(|k| (k, json!("1"))).collect();
    json!({"format": "alternassist-sync-export", "formatVersion": 1, "data": data})
}

fn keys(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("q-keys")?;
    let t = &user.token;
    let n = QUOTA_KEYS as usize;
    c.req("POST", "/api/import")
        .bearer(t)
        .json(&import((0..n).map(|i| format!("k{i}"))))
        .send()?
        .expect_ok(200)?;
    let before = s.db_fingerprint(&user.user_id)?;
    refused(
        c.put(t, "one-more", &json!({"value": "1"}))?,
        507,
        QUOTA_KEYS,
    )?;
    ensure!(
        s.db_fingerprint(&user.user_id)? == before,
        "a refused key was stored"
    );
    // Writing a key that has a value adds none.
    c.put(t, "k0", &json!({"value": "2", "baseVersion": 1}))?
        .expect_ok(200)?;
    c.delete(t, "k1", None)?.expect_ok(200)?;
    c.put_ok(t, "one-more", "1")?;
    ensure_eq!(account(&c, t)?["usage"]["keys"], json!(QUOTA_KEYS), "keys");
    Ok(())
}

fn writes_per_day(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("q-day")?;
    let t = &user.token;
    // One import of 100 keys is 100 units, not one write.
    c.req("POST", "/api/import")
        .bearer(t)
        .json(&import((0..100).map(|i| format!("k{i}"))))
        .send()?
        .expect_ok(200)?;
    ensure_eq!(
        account(&c, t)?["usage"]["writesToday"],
        json!(100),
        "units after the import"
    );
    let deleted: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    c.batch(t, &json!({"deleted": deleted}))?.expect_ok(200)?;
    let before = s.db_fingerprint(&user.user_id)?;
    let r = c.put(t, "k99", &json!({"value": "2"}))?;
    let retry = r.retry_after()?;
    ensure!(
        (1..=86_400).contains(&retry),
        "Retry-After {retry} s: until UTC midnight"
    );
    refused(r, 429, QUOTA_WRITES_PER_DAY)?;
    ensure!(
        s.db_fingerprint(&user.user_id)? == before,
        "a refused write was stored"
    );
    let a = account(&c, t)?;
    ensure_eq!(
        a["usage"]["writesToday"],
        json!(QUOTA_WRITES_PER_DAY),
        "units"
    );
    ensure_eq!(a["usage"]["keys"], json!(50), "keys");
    ensure!(
        a["writesResetAt"].as_i64().unwrap_or(0) > crate::client::now_ms(),
        "reset {a}"
    );
    // Another account is not affected.
    let other: User = c.register("q-day-other")?;
    c.put_ok(&other.token, "k", "v")?;
    Ok(())
}

fn account_shows_usage(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("account")?;
    let t = &user.token;
    let a = account(&c, t)?;
    ensure_eq!(
        a["usage"],
        json!({"bytes": 0, "keys": 0, "writesToday": 0}),
        "fresh usage"
    );
    ensure_eq!(a["userId"], json!(user.user_id), "user");
    ensure_eq!(a["deviceId"], json!(user.device_id), "device");
    // wrangler.toml's defaults.
    ensure_eq!(
        a["limits"],
        json!({"bytes": 100_000_000u64, "keys": 10_000, "writesPerDay": 5_000, "writeBurst": 300, "writesPerMinute": 600}),
        "limits"
    );
    c.put_ok(t, "a", "12345")?;
    c.batch(t, &json!({"data": {"b": "xy", "c": "z"}}))?
        .expect_ok(200)?;
    c.delete(t, "c", None)?.expect_ok(200)?;
    let a = account(&c, t)?;
    ensure_eq!(
        a["usage"],
        json!({"bytes": 8, "keys": 2, "writesToday": 4}),
        "usage"
    );
    c.req("GET", "/api/account")
        .send()?
        .expect_error(401, "unauthorized")?;
    Ok(())
}

fn weighted_rate(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("q-weighted")?;
    let t = &user.token;
    let burst = crate::STRICT_WRITE_BURST as usize;
    // Heavier than the whole burst: taken from a full bucket, leaving debt.
    let data: Map<String, Value> = (0..burst + 3)
        .map(|i| (format!("k{i}"), json!("v")))
        .collect();
    c.batch(t, &json!({"data": data}))?.expect_ok(200)?;
    let before = s.db_fingerprint(&user.user_id)?;
    let r = c.put(t, "next", &json!({"value": "v"}))?;
    let retry = r.retry_after()?;
    r.expect_error(429, "rate_limited")?;
    // 6 units a minute: the 3 owed and the 1 wanted take 40 s.
    ensure!(
        (31..=60).contains(&retry),
        "Retry-After {retry} s after a {}-key batch",
        burst + 3
    );
    ensure!(
        s.db_fingerprint(&user.user_id)? == before,
        "a refused write was stored"
    );
    Ok(())
}
