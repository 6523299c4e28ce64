//! The REST sync contract: snapshot, since-cursor, put, delete, batch,
//! versions, no-ops, keys and routing.

use crate::client::{enc, now_ms, Client};
use crate::client::{Mismatches, Note};
use crate::server::Server;
use crate::Test;
use libtest_mimic::Failed;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

pub fn tests() -> Vec<Test> {
    vec![
        Test::main("sync::snapshot_of_a_new_account", snapshot_of_a_new_account),
        Test::main("sync::put_get_delete_round_trip", put_get_delete_round_trip),
        Test::main(
            "sync::same_value_again_is_a_no_op",
            same_value_again_is_a_no_op,
        ),
        Test::main(
            "sync::delete_takes_an_optional_body",
            delete_takes_an_optional_body,
        ),
        Test::main(
            "sync::since_returns_exactly_the_newer_keys",
            since_returns_exactly_the_newer_keys,
        ),
        Test::main(
            "sync::since_must_be_a_non_negative_integer",
            since_must_be_a_non_negative_integer,
        ),
        Test::main("sync::batch_writes_and_deletes", batch_writes_and_deletes),
        Test::main(
            "sync::batch_of_64_keys_is_accepted",
            batch_of_64_keys_is_accepted,
        ),
        Test::main("sync::keys_are_percent_decoded", keys_are_percent_decoded),
        Test::main(
            "sync::invalid_keys_in_the_path_are_400",
            invalid_keys_in_the_path_are_400,
        ),
        Test::main(
            "sync::put_body_must_carry_a_string_value",
            put_body_must_carry_a_string_value,
        ),
        Test::main(
            "sync::wrong_method_and_unknown_paths",
            wrong_method_and_unknown_paths,
        ),
    ]
}

