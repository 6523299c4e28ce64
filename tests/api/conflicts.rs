//! Conflicts: stale or missing baseVersion, last-write-wins on updatedAt,
//! clamped future times, deterministic ties, and the loser kept in history.

use crate::client::{now_ms, Client};
use crate::server::{sql_str, Server};
use crate::Test;
use libtest_mimic::Failed;
use serde_json::{json, Value};
use std::thread;
use std::time::Duration;

pub fn tests() -> Vec<Test> {
    vec![
        Test::main(
            "conflicts::stale_write_loses_and_is_kept",
            stale_write_loses_and_is_kept,
        ),
        Test::main(
            "conflicts::stale_but_newer_write_wins",
            stale_but_newer_write_wins,
        ),
        Test::main(
            "conflicts::missing_base_on_an_existing_key",
            missing_base_on_an_existing_key,
        ),
        Test::main(
            "conflicts::future_updated_at_is_clamped",
            future_updated_at_is_clamped,
        ),
        Test::main(
            "conflicts::ties_are_broken_deterministically",
            ties_are_broken_deterministically,
        ),
        Test::main(
            "conflicts::batch_reports_each_conflict",
            batch_reports_each_conflict,
        ),
        Test::main("conflicts::stale_delete_loses", stale_delete_loses),
    ]
}

/// The conflict object of a single-key answer, with every field checked.
#[allow(clippy::too_many_arguments)]
fn check_conflict(
    c: &Value,
    key: &str,
    winner: &str,
    version: u64,
    stored_version: u64,
    base_version: Option<u64>,
    incoming_updated_at: i64,
    stored_updated_at: i64,
) -> Result<(), Failed> {
    let expected = json!({
        "key": key,
        "resolution": "last-write-wins",
        "winner": winner,
        "version": version,
        "storedVersion": stored_version,
        "baseVersion": base_version,
        "incomingUpdatedAt": incoming_updated_at,
        "storedUpdatedAt": stored_updated_at,
    });
    ensure_eq!(c, &expected, "conflict object");
    Ok(())
}

/// History rows of a key that were never current (`version` NULL): the losers.
fn losers(s: &Server, user_id: &str, key: &str) -> Result<Vec<Value>, Failed> {
    let rows = s.db_rows(&format!(
        "SELECT data, deleted FROM sync_history WHERE user_id = {} AND key = {} AND version IS NULL ORDER BY id",
        sql_str(user_id),
        sql_str(key)
    ))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            if r["deleted"] == json!(1) {
                json!({"deleted": true})
            } else {
                r["data"].clone()
            }
        })
        .collect())
}

fn stale_write_loses_and_is_kept(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("stale-loses")?;
    let t = &user.token;
    let now = now_ms();
    let (t_new, t_old) = (now - 1_000, now - 60_000);
    c.put(t, "k", &json!({"value": "new", "updatedAt": t_new}))?
        .expect_ok(200)?;
    let r = c
        .put(
            t,
            "k",
            &json!({"value": "old", "baseVersion": 0, "updatedAt": t_old}),
        )?
        .expect_ok(200)?;
    ensure_eq!(r["key"], json!("k"), "key");
    ensure_eq!(r["version"], json!(1), "version stays");
    check_conflict(&r["conflict"], "k", "stored", 1, 1, Some(0), t_old, t_new)?;

    let snap = c.snapshot(t, None)?;
    ensure_eq!(snap["data"], json!({"k": "new"}), "stored value won");
    ensure_eq!(snap["cursor"], json!(1), "a lost write takes no version");
    ensure_eq!(
        losers(s, &user.user_id, "k")?,
        vec![json!("old")],
        "the losing value in sync_history"
    );
    Ok(())
}

fn stale_but_newer_write_wins(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("stale-wins")?;
    let t = &user.token;
    let now = now_ms();
    let (t_old, t_new) = (now - 60_000, now - 1_000);
    c.put(t, "k", &json!({"value": "old", "updatedAt": t_old}))?
        .expect_ok(200)?;
    c.put_ok(t, "other", "x")?;
    let r = c
        .put(
            t,
            "k",
            &json!({"value": "new", "baseVersion": 0, "updatedAt": t_new}),
        )?
        .expect_ok(200)?;
    ensure_eq!(
        r["version"],
        json!(3),
        "the winning write takes the next version"
    );
    check_conflict(&r["conflict"], "k", "incoming", 3, 1, Some(0), t_new, t_old)?;

    let snap = c.snapshot(t, None)?;
    ensure_eq!(snap["data"]["k"], json!("new"), "incoming value won");
    ensure_eq!(snap["versions"]["k"], json!(3), "version of k");
    // The overwritten value stays in history as version 1.
    let rows = s.db_rows(&format!(
        "SELECT version, data FROM sync_history WHERE user_id = {} AND key = 'k' ORDER BY id",
        sql_str(&user.user_id)
    ))?;
    let got: Vec<(Value, Value)> = rows
        .iter()
        .map(|r| (r["version"].clone(), r["data"].clone()))
        .collect();
    ensure_eq!(
        got,
        vec![(json!(1), json!("old")), (json!(3), json!("new"))],
        "history of k"
    );
    Ok(())
}

