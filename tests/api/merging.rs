//! Merge by id on the server: concurrent edits of an array of objects with
//! an `id` are merged three-way against the writer's base version, over REST
//! and WebSocket, and what the writer sent stays in history.

use crate::client::Client;
use crate::live::{open, second_device};
use crate::server::{sql_str, Server};
use crate::Test;
use libtest_mimic::Failed;
use serde_json::{json, Value};

pub fn tests() -> Vec<Test> {
    vec![
        Test::main("merging::stale_rest_write_merges", stale_rest_write_merges),
        Test::main("merging::socket_write_merges", socket_write_merges),
        Test::main(
            "merging::not_arrays_fall_back_to_lww",
            not_arrays_fall_back_to_lww,
        ),
    ]
}

fn parsed(v: &Value) -> Result<Value, Failed> {
    Ok(serde_json::from_str(v.as_str().unwrap_or("null"))?)
}

const BASE: &str = r#"[{"id":1,"title":"Intro"},{"id":2,"title":"Body"}]"#;

fn stale_rest_write_merges(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("merge-rest")?;
    let t = &user.token;
    let v1 = c.put_ok(t, "projects", BASE)?["version"].clone();
    // Device B adds a project.
    let b = r#"[{"id":1,"title":"Intro"},{"id":2,"title":"Body"},{"id":3,"title":"Outro"}]"#;
    c.put(t, "projects", &json!({"value": b, "baseVersion": v1}))?
        .expect_ok(200)?;
    // Device A, still on version 1, renames 1 and removes 2.
    let a = r#"[{"id":1,"title":"Introduction"}]"#;
    let r = c
        .put(t, "projects", &json!({"value": a, "baseVersion": v1}))?
        .expect_ok(200)?;
    let conflict = &r["conflict"];
    ensure_eq!(
        (conflict["resolution"].clone(), conflict["winner"].clone()),
        (json!("merged"), json!("merged")),
        "conflict in {r}"
    );
    ensure_eq!(conflict["version"], r["version"], "conflict version");
    ensure_eq!(conflict["baseVersion"], v1, "conflict baseVersion");
    // Different records changed on each side: none edited on both.
    ensure_eq!(conflict.get("records"), None, "records in {r}");
    let snap = c.snapshot(t, None)?;
    ensure_eq!(
        parsed(&snap["data"]["projects"])?,
        json!([{"id":1,"title":"Introduction"},{"id":3,"title":"Outro"}]),
        "merged value"
    );
    ensure_eq!(
        snap["versions"]["projects"],
        r["version"],
        "current version"
    );
    // What A sent is in its records' history (a record list keeps records,
    // not whole values): the rename and the removal. Only changed records
    // are rows: 3 because its predecessor changed.
    let rows = s.db_rows(&format!(
        "SELECT rid, data, deleted FROM sync_records WHERE user_id = {} AND key = 'projects' \
         AND version = {} ORDER BY rid",
        sql_str(&user.user_id),
        r["version"]
    ))?;
    let rows: Vec<Value> = rows.into_iter().map(Value::Object).collect();
    ensure_eq!(
        rows,
        vec![
            json!({"rid": "1", "data": r#"{"id":1,"title":"Introduction"}"#, "deleted": 0}),
            json!({"rid": "2", "data": null, "deleted": 1}),
            // 3 now follows 1: its row says so.
            json!({"rid": "3", "data": r#"{"id":3,"title":"Outro"}"#, "deleted": 0}),
        ],
        "rows of A's write"
    );
    Ok(())
}

fn socket_write_merges(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("merge-ws")?;
    let other = second_device(&c, &user)?;
    let v1 = c.put_ok(&user.token, "tasks", BASE)?["version"]
        .as_u64()
        .unwrap_or(0);
    let mut wa = open(s, &user.token)?;
    let mut wb = open(s, &other.token)?;
    wa.ping()?;
    wb.ping()?;
    // Both edit from version 1: A first (fast-forward), then B (merged).
    let a = r#"[{"id":1,"title":"Intro","done":true},{"id":2,"title":"Body"}]"#;
    let b = r#"[{"id":2,"title":"Body"},{"id":9,"title":"New"}]"#;
    for (ws, value, rid) in [(&mut wa, a, "a-1"), (&mut wb, b, "b-1")] {
        ws.send(&json!({"type": "put", "key": "tasks", "value": value,
                        "baseVersion": v1, "requestId": rid}))?;
        ws.wait_for("ack", |m| m["type"] == "ack" && m["requestId"] == rid)?;
    }
    // B's ack said "merged": B must take the value from A's view of it.
    let change = wa.wait_for("merged change", |m| {
        m["type"] == "change" && m["key"] == "tasks" && m["deviceId"] == other.device_id
    })?;
    // B removed 1 although A had changed it: A's edit is kept.
    ensure_eq!(
        parsed(&change["value"])?,
        json!([{"id":1,"title":"Intro","done":true},{"id":2,"title":"Body"},{"id":9,"title":"New"}]),
        "merged value broadcast to A"
    );
    let snap = c.snapshot(&user.token, None)?;
    ensure_eq!(
        snap["data"]["tasks"],
        change["value"],
        "stored merged value"
    );
    ensure_eq!(snap["versions"]["tasks"], change["version"], "version");
    wa.close();
    wb.close();
    Ok(())
}

fn not_arrays_fall_back_to_lww(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("merge-lww")?;
    let t = &user.token;
    let v1 = c.put_ok(t, "settings", r#"{"theme":"dark"}"#)?["version"].clone();
    c.put(
        t,
        "settings",
        &json!({"value": r#"{"theme":"light"}"#, "baseVersion": v1}),
    )?
    .expect_ok(200)?;
    let r = c
        .put(
            t,
            "settings",
            &json!({"value": r#"{"font":"big"}"#, "baseVersion": v1, "updatedAt": 1}),
        )?
        .expect_ok(200)?;
    ensure_eq!(
        (
            r["conflict"]["resolution"].clone(),
            r["conflict"]["winner"].clone()
        ),
        (json!("last-write-wins"), json!("stored")),
        "objects are not merged"
    );
    // Arrays whose elements lack an id are not merged either.
    let v = c.put_ok(t, "plain", "[1,2]")?["version"].clone();
    c.put(t, "plain", &json!({"value": "[1,2,3]", "baseVersion": v}))?
        .expect_ok(200)?;
    let r = c
        .put(t, "plain", &json!({"value": "[0]", "baseVersion": v}))?
        .expect_ok(200)?;
    ensure_eq!(
        r["conflict"]["resolution"],
        json!("last-write-wins"),
        "plain arrays"
    );
    Ok(())
}
