//! Size limits and atomic refusal: oversized bodies, bad batches. Every
//! refused request leaves the stored data exactly as it was.

use crate::client::{Client, BIG_TIMEOUT};
use crate::client::{Mismatches, Note};
use crate::server::Server;
use crate::values::MIB;
use crate::Test;
use libtest_mimic::Failed;
use serde_json::{json, Map, Value};

const MAX_BODY: usize = 16 * MIB;

pub fn tests() -> Vec<Test> {
    vec![
        Test::oversize("limits::body_over_16_mib_is_413", body_over_16_mib_is_413),
        Test::oversize(
            "limits::chunked_body_over_16_mib_is_413",
            chunked_body_over_16_mib_is_413,
        ),
        Test::main(
            "limits::body_of_exactly_16_mib_is_accepted",
            body_of_exactly_16_mib_is_accepted,
        ),
        Test::main(
            "limits::bad_batch_changes_nothing",
            bad_batch_changes_nothing,
        ),
        Test::main("limits::batch_json_errors", batch_json_errors),
    ]
}

/// `{"data":{"k":"` followed by `x` up to `len` bytes and never closed: if
/// the Worker parsed it at all, it would answer `invalid_json`, not 413.
fn unterminated_body(len: usize) -> Vec<u8> {
    let mut body = b"{\"data\":{\"k\":\"".to_vec();
    body.resize(len, b'x');
    body
}

fn body_over_16_mib_is_413(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("body-413")?;
    let t = &user.token;
    c.put_ok(t, "k", "v")?;
    let fingerprint = s.db_fingerprint(&user.user_id)?;
    for (method, path) in [
        ("POST", "/api/sync"),
        ("PUT", "/api/sync/k"),
        ("DELETE", "/api/sync/k"),
    ] {
        c.req(method, path)
            .bearer(t)
            .raw(unterminated_body(MAX_BODY + 1))
            .timeout(BIG_TIMEOUT)
            .send()?
            .expect_error(413, "payload_too_large")?;
    }
    // Also on the auth endpoints, before anything else is looked at.
    c.req("POST", "/api/auth/register")
        .raw(unterminated_body(MAX_BODY + 1))
        .timeout(BIG_TIMEOUT)
        .send()?
        .expect_error(413, "payload_too_large")?;
    let snap = c.snapshot(t, None)?;
    ensure_eq!(snap["data"], json!({"k": "v"}), "data after refused bodies");
    ensure_eq!(snap["cursor"], json!(1), "cursor after refused bodies");
    ensure!(
        s.db_fingerprint(&user.user_id)? == fingerprint,
        "a refused body changed the database"
    );
    Ok(())
}

fn chunked_body_over_16_mib_is_413(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("chunked-413")?;
    let t = &user.token;
    c.put_ok(t, "k", "v")?;
    let fingerprint = s.db_fingerprint(&user.user_id)?;
    // No Content-Length to trust: the limit must hold while reading.
    let r = c
        .req("POST", "/api/sync")
        .bearer(t)
        .raw(unterminated_body(MAX_BODY + MIB))
        .chunked()
        .timeout(BIG_TIMEOUT)
        .send()?;
    r.expect_error(413, "payload_too_large")?;
    // Checked in the database only: wrangler dev's own proxy in front of the
    // Worker breaks when a streamed request body is left unread (later
    // requests to this server hang or get 503 "Your worker restarted
    // mid-request"), which is why this test has a server to itself.
    ensure!(
        s.db_fingerprint(&user.user_id)? == fingerprint,
        "a refused chunked body changed the database"
    );
    Ok(())
}

fn body_of_exactly_16_mib_is_accepted(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("body-16mib")?;
    let t = &user.token;
    // A small batch padded with JSON whitespace to exactly the limit.
    let mut body = json!({"data": {"padded": "yes"}}).to_string().into_bytes();
    body.resize(MAX_BODY, b' ');
    let r = c
        .req("POST", "/api/sync")
        .bearer(t)
        .raw(body)
        .timeout(BIG_TIMEOUT)
        .send()?;
    let v = r.expect_ok(200)?;
    ensure_eq!(v["synced"], json!(["padded"]), "synced");
    ensure_eq!(
        c.snapshot(t, None)?["data"],
        json!({"padded": "yes"}),
        "data"
    );
    Ok(())
}

