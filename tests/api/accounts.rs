//! Accounts for real life (issue #22): deleting one's account leaves no
//! row of the person in any table (read from `sqlite_master`, so a table
//! added later cannot be missed) and nothing of anyone else changes, even
//! with the person's hub awake and writes racing the deletion; a reset code
//! the operator issued sets a new password once, within its hour, and signs
//! every device out; its attempts are counted like sign-ins.

use crate::admin::issue_code;
use crate::client::{unique_email, Client, User};
use crate::live::{expect_refused, open, PROTOCOL};
use crate::server::{sql_str, Server};
use crate::{On, Test};
use libtest_mimic::Failed;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, sleep};
use std::time::Duration;

pub fn tests() -> Vec<Test> {
    vec![
        Test::main(
            "accounts::delete_leaves_no_row_of_the_person_in_any_table",
            delete_leaves_nothing,
        ),
        Test::main(
            "accounts::delete_racing_writes_and_an_awake_hub_leaves_nothing",
            delete_racing_writes,
        ),
        Test::on(
            On::Admin,
            "accounts::reset_code_sets_a_new_password_once_and_signs_out",
            reset_code,
        ),
        Test::on(
            On::Admin,
            "accounts::reset_attempts_are_counted_per_email_and_per_ip",
            reset_rate_limited,
        ),
    ]
}

/// Every (table, column) of the database but SQLite's, D1's and wrangler's own.
pub fn columns(s: &Server) -> Result<Vec<(String, String)>, Failed> {
    let rows = s.db_rows(
        "SELECT m.name AS t, p.name AS c FROM sqlite_master m, pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_cf_%' \
         AND m.name NOT LIKE 'd1_%' ORDER BY m.name, p.cid",
    )?;
    rows.iter()
        .map(|r| {
            let t = r["t"].as_str().ok_or("table name")?.to_string();
            let c = r["c"].as_str().ok_or("column name")?.to_string();
            Ok((t, c))
        })
        .collect()
}

/// Rows, per table, with any column holding (anywhere in its text) one of
/// `needles`: the person's user id, email and device ids.
pub fn rows_naming(
    s: &Server,
    cols: &[(String, String)],
    needles: &[&str],
) -> Result<Vec<(String, i64)>, Failed> {
    let mut tables: Vec<&str> = cols.iter().map(|(t, _)| t.as_str()).collect();
    tables.dedup();
    let parts: Vec<String> = tables
        .iter()
        .map(|t| {
            let conds: Vec<String> = cols
                .iter()
                .filter(|(ct, _)| ct == t)
                .flat_map(|(_, c)| {
                    needles
                        .iter()
                        .map(move |n| format!("instr(CAST(\"{c}\" AS TEXT), {}) > 0", sql_str(n)))
                })
                .collect();
            format!(
                "SELECT '{t}' AS t, count(*) AS n FROM \"{t}\" WHERE {}",
                conds.join(" OR ")
            )
        })
        .collect();
    // One statement per table: D1 caps a compound SELECT's terms.
    let results = s.db(&parts.join("; "))?;
    Ok(results
        .iter()
        .flatten()
        .map(|r| {
            (
                r["t"].as_str().unwrap_or_default().to_string(),
                r["n"].as_i64().unwrap_or(-1),
            )
        })
        .collect())
}

/// Writes of every kind a person's rows come from: values, a chunked one,
/// history, a record list, remembered answers, a second device and a
/// failed sign-in (its attempt window).
fn fill(c: &Client, user: &User) -> Result<User, Failed> {
    let t = &user.token;
    c.put_ok(t, "plain", "one")?;
    c.put_ok(t, "plain", "two")?;
    c.put(
        t,
        "big",
        &json!({"value": "b".repeat(1_500_000), "requestId": "big-1"}),
    )?
    .expect_ok(200)?;
    let list = json!([{"id": 1, "n": "a"}, {"id": 2, "n": "b"}]).to_string();
    c.put(
        t,
        "kanban-projects",
        &json!({"value": list, "requestId": "rec-1"}),
    )?
    .expect_ok(200)?;
    c.delete(t, "plain", None)?.expect_ok(200)?;
    let other = c.login(&user.email, &user.password)?;
    c.req("POST", "/api/auth/login")
        .json(&json!({"email": user.email, "password": "not the password"}))
        .send()?
        .expect_error(401, "invalid_credentials")?;
    Ok(other)
}

