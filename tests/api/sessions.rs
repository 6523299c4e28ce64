//! Sessions (issue #15): token expiry holds on open sockets, an expired but
//! connected device can be listed and revoked, revocation racing a
//! handshake still closes the socket, an absolute lifetime, password change
//! and signing out everywhere.

use crate::client::{Client, User};
use crate::live::{open, PROTOCOL};
use crate::server::{sql_str, Server};
use crate::{Test, EXPIRY_IDLE_MS, EXPIRY_MAX_MS};
use libtest_mimic::Failed;
use serde_json::{json, Value};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

pub fn tests() -> Vec<Test> {
    vec![
        Test::expiry(
            "sessions::socket_closes_once_its_token_expired",
            socket_closes_on_expiry,
        ),
        Test::expiry(
            "sessions::socket_in_use_keeps_its_token",
            socket_in_use_keeps_token,
        ),
        Test::expiry(
            "sessions::expired_device_with_a_socket_is_listed_and_revocable",
            expired_but_connected,
        ),
        Test::expiry(
            "sessions::absolute_lifetime_ends_a_token_in_use",
            absolute_lifetime,
        ),
        Test::main(
            "sessions::revocation_racing_a_handshake_closes_the_socket",
            revocation_races_handshake,
        ),
        Test::main("sessions::change_password", change_password),
        Test::main(
            "sessions::change_password_keeping_other_devices",
            change_password_keep_others,
        ),
        Test::main("sessions::sign_out_everywhere", sign_out_everywhere),
    ]
}

fn idle() -> Duration {
    Duration::from_millis(EXPIRY_IDLE_MS)
}

fn login(c: &Client, user: &User) -> Result<User, Failed> {
    c.login(&user.email, &user.password)
}

fn socket_closes_on_expiry(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("ws-expiry")?;
    let mut ws = open(s, &user.token)?;
    ws.put("k", "before", "r0")?;
    // Nothing uses the token for longer than the idle period.
    sleep(idle() + Duration::from_millis(800));
    ws.send(&json!({"type": "put", "key": "k", "value": "after", "requestId": "r1"}))?;
    let v = ws.wait_type("error")?;
    ensure_eq!(v["code"], json!("unauthorized"), "error frame");
    ensure_eq!(ws.wait_close()?, 4001, "close code");
    let again = login(&c, &user)?;
    let snap = c.snapshot(&again.token, None)?;
    ensure_eq!(
        snap["data"],
        json!({"k": "before"}),
        "the refused write was not stored"
    );
    Ok(())
}

fn socket_in_use_keeps_token(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("ws-in-use")?;
    let mut ws = open(s, &user.token)?;
    let started = Instant::now();
    let mut i = 0;
    // Writes over the socket only, every 40% of the idle period, for two periods.
    while started.elapsed() < idle() * 2 {
        ws.put("k", &format!("v{i}"), &format!("u{i}"))?;
        i += 1;
        sleep(idle() * 2 / 5);
    }
    c.req("GET", "/api/sync")
        .bearer(&user.token)
        .send()?
        .expect_ok(200)?;
    Ok(())
}

fn expired_but_connected(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("ws-expired-listed")?;
    let mut ws = open(s, &user.token)?;
    ws.ping()?;
    sleep(idle() + Duration::from_millis(800));
    // Its token has expired, its socket is still open.
    let other = login(&c, &user)?;
    let list = c
        .req("GET", "/api/devices")
        .bearer(&other.token)
        .send()?
        .expect_ok(200)?;
    let listed: Vec<&Value> = list["devices"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter(|d| d["id"] == json!(user.device_id))
                .collect()
        })
        .unwrap_or_default();
    ensure_eq!(
        listed.len(),
        1,
        "the expired, connected device is listed: {list}"
    );
    ensure_eq!(listed[0]["online"], json!(true), "online");
    c.req("DELETE", &format!("/api/devices/{}", user.device_id))
        .bearer(&other.token)
        .send()?
        .expect_ok(200)?;
    ensure_eq!(ws.wait_close()?, 4001, "revoked socket's close");
    let rows = s.db_rows(&format!(
        "SELECT revoked_at FROM devices WHERE id = {}",
        sql_str(&user.device_id)
    ))?;
    ensure!(rows[0]["revoked_at"].is_i64(), "revoked_at: {rows:?}");
    Ok(())
}

fn absolute_lifetime(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("max-lifetime")?;
    let started = Instant::now();
    let max = Duration::from_millis(EXPIRY_MAX_MS);
    // Used every 30% of the idle period: only the absolute lifetime ends it.
    loop {
        let r = c.req("GET", "/api/sync").bearer(&user.token).send()?;
        let elapsed = started.elapsed();
        if r.status == 401 {
            r.expect_error(401, "unauthorized")?;
            ensure!(
                elapsed + Duration::from_millis(1500) >= max,
                "the token ended after {elapsed:?}, before its {max:?} lifetime"
            );
            break;
        }
        r.expect_ok(200)?;
        ensure!(
            elapsed < max + Duration::from_millis(2500),
            "the token still works after {elapsed:?}, past its {max:?} lifetime"
        );
        sleep(idle() * 3 / 10);
    }
    // Signing in again gives a fresh token.
    c.snapshot(&login(&c, &user)?.token, None)?;
    Ok(())
}

