//! One user never sees or changes another's data, client-sent identity
//! headers are ignored, and the database holds no token or password in plain
//! text.

use crate::client::Client;
use crate::server::{sql_str, Server};
use crate::Test;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libtest_mimic::Failed;
use serde_json::json;
use sha2::{Digest, Sha256};

pub fn tests() -> Vec<Test> {
    vec![
        Test::expiry(
            "security::idle_tokens_expire_and_use_slides_them",
            idle_tokens_expire,
        ),
        Test::main("security::users_are_isolated", users_are_isolated),
        Test::main(
            "security::identity_headers_are_ignored",
            identity_headers_are_ignored,
        ),
        Test::main(
            "security::passwords_are_stored_as_pbkdf2",
            passwords_are_stored_as_pbkdf2,
        ),
        Test::main(
            "security::tokens_are_stored_as_sha256",
            tokens_are_stored_as_sha256,
        ),
    ]
}

fn users_are_isolated(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("iso-a")?;
    let b = c.register("iso-b")?;
    c.put_ok(&a.token, "kanban-projects", "A's secret")?;
    c.put_ok(&a.token, "estimates", "A's estimates")?;
    c.delete(&a.token, "estimates", None)?.expect_ok(200)?;
    let a_before = c.snapshot(&a.token, None)?;

    let b_view = c.snapshot(&b.token, None)?;
    ensure_eq!(b_view["data"], json!({}), "B's data");
    ensure_eq!(b_view["versions"], json!({}), "B's versions");
    ensure_eq!(b_view["deleted"], json!([]), "B's deletions");
    ensure_eq!(b_view["cursor"], json!(0), "B's cursor");

    // B writing, deleting and batching the same key names touches only B.
    let r = c
        .put(
            &b.token,
            "kanban-projects",
            &json!({"value": "B's", "baseVersion": 1}),
        )?
        .expect_ok(200)?;
    ensure_eq!(r["version"], json!(1), "B's first version");
    ensure_eq!(
        r["conflict"],
        json!(null),
        "B's write conflicts with nothing of A's"
    );
    c.delete(
        &b.token,
        "kanban-projects",
        Some(&json!({"baseVersion": 1})),
    )?
    .expect_ok(200)?;
    c.batch(
        &b.token,
        &json!({"data": {"estimates": "B's"}, "deleted": ["kanban-projects"]}),
    )?
    .expect_ok(200)?;

    let a_after = c.snapshot(&a.token, None)?;
    ensure_eq!(
        a_after["data"],
        a_before["data"],
        "A's data after B's writes"
    );
    ensure_eq!(
        a_after["versions"],
        a_before["versions"],
        "A's versions after B's writes"
    );
    ensure_eq!(
        a_after["deleted"],
        a_before["deleted"],
        "A's deletions after B's writes"
    );
    ensure_eq!(
        a_after["cursor"],
        a_before["cursor"],
        "A's cursor after B's writes"
    );
    let b_after = c.snapshot(&b.token, None)?;
    ensure_eq!(b_after["data"], json!({"estimates": "B's"}), "B's data");
    Ok(())
}