fn missing_base_on_an_existing_key(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("no-base")?;
    let t = &user.token;
    let now = now_ms();
    c.put(t, "k", &json!({"value": "first", "updatedAt": now - 1_000}))?
        .expect_ok(200)?;
    // No baseVersion on an existing key is a conflict; the older edit loses.
    let r = c
        .put(t, "k", &json!({"value": "older", "updatedAt": now - 5_000}))?
        .expect_ok(200)?;
    check_conflict(
        &r["conflict"],
        "k",
        "stored",
        1,
        1,
        None,
        now - 5_000,
        now - 1_000,
    )?;
    // The newer edit wins, still reported as a conflict.
    let r = c
        .put(t, "k", &json!({"value": "newer", "updatedAt": now - 500}))?
        .expect_ok(200)?;
    check_conflict(
        &r["conflict"],
        "k",
        "incoming",
        2,
        1,
        None,
        now - 500,
        now - 1_000,
    )?;
    // Without updatedAt the write is judged at server time: newer than both.
    let r = c.put(t, "k", &json!({"value": "now"}))?.expect_ok(200)?;
    ensure_eq!(r["version"], json!(3), "version");
    ensure_eq!(
        r["conflict"]["winner"],
        json!("incoming"),
        "missing updatedAt means now"
    );
    let at = r["conflict"]["incomingUpdatedAt"].as_i64().unwrap_or(0);
    ensure!(
        (now - 1_000..=now_ms() + 5_000).contains(&at),
        "incomingUpdatedAt {at} is not the server's now"
    );

    let snap = c.snapshot(t, None)?;
    ensure_eq!(snap["data"]["k"], json!("now"), "value");
    ensure_eq!(
        losers(s, &user.user_id, "k")?,
        vec![json!("older")],
        "losers kept"
    );
    Ok(())
}

fn future_updated_at_is_clamped(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("future")?;
    let t = &user.token;
    let ten_days = 10 * 24 * 3_600_000;
    let before = now_ms();
    c.put(
        t,
        "k",
        &json!({"value": "from the future", "updatedAt": before + ten_days}),
    )?
    .expect_ok(200)?;
    let after = now_ms();
    // An edit from a minute ago loses to it: it was clamped to the server's now,
    // which the conflict reports as the stored time.
    let r = c
        .put(
            t,
            "k",
            &json!({"value": "a minute ago", "baseVersion": 0, "updatedAt": before - 60_000}),
        )?
        .expect_ok(200)?;
    ensure_eq!(r["conflict"]["winner"], json!("stored"), "winner");
    let stored_at = r["conflict"]["storedUpdatedAt"]
        .as_i64()
        .unwrap_or(i64::MAX);
    ensure!(
        stored_at <= after + 5_000,
        "a future updatedAt was stored unclamped: {stored_at} (now {after})"
    );
    // A later edit, also claiming the future, wins: both were clamped to now.
    thread::sleep(Duration::from_millis(20));
    let r = c
        .put(
            t,
            "k",
            &json!({"value": "later", "baseVersion": 0, "updatedAt": now_ms() + 2 * ten_days}),
        )?
        .expect_ok(200)?;
    ensure_eq!(
        r["conflict"]["winner"],
        json!("incoming"),
        "a later clamped edit"
    );
    let incoming_at = r["conflict"]["incomingUpdatedAt"]
        .as_i64()
        .unwrap_or(i64::MAX);
    ensure!(
        incoming_at <= now_ms() + 5_000,
        "incomingUpdatedAt {incoming_at} not clamped"
    );
    ensure_eq!(c.snapshot(t, None)?["data"]["k"], json!("later"), "value");
    Ok(())
}