fn delete(c: &Client, token: &str, password: &str) -> Result<crate::client::Resp, Failed> {
    c.req("DELETE", "/api/account")
        .bearer(token)
        .json(&json!({ "password": password }))
        .send()
}

fn delete_leaves_nothing(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("delete-me")?;
    let b = c.register("delete-bystander")?;
    let a2 = fill(&c, &a)?;
    fill(&c, &b)?;
    let mut ws = open(s, &a2.token)?;
    ws.put("live", "from the socket", "ws-1")?;
    let cols = columns(s)?;
    let needles = [
        a.user_id.as_str(),
        a.email.as_str(),
        a.device_id.as_str(),
        a2.device_id.as_str(),
    ];
    let before = rows_naming(s, &cols, &needles)?;
    for t in [
        "users",
        "devices",
        "sync_state",
        "sync_history",
        "sync_chunks",
        "sync_records",
    ] {
        ensure!(
            before.iter().any(|(bt, n)| bt == t && *n > 0),
            "the person has rows in {t} before: {before:?}"
        );
    }
    let b_before = s.db_fingerprint(&b.user_id)?;

    // A wrong password changes nothing.
    delete(&c, &a.token, "not the password")?.expect_error(403, "wrong_password")?;
    delete(&c, &a.token, "")?.expect_error(403, "wrong_password")?;
    c.req("DELETE", "/api/account")
        .bearer(&a.token)
        .json(&json!({}))
        .send()?
        .expect_error(400, "invalid_request")?;
    c.req("DELETE", "/api/account")
        .json(&json!({"password": a.password}))
        .send()?
        .expect_error(401, "unauthorized")?;
    let after_wrong = rows_naming(s, &cols, &needles)?;
    // (the failed attempts window grew; nothing else moved)
    let no_attempts = |v: &[(String, i64)]| -> Vec<(String, i64)> {
        v.iter()
            .filter(|(t, _)| t != "auth_failures")
            .cloned()
            .collect()
    };
    ensure_eq!(
        no_attempts(&after_wrong),
        no_attempts(&before),
        "a wrong password deleted nothing"
    );
    c.snapshot(&a.token, None)?;

    let v = delete(&c, &a.token, &a.password)?.expect_ok(200)?;
    ensure_eq!(v["signedOut"], json!(2), "both devices signed out: {v}");
    ensure_eq!(
        ws.wait_close()?,
        4001,
        "the open socket closes as signed out"
    );
    for t in [&a.token, &a2.token] {
        c.req("GET", "/api/sync")
            .bearer(t)
            .send()?
            .expect_error(401, "unauthorized")?;
    }
    // A device that reconnects after is refused at the handshake.
    expect_refused(
        &c,
        "",
        Some(&format!("{PROTOCOL}, bearer.{}", a2.token)),
        None,
        401,
        "unauthorized",
        "reconnect after deletion",
    )?;
    c.req("POST", "/api/auth/login")
        .json(&json!({"email": a.email, "password": a.password}))
        .send()?
        .expect_error(401, "invalid_credentials")?;
    // The login above counted an attempt for the address: that window is
    // someone knocking at a door that no longer exists, not the person's.
    sleep(Duration::from_millis(500));
    let after = rows_naming(s, &cols, &needles)?;
    let left: Vec<&(String, i64)> = after
        .iter()
        .filter(|(t, n)| *n != 0 && !(t == "auth_failures" && *n == 1))
        .collect();
    ensure!(left.is_empty(), "rows of the person left: {after:?}");
    ensure_eq!(
        s.db_fingerprint(&b.user_id)?,
        b_before,
        "the other person's data is untouched"
    );
    let b_snap = c.snapshot(&b.token, None)?;
    ensure_eq!(
        b_snap["data"]["kanban-projects"].is_string(),
        true,
        "b reads: {b_snap}"
    );
    // The address can register again, as a new person with nothing.
    let again = c.register_as(&a.email, "another good password")?;
    ensure!(again.user_id != a.user_id, "a new user id");
    ensure_eq!(
        c.snapshot(&again.token, None)?["data"],
        json!({}),
        "the new account starts empty"
    );
    Ok(())
}