fn identity_headers_are_ignored(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("ident-a")?;
    let b = c.register("ident-b")?;
    c.put_ok(&a.token, "secret", "A's secret")?;
    let a_before = c.snapshot(&a.token, None)?;
    let headers = [
        ("X-Sync-User-Id", a.user_id.as_str()),
        ("X-Sync-Device-Id", a.device_id.as_str()),
        ("X-Sync-User", a.user_id.as_str()),
        ("X-Sync-Email", a.email.as_str()),
        ("X-Sync-Identity", a.user_id.as_str()),
        ("X-User-Id", a.user_id.as_str()),
        ("X-Device-Id", a.device_id.as_str()),
    ];

    // With B's token, the headers naming A change nothing: B sees B.
    let r = c
        .req("GET", "/api/sync")
        .headers(&headers)
        .bearer(&b.token)
        .send()?;
    let v = r.expect_ok(200)?;
    ensure_eq!(v["data"], json!({}), "B's view with A's identity headers");
    let r = c
        .req("GET", "/api/sync?since=0")
        .headers(&headers)
        .bearer(&b.token)
        .send()?;
    ensure_eq!(
        r.expect_ok(200)?["data"],
        json!({}),
        "B's since view with A's identity headers"
    );
    c.req("PUT", "/api/sync/secret")
        .headers(&headers)
        .bearer(&b.token)
        .json(&json!({"value": "overwritten by B", "baseVersion": 1}))
        .send()?
        .expect_ok(200)?;
    c.req("POST", "/api/sync")
        .headers(&headers)
        .bearer(&b.token)
        .json(&json!({"data": {"planted": "by B"}}))
        .send()?
        .expect_ok(200)?;
    c.req("DELETE", "/api/sync/secret")
        .headers(&headers)
        .bearer(&b.token)
        .json(&json!({"baseVersion": 1}))
        .send()?
        .expect_ok(200)?;
    // Logging out with A's identity headers revokes B's device, not A's.
    let b2 = c.login(&b.email, &b.password)?;
    c.req("POST", "/api/auth/logout")
        .headers(&headers)
        .bearer(&b2.token)
        .send()?
        .expect_ok(200)?;
    c.snapshot(&a.token, None)?;
    c.req("GET", "/api/sync")
        .bearer(&b2.token)
        .send()?
        .expect_error(401, "unauthorized")?;

    // Without a token the headers are worth nothing.
    c.req("GET", "/api/sync")
        .headers(&headers)
        .send()?
        .expect_error(401, "unauthorized")?;
    c.req("PUT", "/api/sync/secret")
        .headers(&headers)
        .json(&json!({"value": "anonymous"}))
        .send()?
        .expect_error(401, "unauthorized")?;

    let a_after = c.snapshot(&a.token, None)?;
    ensure_eq!(a_after["data"], a_before["data"], "A's data");
    ensure_eq!(a_after["cursor"], a_before["cursor"], "A's cursor");
    let b_after = c.snapshot(&b.token, None)?;
    ensure_eq!(b_after["data"], json!({"planted": "by B"}), "B's data");
    ensure_eq!(b_after["deleted"], json!(["secret"]), "B's deletions");
    Ok(())
}

fn passwords_are_stored_as_pbkdf2(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let password = "Tr0ub4dour&3 é🙂";
    let a = c.register_as(&crate::client::unique_email("pbkdf2-a"), password)?;
    let b = c.register_as(&crate::client::unique_email("pbkdf2-b"), password)?;
    let rows = s.db_rows(&format!(
        "SELECT id, email, password, created_at FROM users WHERE id IN ({}, {}) ORDER BY email",
        sql_str(&a.user_id),
        sql_str(&b.user_id)
    ))?;
    ensure_eq!(rows.len(), 2, "user rows");
    let mut salts = Vec::new();
    for row in &rows {
        let dump = serde_json::to_string(row)?;
        ensure!(
            !dump.contains(password),
            "the password is stored in plain text: {dump}"
        );
        let stored = row["password"].as_str().unwrap_or_default();
        ensure!(stored != password, "the password is stored as is");
        let parts: Vec<&str> = stored.split('$').collect();
        ensure!(
            parts.len() == 4 && parts[0] == "pbkdf2-sha256",
            "stored password {stored:?} is not pbkdf2-sha256$<iterations>$<salt>$<hash>"
        );
        let iterations: u32 = parts[1]
            .parse()
            .map_err(|_| format!("iterations {:?} is not a number", parts[1]))?;
        ensure!(
            (10_000..=100_000).contains(&iterations),
            "{iterations} iterations: below 10,000 is too fast, above 100,000 fails in Cloudflare's runtime"
        );
        let salt = URL_SAFE_NO_PAD
            .decode(parts[2])
            .map_err(|e| format!("salt {:?} is not base64url without padding: {e}", parts[2]))?;
        let hash = URL_SAFE_NO_PAD
            .decode(parts[3])
            .map_err(|e| format!("hash {:?} is not base64url without padding: {e}", parts[3]))?;
        ensure!(salt.len() >= 16, "salt is only {} bytes", salt.len());
        ensure_eq!(hash.len(), 32, "hash length");
        let mut expected = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut expected);
        ensure!(
            expected.as_slice() == hash.as_slice(),
            "the stored hash is not PBKDF2-HMAC-SHA256 of the password"
        );
        salts.push(salt);
    }
    ensure!(
        salts[0] != salts[1],
        "two users with the same password share a salt"
    );
    ensure!(
        rows[0]["password"] != rows[1]["password"],
        "the same password gives the same stored hash"
    );
    Ok(())
}

