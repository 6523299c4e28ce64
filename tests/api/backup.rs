//! Export and import: a backup document of the current data, and applying
//! one back as an atomic batch of writes under the usual conflict rules.

use crate::client::{Client, Mismatches, Note};
use crate::server::Server;
use crate::Test;
use libtest_mimic::Failed;
use serde_json::{json, Map, Value};

pub fn tests() -> Vec<Test> {
    vec![
        Test::main("backup::export_then_import", export_then_import),
        Test::main(
            "backup::import_into_a_new_account",
            import_into_a_new_account,
        ),
        Test::main("backup::import_merges_arrays", import_merges_arrays),
        Test::main("backup::import_refusals", import_refusals),
        Test::main("backup::import_many_keys", import_many_keys),
    ]
}

fn export(c: &Client, token: &str) -> Result<Value, Failed> {
    let r = c.req("GET", "/api/export").bearer(token).send()?;
    let v = r.json_with_status(200, "export")?;
    let disposition = r.header("content-disposition").unwrap_or_default();
    ensure!(
        disposition.starts_with("attachment;") && disposition.contains("filename="),
        "Content-Disposition: {disposition:?}"
    );
    ensure_eq!(v["format"], json!("alternassist-sync-export"), "format");
    ensure_eq!(v["formatVersion"], json!(1), "formatVersion");
    ensure!(
        v["exportedAt"].as_str().is_some_and(|t| t.ends_with('Z')),
        "exportedAt in {}",
        r.excerpt()
    );
    Ok(v)
}

fn import(c: &Client, token: &str, doc: &Value) -> Result<Value, Failed> {
    c.req("POST", "/api/import")
        .bearer(token)
        .json(doc)
        .send()?
        .expect_ok(200)
}

fn export_then_import(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("export")?;
    let t = &user.token;
    let a = c.put_ok(t, "estimates", "[{\"id\":1}]")?;
    c.put_ok(t, "notes 🙂", "héllo\u{0}")?;
    c.put_ok(t, "gone", "x")?;
    c.delete(t, "gone", None)?.expect_ok(200)?;

    let doc = export(&c, t)?;
    ensure_eq!(
        doc["data"],
        json!({"estimates": "[{\"id\":1}]", "notes 🙂": "héllo\u{0}"}),
        "exported data (no deleted keys)"
    );
    ensure_eq!(
        doc["versions"]["estimates"],
        a["version"],
        "exported version"
    );

    // Change things, then bring the backup back.
    let snap = c.snapshot(t, None)?;
    let v = snap["versions"]["notes 🙂"].clone();
    c.put(
        t,
        "notes 🙂",
        &json!({"value": "changed", "baseVersion": v}),
    )?
    .expect_ok(200)?;
    c.delete(t, "estimates", Some(&json!({"baseVersion": a["version"]})))?
        .expect_ok(200)?;
    let r = import(&c, t, &doc)?;
    let mut synced: Vec<&str> = r["synced"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    synced.sort_unstable();
    ensure_eq!(synced, vec!["estimates", "notes 🙂"], "synced keys");
    ensure!(r["cursor"].as_u64().is_some(), "cursor in {r}");
    let snap = c.snapshot(t, None)?;
    ensure_eq!(snap["data"], doc["data"], "data after the import");
    // Importing the same backup again changes nothing.
    let before = c.cursor(t)?;
    import(&c, t, &doc)?;
    ensure_eq!(c.cursor(t)?, before, "cursor after a repeated import");
    Ok(())
}

fn import_into_a_new_account(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let old = c.register("export-old")?;
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        c.put_ok(&old.token, k, v)?;
    }
    let doc = export(&c, &old.token)?;
    let new = c.register("export-new")?;
    // Part of an export is an export: "c" taken out of data, not of versions.
    let mut doc = doc;
    if let Some(data) = doc["data"].as_object_mut() {
        data.remove("c");
    }
    let r = import(&c, &new.token, &doc)?;
    ensure_eq!(r["conflicts"], json!([]), "conflicts in an empty account");
    ensure_eq!(
        c.snapshot(&new.token, None)?["data"],
        json!({"a": "1", "b": "2"}),
        "new account's data"
    );
    Ok(())
}

