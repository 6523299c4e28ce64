//! The operator's command line, `scripts/admin.sh`, run as an operator
//! would against the `admin` server (a local Worker with `ADMIN_TOKEN` set
//! and `REGISTRATION=allowlist`): every subcommand, and the admin API's own
//! refusals (off without a token, 401 for a wrong one).

use crate::accounts::{columns, rows_naming};
use crate::client::{unique_email, Client};
use crate::live::open;
use crate::server::{repo_root, Server};
use crate::{On, Test, ADMIN_TOKEN};
use libtest_mimic::Failed;
use serde_json::{json, Value};
use std::process::{Command, Output, Stdio};

pub fn tests() -> Vec<Test> {
    vec![
        Test::main("admin::off_without_an_admin_token", off_without_token),
        Test::on(On::Admin, "admin::wrong_token_is_refused", wrong_token),
        Test::on(
            On::Admin,
            "admin::users_lists_accounts_and_their_use",
            users,
        ),
        Test::on(
            On::Admin,
            "admin::reset_code_prints_a_code_that_works",
            reset_code,
        ),
        Test::on(
            On::Admin,
            "admin::allowlist_changes_who_may_register_without_a_deploy",
            allowlist,
        ),
        Test::on(
            On::Admin,
            "admin::quota_overrides_the_defaults_for_one_person_at_once",
            quota,
        ),
        Test::on(
            On::Admin,
            "admin::disable_signs_out_and_keeps_out_until_enable",
            disable_enable,
        ),
        Test::on(On::Admin, "admin::delete_removes_the_person", delete),
        Test::on(
            On::Admin,
            "admin::export_prints_the_export_document",
            export,
        ),
        Test::on(On::Admin, "admin::init_writes_a_local_token_once", init),
    ]
}

/// A request to the admin API with the admin server's token.
pub fn admin_req<'a>(c: &'a Client, method: &str, path: &str) -> crate::client::Req<'a> {
    c.req(method, &format!("/api/admin{path}"))
        .bearer(ADMIN_TOKEN)
}

/// Issues a reset code for `email` through the admin API.
pub fn issue_code(s: &Server, email: &str) -> Result<Value, Failed> {
    let c = Client::new(s);
    admin_req(
        &c,
        "POST",
        &format!("/users/{}/reset-code", crate::client::enc(email)),
    )
    .send()?
    .expect_ok(200)
}

/// Runs `scripts/admin.sh --url <server> args...` with the admin token.
fn admin_sh(s: &Server, args: &[&str]) -> Result<Output, Failed> {
    admin_sh_env(s, args, &[("ADMIN_TOKEN", ADMIN_TOKEN)])
}