fn tokens_are_stored_as_sha256(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("token-hash")?;
    let second = c.login(&user.email, &user.password)?;
    let tokens = [&user.token, &second.token];
    let all = s.db(&format!(
        "SELECT * FROM devices WHERE user_id = {u} ORDER BY id; \
         SELECT * FROM users WHERE id = {u}; \
         SELECT * FROM devices; \
         SELECT * FROM users",
        u = sql_str(&user.user_id)
    ))?;
    ensure_eq!(all.len(), 4, "statements");
    let devices = &all[0];
    ensure_eq!(devices.len(), 2, "device rows");
    let mut hashes: Vec<String> = devices
        .iter()
        .map(|d| d["token_hash"].as_str().unwrap_or_default().to_string())
        .collect();
    hashes.sort();
    let mut expected: Vec<String> = tokens
        .iter()
        .map(|t| {
            Sha256::digest(t.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .collect();
    expected.sort();
    ensure_eq!(
        hashes,
        expected,
        "token_hash is the lowercase hex SHA-256 of each token"
    );
    for (i, row) in devices.iter().enumerate() {
        for col in ["created_at", "last_seen_at", "expires_at"] {
            ensure!(row[col].is_i64(), "device {i}: {col} is {:?}", row[col]);
        }
        ensure!(row["revoked_at"].is_null(), "device {i}: revoked_at is set");
        let ids = [&user.device_id, &second.device_id];
        ensure!(
            ids.iter().any(|id| row["id"] == json!(id)),
            "device {i}: unknown id {}",
            row["id"]
        );
    }
    // Neither the token nor any recognisable encoding of it is stored anywhere
    // in the users or devices tables.
    let dump = serde_json::to_string(&all)?;
    for t in tokens {
        let raw = URL_SAFE_NO_PAD.decode(t.as_bytes())?;
        let hex_raw: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let std_b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
        for form in [t.as_str(), hex_raw.as_str(), std_b64.trim_end_matches('=')] {
            ensure!(
                !dump.contains(form),
                "a token is stored in a readable form ({form})"
            );
        }
    }
    Ok(())
}

/// On the `expiry` server a token expires after `EXPIRY_IDLE_MS` without
/// use; using it slides the expiry forward.
fn idle_tokens_expire(s: &Server) -> Result<(), Failed> {
    use std::thread::sleep;
    use std::time::{Duration, Instant};
    let idle = Duration::from_millis(crate::EXPIRY_IDLE_MS);
    let c = Client::new(s);
    let user = c.register("expiry")?;
    let started = Instant::now();
    // Used every 40% of the idle period for well over one period: stays valid.
    while started.elapsed() < idle * 2 {
        sleep(idle * 2 / 5);
        c.req("GET", "/api/sync")
            .bearer(&user.token)
            .send()?
            .expect_ok(200)?;
    }
    // Left idle for longer than the period: refused everywhere.
    sleep(idle + Duration::from_millis(500));
    c.req("GET", "/api/sync")
        .bearer(&user.token)
        .send()?
        .expect_error(401, "unauthorized")?;
    c.put(&user.token, "k", &json!({"value": "v"}))?
        .expect_error(401, "unauthorized")?;
    let offer = format!("{}, bearer.{}", crate::live::PROTOCOL, user.token);
    crate::live::expect_refused(&c, "", Some(&offer), None, 401, "unauthorized", "expired")?;
    // A new sign-in gives a working token again.
    let again = c.login(&user.email, &user.password)?;
    c.req("GET", "/api/sync")
        .bearer(&again.token)
        .send()?
        .expect_ok(200)?;
    Ok(())
}
