//! Register, login, logout, and tokens on the sync endpoints.

use crate::client::{unique_email, Client};
use crate::client::{Mismatches, Note};
use crate::server::{sql_str, Server};
use crate::Test;
use libtest_mimic::Failed;
use serde_json::json;

pub fn tests() -> Vec<Test> {
    vec![
        Test::main(
            "auth::register_returns_a_working_token",
            register_returns_a_working_token,
        ),
        Test::main("auth::register_normalises_email", register_normalises_email),
        Test::main(
            "auth::register_existing_email_is_409",
            register_existing_email_is_409,
        ),
        Test::main(
            "auth::register_invalid_email_is_400",
            register_invalid_email_is_400,
        ),
        Test::main(
            "auth::register_weak_password_is_400",
            register_weak_password_is_400,
        ),
        Test::main("auth::register_bad_bodies", register_bad_bodies),
        Test::main(
            "auth::login_gives_a_new_device_each_time",
            login_gives_a_new_device_each_time,
        ),
        Test::main(
            "auth::login_failures_are_indistinguishable",
            login_failures_are_indistinguishable,
        ),
        Test::main(
            "auth::email_alone_never_gives_a_token",
            email_alone_never_gives_a_token,
        ),
        Test::main(
            "auth::logout_revokes_only_that_device",
            logout_revokes_only_that_device,
        ),
        Test::main("auth::logout_needs_a_token", logout_needs_a_token),
        Test::main("auth::sync_rejects_bad_tokens", sync_rejects_bad_tokens),
        Test::main(
            "auth::token_in_url_is_not_accepted",
            token_in_url_is_not_accepted,
        ),
    ]
}

