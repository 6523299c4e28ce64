//! Many requests for one user at once: the user's writes are applied one at
//! a time, versions are never handed out twice, a retry racing its original
//! applies once, and no acknowledged value is lost.

use crate::client::{now_ms, Client, Resp};
use crate::server::{sql_str, Server};
use crate::Test;
use libtest_mimic::Failed;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::thread;

const PARALLEL: usize = 12;

pub fn tests() -> Vec<Test> {
    vec![
        Test::main(
            "concurrency::parallel_writes_get_distinct_versions",
            parallel_writes_get_distinct_versions,
        ),
        Test::main(
            "concurrency::racing_retries_apply_once",
            racing_retries_apply_once,
        ),
        Test::main(
            "concurrency::racing_edits_of_one_key_lose_nothing",
            racing_edits_of_one_key_lose_nothing,
        ),
    ]
}

/// Runs `f(i)` for `i` in `0..n` on `n` threads at once.
fn in_parallel<F>(n: usize, f: F) -> Result<Vec<Resp>, Failed>
where
    F: Fn(usize) -> Result<Resp, Failed> + Sync,
{
    thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = (0..n).map(|i| scope.spawn(move || f(i))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a request thread panicked".into()))
            })
            .collect()
    })
}

fn parallel_writes_get_distinct_versions(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("parallel")?;
    let t = &user.token;
    // Single puts and two-key batches, all at once.
    let answers = in_parallel(PARALLEL, |i| {
        if i % 3 == 0 {
            c.batch(
                t,
                &json!({"data": {format!("b{i}-x"): "x", format!("b{i}-y"): "y"}}),
            )
        } else {
            c.put(t, &format!("k{i}"), &json!({ "value": format!("v{i}") }))
        }
    })?;
    let mut versions = Vec::new();
    let mut expected_data = serde_json::Map::new();
    for (i, r) in answers.iter().enumerate() {
        let v = r.expect_ok(200)?;
        if i % 3 == 0 {
            for k in [format!("b{i}-x"), format!("b{i}-y")] {
                versions.push(v["versions"][&k].as_u64().unwrap_or(0));
                let value = if k.ends_with('x') { "x" } else { "y" };
                expected_data.insert(k, json!(value));
            }
        } else {
            versions.push(v["version"].as_u64().unwrap_or(0));
            expected_data.insert(format!("k{i}"), json!(format!("v{i}")));
        }
    }
    let total = versions.len() as u64;
    let distinct: BTreeSet<u64> = versions.iter().copied().collect();
    ensure_eq!(
        distinct,
        (1..=total).collect::<BTreeSet<u64>>(),
        "versions handed out to {total} parallel changes"
    );
    let snap = c.snapshot(t, None)?;
    ensure_eq!(snap["cursor"], json!(total), "cursor");
    ensure_eq!(snap["data"], Value::Object(expected_data), "data");
    Ok(())
}

fn racing_retries_apply_once(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("racing-retries")?;
    let t = &user.token;
    c.put_ok(t, "k", "v0")?;
    let body = json!({"value": "v1", "baseVersion": 1, "requestId": "raced-1"});
    let answers = in_parallel(PARALLEL, |_| c.put(t, "k", &body))?;
    let first = &answers[0];
    first.expect_ok(200)?;
    for r in &answers {
        ensure!(
            r.status == 200 && r.body == first.body,
            "racing retries answered differently: {} vs {}",
            r.text(),
            first.text()
        );
    }
    let v = first.json()?;
    ensure_eq!(v["version"], json!(2), "version");
    ensure_eq!(v["conflict"], json!(null), "conflict");
    let snap = c.snapshot(t, None)?;
    ensure_eq!(snap["cursor"], json!(2), "cursor: applied once");

    let batch = json!({"data": {"b": "1"}, "requestId": "raced-batch"});
    let answers = in_parallel(PARALLEL, |_| c.batch(t, &batch))?;
    for r in &answers {
        ensure!(
            r.status == 200 && r.body == answers[0].body,
            "racing batch retries answered differently: {} vs {}",
            r.text(),
            answers[0].text()
        );
    }
    ensure_eq!(c.cursor(t)?, 3, "cursor after racing batch retries");

    let rows = s.db_rows(&format!(
        "SELECT count(*) AS n FROM sync_history WHERE user_id = {}",
        sql_str(&user.user_id)
    ))?;
    ensure_eq!(rows[0]["n"], json!(3), "history rows");
    Ok(())
}

fn racing_edits_of_one_key_lose_nothing(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("racing-edits")?;
    let t = &user.token;
    let base_time = now_ms() - 60_000;
    c.put(
        t,
        "k",
        &json!({"value": "original", "updatedAt": base_time}),
    )?
    .expect_ok(200)?;
    // Every device saw version 1 and edits it; later edits have later times.
    let value = |i: usize| format!("edit {i}");
    let at = |i: usize| base_time + 1_000 + i as i64 * 100;
    let answers = in_parallel(PARALLEL, |i| {
        c.put(
            t,
            "k",
            &json!({"value": value(i), "baseVersion": 1, "updatedAt": at(i)}),
        )
    })?;
    let mut clean = 0;
    for (i, r) in answers.iter().enumerate() {
        let v = r.expect_ok(200)?;
        match &v["conflict"] {
            Value::Null => clean += 1,
            c => {
                ensure_eq!(c["baseVersion"], json!(1), "edit {i}: conflict baseVersion");
                ensure_eq!(
                    c["incomingUpdatedAt"],
                    json!(at(i)),
                    "edit {i}: incomingUpdatedAt"
                );
            }
        }
    }
    ensure_eq!(
        clean,
        1,
        "edits that applied without a conflict (exactly the first)"
    );

    // Last-write-wins: the latest edit is current, whatever the arrival order.
    let snap = c.snapshot(t, None)?;
    ensure_eq!(
        snap["data"]["k"],
        json!(value(PARALLEL - 1)),
        "current value"
    );

    // Nothing acknowledged is lost: every edit is in history, current or not.
    let rows = s.db_rows(&format!(
        "SELECT data FROM sync_history WHERE user_id = {} AND key = 'k'",
        sql_str(&user.user_id)
    ))?;
    let kept: BTreeSet<String> = rows
        .iter()
        .filter_map(|r| r["data"].as_str().map(str::to_string))
        .collect();
    for i in 0..PARALLEL {
        ensure!(kept.contains(&value(i)), "edit {i} is not in sync_history");
    }
    ensure!(
        kept.contains("original"),
        "the original value is not in sync_history"
    );
    Ok(())
}
