//! History and restore: every version of a key, newest first; any retained
//! version's value; restoring one as a new, broadcast version; retention.

use crate::client::{enc, Client, Mismatches, Note, User};
use crate::live::{open, second_device};
use crate::server::{sql_str, Server};
use crate::Test;
use libtest_mimic::Failed;
use serde_json::{json, Value};

pub fn tests() -> Vec<Test> {
    vec![
        Test::main(
            "history::lists_versions_newest_first",
            lists_versions_newest_first,
        ),
        Test::main("history::each_version_value", each_version_value),
        Test::main(
            "history::restore_makes_a_new_version",
            restore_makes_a_new_version,
        ),
        Test::main("history::restore_refusals", restore_refusals),
        Test::expiry(
            "history::retention_keeps_the_newest",
            retention_keeps_the_newest,
        ),
    ]
}

fn history(c: &Client, token: &str, key: &str, query: &str) -> Result<Value, Failed> {
    let v = c
        .req("GET", &format!("/api/sync/{}/history{query}", enc(key)))
        .bearer(token)
        .send()?
        .expect_ok(200)?;
    ensure_eq!(v["key"], json!(key), "history key");
    ensure!(v["history"].is_array(), "history is not a list: {v}");
    Ok(v["history"].clone())
}

fn versions_of(h: &Value) -> Vec<u64> {
    h.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["version"].as_u64())
        .collect()
}

fn put_based(c: &Client, t: &str, key: &str, value: &str, base: u64) -> Result<u64, Failed> {
    let v = c
        .put(t, key, &json!({"value": value, "baseVersion": base}))?
        .expect_ok(200)?;
    ensure_eq!(v["conflict"], Value::Null, "conflict on a based put");
    v["version"]
        .as_u64()
        .ok_or_else(|| Failed::from(format!("no version in {v}")))
}