fn is_base64url_token(t: &str) -> bool {
    t.len() == 43
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn register_returns_a_working_token(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let email = unique_email("register-ok");
    let r = c
        .req("POST", "/api/auth/register")
        .json(&json!({"email": email, "password": "correct horse battery", "deviceName": "Laptop"}))
        .send()?;
    let v = r.expect_ok(201)?;
    let token = v["token"].as_str().unwrap_or_default();
    ensure!(
        is_base64url_token(token),
        "token {token:?} is not 43 base64url chars"
    );
    ensure!(
        v["userId"].as_str().is_some_and(|s| !s.is_empty()),
        "no userId: {v}"
    );
    ensure!(
        v["deviceId"].as_str().is_some_and(|s| !s.is_empty()),
        "no deviceId: {v}"
    );

    let snap = c.snapshot(token, None)?;
    ensure_eq!(snap["data"], json!({}), "a new account's data");
    ensure_eq!(snap["versions"], json!({}), "a new account's versions");
    ensure_eq!(snap["deleted"], json!([]), "a new account's deletions");
    ensure_eq!(snap["cursor"], json!(0), "a new account's cursor");

    // Two registrations never share a token or a user.
    let other = c.register("register-ok2")?;
    ensure!(other.token != token, "two accounts got the same token");
    ensure!(
        other.user_id != v["userId"].as_str().unwrap_or_default(),
        "two accounts share a userId"
    );
    Ok(())
}

fn register_normalises_email(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let lower = unique_email("normalise");
    let mixed = format!("  {}  ", lower.to_uppercase());
    let user = c.register_as(&mixed, "correct horse battery")?;

    // The same address in other case or with spaces is the same account.
    for variant in [lower.clone(), lower.to_uppercase(), format!(" {lower}\t")] {
        let r = c
            .req("POST", "/api/auth/register")
            .json(&json!({"email": variant, "password": "another password"}))
            .send()?;
        r.expect_error(409, "email_taken")?;
    }
    let again = c.login(&lower.to_uppercase(), "correct horse battery")?;
    ensure_eq!(
        again.user_id,
        user.user_id,
        "login with other case reaches the same user"
    );

    let rows = s.db_rows(&format!(
        "SELECT email FROM users WHERE lower(email) = {}",
        sql_str(&lower)
    ))?;
    ensure_eq!(rows.len(), 1, "users rows for {lower}");
    ensure_eq!(
        rows[0]["email"],
        json!(lower),
        "stored email is trimmed and lower-cased"
    );
    Ok(())
}

fn register_existing_email_is_409(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("dup")?;
    let r = c
        .req("POST", "/api/auth/register")
        .json(&json!({"email": user.email, "password": user.password}))
        .send()?;
    r.expect_error(409, "email_taken")?;
    // The first account still works with its original password and token.
    c.login(&user.email, &user.password)?;
    c.snapshot(&user.token, None)?;
    let rows = s.db_rows(&format!(
        "SELECT count(*) AS n FROM devices WHERE user_id = {}",
        sql_str(&user.user_id)
    ))?;
    ensure_eq!(
        rows[0]["n"],
        json!(2),
        "devices after register, refused register and login"
    );
    Ok(())
}

fn register_invalid_email_is_400(s: &Server) -> Result<(), Failed> {
    let mut bad = Mismatches::default();
    let c = Client::new(s);
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/validation.json"))
            .map_err(|e| Failed::from(format!("validation fixture: {e}")))?;
    let bad_emails: Vec<&str> = fixture["invalidEmails"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    ensure!(!bad_emails.is_empty(), "no invalid emails in the fixture");
    for &email in &bad_emails {
        let r = c
            .req("POST", "/api/auth/register")
            .json(&json!({"email": email, "password": "correct horse battery"}))
            .send()?;
        r.expect_error(400, "invalid_email")
            .note(&mut bad, format!("email {email:?}"));
    }
    bad.finish()?;
    // (A NUL cannot travel in a command-line argument; those are left out.)
    let list = bad_emails
        .iter()
        .filter(|e| !e.contains('\0'))
        .map(|e| sql_str(&e.trim().to_lowercase()))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = s.db_rows(&format!("SELECT email FROM users WHERE email IN ({list})"))?;
    ensure!(rows.is_empty(), "invalid emails were stored: {rows:?}");
    Ok(())
}

fn register_weak_password_is_400(s: &Server) -> Result<(), Failed> {
    let mut bad = Mismatches::default();
    let c = Client::new(s);
    let email = unique_email("weak");
    // Seven characters, also when they take more bytes; and nothing at all.
    for pw in ["", "1234567", "ééééééé", "🙂🙂🙂🙂🙂🙂🙂"] {
        let r = c
            .req("POST", "/api/auth/register")
            .json(&json!({"email": email, "password": pw}))
            .send()?;
        r.expect_error(400, "weak_password")
            .note(&mut bad, format!("password {pw:?}"));
    }
    bad.finish()?;
    // Nothing was stored: the address is still free, and eight characters
    // (fewer bytes than some refused ones) are enough.
    let user = c.register_as(&email, "éééééééé")?;
    c.login(&email, "éééééééé")?;
    c.snapshot(&user.token, None)?;
    Ok(())
}

fn register_bad_bodies(s: &Server) -> Result<(), Failed> {
    let mut bad = Mismatches::default();
    let c = Client::new(s);
    let email = unique_email("badbody");
    for raw in [
        "",
        "{",
        "{\"email\": ",
        "not json",
        "{\"email\":\"a@b.c\",}",
    ] {
        c.req("POST", "/api/auth/register")
            .raw(raw)
            .send()?
            .expect_error(400, "invalid_json")
            .note(&mut bad, format!("body {raw:?}"));
    }
    let shapes = [
        json!([]),
        json!("x"),
        json!(null),
        json!({}),
        json!({ "email": email }),
        json!({ "password": "correct horse battery" }),
        json!({ "email": 5, "password": "correct horse battery" }),
        json!({ "email": email, "password": 12345678 }),
        json!({ "email": email, "password": null }),
        json!({ "email": [email], "password": "correct horse battery" }),
    ];
    for body in shapes {
        c.req("POST", "/api/auth/register")
            .json(&body)
            .send()?
            .expect_error(400, "invalid_request")
            .note(&mut bad, format!("body {body}"));
    }
    bad.finish()?;
    // None of that created the account.
    c.register_as(&email, "correct horse battery")?;
    Ok(())
}

fn login_gives_a_new_device_each_time(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("login-new")?;
    let a = c.login(&user.email, &user.password)?;
    let b = c.login(&user.email, &user.password)?;
    for t in [&a.token, &b.token] {
        ensure!(
            crate::auth::is_base64url_token(t),
            "login token {t:?} is not 43 base64url chars"
        );
    }
    ensure_eq!(a.user_id, user.user_id, "login userId");
    ensure_eq!(b.user_id, user.user_id, "login userId");
    let tokens = [&user.token, &a.token, &b.token];
    let devices = [&user.device_id, &a.device_id, &b.device_id];
    for i in 0..3 {
        for j in (i + 1)..3 {
            ensure!(tokens[i] != tokens[j], "two logins returned the same token");
            ensure!(
                devices[i] != devices[j],
                "two logins returned the same deviceId"
            );
        }
    }
    // Every device sees the same data.
    c.put_ok(&a.token, "shared", "from a")?;
    for t in tokens {
        let snap = c.snapshot(t, None)?;
        ensure_eq!(
            snap["data"]["shared"],
            json!("from a"),
            "each device's view"
        );
    }
    Ok(())
}

fn login_failures_are_indistinguishable(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("login-fail")?;
    let wrong = c
        .req("POST", "/api/auth/login")
        .json(&json!({"email": user.email, "password": "wrong password!"}))
        .send()?;
    wrong.expect_error(401, "invalid_credentials")?;
    let unknown = c
        .req("POST", "/api/auth/login")
        .json(&json!({"email": unique_email("nobody"), "password": "wrong password!"}))
        .send()?;
    unknown.expect_error(401, "invalid_credentials")?;
    ensure!(
        wrong.body == unknown.body,
        "unknown email and wrong password answer differently: {} vs {}",
        wrong.text(),
        unknown.text()
    );
    // Case of the password matters; the email's does not.
    c.req("POST", "/api/auth/login")
        .json(&json!({"email": user.email, "password": user.password.to_uppercase()}))
        .send()?
        .expect_error(401, "invalid_credentials")?;
    c.login(&user.email.to_uppercase(), &user.password)?;
    Ok(())
}

fn email_alone_never_gives_a_token(s: &Server) -> Result<(), Failed> {
    let mut bad = Mismatches::default();
    let c = Client::new(s);
    let user = c.register("email-alone")?;
    for body in [
        json!({ "email": user.email }),
        json!({ "email": user.email, "password": null }),
        json!({ "email": user.email, "deviceName": "x" }),
    ] {
        c.req("POST", "/api/auth/login")
            .json(&body)
            .send()?
            .expect_error(400, "invalid_request")
            .note(&mut bad, format!("body {body}"));
    }
    bad.finish()?;
    // An empty password is refused one way or another, never with a token.
    let r = c
        .req("POST", "/api/auth/login")
        .json(&json!({"email": user.email, "password": ""}))
        .send()?;
    ensure!(
        r.status == 400 || r.status == 401,
        "empty password: expected 400 or 401, got {}: {}",
        r.status,
        r.excerpt()
    );
    ensure!(
        !r.text().contains("token"),
        "empty password answer mentions a token: {}",
        r.excerpt()
    );
    Ok(())
}

fn logout_revokes_only_that_device(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("logout")?;
    let other = c.login(&user.email, &user.password)?;
    c.put_ok(&user.token, "k", "before logout")?;

    let r = c
        .req("POST", "/api/auth/logout")
        .bearer(&user.token)
        .send()?;
    let v = r.expect_ok(200)?;
    ensure_eq!(v, json!({"success": true}), "logout answer");

    let t = &user.token;
    c.req("GET", "/api/sync")
        .bearer(t)
        .send()?
        .expect_error(401, "unauthorized")?;
    c.req("GET", "/api/sync?since=0")
        .bearer(t)
        .send()?
        .expect_error(401, "unauthorized")?;
    c.put(t, "k", &json!({"value": "after logout"}))?
        .expect_error(401, "unauthorized")?;
    c.delete(t, "k", None)?.expect_error(401, "unauthorized")?;
    c.batch(t, &json!({"data": {"k": "after logout"}}))?
        .expect_error(401, "unauthorized")?;
    c.req("POST", "/api/auth/logout")
        .bearer(t)
        .send()?
        .expect_error(401, "unauthorized")?;

    // The other device is untouched, and so is the data.
    let snap = c.snapshot(&other.token, None)?;
    ensure_eq!(
        snap["data"],
        json!({"k": "before logout"}),
        "data after logout"
    );
    ensure_eq!(snap["cursor"], json!(1), "cursor after logout");

    let rows = s.db_rows(&format!(
        "SELECT id, revoked_at FROM devices WHERE user_id = {} ORDER BY id",
        sql_str(&user.user_id)
    ))?;
    let revoked: Vec<_> = rows.iter().filter(|r| !r["revoked_at"].is_null()).collect();
    ensure_eq!(revoked.len(), 1, "revoked devices");
    ensure_eq!(
        revoked[0]["id"],
        json!(user.device_id),
        "the revoked device"
    );
    Ok(())
}

fn logout_needs_a_token(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    c.req("POST", "/api/auth/logout")
        .send()?
        .expect_error(401, "unauthorized")?;
    c.req("POST", "/api/auth/logout")
        .bearer(&"A".repeat(43))
        .send()?
        .expect_error(401, "unauthorized")?;
    Ok(())
}

fn sync_rejects_bad_tokens(s: &Server) -> Result<(), Failed> {
    let mut bad = Mismatches::default();
    let c = Client::new(s);
    let user = c.register("bad-tokens")?;
    c.put_ok(&user.token, "k", "v")?;
    let mut flipped = user.token.clone().into_bytes();
    flipped[42] = if flipped[42] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped)?;

    let authorizations: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some(format!("Basic {}", user.token)),
        Some(user.token.clone()),
        Some(format!("Bearer {flipped}")),
        Some(format!("Bearer {}", &user.token[..42])),
        Some(format!("Bearer {}x", user.token)),
        Some(format!("Bearer {}", "A".repeat(43))),
        Some("Bearer not-a-token".into()),
        Some(format!("Bearer {}", user.user_id)),
        Some(format!("Bearer {}", user.device_id)),
    ];
    for auth in &authorizations {
        let a = auth.as_deref();
        let label = format!("Authorization {auth:?}");
        let reqs = [
            c.req("GET", "/api/sync").authorization(a),
            c.req("GET", "/api/sync?since=0").authorization(a),
            c.req("POST", "/api/sync")
                .authorization(a)
                .json(&json!({"data": {"k": "evil"}})),
            c.req("PUT", "/api/sync/k")
                .authorization(a)
                .json(&json!({"value": "evil"})),
            c.req("DELETE", "/api/sync/k").authorization(a),
        ];
        for req in reqs {
            req.send()?
                .expect_error(401, "unauthorized")
                .note(&mut bad, &label);
        }
    }
    bad.finish()?;
    let snap = c.snapshot(&user.token, None)?;
    ensure_eq!(
        snap["data"],
        json!({"k": "v"}),
        "data after rejected writes"
    );
    ensure_eq!(snap["cursor"], json!(1), "cursor after rejected writes");
    Ok(())
}

fn token_in_url_is_not_accepted(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("token-url")?;
    for path in [
        format!("/api/sync?token={}", user.token),
        format!("/api/sync?access_token={}", user.token),
        format!("/api/sync?since=0&token={}", user.token),
    ] {
        c.req("GET", &path)
            .send()?
            .expect_error(401, "unauthorized")?;
    }
    Ok(())
}