fn revocation_races_handshake(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("race-revoke")?;
    let mut opened = 0;
    for round in 0..8 {
        let device = login(&c, &user)?;
        // Start the handshake and the revocation together, with a small
        // stagger so that either may win.
        let stagger = Duration::from_millis(3 * round);
        let (socket, revoked) = thread::scope(|scope| {
            let token = device.token.clone();
            let handshake = scope.spawn(move || open(s, &token));
            sleep(stagger);
            let r = c
                .req("DELETE", &format!("/api/devices/{}", device.device_id))
                .bearer(&user.token)
                .send();
            (handshake.join(), r)
        });
        revoked?.expect_ok(200)?;
        match socket {
            Ok(Ok(mut ws)) => {
                opened += 1;
                ensure_eq!(
                    ws.wait_close()?,
                    4001,
                    "round {round}: a socket opened around its revocation"
                );
            }
            // Refused at the handshake: fine too.
            Ok(Err(_)) => {}
            Err(_) => return Err("handshake thread panicked".into()),
        }
    }
    eprintln!("sessions: {opened} of 8 racing handshakes opened before being closed");
    Ok(())
}

fn change(c: &Client, token: &str, body: &Value) -> Result<crate::client::Resp, Failed> {
    c.req("POST", "/api/auth/password")
        .bearer(token)
        .json(body)
        .send()
}

fn change_password(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("pw-change")?;
    let other = login(&c, &user)?;
    let mut other_ws = open(s, &other.token)?;
    other_ws.ping()?;
    let stored = |s: &Server| -> Result<Value, Failed> {
        Ok(s.db_rows(&format!(
            "SELECT password FROM users WHERE id = {}",
            sql_str(&user.user_id)
        ))?[0]["password"]
            .clone())
    };
    let before = stored(s)?;
    let e = change(
        &c,
        &user.token,
        &json!({"currentPassword": "not my password", "newPassword": "a new long password"}),
    )?
    .expect_error(403, "wrong_password")?;
    ensure!(e["success"] == json!(false), "{e}");
    change(
        &c,
        &user.token,
        &json!({"currentPassword": user.password, "newPassword": "short"}),
    )?
    .expect_error(400, "weak_password")?;
    change(
        &c,
        &user.token,
        &json!({"newPassword": "a new long password"}),
    )?
    .expect_error(400, "invalid_request")?;
    change(
        &c,
        "x".repeat(43).as_str(),
        &json!({"currentPassword": user.password, "newPassword": "a new long password"}),
    )?
    .expect_error(401, "unauthorized")?;
    ensure_eq!(stored(s)?, before, "a refused change changed the password");
    other_ws.ping()?;

    let v = change(
        &c,
        &user.token,
        &json!({"currentPassword": user.password, "newPassword": "a new long password"}),
    )?
    .expect_ok(200)?;
    ensure_eq!(v["signedOut"], json!(1), "other devices signed out");
    ensure_eq!(other_ws.wait_close()?, 4001, "the other device's socket");
    c.req("GET", "/api/sync")
        .bearer(&other.token)
        .send()?
        .expect_error(401, "unauthorized")?;
    c.snapshot(&user.token, None)?;
    c.req("POST", "/api/auth/login")
        .json(&json!({"email": user.email, "password": user.password}))
        .send()?
        .expect_error(401, "invalid_credentials")?;
    c.login(&user.email, "a new long password")?;
    Ok(())
}

fn change_password_keep_others(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("pw-keep")?;
    let other = login(&c, &user)?;
    let v = change(
        &c,
        &user.token,
        &json!({"currentPassword": user.password, "newPassword": "another long password", "signOutOthers": false}),
    )?
    .expect_ok(200)?;
    ensure_eq!(v["signedOut"], json!(0), "signed out");
    c.snapshot(&other.token, None)?;
    c.login(&user.email, "another long password")?;
    Ok(())
}

fn sign_out_everywhere(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("everywhere")?;
    let second = login(&c, &user)?;
    let third = login(&c, &user)?;
    let mut ws = open(s, &third.token)?;
    ws.ping()?;
    let v = c
        .req("POST", "/api/auth/logout-all")
        .bearer(&second.token)
        .send()?
        .expect_ok(200)?;
    ensure_eq!(v, json!({"success": true, "signedOut": 3}), "answer");
    ensure_eq!(ws.wait_close()?, 4001, "socket close");
    for t in [&user.token, &second.token, &third.token] {
        c.req("GET", "/api/sync")
            .bearer(t)
            .send()?
            .expect_error(401, "unauthorized")?;
    }
    let offer = format!("{PROTOCOL}, bearer.{}", third.token);
    crate::live::expect_refused(
        &c,
        "",
        Some(&offer),
        None,
        401,
        "unauthorized",
        "signed out",
    )?;
    let rows = s.db_rows(&format!(
        "SELECT id FROM devices WHERE user_id = {} AND revoked_at IS NULL",
        sql_str(&user.user_id)
    ))?;
    ensure!(rows.is_empty(), "devices still signed in: {rows:?}");
    // The password still signs in.
    c.login(&user.email, &user.password)?;
    Ok(())
}
