//! requestId: a retried write returns the first answer, byte for byte, and
//! changes nothing.

use crate::client::Client;
use crate::server::Server;
use crate::Test;
use libtest_mimic::Failed;
use serde_json::json;

pub fn tests() -> Vec<Test> {
    vec![
        Test::main(
            "retry::put_retry_returns_the_first_answer",
            put_retry_returns_the_first_answer,
        ),
        Test::main(
            "retry::batch_retry_returns_the_first_answer",
            batch_retry_returns_the_first_answer,
        ),
        Test::main(
            "retry::delete_retry_returns_the_first_answer",
            delete_retry_returns_the_first_answer,
        ),
        Test::main("retry::request_ids_are_per_user", request_ids_are_per_user),
    ]
}

fn put_retry_returns_the_first_answer(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("retry-put")?;
    let t = &user.token;
    c.put_ok(t, "k", "v0")?;
    let body = json!({"value": "v1", "baseVersion": 1, "requestId": "req-put-1"});
    let first = c.put(t, "k", &body)?;
    let v = first.expect_ok(200)?;
    ensure_eq!(v["version"], json!(2), "first answer");
    let fingerprint = s.db_fingerprint(&user.user_id)?;

    let again = c.put(t, "k", &body)?;
    ensure_eq!(again.status, 200, "retry status");
    ensure!(
        again.body == first.body,
        "retry answered {} instead of {}",
        again.text(),
        first.text()
    );

    // Even a retry carrying something else replays the first answer and
    // applies nothing: the id names the write.
    let changed = json!({"value": "something else", "baseVersion": 2, "requestId": "req-put-1"});
    let r = c.put(t, "k", &changed)?;
    ensure!(
        r.status == 200 && r.body == first.body,
        "changed retry answered {} {}",
        r.status,
        r.text()
    );
    let snap = c.snapshot(t, None)?;
    ensure_eq!(snap["data"], json!({"k": "v1"}), "data after retries");
    ensure_eq!(snap["cursor"], json!(2), "cursor after retries");
    ensure!(
        s.db_fingerprint(&user.user_id)? == fingerprint,
        "a retry changed the database"
    );

    // A new id is a new write.
    let r = c
        .put(
            t,
            "k",
            &json!({"value": "v2", "baseVersion": 2, "requestId": "req-put-2"}),
        )?
        .expect_ok(200)?;
    ensure_eq!(r["version"], json!(3), "a new requestId");
    Ok(())
}

fn batch_retry_returns_the_first_answer(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("retry-batch")?;
    let t = &user.token;
    c.put_ok(t, "gone", "x")?;
    let body = json!({
        "data": {"a": "1", "b": "2"},
        "deleted": ["gone"],
        "baseVersions": {"gone": 1},
        "requestId": "req-batch-1"
    });
    let first = c.batch(t, &body)?;
    let v = first.expect_ok(200)?;
    ensure_eq!(v["cursor"], json!(4), "first answer's cursor");
    let fingerprint = s.db_fingerprint(&user.user_id)?;
    for _ in 0..2 {
        let again = c.batch(t, &body)?;
        ensure!(
            again.status == 200 && again.body == first.body,
            "retry answered {} {}",
            again.status,
            again.text()
        );
    }
    let snap = c.snapshot(t, None)?;
    ensure_eq!(snap["cursor"], json!(4), "cursor after retries");
    ensure_eq!(
        snap["data"],
        json!({"a": "1", "b": "2"}),
        "data after retries"
    );
    ensure!(
        s.db_fingerprint(&user.user_id)? == fingerprint,
        "a retry changed the database"
    );
    Ok(())
}

fn delete_retry_returns_the_first_answer(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("retry-delete")?;
    let t = &user.token;
    c.put_ok(t, "k", "v")?;
    let body = json!({"baseVersion": 1, "requestId": "req-del-1"});
    let first = c.delete(t, "k", Some(&body))?;
    ensure_eq!(first.expect_ok(200)?["version"], json!(2), "delete version");
    // The key comes back; retrying the delete must not delete it again.
    c.put(t, "k", &json!({"value": "back", "baseVersion": 2}))?
        .expect_ok(200)?;
    let again = c.delete(t, "k", Some(&body))?;
    ensure!(
        again.status == 200 && again.body == first.body,
        "retry answered {} {}",
        again.status,
        again.text()
    );
    let snap = c.snapshot(t, None)?;
    ensure_eq!(snap["data"], json!({"k": "back"}), "data after retry");
    ensure_eq!(snap["cursor"], json!(3), "cursor after retry");
    Ok(())
}

fn request_ids_are_per_user(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("retry-user-a")?;
    let b = c.register("retry-user-b")?;
    let body = json!({"value": "a's value", "requestId": "same-id"});
    let first = c.put(&a.token, "k", &body)?;
    first.expect_ok(200)?;
    // B using the same id gets its own write, not A's answer.
    c.put_ok(&b.token, "other", "b0")?;
    let r = c.put(
        &b.token,
        "k",
        &json!({"value": "b's value", "requestId": "same-id"}),
    )?;
    let v = r.expect_ok(200)?;
    ensure_eq!(
        v["version"],
        json!(2),
        "B's write applied as B's second change"
    );
    ensure_eq!(
        c.snapshot(&b.token, None)?["data"]["k"],
        json!("b's value"),
        "B's value"
    );
    ensure_eq!(
        c.snapshot(&a.token, None)?["data"],
        json!({"k": "a's value"}),
        "A's data"
    );
    Ok(())
}