fn admin_sh_env(s: &Server, args: &[&str], env: &[(&str, &str)]) -> Result<Output, Failed> {
    let mut cmd = Command::new(repo_root().join("scripts/admin.sh"));
    cmd.arg("--url").arg(&s.base_url).args(args);
    cmd.env_remove("ADMIN_TOKEN").env_remove("ADMIN_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null());
    cmd.output()
        .map_err(|e| Failed::from(format!("cannot run scripts/admin.sh: {e}")))
}

/// `admin.sh args` that must succeed; its stdout.
fn ok(s: &Server, args: &[&str]) -> Result<String, Failed> {
    let out = admin_sh(s, args)?;
    ensure!(
        out.status.success(),
        "admin.sh {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `admin.sh args` that must fail; its stderr.
fn fails(s: &Server, args: &[&str]) -> Result<String, Failed> {
    let out = admin_sh(s, args)?;
    ensure!(
        !out.status.success(),
        "admin.sh {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

fn off_without_token(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    for (m, p) in [("GET", "/users"), ("POST", "/users/a%40b.org/disable")] {
        let r = admin_req(&c, m, p).send()?;
        let e = r.expect_error(404, "not_found")?;
        let msg = e["error"]["message"].as_str().unwrap_or_default();
        ensure!(msg.contains("ADMIN_TOKEN"), "says how to turn it on: {msg}");
    }
    Ok(())
}

fn wrong_token(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    c.req("GET", "/api/admin/users")
        .send()?
        .expect_error(401, "unauthorized")?;
    c.req("GET", "/api/admin/users")
        .bearer(&"x".repeat(ADMIN_TOKEN.len()))
        .send()?
        .expect_error(401, "unauthorized")?;
    // A device token is not an admin token.
    let user = c.register("admin-not-a-device")?;
    c.req("GET", "/api/admin/users")
        .bearer(&user.token)
        .send()?
        .expect_error(401, "unauthorized")?;
    let err = admin_sh_env(s, &["users"], &[("ADMIN_TOKEN", "wrong")])?;
    ensure!(!err.status.success(), "admin.sh with a wrong token fails");
    ensure!(
        String::from_utf8_lossy(&err.stderr).contains("401"),
        "and says so: {}",
        String::from_utf8_lossy(&err.stderr)
    );
    Ok(())
}

fn users(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("admin-users")?;
    c.login(&user.email, &user.password)?;
    c.put_ok(&user.token, "a", "one")?;
    c.put_ok(&user.token, "b", "two")?;
    c.put_ok(&user.token, "b", "three")?;
    c.delete(&user.token, "a", None)?.expect_ok(200)?;
    c.put_ok(&user.token, "c", "four")?;
    let list: Value = serde_json::from_str(&ok(s, &["users", "--json"])?)?;
    let me = list
        .as_array()
        .and_then(|l| l.iter().find(|u| u["email"] == json!(user.email)))
        .ok_or_else(|| format!("{} not listed: {list}", user.email))?;
    ensure_eq!(me["userId"], json!(user.user_id), "user id");
    ensure_eq!(me["devices"], json!(2), "devices: {me}");
    ensure_eq!(
        me["keys"],
        json!(2),
        "keys holding a value (a deleted): {me}"
    );
    ensure_eq!(me["writesToday"], json!(5), "writes today: {me}");
    ensure!(
        me["bytes"].as_u64().unwrap_or(0) >= 15,
        "stored bytes: {me}"
    );
    ensure!(me["createdAt"].as_i64().unwrap_or(0) > 0, "created: {me}");
    ensure!(
        me["lastSeenAt"].as_i64().unwrap_or(0) > 0,
        "last seen: {me}"
    );
    ensure_eq!(
        me["quota"]["keys"],
        json!(10_000),
        "the default quota: {me}"
    );
    ensure_eq!(me["disabledAt"], Value::Null, "enabled");
    let text = ok(s, &["users"])?;
    let line = text
        .lines()
        .find(|l| l.starts_with(&user.email))
        .ok_or_else(|| format!("no line for {}: {text}", user.email))?;
    let cols: Vec<&str> = line.split_whitespace().collect();
    ensure_eq!(
        cols.get(3..7).map(|c| c.join(" ")),
        Some(format!("2 2 {} 5", me["bytes"])),
        "devices, keys, bytes, writes today: {line}"
    );
    ensure!(
        text.lines().next().unwrap_or_default().starts_with("EMAIL"),
        "a header: {text}"
    );
    Ok(())
}

fn reset_code(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("admin-reset")?;
    let code = ok(s, &["reset-code", &user.email])?.trim().to_string();
    ensure_eq!(code.len(), 24, "one code on stdout: {code:?}");
    c.req("POST", "/api/auth/reset")
        .json(&json!({"email": user.email, "code": code, "newPassword": "the new password"}))
        .send()?
        .expect_ok(200)?;
    c.login(&user.email, "the new password")?;
    let err = fails(s, &["reset-code", &unique_email("admin-nobody")])?;
    ensure!(err.contains("no account"), "an unknown email: {err}");
    let err = fails(s, &["reset-code", "not-an-email"])?;
    ensure!(err.contains("invalid_email"), "a malformed email: {err}");
    Ok(())
}

fn register(c: &Client, email: &str) -> Result<crate::client::Resp, Failed> {
    c.req("POST", "/api/auth/register")
        .json(&json!({"email": email, "password": "correct horse battery"}))
        .send()
}

fn allowlist(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    // The variable's entries are listed as the seed.
    let listed = ok(s, &["allowlist"])?;
    ensure!(
        listed.contains("seeded@admin.test\tallowed\tvariable"),
        "the seed: {listed}"
    );
    let tag = crate::client::now_ms();
    let (domain, other) = (format!("@d{tag}.test"), format!("x@e{tag}.test"));
    // A stranger is refused, then allowed without a deploy.
    register(&c, &other)?.expect_error(403, "registration_closed")?;
    ok(s, &["allow", &other.to_uppercase()])?;
    register(&c, &other)?.expect_ok(201)?;
    // A whole domain, and one address taken out of it.
    ok(s, &["allow", &domain])?;
    register(&c, &format!("a{domain}"))?.expect_ok(201)?;
    ok(s, &["disallow", &format!("b{domain}")])?;
    register(&c, &format!("b{domain}"))?.expect_error(403, "registration_closed")?;
    register(&c, &format!("c{domain}"))?.expect_ok(201)?;
    // A seeded entry disallowed: the variable no longer lets it in.
    ok(s, &["disallow", "@seeded.test"])?;
    register(&c, &format!("y{tag}@seeded.test"))?.expect_error(403, "registration_closed")?;
    let json: Value = serde_json::from_str(&ok(s, &["allowlist", "--json"])?)?;
    ensure_eq!(json["mode"], json!("allowlist"), "mode");
    let entry = |e: &str| {
        json["entries"]
            .as_array()
            .and_then(|l| l.iter().find(|x| x["entry"] == json!(e)).cloned())
    };
    ensure_eq!(
        entry("@seeded.test"),
        Some(json!({"entry": "@seeded.test", "allowed": false, "source": "database"})),
        "the seed entry overridden"
    );
    ensure_eq!(
        entry(&other).map(|e| e["allowed"].clone()),
        Some(json!(true)),
        "lower-cased and allowed"
    );
    // Existing accounts keep working when their entry is disallowed.
    ok(s, &["disallow", &other])?;
    c.login(&other, "correct horse battery")?;
    let err = fails(s, &["allow", "not an entry"])?;
    ensure!(err.contains("invalid_request"), "a bad entry: {err}");
    Ok(())
}

fn account(c: &Client, token: &str) -> Result<Value, Failed> {
    c.req("GET", "/api/account")
        .bearer(token)
        .send()?
        .expect_ok(200)
}

fn quota(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("admin-quota")?;
    let t = &user.token;
    // The hub is awake and holds the state (limits included).
    let mut ws = open(s, t)?;
    ws.put("a", "one", "q-1")?;
    let out = ok(
        s,
        &["quota", &user.email, "--keys", "1", "--writes-per-day", "4"],
    )?;
    ensure!(
        out.contains("keys 1") && out.contains("writes a day 4"),
        "{out}"
    );
    let r = c.put(t, "b", &json!({"value": "two"}))?;
    let e = r.expect_error(507, "quota_exceeded")?;
    ensure!(
        e["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(" 1 "),
        "names the person's limit: {e}"
    );
    let limits = account(&c, t)?["limits"].clone();
    ensure_eq!(
        (
            limits["keys"].clone(),
            limits["writesPerDay"].clone(),
            limits["bytes"].clone()
        ),
        (json!(1), json!(4), json!(100_000_000)),
        "GET /api/account shows the person's limits"
    );
    // Over the socket too.
    let ack = ws.put("c", "x", "q-2");
    ensure!(
        ack.is_err() || ack.as_ref().is_ok_and(|v| v["type"] != "ack"),
        "refused on the socket: {ack:?}"
    );
    // Back to the default: the second key fits; the day's 4 units hold.
    ok(s, &["quota", &user.email, "--keys", "default"])?;
    c.put_ok(t, "b", "two")?;
    c.put_ok(t, "b", "three")?;
    c.put_ok(t, "b", "four")?;
    c.put(t, "b", &json!({"value": "five"}))?
        .expect_error(429, "quota_exceeded")?;
    let list: Value = serde_json::from_str(&ok(s, &["users", "--json"])?)?;
    let me = list
        .as_array()
        .and_then(|l| l.iter().find(|u| u["email"] == json!(user.email)).cloned())
        .ok_or("listed")?;
    ensure_eq!(
        me["overrides"],
        json!({"bytes": null, "keys": null, "writesPerDay": 4}),
        "users shows what was set"
    );
    // Above the default as well.
    ok(s, &["quota", &user.email, "--writes-per-day", "100000"])?;
    c.put_ok(t, "b", "five")?;
    ensure_eq!(
        account(&c, t)?["limits"]["writesPerDay"],
        json!(100_000),
        "raised above the default"
    );
    let err = fails(s, &["quota", &user.email, "--keys", "-3"])?;
    ensure!(err.contains("whole number"), "{err}");
    Ok(())
}

fn disable_enable(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("admin-disable")?;
    c.put_ok(&user.token, "kept", "yes")?;
    let mut ws = open(s, &user.token)?;
    let out = ok(s, &["disable", &user.email])?;
    ensure!(out.contains("1 device"), "{out}");
    ensure_eq!(ws.wait_close()?, 4001, "the socket closes as signed out");
    c.req("GET", "/api/sync")
        .bearer(&user.token)
        .send()?
        .expect_error(401, "unauthorized")?;
    c.req("POST", "/api/auth/login")
        .json(&json!({"email": user.email, "password": user.password}))
        .send()?
        .expect_error(403, "account_disabled")?;
    // A wrong password learns nothing of the state.
    c.req("POST", "/api/auth/login")
        .json(&json!({"email": user.email, "password": "a wrong password"}))
        .send()?
        .expect_error(401, "invalid_credentials")?;
    let list: Value = serde_json::from_str(&ok(s, &["users", "--json"])?)?;
    let me = list
        .as_array()
        .and_then(|l| l.iter().find(|u| u["email"] == json!(user.email)).cloned())
        .ok_or("listed")?;
    ensure!(me["disabledAt"].is_i64(), "users shows it disabled: {me}");
    ensure_eq!(me["devices"], json!(0), "no device signed in");
    ok(s, &["enable", &user.email])?;
    let back = c.login(&user.email, &user.password)?;
    ensure_eq!(
        c.snapshot(&back.token, None)?["data"],
        json!({"kept": "yes"}),
        "the data is kept"
    );
    Ok(())
}

fn delete(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("admin-delete")?;
    let other = c.register("admin-delete-other")?;
    c.put_ok(&user.token, "k", "v")?;
    c.put_ok(&other.token, "k", "other's")?;
    let mut ws = open(s, &user.token)?;
    // Without a terminal, nothing happens unless --yes says so.
    let err = fails(s, &["delete", &user.email])?;
    ensure!(err.contains("--yes"), "{err}");
    c.snapshot(&user.token, None)?;
    let out = ok(s, &["delete", &user.email, "--yes"])?;
    ensure!(out.contains("deleted"), "{out}");
    ensure_eq!(ws.wait_close()?, 4001, "the socket closes");
    let cols = columns(s)?;
    let left = rows_naming(s, &cols, &[&user.user_id, &user.email, &user.device_id])?;
    ensure!(left.iter().all(|(_, n)| *n == 0), "rows left: {left:?}");
    ensure_eq!(
        c.snapshot(&other.token, None)?["data"],
        json!({"k": "other's"}),
        "the other person is untouched"
    );
    let err = fails(s, &["delete", &user.email, "--yes"])?;
    ensure!(err.contains("no account"), "{err}");
    Ok(())
}

fn export(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("admin-export")?;
    c.put_ok(&user.token, "plain", "one")?;
    let list = json!([{"id": "x", "n": 1}, {"id": "y", "n": 2}]).to_string();
    c.put_ok(&user.token, "kanban-projects", &list)?;
    let printed: Value = serde_json::from_str(&ok(s, &["export", &user.email])?)?;
    let mut own = c
        .req("GET", "/api/export")
        .bearer(&user.token)
        .send()?
        .json()?;
    let mut printed2 = printed.clone();
    for v in [&mut own, &mut printed2] {
        if let Some(o) = v.as_object_mut() {
            o.remove("exportedAt");
        }
    }
    ensure_eq!(printed2, own, "admin export = the person's own export");
    ensure_eq!(
        printed["format"],
        json!("alternassist-sync-export"),
        "format"
    );
    // It imports back: the export format.
    let other = c.register("admin-export-into")?;
    c.req("POST", "/api/import")
        .bearer(&other.token)
        .json(&printed)
        .send()?
        .expect_ok(200)?;
    ensure_eq!(
        c.snapshot(&other.token, None)?["data"],
        printed["data"],
        "imported"
    );
    Ok(())
}

fn init(s: &Server) -> Result<(), Failed> {
    let dir = s
        .state_dir
        .join(format!("admin-init-{}", crate::client::now_ms()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(".dev.vars"), "OTHER=1").map_err(|e| e.to_string())?;
    let d = dir.display().to_string();
    let run = || admin_sh_env(s, &["init"], &[("ADMIN_CONFIG_DIR", &d)]);
    ensure!(run()?.status.success(), "init");
    let text = std::fs::read_to_string(dir.join(".dev.vars")).map_err(|e| e.to_string())?;
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("ADMIN_TOKEN=\""))
        .map(|t| t.trim_end_matches('"').to_string())
        .ok_or_else(|| format!("no ADMIN_TOKEN: {text}"))?;
    ensure!(token.len() >= 32, "a long token: {token}");
    ensure!(
        text.starts_with("OTHER=1\n"),
        "keeps what was there: {text}"
    );
    ensure!(run()?.status.success(), "init again");
    let again = std::fs::read_to_string(dir.join(".dev.vars")).map_err(|e| e.to_string())?;
    ensure_eq!(again, text, "a second init changes nothing");
    // And admin.sh reads it from there (this server has another token: 401).
    let out = admin_sh_env(s, &["users"], &[("ADMIN_CONFIG_DIR", &d)])?;
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "the token from .dev.vars was sent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
