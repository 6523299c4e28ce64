//! Values round-trip byte for byte: up to 5 MiB, across the internal chunk
//! boundaries, and in every kind of Unicode a localStorage string can hold.

use crate::client::{Client, BIG_TIMEOUT};
use crate::server::{sql_str, Server};
use crate::Test;
use libtest_mimic::Failed;
use serde_json::{json, Value};

pub const MIB: usize = 1024 * 1024;
pub const MAX_VALUE: usize = 5 * MIB;

pub fn tests() -> Vec<Test> {
    vec![
        Test::main("values::five_mib_round_trip", five_mib_round_trip),
        Test::main("values::unicode_round_trip", unicode_round_trip),
        Test::main(
            "values::chunk_boundaries_round_trip",
            chunk_boundaries_round_trip,
        ),
    ]
}

/// A string of exactly `bytes` UTF-8 bytes built from `pattern`, padded with
/// ASCII at the end.
pub fn value_of_size(pattern: &str, bytes: usize) -> String {
    let mut v = String::with_capacity(bytes);
    while v.len() + pattern.len() <= bytes {
        v.push_str(pattern);
    }
    while v.len() < bytes {
        v.push('x');
    }
    v
}

/// Compares without printing megabytes on failure.
fn same_value(got: &Value, expected: &str, what: &str) -> Result<(), Failed> {
    let Some(got) = got.as_str() else {
        return Err(format!("{what}: not a string: {:.200}", got.to_string()).into());
    };
    if got != expected {
        let at = got
            .bytes()
            .zip(expected.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        return Err(format!(
            "{what}: value differs: got {} bytes, expected {}, first difference at byte {at}",
            got.len(),
            expected.len()
        )
        .into());
    }
    Ok(())
}

fn five_mib_round_trip(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("five-mib")?;
    let t = &user.token;
    // Multi-byte characters all the way through, so chunk cuts fall inside
    // characters, plus characters JSON must escape.
    let value = value_of_size("{\"id\":1,\"t\":\"Grüße 你好 🙂\\n\"}\n", MAX_VALUE);
    ensure_eq!(value.len(), MAX_VALUE, "test value size");
    let r = c
        .req("PUT", "/api/sync/big")
        .bearer(t)
        .json(&json!({ "value": value }))
        .timeout(BIG_TIMEOUT)
        .send()?;
    ensure_eq!(
        r.expect_ok(200)?["version"],
        json!(1),
        "version of the 5 MiB value"
    );

    let snap = c.snapshot(t, None)?;
    same_value(&snap["data"]["big"], &value, "GET /api/sync")?;
    let since = c.snapshot(t, Some(0))?;
    same_value(&since["data"]["big"], &value, "GET /api/sync?since=0")?;

    // One byte more is refused and leaves the stored value alone.
    let fingerprint = s.db_fingerprint(&user.user_id)?;
    let too_big = value_of_size("🙂", MAX_VALUE + 1);
    c.req("PUT", "/api/sync/big")
        .bearer(t)
        .json(&json!({ "value": too_big, "baseVersion": 1 }))
        .timeout(BIG_TIMEOUT)
        .send()?
        .expect_error(413, "value_too_large")?;
    let too_big_ascii = "y".repeat(MAX_VALUE + 1);
    c.batch(
        t,
        &json!({"data": {"big": too_big_ascii, "small": "ok"}, "baseVersions": {"big": 1}}),
    )?
    .expect_error(413, "value_too_large")?;
    let snap = c.snapshot(t, None)?;
    same_value(&snap["data"]["big"], &value, "after refused writes")?;
    ensure_eq!(snap["cursor"], json!(1), "cursor after refused writes");
    ensure!(
        snap["data"].get("small").is_none(),
        "a refused batch stored part of itself"
    );
    // In the same read: the value is stored in pieces, none bigger than D1
    // allows per row.
    let u = sql_str(&user.user_id);
    let (after, rows) = s.db_fingerprint_and(
        &user.user_id,
        &format!(
            "SELECT size, chunks, length(CAST(data AS BLOB)) AS first FROM sync_history WHERE user_id = {u} AND key = 'big'; \
             SELECT count(*) AS n, max(length(CAST(data AS BLOB))) AS biggest FROM sync_chunks WHERE user_id = {u}"
        ),
    )?;
    ensure!(after == fingerprint, "refused writes changed the database");
    ensure_eq!(rows.len(), 2, "statements");
    ensure_eq!(rows[0].len(), 1, "history rows of big");
    let big = &rows[0][0];
    ensure_eq!(big["size"], json!(MAX_VALUE), "stored size");
    let chunks = big["chunks"].as_u64().unwrap_or(0);
    ensure!(chunks >= 3, "a 5 MiB value stored in {chunks} piece(s)");
    ensure_eq!(rows[1][0]["n"], json!(chunks - 1), "rows in sync_chunks");
    for (what, bytes) in [
        ("first piece", &big["first"]),
        ("largest chunk", &rows[1][0]["biggest"]),
    ] {
        let bytes = bytes.as_u64().unwrap_or(0);
        ensure!(
            bytes > 0 && bytes <= 2_000_000,
            "{what} is {bytes} bytes: D1 allows about 2 MB per row"
        );
    }
    Ok(())
}

fn unicode_values() -> Vec<(&'static str, String)> {
    vec![
        ("emoji", "🙂👍🏽👨‍👩‍👧‍👦🏳️‍🌈 🇯🇵".to_string()),
        ("cjk", "漢字かなカナ한국어 中文".to_string()),
        (
            "quotes",
            "\"double\" 'single' `back` «guillemets» “curly”".to_string(),
        ),
        ("newlines", "line1\nline2\r\nline3\rend\n".to_string()),
        (
            "backslashes",
            "C:\\path\\to\\file \\n is not a newline \\u0041 \\\\".to_string(),
        ),
        ("nul", "before\u{0}after\u{0}".to_string()),
        (
            "controls",
            "\u{1}\u{7}\u{8}\t\u{b}\u{c}\u{1b}[0m\u{7f}\u{85}".to_string(),
        ),
        (
            "separators",
            "\u{2028}line sep\u{2029}para sep\u{feff}bom\u{200b}zwsp".to_string(),
        ),
        (
            "rtl-combining",
            "مرحبا שלום e\u{301} Z\u{351}\u{36b}\u{343}".to_string(),
        ),
        (
            "json",
            r#"{"a":[1,2,{"b":"c\"d"}],"e":null,"f":"\u00e9\n"}"#.to_string(),
        ),
        ("astral", "𝕳𝖊𝖑𝖑𝖔 𐍈 𠜎 \u{10ffff}".to_string()),
        ("html", "<script>alert('x')</script>&amp;".to_string()),
        ("sql", "'); DROP TABLE sync_data; --".to_string()),
        ("empty", String::new()),
        ("spaces", "   ".to_string()),
    ]
}

fn unicode_round_trip(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("unicode")?;
    let t = &user.token;
    let values = unicode_values();
    // Single writes and one batch, under unicode keys too.
    for (name, v) in &values {
        c.put(t, &format!("put-{name}"), &json!({ "value": v }))?
            .expect_ok(200)
            .map_err(|e| format!("value {name}: {}", e.message().unwrap_or_default()))?;
    }
    let batch: serde_json::Map<String, Value> = values
        .iter()
        .map(|(name, v)| (format!("batch-{name}-🔑"), json!(v)))
        .collect();
    c.batch(t, &json!({ "data": batch }))?.expect_ok(200)?;

    for since in [None, Some(0)] {
        let snap = c.snapshot(t, since)?;
        for (name, v) in &values {
            same_value(
                &snap["data"][format!("put-{name}")],
                v,
                &format!("PUT {name}, since {since:?}"),
            )?;
            same_value(
                &snap["data"][format!("batch-{name}-🔑")],
                v,
                &format!("batch {name}, since {since:?}"),
            )?;
        }
        ensure_eq!(
            snap["data"].as_object().map(|m| m.len()),
            Some(values.len() * 2),
            "number of keys"
        );
    }
    // Writing the same strings again is recognised as unchanged.
    let r = c
        .put(t, "put-nul", &json!({"value": "before\u{0}after\u{0}"}))?
        .expect_ok(200)?;
    ensure_eq!(r["conflict"], json!(null), "rewrite of the NUL value");
    ensure_eq!(
        c.cursor(t)?,
        (values.len() * 2) as u64,
        "cursor after rewriting a value"
    );
    Ok(())
}

fn chunk_boundaries_round_trip(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("chunks")?;
    let t = &user.token;
    // Values around 1,000,000 bytes (the service's chunk size) and 2,000,000
    // (D1's row limit), with a four-byte character across each boundary.
    let around = |n: usize| -> String {
        let mut v = "a".repeat(n - 2);
        v.push('🙂');
        v.push_str("tail");
        v
    };
    let values: Vec<(String, String)> = vec![
        ("exact-1m".into(), "b".repeat(1_000_000)),
        ("exact-1m-plus-1".into(), "c".repeat(1_000_001)),
        ("emoji-across-1m".into(), around(1_000_000)),
        ("emoji-across-2m".into(), around(2_000_000)),
        ("nul-heavy".into(), value_of_size("\u{0}é", 1_200_000)),
    ];
    for (k, v) in &values {
        c.req("PUT", &format!("/api/sync/{k}"))
            .bearer(t)
            .json(&json!({ "value": v }))
            .timeout(BIG_TIMEOUT)
            .send()?
            .expect_ok(200)
            .map_err(|e| format!("{k}: {}", e.message().unwrap_or_default()))?;
    }
    let snap = c.snapshot(t, None)?;
    for (k, v) in &values {
        same_value(&snap["data"][k.as_str()], v, k)?;
    }
    // Overwrite a chunked value with a small one and back: no stale chunks leak.
    c.put(
        t,
        "exact-1m-plus-1",
        &json!({"value": "small", "baseVersion": 2}),
    )?
    .expect_ok(200)?;
    let snap = c.snapshot(t, None)?;
    ensure_eq!(
        snap["data"]["exact-1m-plus-1"],
        json!("small"),
        "small value after a chunked one"
    );
    Ok(())
}