fn delete_racing_writes(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("delete-race")?;
    let a2 = c.login(&a.email, &a.password)?;
    c.put_ok(&a.token, "warm", "the hub holds this")?;
    let cols = columns(s)?;
    let stop = AtomicBool::new(false);
    let (deleted, rest_writes, ws_writes) = thread::scope(|scope| {
        let rest = scope.spawn(|| {
            let c = Client::new(s);
            let mut ok = 0;
            for i in 0..400 {
                let r = c.put(
                    &a2.token,
                    &format!("k{}", i % 7),
                    &json!({"value": format!("v{i}"), "requestId": format!("r{i}")}),
                );
                match r {
                    Ok(r) if r.status == 200 => ok += 1,
                    _ => break,
                }
                if stop.load(Ordering::SeqCst) && i > 20 {
                    break;
                }
            }
            ok
        });
        let ws = scope.spawn(|| -> usize {
            let Ok(mut ws) = open(s, &a2.token) else {
                return 0;
            };
            let mut ok = 0;
            for i in 0..400 {
                let sent = ws.send(&json!({"type": "put", "key": format!("w{}", i % 5), "value": format!("v{i}"), "requestId": format!("w{i}")}));
                if sent.is_err() {
                    break;
                }
                match ws.wait_for("ack or error", |v| v["requestId"] == json!(format!("w{i}")) || v["type"] == "error") {
                    Ok(v) if v["type"] == "ack" => ok += 1,
                    _ => break,
                }
            }
            ok
        });
        sleep(Duration::from_millis(400));
        let r = delete(&c, &a.token, &a.password);
        stop.store(true, Ordering::SeqCst);
        (r, rest.join(), ws.join())
    });
    deleted?.expect_ok(200)?;
    let rest_writes = rest_writes.map_err(|_| "REST writer panicked")?;
    let ws_writes = ws_writes.map_err(|_| "socket writer panicked")?;
    eprintln!("accounts: {rest_writes} REST and {ws_writes} WebSocket writes acknowledged before the deletion");
    // Whatever was under way has finished or failed by now.
    sleep(Duration::from_millis(1500));
    let needles = [
        a.user_id.as_str(),
        a.device_id.as_str(),
        a2.device_id.as_str(),
    ];
    let after = rows_naming(s, &cols, &needles)?;
    ensure!(
        after.iter().all(|(_, n)| *n == 0),
        "rows came back after the deletion: {after:?}"
    );
    c.put(&a2.token, "late", &json!({"value": "x"}))?
        .expect_error(401, "unauthorized")?;
    Ok(())
}

fn reset(c: &Client, email: &str, code: &str, new: &str) -> Result<crate::client::Resp, Failed> {
    c.req("POST", "/api/auth/reset")
        .json(&json!({"email": email, "code": code, "newPassword": new}))
        .send()
}

