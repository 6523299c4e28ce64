//! An existing deployment upgrades: a database written by schema version 1
//! (tests/fixtures/v1-database.sql), then `wrangler d1 migrations apply`,
//! then this Worker. Nothing is lost; versions, history, chunked values,
//! deletions and remembered requestIds still read as before.

use crate::client::Client;
use crate::live;
use crate::server::{repo_root, Server};
use crate::Test;
use libtest_mimic::Failed;
use serde_json::{json, Value};
use std::path::PathBuf;

/// The device token the seed stores (by its SHA-256 only).
const TOKEN: &str = "v1upgradeTestToken_xxxxxxxxxxxxxxxxxxxxxxxx";
const PROJECTS_V1: &str = r#"[{"id":1,"name":"Mix"}]"#;
const PROJECTS_V3: &str = r#"[{"id":1,"name":"Mix"},{"id":2,"name":"Master"}]"#;

pub fn seed() -> PathBuf {
    repo_root().join("tests/fixtures/v1-database.sql")
}

pub fn tests() -> Vec<Test> {
    vec![Test::upgrade(
        "upgrade::version_1_data_reads_and_writes_after_the_migration",
        version_1_data_reads_and_writes_after_the_migration,
    )]
}

fn version_1_data_reads_and_writes_after_the_migration(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let snap = c.snapshot(TOKEN, None)?;
    ensure_eq!(
        snap["data"],
        json!({"projects": PROJECTS_V3, "big": "a".repeat(10) + &"b".repeat(10)}),
        "current values (the chunked one joined)"
    );
    ensure_eq!(snap["deleted"], json!(["notes"]), "deleted keys");
    ensure_eq!(
        snap["versions"],
        json!({"projects": 3, "big": 4, "notes": 5}),
        "versions"
    );
    ensure_eq!(snap["cursor"], json!(5), "cursor");
    let since = c.snapshot(TOKEN, Some(3))?;
    ensure_eq!(
        since["versions"],
        json!({"big": 4, "notes": 5}),
        "changes since 3"
    );

    // History, with the version-1 rows and the conflict loser kept.
    let h = c
        .req("GET", "/api/sync/projects/history")
        .bearer(TOKEN)
        .send()?
        .expect_ok(200)?;
    let versions: Vec<(u64, bool)> = h["history"]
        .as_array()
        .ok_or("no history")?
        .iter()
        .map(|e| (e["version"].as_u64().unwrap_or(0), e["current"] == true))
        .collect();
    ensure_eq!(versions, vec![(3, true), (1, false)], "history of projects");
    let v1 = c
        .req("GET", "/api/sync/projects/history/1")
        .bearer(TOKEN)
        .send()?
        .expect_ok(200)?;
    ensure_eq!(v1["value"], json!(PROJECTS_V1), "version 1");

    // A requestId remembered by version 1 replays its first answer, byte
    // for byte, and changes nothing.
    let before = s.db_fingerprint("u-v1")?;
    let replay = c
        .put(
            TOKEN,
            "projects",
            &json!({"value": "[]", "baseVersion": 3, "requestId": "v1-request"}),
        )?
        .expect_ok(200)?;
    ensure_eq!(
        serde_json::to_string(&replay)?,
        r#"{"success":true,"key":"projects","version":3,"conflict":null}"#,
        "replayed answer"
    );
    ensure_eq!(
        s.db_fingerprint("u-v1")?,
        before,
        "stored data after the replay"
    );

    // New writes continue the counters; a live device catches up from 0.
    let w = c
        .put(
            TOKEN,
            "projects",
            &json!({"value": PROJECTS_V1, "baseVersion": 3}),
        )?
        .expect_ok(200)?;
    ensure_eq!(w["version"], json!(6), "next version");
    ensure!(w["conflict"].is_null(), "a fast-forward: {w}");
    let mut ws = live::open(s, TOKEN)?;
    ws.send(&json!({"type": "hello", "since": 0}))?;
    let changes = ws.wait_type("changes")?;
    let got: Vec<(String, u64)> = changes["changes"]
        .as_array()
        .ok_or("no changes")?
        .iter()
        .map(|c| {
            (
                c["key"].as_str().unwrap_or("").to_owned(),
                c["version"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    ensure_eq!(
        got,
        vec![
            ("big".to_owned(), 4),
            ("notes".to_owned(), 5),
            ("projects".to_owned(), 6)
        ],
        "catch-up after the upgrade"
    );
    ensure_eq!(changes["cursor"], json!(6), "cursor after the write");
    ws.close();
    let loser = s.db_rows(
        "SELECT data FROM sync_history WHERE user_id = 'u-v1' AND key = 'projects' AND version IS NULL",
    )?;
    ensure_eq!(
        loser[0]["data"],
        json!(r#"[{"id":9,"name":"lost"}]"#),
        "the version-1 conflict loser"
    );

    // Record lists (issue #12): the old whole array became records on its
    // first write (version 6); its whole versions are still readable.
    let rows = s.db_rows(
        "SELECT rid, version FROM sync_records WHERE user_id = 'u-v1' AND key = 'projects' ORDER BY rid",
    )?;
    let rows: Vec<Value> = rows.into_iter().map(Value::Object).collect();
    ensure_eq!(
        rows,
        vec![json!({"rid": "1", "version": 6})],
        "records after the first write"
    );
    let h = c
        .req("GET", "/api/sync/projects/history")
        .bearer(TOKEN)
        .send()?
        .expect_ok(200)?;
    let versions: Vec<u64> = h["history"]
        .as_array()
        .ok_or("no history")?
        .iter()
        .filter_map(|e| e["version"].as_u64())
        .collect();
    ensure_eq!(versions, vec![6, 3, 1], "history across the conversion");
    for (v, value) in [(6, PROJECTS_V1), (3, PROJECTS_V3), (1, PROJECTS_V1)] {
        let got = c
            .req("GET", &format!("/api/sync/projects/history/{v}"))
            .bearer(TOKEN)
            .send()?
            .expect_ok(200)?;
        ensure_eq!(got["value"], json!(value), "version {v}");
    }
    // A device still on the whole version 3 merges record by record against it.
    let stale = r#"[{"id":1,"name":"Mix"},{"id":2,"name":"Master v2"}]"#;
    let w = c
        .put(
            TOKEN,
            "projects",
            &json!({"value": stale, "baseVersion": 3}),
        )?
        .expect_ok(200)?;
    ensure_eq!(w["version"], json!(7), "merged version");
    // Version 6 removed record 2 (untouched there), the stale device edited
    // it: the edit is kept.
    ensure_eq!(
        c.snapshot(TOKEN, None)?["data"]["projects"],
        json!(stale),
        "the stale device's edit kept"
    );
    Ok(())
}