fn bad_batch_changes_nothing(s: &Server) -> Result<(), Failed> {
    let mut bad = Mismatches::default();
    let c = Client::new(s);
    let user = c.register("bad-batch")?;
    let t = &user.token;
    c.put_ok(t, "a", "1")?;
    let fingerprint = s.db_fingerprint(&user.user_id)?;

    let long_key = "k".repeat(257);
    let mut too_many = Map::new();
    for i in 0..65 {
        too_many.insert(format!("key-{i:02}"), json!("v"));
    }
    let mut too_many_with_deleted = Map::new();
    for i in 0..60 {
        too_many_with_deleted.insert(format!("key-{i:02}"), json!("v"));
    }
    let deleted_five: Vec<String> = (0..5).map(|i| format!("gone-{i}")).collect();

    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"data": {"ok": "x", "": "y"}}), 400, "invalid_key"),
        (
            json!({"data": {"ok": "x", "a\nb": "y"}}),
            400,
            "invalid_key",
        ),
        (
            json!({"data": {"ok": "x", "nul\u{0}": "y"}}),
            400,
            "invalid_key",
        ),
        (
            json!({"data": {"ok": "x", "del\u{7f}": "y"}}),
            400,
            "invalid_key",
        ),
        (
            json!({"data": {"ok": "x", long_key.clone(): "y"}}),
            400,
            "invalid_key",
        ),
        (
            json!({"data": {"ok": "x"}, "deleted": [""]}),
            400,
            "invalid_key",
        ),
        (
            json!({"data": {"ok": "x"}, "deleted": ["tab\there"]}),
            400,
            "invalid_key",
        ),
        (
            json!({"data": {"ok": "x"}, "deleted": ["ok"]}),
            400,
            "invalid_request",
        ),
        (
            json!({"data": {"ok": "x", "a": "2"}, "deleted": ["a"]}),
            400,
            "invalid_request",
        ),
        (
            json!({"data": {"ok": "x"}, "deleted": ["a", "a"]}),
            400,
            "invalid_request",
        ),
        (json!({"data": too_many}), 400, "invalid_request"),
        (
            json!({"data": too_many_with_deleted, "deleted": deleted_five}),
            400,
            "invalid_request",
        ),
        (json!({"data": {"ok": "x", "a": 5}}), 400, "invalid_request"),
        (
            json!({"data": {"ok": "x", "a": null}}),
            400,
            "invalid_request",
        ),
        (json!({"data": "ok"}), 400, "invalid_request"),
        (json!({"data": ["ok"]}), 400, "invalid_request"),
        (
            json!({"data": {"ok": "x"}, "deleted": "a"}),
            400,
            "invalid_request",
        ),
        (
            json!({"data": {"ok": "x"}, "deleted": [5]}),
            400,
            "invalid_request",
        ),
        (
            json!({"data": {"ok": "x"}, "baseVersions": {"ok": -1}}),
            400,
            "invalid_request",
        ),
        (
            json!({"data": {"ok": "x"}, "baseVersions": {"ok": "1"}}),
            400,
            "invalid_request",
        ),
        (
            json!({"data": {"ok": "x"}, "updatedAt": {"ok": -1}}),
            400,
            "invalid_request",
        ),
        (
            json!({"data": {"ok": "x"}, "updatedAt": {"ok": "now"}}),
            400,
            "invalid_request",
        ),
        (
            json!({"data": {"ok": "x"}, "requestId": ""}),
            400,
            "invalid_request",
        ),
        (
            json!({"data": {"ok": "x"}, "requestId": 5}),
            400,
            "invalid_request",
        ),
        (json!([{"ok": "x"}]), 400, "invalid_request"),
        (json!("data"), 400, "invalid_request"),
        (json!(null), 400, "invalid_request"),
        (
            json!({"data": {"ok": "x", "big": "z".repeat(5 * MIB + 1)}}),
            413,
            "value_too_large",
        ),
    ];
    for (body, status, code) in &cases {
        let shown: String = body.to_string().chars().take(120).collect();
        c.batch(t, body)?
            .expect_error(*status, code)
            .note(&mut bad, format!("batch {shown}"));
    }
    bad.finish()?;
    let snap = c.snapshot(t, None)?;
    ensure_eq!(
        snap["data"],
        json!({"a": "1"}),
        "data after refused batches"
    );
    ensure_eq!(snap["cursor"], json!(1), "cursor after refused batches");
    ensure_eq!(snap["deleted"], json!([]), "deleted after refused batches");
    ensure!(
        s.db_fingerprint(&user.user_id)? == fingerprint,
        "a refused batch changed the database"
    );
    Ok(())
}

fn batch_json_errors(s: &Server) -> Result<(), Failed> {
    let mut bad = Mismatches::default();
    let c = Client::new(s);
    let user = c.register("batch-json")?;
    let t = &user.token;
    c.put_ok(t, "a", "1")?;
    for raw in [
        "",
        "{",
        "{\"data\": {\"a\": \"2\"}",
        "{'data': {}}",
        "{\"data\": {\"a\": \"2\"}}}",
        "\u{feff}{}x",
        "nul\u{0}",
    ] {
        c.req("POST", "/api/sync")
            .bearer(t)
            .raw(raw)
            .send()?
            .expect_error(400, "invalid_json")
            .note(&mut bad, format!("body {raw:?}"));
    }
    bad.finish()?;
    // Bytes that are not UTF-8 are not JSON.
    c.req("POST", "/api/sync")
        .bearer(t)
        .raw(b"{\"data\": {\"a\": \"\xff\xfe\"}}".to_vec())
        .send()?
        .expect_error(400, "invalid_json")?;
    let snap = c.snapshot(t, None)?;
    ensure_eq!(
        snap["data"],
        json!({"a": "1"}),
        "data after malformed batches"
    );
    ensure_eq!(snap["cursor"], json!(1), "cursor after malformed batches");
    Ok(())
}