fn reset_code(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("reset")?;
    let other = c.login(&user.email, &user.password)?;
    c.put_ok(&user.token, "kept", "data survives a reset")?;
    let mut ws = open(s, &other.token)?;
    let issued = issue_code(s, &user.email)?;
    let code = issued["code"].as_str().ok_or("code")?.to_string();
    ensure_eq!(code.len(), 24, "XXXX-XXXX-XXXX-XXXX-XXXX: {code}");
    let expires = issued["expiresAt"].as_i64().ok_or("expiresAt")?;
    let in_an_hour = crate::client::now_ms() + 3_600_000;
    ensure!(
        (in_an_hour - expires).abs() < 60_000,
        "valid for an hour: {expires} vs {in_an_hour}"
    );
    // Stored hashed: the code's text is nowhere in the database.
    let rows = s.db_rows(&format!(
        "SELECT code_hash FROM reset_codes WHERE user_id = {}",
        sql_str(&user.user_id)
    ))?;
    ensure_eq!(rows.len(), 1, "one code row");
    let stored = rows[0]["code_hash"].as_str().unwrap_or_default();
    ensure!(
        stored.len() == 64 && !stored.contains(&code.replace('-', "")),
        "the code is stored hashed: {stored}"
    );

    // Refusals change nothing.
    let new = "a brand new password";
    reset(&c, &user.email, "0000-0000-0000-0000-0000", new)?
        .expect_error(403, "invalid_reset_code")?;
    reset(&c, &user.email, "nonsense", new)?.expect_error(403, "invalid_reset_code")?;
    reset(&c, &unique_email("nobody"), &code, new)?.expect_error(403, "invalid_reset_code")?;
    reset(&c, &user.email, &code, "short")?.expect_error(400, "weak_password")?;
    reset(&c, "not an email", &code, new)?.expect_error(400, "invalid_email")?;
    c.req("POST", "/api/auth/reset")
        .json(&json!({"email": user.email, "code": code}))
        .send()?
        .expect_error(400, "invalid_request")?;
    c.snapshot(&user.token, None)?;

    // Typed sloppily: lower case, spaces for dashes.
    let typed = code.to_lowercase().replace('-', " ");
    let v = reset(&c, &user.email, &typed, new)?.expect_ok(200)?;
    ensure_eq!(v["signedOut"], json!(2), "every device signed out: {v}");
    ensure_eq!(ws.wait_close()?, 4001, "the open socket closes");
    for t in [&user.token, &other.token] {
        c.req("GET", "/api/sync")
            .bearer(t)
            .send()?
            .expect_error(401, "unauthorized")?;
    }
    c.req("POST", "/api/auth/login")
        .json(&json!({"email": user.email, "password": user.password}))
        .send()?
        .expect_error(401, "invalid_credentials")?;
    let back = c.login(&user.email, new)?;
    ensure_eq!(
        c.snapshot(&back.token, None)?["data"],
        json!({"kept": "data survives a reset"}),
        "the data is still there"
    );
    // Once only.
    reset(&c, &user.email, &code, "yet another password")?
        .expect_error(403, "invalid_reset_code")?;
    let rows = s.db_rows(&format!(
        "SELECT count(*) AS n FROM reset_codes WHERE user_id = {}",
        sql_str(&user.user_id)
    ))?;
    ensure_eq!(rows[0]["n"], json!(0), "the used code is deleted");
    // A new code replaces an older one.
    let first = issue_code(s, &user.email)?["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let second = issue_code(s, &user.email)?["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    reset(&c, &user.email, &first, "password number three")?
        .expect_error(403, "invalid_reset_code")?;
    reset(&c, &user.email, &second, "password number three")?.expect_ok(200)?;
    c.login(&user.email, "password number three")?;
    Ok(())
}

fn reset_rate_limited(s: &Server) -> Result<(), Failed> {
    // Per email: the login limit (10 a minute) counts wrong codes before
    // anything is checked; the right code is refused too once it is spent.
    let c = Client::new(s);
    let user = c.register("reset-limit")?;
    let code = issue_code(s, &user.email)?["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let new = "a brand new password";
    for i in 0..10 {
        let c = Client::new(s); // a fresh IP each time: the email's count
        reset(&c, &user.email, "0000-0000-0000-0000-0000", new)?
            .expect_error(403, "invalid_reset_code")
            .map_err(|e| {
                Failed::from(format!("attempt {i}: {}", e.message().unwrap_or_default()))
            })?;
    }
    let password = |s: &Server| -> Result<Value, Failed> {
        Ok(s.db_rows(&format!(
            "SELECT password FROM users WHERE id = {}",
            sql_str(&user.user_id)
        ))?[0]["password"]
            .clone())
    };
    let before = password(s)?;
    let r = reset(&Client::new(s), &user.email, &code, new)?;
    r.expect_error(429, "rate_limited")?;
    ensure!(r.retry_after()? > 0, "Retry-After");
    ensure_eq!(password(s)?, before, "the password is unchanged");

    // Per IP: 30 a minute across emails.
    let ip = Client::new(s);
    let mut limited = None;
    for i in 0..31 {
        let r = reset(
            &ip,
            &unique_email("reset-ip"),
            "0000-0000-0000-0000-0000",
            new,
        )?;
        if r.status == 429 {
            r.expect_error(429, "rate_limited")?;
            limited = Some(i);
            break;
        }
        r.expect_error(403, "invalid_reset_code")?;
    }
    ensure_eq!(limited, Some(30), "the 31st attempt from one IP is refused");
    Ok(())
}