/// Keys of a JSON object, sorted.
fn keys_of(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn strings_of(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` into ms since the epoch.
fn parse_iso8601(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b'T' && b[10] != b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &frac[..digits.min(3)]);
        ms = padded.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && &rest[3..4] == ":" =>
        {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (rest.get(1..3)?.parse::<i64>().ok()? * 60
                + rest.get(4..6)?.parse::<i64>().ok()?)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

fn snapshot_of_a_new_account(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("snapshot-new")?;
    let r = c.req("GET", "/api/sync").bearer(&user.token).send()?;
    let v = r.expect_ok(200)?;
    let fields = keys_of(&v);
    for f in [
        "success", "data", "versions", "deleted", "cursor", "lastSync",
    ] {
        ensure!(fields.contains(f), "snapshot lacks {f}: {v}");
    }
    ensure_eq!(v["data"], json!({}), "data");
    ensure_eq!(v["versions"], json!({}), "versions");
    ensure_eq!(v["deleted"], json!([]), "deleted");
    ensure_eq!(v["cursor"], json!(0), "cursor");
    let last = v["lastSync"].as_str().unwrap_or_default();
    let at = parse_iso8601(last).ok_or_else(|| format!("lastSync {last:?} is not ISO-8601"))?;
    let skew = (at - now_ms()).abs();
    ensure!(
        skew < 5 * 60_000,
        "lastSync {last} is {skew} ms away from now"
    );
    Ok(())
}

fn put_get_delete_round_trip(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("round-trip")?;
    let t = &user.token;

    let a = c.put_ok(t, "kanban-projects", "[1]")?;
    ensure_eq!(
        a,
        json!({"success": true, "key": "kanban-projects", "version": 1, "conflict": null}),
        "first put"
    );
    let b = c.put_ok(t, "estimates", "{}")?;
    ensure_eq!(b["version"], json!(2), "second put");
    let r = c.put(
        t,
        "kanban-projects",
        &json!({"value": "[1,2]", "baseVersion": 1, "updatedAt": now_ms()}),
    )?;
    ensure_eq!(
        r.expect_ok(200)?,
        json!({"success": true, "key": "kanban-projects", "version": 3, "conflict": null}),
        "fast-forward put"
    );

    let snap = c.snapshot(t, None)?;
    ensure_eq!(
        snap["data"],
        json!({"kanban-projects": "[1,2]", "estimates": "{}"}),
        "data"
    );
    ensure_eq!(
        snap["versions"],
        json!({"kanban-projects": 3, "estimates": 2}),
        "versions"
    );
    ensure_eq!(snap["deleted"], json!([]), "deleted");
    ensure_eq!(snap["cursor"], json!(3), "cursor");

    let d = c
        .delete(t, "estimates", Some(&json!({"baseVersion": 2})))?
        .expect_ok(200)?;
    ensure_eq!(d["key"], json!("estimates"), "delete key");
    ensure_eq!(d["version"], json!(4), "delete version");
    ensure_eq!(d["conflict"], json!(null), "delete conflict");

    let snap = c.snapshot(t, None)?;
    ensure_eq!(
        snap["data"],
        json!({"kanban-projects": "[1,2]"}),
        "data after delete"
    );
    ensure_eq!(
        snap["versions"],
        json!({"kanban-projects": 3, "estimates": 4}),
        "versions after delete"
    );
    ensure_eq!(
        snap["deleted"],
        json!(["estimates"]),
        "deleted after delete"
    );
    ensure_eq!(snap["cursor"], json!(4), "cursor after delete");

    // A deleted key can come back, with a new version.
    let back = c
        .put(t, "estimates", &json!({"value": "again", "baseVersion": 4}))?
        .expect_ok(200)?;
    ensure_eq!(back["version"], json!(5), "re-created key");
    let snap = c.snapshot(t, None)?;
    ensure_eq!(
        snap["data"]["estimates"],
        json!("again"),
        "re-created value"
    );
    ensure_eq!(snap["deleted"], json!([]), "deleted after re-create");
    Ok(())
}

fn same_value_again_is_a_no_op(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("no-op")?;
    let t = &user.token;
    c.put_ok(t, "k", "v")?;
    for body in [
        json!({"value": "v"}),
        json!({"value": "v", "baseVersion": 1}),
        json!({"value": "v", "baseVersion": 0, "updatedAt": 1}),
    ] {
        let r = c.put(t, "k", &body)?.expect_ok(200)?;
        ensure_eq!(
            r,
            json!({"success": true, "key": "k", "version": 1, "conflict": null}),
            "same value {body}"
        );
    }
    let batch = c.batch(t, &json!({"data": {"k": "v"}}))?.expect_ok(200)?;
    ensure_eq!(
        batch["synced"],
        json!([]),
        "batch of the same value: synced"
    );
    ensure_eq!(
        batch["conflicts"],
        json!([]),
        "batch of the same value: conflicts"
    );
    ensure_eq!(
        batch["versions"],
        json!({"k": 1}),
        "batch of the same value: versions"
    );
    ensure_eq!(batch["cursor"], json!(1), "batch of the same value: cursor");

    let d1 = c.delete(t, "k", None)?.expect_ok(200)?;
    ensure_eq!(d1["version"], json!(2), "delete");
    let d2 = c.delete(t, "k", None)?.expect_ok(200)?;
    ensure_eq!(d2["version"], json!(2), "delete again");
    ensure_eq!(d2["conflict"], json!(null), "delete again: conflict");

    // Deleting a key that never existed writes nothing.
    let never = c.delete(t, "never-existed", None)?.expect_ok(200)?;
    ensure_eq!(
        never["version"],
        json!(0),
        "delete of a key that never existed"
    );
    ensure_eq!(
        never["conflict"],
        json!(null),
        "delete of a key that never existed: conflict"
    );
    let b = c
        .batch(t, &json!({"deleted": ["never-existed-2", "k"]}))?
        .expect_ok(200)?;
    ensure_eq!(b["synced"], json!([]), "batch deleting nothing new: synced");
    ensure_eq!(
        b["versions"],
        json!({"never-existed-2": 0, "k": 2}),
        "batch deleting nothing new: versions"
    );

    let snap = c.snapshot(t, None)?;
    ensure_eq!(snap["cursor"], json!(2), "cursor");
    ensure_eq!(snap["versions"], json!({"k": 2}), "versions");
    ensure_eq!(snap["deleted"], json!(["k"]), "deleted");

    let rows = s.db_rows(&format!(
        "SELECT count(*) AS n FROM sync_history WHERE user_id = {}",
        crate::server::sql_str(&user.user_id)
    ))?;
    ensure_eq!(rows[0]["n"], json!(2), "history rows (one put, one delete)");
    Ok(())
}

fn delete_takes_an_optional_body(s: &Server) -> Result<(), Failed> {
    let mut bad = Mismatches::default();
    let c = Client::new(s);
    let user = c.register("delete-body")?;
    let t = &user.token;
    c.put_ok(t, "a", "1")?;
    c.put_ok(t, "b", "2")?;
    c.put_ok(t, "c", "3")?;
    // No body, an empty object, and all optional fields.
    c.delete(t, "a", None)?.expect_ok(200)?;
    c.delete(t, "b", Some(&json!({})))?.expect_ok(200)?;
    let r = c
        .delete(
            t,
            "c",
            Some(&json!({"baseVersion": 3, "updatedAt": now_ms(), "requestId": "del-c"})),
        )?
        .expect_ok(200)?;
    ensure_eq!(
        r,
        json!({"success": true, "key": "c", "version": 6, "conflict": null}),
        "delete with all fields"
    );

    // A bad body is refused and deletes nothing.
    c.put_ok(t, "d", "4")?;
    let before = c.cursor(t)?;
    c.req("DELETE", "/api/sync/d")
        .bearer(t)
        .raw("{")
        .send()?
        .expect_error(400, "invalid_json")?;
    for body in [
        json!({"baseVersion": "x"}),
        json!({"baseVersion": -1}),
        json!({"updatedAt": -5}),
        json!([]),
    ] {
        c.delete(t, "d", Some(&body))?
            .expect_error(400, "invalid_request")
            .note(&mut bad, format!("body {body}"));
    }
    bad.finish()?;
    let snap = c.snapshot(t, None)?;
    ensure_eq!(
        snap["cursor"],
        json!(before),
        "cursor after refused deletes"
    );
    ensure_eq!(
        snap["data"],
        json!({"d": "4"}),
        "data after refused deletes"
    );
    Ok(())
}

fn since_returns_exactly_the_newer_keys(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("since")?;
    let t = &user.token;
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5")] {
        c.put_ok(t, k, v)?;
    }
    c.put(t, "b", &json!({"value": "2b", "baseVersion": 2}))?
        .expect_ok(200)?;
    c.delete(t, "d", Some(&json!({"baseVersion": 4})))?
        .expect_ok(200)?;
    c.batch(
        t,
        &json!({"data": {"a": "1b"}, "baseVersions": {"a": 1}, "deleted": ["e"]}),
    )?
    .expect_ok(200)?;
    let full = c.snapshot(t, None)?;
    let cursor = full["cursor"].as_u64().unwrap_or(0);
    ensure_eq!(cursor, 9, "cursor after nine changes");
    ensure_eq!(
        full["data"],
        json!({"a": "1b", "b": "2b", "c": "3"}),
        "data"
    );
    ensure_eq!(
        strings_of(&full["deleted"]),
        BTreeSet::from(["d".to_string(), "e".to_string()]),
        "deleted"
    );
    let versions: Map<String, Value> = full["versions"].as_object().cloned().unwrap_or_default();

    for since in 0..=cursor + 2 {
        let snap = c.snapshot(t, Some(since))?;
        let expected: BTreeSet<String> = versions
            .iter()
            .filter(|(_, v)| v.as_u64().unwrap_or(0) > since)
            .map(|(k, _)| k.clone())
            .collect();
        ensure_eq!(
            keys_of(&snap["versions"]),
            expected,
            "since={since}: keys in versions"
        );
        for k in &expected {
            ensure_eq!(
                snap["versions"][k],
                versions[k],
                "since={since}: version of {k}"
            );
        }
        let got_data = keys_of(&snap["data"]);
        let got_deleted = strings_of(&snap["deleted"]);
        ensure!(
            got_data.is_disjoint(&got_deleted),
            "since={since}: a key both live and deleted"
        );
        let union: BTreeSet<String> = got_data.union(&got_deleted).cloned().collect();
        ensure_eq!(union, expected, "since={since}: data and deleted together");
        for k in &got_data {
            ensure_eq!(
                snap["data"][k],
                full["data"][k],
                "since={since}: value of {k}"
            );
        }
        ensure_eq!(snap["cursor"], json!(cursor), "since={since}: cursor");
    }
    let explicit_zero = c.snapshot(t, Some(0))?;
    ensure_eq!(explicit_zero["data"], full["data"], "since=0 is everything");
    Ok(())
}

fn since_must_be_a_non_negative_integer(s: &Server) -> Result<(), Failed> {
    let mut bad = Mismatches::default();
    let c = Client::new(s);
    let user = c.register("since-bad")?;
    for q in [
        "since=-1",
        "since=abc",
        "since=1.5",
        "since=",
        "since=1e3",
        "since=99999999999999999999999",
    ] {
        c.req("GET", &format!("/api/sync?{q}"))
            .bearer(&user.token)
            .send()?
            .expect_error(400, "invalid_request")
            .note(&mut bad, format!("?{q}"));
    }
    bad.finish()?;
    Ok(())
}

fn batch_writes_and_deletes(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("batch")?;
    let t = &user.token;
    let r = c
        .batch(t, &json!({"data": {"a": "1", "b": "2"}}))?
        .expect_ok(200)?;
    ensure_eq!(
        strings_of(&r["synced"]),
        BTreeSet::from(["a".to_string(), "b".to_string()]),
        "synced"
    );
    ensure_eq!(r["conflicts"], json!([]), "conflicts");
    ensure_eq!(r["cursor"], json!(2), "cursor");
    let va = r["versions"]["a"].as_u64().unwrap_or(0);
    let vb = r["versions"]["b"].as_u64().unwrap_or(0);
    ensure_eq!(
        BTreeSet::from([va, vb]),
        BTreeSet::from([1, 2]),
        "versions of a new batch"
    );

    let r = c
        .batch(
            t,
            &json!({
                "data": {"a": "1x", "c": "3"},
                "baseVersions": {"a": va, "b": vb},
                "updatedAt": {"a": now_ms()},
                "deleted": ["b"],
                "requestId": "batch-2"
            }),
        )?
        .expect_ok(200)?;
    ensure_eq!(
        strings_of(&r["synced"]),
        BTreeSet::from(["a".into(), "b".into(), "c".into()]),
        "synced"
    );
    ensure_eq!(r["conflicts"], json!([]), "conflicts");
    ensure_eq!(r["cursor"], json!(5), "cursor");
    ensure_eq!(
        keys_of(&r["versions"]),
        BTreeSet::from(["a".into(), "b".into(), "c".into()]),
        "versions keys"
    );
    let mut new_versions: Vec<u64> = ["a", "b", "c"]
        .iter()
        .map(|k| r["versions"][k].as_u64().unwrap_or(0))
        .collect();
    new_versions.sort_unstable();
    ensure_eq!(new_versions, vec![3, 4, 5], "versions of the second batch");

    let snap = c.snapshot(t, None)?;
    ensure_eq!(snap["data"], json!({"a": "1x", "c": "3"}), "data");
    ensure_eq!(snap["deleted"], json!(["b"]), "deleted");
    ensure_eq!(
        snap["versions"],
        r["versions"],
        "versions agree with the batch answer"
    );

    // An empty batch changes nothing and still answers.
    let empty = c.batch(t, &json!({}))?.expect_ok(200)?;
    ensure_eq!(empty["synced"], json!([]), "empty batch synced");
    ensure_eq!(empty["cursor"], json!(5), "empty batch cursor");
    let empty = c
        .batch(t, &json!({"data": {}, "deleted": []}))?
        .expect_ok(200)?;
    ensure_eq!(empty["cursor"], json!(5), "empty batch cursor");
    Ok(())
}

fn batch_of_64_keys_is_accepted(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("batch-64")?;
    let t = &user.token;
    c.put_ok(t, "gone", "x")?;
    let mut data = Map::new();
    for i in 0..63 {
        data.insert(format!("key-{i:02}"), json!(format!("value {i}")));
    }
    let r = c
        .batch(
            t,
            &json!({"data": data, "deleted": ["gone"], "baseVersions": {"gone": 1}}),
        )?
        .expect_ok(200)?;
    ensure_eq!(
        r["synced"].as_array().map(Vec::len),
        Some(64),
        "synced count"
    );
    ensure_eq!(r["cursor"], json!(65), "cursor");
    let snap = c.snapshot(t, None)?;
    ensure_eq!(snap["data"], Value::Object(data), "data");
    ensure_eq!(snap["deleted"], json!(["gone"]), "deleted");
    Ok(())
}

fn keys_are_percent_decoded(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("keys")?;
    let t = &user.token;
    let keys: Vec<String> = [
        "a/b",
        "with space",
        "ключ 🔑 キー",
        "100%",
        "q?x=1&y=2#frag",
        "dots.and-dashes_and~tilde",
        "'quotes\" and \\ backslash",
        "+plus+",
    ]
    .iter()
    .map(|k| k.to_string())
    // The longest keys allowed: 256 bytes, in ASCII and in two-byte characters.
    .chain(["k".repeat(256), "é".repeat(128)])
    .collect();
    for (i, k) in keys.iter().enumerate() {
        let r = c
            .put(t, k, &json!({"value": format!("v{i}")}))?
            .expect_ok(200)?;
        ensure_eq!(r["key"], json!(k), "key echoed for {k:?}");
    }
    // The raw path form: %2F is a slash inside the key, not a separator.
    let r = c
        .req("PUT", "/api/sync/x%2Fy%2Fz")
        .bearer(t)
        .json(&json!({"value": "slashes"}))
        .send()?
        .expect_ok(200)?;
    ensure_eq!(r["key"], json!("x/y/z"), "key of x%2Fy%2Fz");
    let snap = c.snapshot(t, None)?;
    for (i, k) in keys.iter().enumerate() {
        ensure_eq!(
            snap["data"][k.as_str()],
            json!(format!("v{i}")),
            "value under {k:?}"
        );
    }
    ensure_eq!(snap["data"]["x/y/z"], json!("slashes"), "value under x/y/z");
    ensure_eq!(
        keys_of(&snap["data"]).len(),
        keys.len() + 1,
        "number of keys"
    );

    let d = c.delete(t, "a/b", None)?.expect_ok(200)?;
    ensure_eq!(d["key"], json!("a/b"), "deleted key");
    let snap = c.snapshot(t, None)?;
    ensure_eq!(snap["deleted"], json!(["a/b"]), "deleted");
    Ok(())
}

fn invalid_keys_in_the_path_are_400(s: &Server) -> Result<(), Failed> {
    let mut bad = Mismatches::default();
    let c = Client::new(s);
    let user = c.register("bad-keys")?;
    let t = &user.token;
    c.put_ok(t, "k", "v")?;
    let fingerprint = s.db_fingerprint(&user.user_id)?;
    let too_long = "k".repeat(257);
    let too_long_multibyte = enc(&"é".repeat(129));
    let raw_keys = [
        "",
        too_long.as_str(),
        too_long_multibyte.as_str(),
        "%0A",
        "a%0Ab",
        "%00",
        "a%09b",
        "%7F",
        "%C2%85",
        "%FF",
        "%C3",
        "%ED%A0%80",
        "a%E2%82",
    ];
    for raw in raw_keys {
        for method in ["PUT", "DELETE"] {
            let mut req = c.req(method, &format!("/api/sync/{raw}")).bearer(t);
            if method == "PUT" {
                req = req.json(&json!({"value": "x"}));
            }
            req.send()?
                .expect_error(400, "invalid_key")
                .note(&mut bad, format!("{method} key {raw:?}"));
        }
    }
    bad.finish()?;
    let snap = c.snapshot(t, None)?;
    ensure_eq!(snap["cursor"], json!(1), "cursor after refused keys");
    ensure_eq!(snap["data"], json!({"k": "v"}), "data after refused keys");
    ensure!(
        s.db_fingerprint(&user.user_id)? == fingerprint,
        "refused keys changed the database"
    );
    Ok(())
}

fn put_body_must_carry_a_string_value(s: &Server) -> Result<(), Failed> {
    let mut bad = Mismatches::default();
    let c = Client::new(s);
    let user = c.register("put-body")?;
    let t = &user.token;
    c.put_ok(t, "k", "v")?;
    let fingerprint = s.db_fingerprint(&user.user_id)?;
    for raw in ["", "{", "{\"value\": ", "{\"value\": \"x\",}", "value=x"] {
        c.req("PUT", "/api/sync/k")
            .bearer(t)
            .raw(raw)
            .send()?
            .expect_error(400, "invalid_json")
            .note(&mut bad, format!("body {raw:?}"));
    }
    let shapes = [
        json!({}),
        json!({"value": null}),
        json!({"value": 5}),
        json!({"value": true}),
        json!({"value": ["x"]}),
        json!({"value": {"x": 1}}),
        json!({"val": "x"}),
        json!("x"),
        json!(["x"]),
        json!(null),
        json!({"value": "x", "baseVersion": -1}),
        json!({"value": "x", "baseVersion": "1"}),
        json!({"value": "x", "baseVersion": 1.5}),
        json!({"value": "x", "updatedAt": -5}),
        json!({"value": "x", "updatedAt": "yesterday"}),
        json!({"value": "x", "requestId": ""}),
        json!({"value": "x", "requestId": 7}),
        json!({"value": "x", "requestId": "r".repeat(129)}),
        json!({"value": "x", "requestId": "a\nb"}),
    ];
    for body in shapes {
        c.put(t, "k", &body)?
            .expect_error(400, "invalid_request")
            .note(&mut bad, format!("body {body}"));
    }
    bad.finish()?;
    let snap = c.snapshot(t, None)?;
    ensure_eq!(snap["cursor"], json!(1), "cursor after refused bodies");
    ensure_eq!(snap["data"], json!({"k": "v"}), "data after refused bodies");
    ensure!(
        s.db_fingerprint(&user.user_id)? == fingerprint,
        "refused bodies changed the database"
    );
    Ok(())
}

fn wrong_method_and_unknown_paths(s: &Server) -> Result<(), Failed> {
    let mut bad = Mismatches::default();
    let c = Client::new(s);
    let user = c.register("routes")?;
    let t = &user.token;
    c.put_ok(t, "k", "v")?;
    for (method, path) in [
        ("POST", "/api/sync/k"),
        ("PATCH", "/api/sync/k"),
        ("PUT", "/api/sync"),
        ("DELETE", "/api/sync"),
        ("PATCH", "/api/sync"),
        ("GET", "/api/auth/login"),
        ("GET", "/api/auth/register"),
        ("PUT", "/api/auth/logout"),
        ("DELETE", "/api/auth/register"),
    ] {
        let mut req = c.req(method, path).bearer(t);
        if method != "GET" {
            req = req.json(&json!({"value": "x"}));
        }
        req.send()?
            .expect_error(405, "method_not_allowed")
            .note(&mut bad, format!("{method} {path}"));
    }
    for (method, path) in [
        ("GET", "/api/does-not-exist"),
        ("POST", "/api/auth"),
        ("POST", "/api/auth/nope"),
        ("GET", "/api/sync/a/b"),
        ("PUT", "/api/sync/a/b"),
        ("GET", "/api"),
        ("GET", "/api/"),
        ("GET", "/api/syncx"),
    ] {
        c.req(method, path)
            .bearer(t)
            .send()?
            .expect_error(404, "not_found")
            .note(&mut bad, format!("{method} {path}"));
    }
    bad.finish()?;
    let snap = c.snapshot(t, None)?;
    ensure_eq!(
        snap["data"],
        json!({"k": "v"}),
        "data after refused requests"
    );
    ensure_eq!(snap["cursor"], json!(1), "cursor after refused requests");
    Ok(())
}