fn ties_are_broken_deterministically(s: &Server) -> Result<(), Failed> {
    // Two accounts see the same two edits with equal times in opposite orders
    // of arrival; both must settle on the same value.
    let c = Client::new(s);
    let at = now_ms() - 10_000;
    let mut finals = Vec::new();
    for (i, (first, second)) in [("apple", "banana"), ("banana", "apple")]
        .into_iter()
        .enumerate()
    {
        let user = c.register(&format!("tie-{i}"))?;
        let t = &user.token;
        c.put(t, "k", &json!({"value": first, "updatedAt": at}))?
            .expect_ok(200)?;
        let r = c
            .put(
                t,
                "k",
                &json!({"value": second, "baseVersion": 0, "updatedAt": at}),
            )?
            .expect_ok(200)?;
        let winner = r["conflict"]["winner"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        ensure!(
            winner == "stored" || winner == "incoming",
            "tie conflict: {r}"
        );
        ensure_eq!(
            r["conflict"]["incomingUpdatedAt"],
            json!(at),
            "incomingUpdatedAt"
        );
        ensure_eq!(
            r["conflict"]["storedUpdatedAt"],
            json!(at),
            "storedUpdatedAt"
        );
        finals.push(c.snapshot(t, None)?["data"]["k"].clone());
    }
    ensure_eq!(
        finals[0],
        finals[1],
        "the tie went different ways depending on arrival order"
    );

    // A value beats a deletion at the same time, or at least the outcome does
    // not depend on arrival order either.
    let mut finals = Vec::new();
    for i in 0..2 {
        let user = c.register(&format!("tie-del-{i}"))?;
        let t = &user.token;
        if i == 0 {
            c.put(t, "k", &json!({"value": "v", "updatedAt": at}))?
                .expect_ok(200)?;
            c.delete(t, "k", Some(&json!({"baseVersion": 0, "updatedAt": at})))?
                .expect_ok(200)?;
        } else {
            // Make the key exist and be deleted at the same time first.
            c.put(t, "k", &json!({"value": "seed", "updatedAt": at - 1}))?
                .expect_ok(200)?;
            c.delete(t, "k", Some(&json!({"baseVersion": 1, "updatedAt": at})))?
                .expect_ok(200)?;
            c.put(
                t,
                "k",
                &json!({"value": "v", "baseVersion": 0, "updatedAt": at}),
            )?
            .expect_ok(200)?;
        }
        let snap = c.snapshot(t, None)?;
        finals.push(snap["data"].get("k").cloned().unwrap_or(Value::Null));
    }
    ensure_eq!(
        finals[0],
        finals[1],
        "value against deletion at the same time"
    );
    Ok(())
}

fn batch_reports_each_conflict(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("batch-conflicts")?;
    let t = &user.token;
    let now = now_ms();
    c.batch(
        t,
        &json!({"data": {"a": "a1", "b": "b1"}, "updatedAt": {"a": now - 2_000, "b": now - 2_000}}),
    )?
    .expect_ok(200)?;
    let r = c
        .batch(
            t,
            &json!({
                "data": {"a": "a-stale-old", "b": "b-stale-new", "c": "c-new"},
                "baseVersions": {"a": 0, "b": 0},
                "updatedAt": {"a": now - 60_000, "b": now - 1_000, "c": now - 1_000},
            }),
        )?
        .expect_ok(200)?;
    let mut synced: Vec<String> = r["synced"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    synced.sort();
    ensure_eq!(
        synced,
        vec!["b".to_string(), "c".to_string()],
        "synced: the keys whose value became current"
    );
    let conflicts = r["conflicts"].as_array().cloned().unwrap_or_default();
    ensure_eq!(conflicts.len(), 2, "conflicts in {r}");
    let find = |k: &str| {
        conflicts
            .iter()
            .find(|c| c["key"] == json!(k))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let vb = r["versions"]["b"].as_u64().unwrap_or(0);
    ensure_eq!(r["versions"]["a"], json!(1), "a keeps its version");
    ensure!(vb == 3 || vb == 4, "b's new version {vb}");
    check_conflict(
        &find("a"),
        "a",
        "stored",
        1,
        1,
        Some(0),
        now - 60_000,
        now - 2_000,
    )?;
    check_conflict(
        &find("b"),
        "b",
        "incoming",
        vb,
        2,
        Some(0),
        now - 1_000,
        now - 2_000,
    )?;
    ensure_eq!(r["cursor"], json!(4), "cursor");

    let snap = c.snapshot(t, None)?;
    ensure_eq!(
        snap["data"],
        json!({"a": "a1", "b": "b-stale-new", "c": "c-new"}),
        "data"
    );
    ensure_eq!(
        losers(s, &user.user_id, "a")?,
        vec![json!("a-stale-old")],
        "the loser of a in history"
    );
    Ok(())
}

fn stale_delete_loses(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("stale-delete")?;
    let t = &user.token;
    let now = now_ms();
    c.put(
        t,
        "k",
        &json!({"value": "keep me", "updatedAt": now - 1_000}),
    )?
    .expect_ok(200)?;
    let r = c
        .delete(
            t,
            "k",
            Some(&json!({"baseVersion": 0, "updatedAt": now - 60_000})),
        )?
        .expect_ok(200)?;
    ensure_eq!(r["version"], json!(1), "version stays");
    check_conflict(
        &r["conflict"],
        "k",
        "stored",
        1,
        1,
        Some(0),
        now - 60_000,
        now - 1_000,
    )?;
    let snap = c.snapshot(t, None)?;
    ensure_eq!(
        snap["data"],
        json!({"k": "keep me"}),
        "the value survives a stale delete"
    );
    ensure_eq!(snap["deleted"], json!([]), "not deleted");
    ensure_eq!(
        losers(s, &user.user_id, "k")?,
        vec![json!({"deleted": true})],
        "the losing deletion in history"
    );

    // A stale but newer delete wins and is reported.
    let r = c
        .delete(
            t,
            "k",
            Some(&json!({"baseVersion": 0, "updatedAt": now - 10})),
        )?
        .expect_ok(200)?;
    check_conflict(
        &r["conflict"],
        "k",
        "incoming",
        2,
        1,
        Some(0),
        now - 10,
        now - 1_000,
    )?;
    let snap = c.snapshot(t, None)?;
    ensure_eq!(snap["data"], json!({}), "deleted by the newer delete");
    ensure_eq!(snap["deleted"], json!(["k"]), "deleted");
    Ok(())
}