fn lists_versions_newest_first(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("history-list")?;
    let t = &user.token;
    let v1 = put_based(&c, t, "notes", "first", 0)?;
    let v2 = put_based(&c, t, "notes", "second 🙂", v1)?;
    let del = c
        .delete(t, "notes", Some(&json!({"baseVersion": v2})))?
        .expect_ok(200)?;
    let v3 = del["version"].as_u64().unwrap_or(0);
    let v4 = put_based(&c, t, "notes", "third", v3)?;
    // A losing write is kept but is not a version.
    let lost = c
        .put(
            t,
            "notes",
            &json!({"value": "stale", "baseVersion": v1, "updatedAt": 1}),
        )?
        .expect_ok(200)?;
    ensure_eq!(lost["conflict"]["winner"], json!("stored"), "stale put");

    let h = history(&c, t, "notes", "")?;
    ensure_eq!(versions_of(&h), vec![v4, v3, v2, v1], "versions");
    let fields: Vec<(bool, u64, bool)> = h
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["deleted"].as_bool().unwrap_or(false),
                e["size"].as_u64().unwrap_or(999),
                e["current"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    let emoji_bytes = "second 🙂".len() as u64;
    ensure_eq!(
        fields,
        vec![
            (false, 5, true),
            (true, 0, false),
            (false, emoji_bytes, false),
            (false, 5, false)
        ],
        "deleted, size, current"
    );
    for e in h.as_array().into_iter().flatten() {
        ensure_eq!(e["deviceId"], json!(user.device_id), "deviceId");
        ensure_eq!(e["deviceName"], json!("api test"), "deviceName");
        ensure!(
            e["updatedAt"].as_i64().is_some_and(|t| t > 0),
            "updatedAt in {e}"
        );
    }
    ensure_eq!(
        versions_of(&history(&c, t, "notes", "?limit=2")?),
        vec![v4, v3],
        "limit"
    );
    ensure_eq!(
        versions_of(&history(&c, t, "notes", &format!("?before={v3}"))?),
        vec![v2, v1],
        "before"
    );
    ensure_eq!(
        history(&c, t, "never-written", "")?,
        json!([]),
        "unknown key"
    );
    // Another user sees nothing of it.
    let other = c.register("history-other")?;
    ensure_eq!(
        history(&c, &other.token, "notes", "")?,
        json!([]),
        "other user"
    );

    let mut bad = Mismatches::default();
    for q in ["?limit=0", "?limit=1001", "?limit=x", "?before=-1"] {
        c.req("GET", &format!("/api/sync/notes/history{q}"))
            .bearer(t)
            .send()?
            .expect_error(400, "invalid_request")
            .note(&mut bad, q);
    }
    c.req("GET", "/api/sync/notes/history")
        .send()?
        .expect_error(401, "unauthorized")
        .note(&mut bad, "no token");
    c.req("GET", "/api/sync/%0A/history")
        .bearer(t)
        .send()?
        .expect_error(400, "invalid_key")
        .note(&mut bad, "bad key");
    c.req("DELETE", "/api/sync/notes/history")
        .bearer(t)
        .send()?
        .expect_error(405, "method_not_allowed")
        .note(&mut bad, "DELETE history");
    bad.finish()
}

fn each_version_value(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("history-value")?;
    let t = &user.token;
    let big = "x".repeat(2_500_000) + "é";
    let v1 = put_based(&c, t, "k", &big, 0)?;
    let del = c
        .delete(t, "k", Some(&json!({"baseVersion": v1})))?
        .expect_ok(200)?;
    let v2 = del["version"].as_u64().unwrap_or(0);
    let v3 = put_based(&c, t, "k", "small", v2)?;

    let get = |v: u64| {
        c.req("GET", &format!("/api/sync/k/history/{v}"))
            .bearer(t)
            .send()
    };
    let one = get(v1)?.expect_ok(200)?;
    ensure!(
        one["value"].as_str() == Some(big.as_str()),
        "version 1 value differs"
    );
    ensure_eq!(
        (
            one["version"].clone(),
            one["deleted"].clone(),
            one["key"].clone()
        ),
        (json!(v1), json!(false), json!("k")),
        "version 1 fields"
    );
    ensure_eq!(one["deviceId"], json!(user.device_id), "deviceId");
    let two = get(v2)?.expect_ok(200)?;
    ensure_eq!(
        (two["value"].clone(), two["deleted"].clone()),
        (Value::Null, json!(true)),
        "a deletion"
    );
    ensure_eq!(get(v3)?.expect_ok(200)?["value"], json!("small"), "current");

    let mut bad = Mismatches::default();
    get(v3 + 10)?
        .expect_error(404, "not_found")
        .note(&mut bad, "future version");
    // Another key's version, and another user's.
    let other_key = put_based(&c, t, "other", "o", 0)?;
    get(other_key)?
        .expect_error(404, "not_found")
        .note(&mut bad, "another key's version");
    let stranger = c.register("history-stranger")?;
    c.req("GET", &format!("/api/sync/k/history/{v3}"))
        .bearer(&stranger.token)
        .send()?
        .expect_error(404, "not_found")
        .note(&mut bad, "another user's version");
    for v in ["0", "-1", "abc", "1.5", "99999999999999999999999"] {
        c.req("GET", &format!("/api/sync/k/history/{v}"))
            .bearer(t)
            .send()?
            .expect_error(400, "invalid_request")
            .note(&mut bad, format!("version {v}"));
    }
    bad.finish()
}

fn restore(c: &Client, user: &User, key: &str, body: &Value) -> Result<Value, Failed> {
    c.req("POST", &format!("/api/sync/{}/restore", enc(key)))
        .bearer(&user.token)
        .json(body)
        .send()?
        .expect_ok(200)
}

fn restore_makes_a_new_version(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("restore")?;
    let other = second_device(&c, &user)?;
    let t = &user.token;
    let v1 = put_based(&c, t, "board", "[1]", 0)?;
    let v2 = put_based(&c, t, "board", "[1,2]", v1)?;
    let mut watcher = open(s, &other.token)?;
    watcher.ping()?;

    let r = restore(
        &c,
        &user,
        "board",
        &json!({"version": v1, "requestId": "restore-1"}),
    )?;
    ensure_eq!(
        (r["key"].clone(), r["conflict"].clone()),
        (json!("board"), Value::Null),
        "restore answer"
    );
    let v3 = r["version"].as_u64().unwrap_or(0);
    ensure!(v3 > v2, "restore made version {v3}, not after {v2}");
    let change = watcher.wait_for("change", |m| m["type"] == "change" && m["key"] == "board")?;
    ensure_eq!(
        (change["value"].clone(), change["version"].clone()),
        (json!("[1]"), json!(v3)),
        "broadcast of the restore"
    );
    let snap = c.snapshot(t, None)?;
    ensure_eq!(snap["data"]["board"], json!("[1]"), "current value");
    ensure_eq!(
        versions_of(&history(&c, t, "board", "")?),
        vec![v3, v2, v1],
        "history after restore"
    );
    // The same requestId again is answered the same, with no new version.
    let again = restore(
        &c,
        &user,
        "board",
        &json!({"version": v1, "requestId": "restore-1"}),
    )?;
    ensure_eq!(again, r, "replayed restore");
    ensure_eq!(c.cursor(t)?, v3, "cursor after the replay");

    // Restoring a deletion deletes the key.
    let del = c
        .delete(t, "board", Some(&json!({"baseVersion": v3})))?
        .expect_ok(200)?;
    let v4 = del["version"].as_u64().unwrap_or(0);
    let v5 = put_based(&c, t, "board", "back", v4)?;
    let r = restore(&c, &user, "board", &json!({"version": v4}))?;
    ensure!(
        r["version"].as_u64() > Some(v5),
        "restoring a deletion: {r}"
    );
    let snap = c.snapshot(t, None)?;
    ensure!(
        snap["deleted"]
            .as_array()
            .is_some_and(|d| d.contains(&json!("board"))),
        "board is not deleted after restoring a deletion: {snap}"
    );
    watcher.close();
    Ok(())
}

fn restore_refusals(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("restore-bad")?;
    let t = &user.token;
    let v1 = put_based(&c, t, "k", "one", 0)?;
    put_based(&c, t, "k", "two", v1)?;
    let other_key = put_based(&c, t, "other", "o", 0)?;
    let fingerprint = s.db_fingerprint(&user.user_id)?;

    let mut bad = Mismatches::default();
    let post = |body: &str| {
        c.req("POST", "/api/sync/k/restore")
            .bearer(t)
            .raw(body.to_string())
            .send()
    };
    for raw in ["", "{", "version=1"] {
        post(raw)?
            .expect_error(400, "invalid_json")
            .note(&mut bad, format!("body {raw:?}"));
    }
    for body in [
        json!({}),
        json!({"version": 0}),
        json!({"version": -1}),
        json!({"version": "1"}),
        json!({"version": 1.5}),
        json!([1]),
        json!({"version": 1, "requestId": ""}),
    ] {
        post(&body.to_string())?
            .expect_error(400, "invalid_request")
            .note(&mut bad, &body);
    }
    for (what, version) in [("no such version", 999), ("another key's", other_key)] {
        post(&json!({ "version": version }).to_string())?
            .expect_error(404, "not_found")
            .note(&mut bad, what);
    }
    c.req("POST", "/api/sync/k/restore")
        .json(&json!({"version": v1}))
        .send()?
        .expect_error(401, "unauthorized")
        .note(&mut bad, "no token");
    let stranger = c.register("restore-stranger")?;
    c.req("POST", "/api/sync/k/restore")
        .bearer(&stranger.token)
        .json(&json!({"version": v1}))
        .send()?
        .expect_error(404, "not_found")
        .note(&mut bad, "another user's version");
    c.req("GET", "/api/sync/k/restore")
        .bearer(t)
        .send()?
        .expect_error(405, "method_not_allowed")
        .note(&mut bad, "GET restore");
    bad.finish()?;
    ensure!(
        s.db_fingerprint(&user.user_id)? == fingerprint,
        "refused restores changed the database"
    );
    Ok(())
}

/// The expiry server keeps 3 versions per key and no extra days.
fn retention_keeps_the_newest(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("retention")?;
    let t = &user.token;
    // A chunked value first, so its chunks must go too, and a loser.
    let big = "y".repeat(2_100_000);
    let mut version = put_based(&c, t, "k", &big, 0)?;
    c.put(
        t,
        "k",
        &json!({"value": "loser", "baseVersion": 0, "updatedAt": 1}),
    )?
    .expect_ok(200)?;
    let mut versions = vec![version];
    for i in 0..6 {
        version = put_based(&c, t, "k", &format!("v{i}"), version)?;
        versions.push(version);
    }
    // Another key's history is untouched by writes to this one.
    let o1 = put_based(&c, t, "other", "o1", 0)?;
    let o2 = put_based(&c, t, "other", "o2", o1)?;
    let newest: Vec<u64> = versions.iter().rev().take(3).copied().collect();
    ensure_eq!(
        versions_of(&history(&c, t, "k", "")?),
        newest,
        "retained versions"
    );
    ensure_eq!(
        versions_of(&history(&c, t, "other", "")?),
        vec![o2, o1],
        "other key"
    );
    c.req("GET", &format!("/api/sync/k/history/{}", versions[0]))
        .bearer(t)
        .send()?
        .expect_error(404, "not_found")?;
    // Last request before the slow database read: the token idles out in 4 s.
    ensure_eq!(
        c.snapshot(t, None)?["data"]["k"],
        json!("v5"),
        "current value"
    );
    let u = sql_str(&user.user_id);
    let all = s.db(&format!(
        "SELECT count(*) AS n FROM sync_history WHERE user_id = {u} AND key = 'k'; \
         SELECT count(*) AS n FROM sync_chunks WHERE user_id = {u}"
    ))?;
    ensure_eq!(
        all[0][0]["n"],
        json!(3),
        "history rows of k (losers pruned too)"
    );
    ensure_eq!(all[1][0]["n"], json!(0), "chunks of pruned values");
    Ok(())
}
