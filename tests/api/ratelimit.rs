//! Rate limits, on the `strict` server (tiny limits): write units per user, failed
//! logins per email and per client IP. 429 always comes with Retry-After.

use crate::client::{unique_email, unique_ip, Client};
use crate::server::Server;
use crate::{
    Test, STRICT_LOGIN_FAILURES_PER_EMAIL, STRICT_LOGIN_FAILURES_PER_IP, STRICT_WRITE_BURST,
};
use libtest_mimic::Failed;
use serde_json::json;
use std::time::Instant;

pub fn tests() -> Vec<Test> {
    vec![
        Test::strict("ratelimit::writes_per_user", writes_per_user),
        Test::strict(
            "ratelimit::failed_logins_per_email",
            failed_logins_per_email,
        ),
        Test::strict("ratelimit::failed_logins_per_ip", failed_logins_per_ip),
    ]
}

fn writes_per_user(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("rl-writes")?;
    let other = c.register("rl-writes-other")?;
    let t = &user.token;
    let started = Instant::now();
    // The burst, in write units: a put or a delete is one, a batch one per
    // key it writes.
    for i in 0..STRICT_WRITE_BURST - 3 {
        c.put_ok(t, &format!("k{i}"), "v")?;
    }
    c.delete(t, "k0", Some(&json!({"baseVersion": 1})))?
        .expect_ok(200)?;
    c.batch(t, &json!({"data": {"b1": "1", "b2": "2"}}))?
        .expect_ok(200)?;
    let cursor_at_limit = u64::from(STRICT_WRITE_BURST);
    let elapsed = started.elapsed();

    let r = c.put(t, "one-too-many", &json!({"value": "v"}))?;
    r.expect_error(429, "rate_limited").map_err(|e| {
        format!(
            "{} ({} writes took {elapsed:?})",
            e.message().unwrap_or_default(),
            STRICT_WRITE_BURST
        )
    })?;
    let retry = r.retry_after()?;
    ensure!(retry <= 60, "Retry-After {retry} s for 6 writes a minute");
    c.batch(t, &json!({"data": {"b3": "3"}}))?
        .expect_error(429, "rate_limited")?;
    c.delete(t, "k1", None)?.expect_error(429, "rate_limited")?;

    // Reading is not writing, and nothing refused was stored.
    let snap = c.snapshot(t, None)?;
    ensure_eq!(
        snap["cursor"],
        json!(cursor_at_limit),
        "cursor after refused writes"
    );
    ensure!(
        snap["data"].get("one-too-many").is_none(),
        "a refused write was stored"
    );
    ensure!(
        snap["data"].get("b3").is_none(),
        "a refused batch was stored"
    );

    // Another user's writes are unaffected.
    for i in 0..3 {
        c.put_ok(&other.token, &format!("k{i}"), "v")?;
    }
    Ok(())
}

fn failed_logins_per_email(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("rl-email")?;
    let login = |password: &str, ip: &str| {
        c.req("POST", "/api/auth/login")
            .header("CF-Connecting-IP", ip)
            .json(&json!({"email": user.email, "password": password}))
            .send()
    };
    // Each failure from a different address: only the email's count grows.
    for i in 0..STRICT_LOGIN_FAILURES_PER_EMAIL {
        login("wrong password", &unique_ip())?
            .expect_error(401, "invalid_credentials")
            .map_err(|e| format!("failure {}: {}", i + 1, e.message().unwrap_or_default()))?;
    }
    // Now even the right password is refused, from anywhere, without a token.
    let r = login(&user.password, &unique_ip())?;
    r.expect_error(429, "rate_limited")?;
    let retry = r.retry_after()?;
    ensure!(retry <= 60, "Retry-After {retry} s for a one-minute window");
    login("wrong password", &unique_ip())?.expect_error(429, "rate_limited")?;
    // Letter case does not make it another email.
    c.req("POST", "/api/auth/login")
        .header("CF-Connecting-IP", &unique_ip())
        .json(&json!({"email": user.email.to_uppercase(), "password": user.password}))
        .send()?
        .expect_error(429, "rate_limited")?;

    // The existing token keeps working, and other accounts can log in.
    c.snapshot(&user.token, None)?;
    let other = c.register("rl-email-other")?;
    c.login(&other.email, &other.password)?;
    Ok(())
}

fn failed_logins_per_ip(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("rl-ip")?;
    let ip = unique_ip();
    // Failures for different (unknown) emails from one address: each email
    // stays below its own limit, the address reaches its limit.
    for i in 0..STRICT_LOGIN_FAILURES_PER_IP {
        c.req("POST", "/api/auth/login")
            .header("CF-Connecting-IP", &ip)
            .json(&json!({"email": unique_email("rl-ip-unknown"), "password": "guess guess"}))
            .send()?
            .expect_error(401, "invalid_credentials")
            .map_err(|e| format!("failure {}: {}", i + 1, e.message().unwrap_or_default()))?;
    }
    let r = c
        .req("POST", "/api/auth/login")
        .header("CF-Connecting-IP", &ip)
        .json(&json!({"email": user.email, "password": user.password}))
        .send()?;
    r.expect_error(429, "rate_limited")?;
    let retry = r.retry_after()?;
    ensure!(retry <= 60, "Retry-After {retry} s for a one-minute window");

    // The same account from another address is fine.
    c.req("POST", "/api/auth/login")
        .header("CF-Connecting-IP", &unique_ip())
        .json(&json!({"email": user.email, "password": user.password}))
        .send()?
        .expect_ok(200)?;
    Ok(())
}