fn import_merges_arrays(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("export-merge")?;
    let t = &user.token;
    let base = r#"[{"id":"a","t":"one"},{"id":"b","t":"two"}]"#;
    let v1 = c.put_ok(t, "board", base)?["version"].clone();
    let doc = export(&c, t)?;
    // After the backup another device adds an element.
    let later = r#"[{"id":"a","t":"one"},{"id":"b","t":"two"},{"id":"c","t":"new"}]"#;
    c.put(t, "board", &json!({"value": later, "baseVersion": v1}))?
        .expect_ok(200)?;
    // The backup's copy has an edit of its own.
    let mut edited = doc.clone();
    edited["data"]["board"] = json!(r#"[{"id":"a","t":"ONE"},{"id":"b","t":"two"}]"#);
    let r = import(&c, t, &edited)?;
    ensure_eq!(
        r["conflicts"][0]["resolution"],
        json!("merged"),
        "resolution in {r}"
    );
    ensure_eq!(
        r["conflicts"][0]["winner"],
        json!("merged"),
        "winner in {r}"
    );
    let value = c.snapshot(t, None)?["data"]["board"].clone();
    let parsed: Value = serde_json::from_str(value.as_str().unwrap_or("null"))?;
    ensure_eq!(
        parsed,
        json!([{"id":"a","t":"ONE"},{"id":"b","t":"two"},{"id":"c","t":"new"}]),
        "merged board"
    );
    Ok(())
}

fn import_refusals(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("import-bad")?;
    let t = &user.token;
    c.put_ok(t, "k", "v")?;
    let good = export(&c, t)?;
    let fingerprint = s.db_fingerprint(&user.user_id)?;
    let with = |field: &str, value: Value| {
        let mut d = good.clone();
        d[field] = value;
        d
    };
    let without = |field: &str| {
        let mut d = good.clone();
        if let Some(o) = d.as_object_mut() {
            o.remove(field);
        }
        d
    };
    let mut bad = Mismatches::default();
    for raw in ["", "{", "not json"] {
        c.req("POST", "/api/import")
            .bearer(t)
            .raw(raw)
            .send()?
            .expect_error(400, "invalid_json")
            .note(&mut bad, format!("body {raw:?}"));
    }
    let mut many = Map::new();
    for i in 0..1001 {
        many.insert(format!("k{i}"), json!("v"));
    }
    let cases = [
        ("an array", json!([good.clone()])),
        ("an empty object", json!({})),
        ("wrong format", with("format", json!("something-else"))),
        ("no format", without("format")),
        ("formatVersion 2", with("formatVersion", json!(2))),
        ("formatVersion as text", with("formatVersion", json!("1"))),
        ("no data", without("data")),
        ("data a list", with("data", json!(["v"]))),
        ("a number value", with("data", json!({"k": 5}))),
        ("a null value", with("data", json!({"k": null}))),
        ("negative version", with("versions", json!({"k": -1}))),
        ("1001 keys", with("data", Value::Object(many))),
    ];
    for (what, doc) in cases {
        c.req("POST", "/api/import")
            .bearer(t)
            .json(&doc)
            .send()?
            .expect_error(400, "invalid_request")
            .note(&mut bad, what);
    }
    // One bad key or value refuses the whole import.
    c.req("POST", "/api/import")
        .bearer(t)
        .json(&with("data", json!({"k": "new", "bad\nkey": "x"})))
        .send()?
        .expect_error(400, "invalid_key")
        .note(&mut bad, "a bad key among good ones");
    let huge = "x".repeat(5 * 1024 * 1024 + 1);
    c.req("POST", "/api/import")
        .bearer(t)
        .json(&with("data", json!({"k": "new", "big": huge})))
        .send()?
        .expect_error(413, "value_too_large")
        .note(&mut bad, "a value over 5 MiB");
    c.req("POST", "/api/import")
        .json(&good)
        .send()?
        .expect_error(401, "unauthorized")
        .note(&mut bad, "no token");
    c.req("GET", "/api/import")
        .bearer(t)
        .send()?
        .expect_error(405, "method_not_allowed")
        .note(&mut bad, "GET import");
    c.req("POST", "/api/export")
        .bearer(t)
        .send()?
        .expect_error(405, "method_not_allowed")
        .note(&mut bad, "POST export");
    c.req("GET", "/api/export")
        .send()?
        .expect_error(401, "unauthorized")
        .note(&mut bad, "export without a token");
    bad.finish()?;
    ensure!(
        s.db_fingerprint(&user.user_id)? == fingerprint,
        "refused imports changed the database"
    );
    Ok(())
}

fn import_many_keys(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("import-many")?;
    let mut data = Map::new();
    for i in 0..1000 {
        data.insert(format!("key-{i:04}"), json!(format!("value {i}")));
    }
    let doc = json!({
        "format": "alternassist-sync-export",
        "formatVersion": 1,
        "data": data,
    });
    let r = import(&c, &user.token, &doc)?;
    ensure_eq!(r["synced"].as_array().map(Vec::len), Some(1000), "synced");
    let snap = c.snapshot(&user.token, None)?;
    ensure_eq!(snap["data"], doc["data"], "all 1000 keys");
    ensure_eq!(snap["cursor"], json!(1000), "one version each");
    Ok(())
}
