//! openapi.yaml against the live Worker: every documented operation is
//! answered as documented (never a routing 404 or a 405), undocumented
//! methods on documented paths answer 405 with `Allow`, undocumented paths
//! answer 404, and `/api/openapi.yaml` serves the file itself.
//! (tests/spec_docs.rs checks the same document against `route()` and the
//! Rust body types without a server; scripts/schemathesis.sh fuzzes it.)

use crate::client::{Client, User};
use crate::server::Server;
use crate::Test;
use libtest_mimic::Failed;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;

pub fn tests() -> Vec<Test> {
    vec![
        Test::main(
            "spec::documented_operations_answer",
            documented_operations_answer,
        ),
        Test::main(
            "spec::undocumented_methods_answer_405",
            undocumented_methods_answer_405,
        ),
        Test::main(
            "spec::undocumented_paths_answer_404",
            undocumented_paths_answer_404,
        ),
        Test::main("spec::openapi_yaml_is_served", openapi_yaml_is_served),
    ]
}

fn spec_text() -> Result<String, Failed> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.yaml");
    std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// Each documented path template with its documented methods (upper case).
fn spec_operations() -> Result<Vec<(String, BTreeSet<String>)>, Failed> {
    let spec: Value = serde_yaml_ng::from_str(&spec_text()?)
        .map_err(|e| format!("openapi.yaml is not valid YAML: {e}"))?;
    let paths = spec["paths"]
        .as_object()
        .ok_or("openapi.yaml has no paths")?;
    Ok(paths
        .iter()
        .map(|(template, item)| {
            let methods = item
                .as_object()
                .map(|m| {
                    m.keys()
                        .map(|k| k.to_uppercase())
                        .filter(|k| METHODS.contains(&k.as_str()))
                        .collect()
                })
                .unwrap_or_default();
            (template.clone(), methods)
        })
        .collect())
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

/// Fills path parameters with things that exist for `user` (see `prepare`).
fn concrete(template: &str, device: &str) -> String {
    template
        .replace("{key}", "spec%2Fk")
        .replace("{version}", "1")
        .replace("{id}", device)
}

/// How one documented operation is called and what it answers when all is
/// well. Every operation in the spec needs a row, and every row an operation.
fn call(
    c: &Client,
    method: &str,
    template: &str,
    user: &User,
    spare: &User,
) -> Result<Option<u16>, Failed> {
    let path = concrete(template, &spare.device_id);
    let req = c.req(method, &path);
    let (req, status) = match (method, template) {
        ("POST", "/api/auth/register") => (
            req.json(
                &json!({"email": crate::client::unique_email("spec"), "password": "spec password"}),
            ),
            201,
        ),
        ("POST", "/api/auth/login") => (
            req.json(&json!({"email": user.email, "password": user.password})),
            200,
        ),
        // Signs out `spare`'s device: its own token.
        ("POST", "/api/auth/logout") => (c.req(method, &path).bearer(&spare.token), 200),
        // Accounts of their own: these sign devices out.
        ("POST", "/api/auth/logout-all") => {
            let other = c.register("spec-everywhere")?;
            (req.bearer(&other.token), 200)
        }
        ("POST", "/api/auth/password") => {
            let other = c.register("spec-password")?;
            let body =
                json!({"currentPassword": other.password, "newPassword": "a new spec password"});
            (req.bearer(&other.token).json(&body), 200)
        }
        ("GET", "/api/account") => (req.bearer(&user.token), 200),
        ("GET", "/api/sync") => (req.bearer(&user.token), 200),
        ("POST", "/api/sync") => (
            req.bearer(&user.token)
                .json(&json!({"data": {"spec-b": "1"}})),
            200,
        ),
        ("GET", "/api/sync/{key}") => (req.bearer(&user.token), 200),
        ("PUT", "/api/sync/{key}") => (req.bearer(&user.token).json(&json!({"value": "v2"})), 200),
        // The spec key holds plain text, no records: an empty history, and
        // a restore refused as documented (records::* covers the rest).
        ("GET", "/api/sync/{key}/records/{id}/history") => (req.bearer(&user.token), 200),
        ("POST", "/api/sync/{key}/records/{id}/restore") => {
            (req.bearer(&user.token).json(&json!({"version": 1})), 409)
        }
        ("DELETE", "/api/sync/{key}") => (req.bearer(&user.token), 200),
        ("GET", "/api/sync/{key}/history") => (req.bearer(&user.token), 200),
        ("GET", "/api/sync/{key}/history/{version}") => (req.bearer(&user.token), 200),
        ("POST", "/api/sync/{key}/restore") => {
            (req.bearer(&user.token).json(&json!({"version": 1})), 200)
        }
        ("GET", "/api/export") => (req.bearer(&user.token), 200),
        ("POST", "/api/import") => (
            req.bearer(&user.token).json(&json!({
                "format": "alternassist-sync-export", "formatVersion": 1,
                "data": {"spec-imported": "x"}
            })),
            200,
        ),
        ("GET", "/api/devices") => (req.bearer(&user.token), 200),
        // Revokes a second device of `user` (logged in as `spare`'s twin).
        ("DELETE", "/api/devices/{id}") => (req.bearer(&user.token), 200),
        // Not a WebSocket upgrade: the handshake's plain answer.
        ("GET", "/api/ws") => (req.bearer(&user.token), 426),
        ("GET", "/api/openapi.yaml") => (req, 200),
        _ => return Ok(None),
    };
    let r = req.send()?;
    if template == "/api/openapi.yaml" || template == "/api/export" {
        // Not a `{success, ...}` answer: `openapi_yaml_is_served` and the
        // backup tests check their bodies.
        ensure_eq!(r.status, status, "{method} {template}: {}", r.excerpt());
        return Ok(Some(r.status));
    }
    if status >= 400 {
        let code = if status == 409 {
            "not_records"
        } else {
            "upgrade_required"
        };
        r.expect_error(status, code)?;
    } else {
        r.expect_ok(status)?;
    }
    Ok(Some(r.status))
}

fn documented_operations_answer(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("spec-ops")?;
    // Version 1 of the key the history, version and restore rows read.
    c.req("PUT", "/api/sync/spec%2Fk")
        .bearer(&user.token)
        .json(&json!({"value": "v1"}))
        .send()?
        .expect_ok(200)?;
    // A second device of the same user, for logout and revocation. Revoking
    // it by id and logging it out would race, so logout gets a third.
    let second = c.login(&user.email, &user.password)?;
    let mut done = Vec::new();
    for (template, methods) in spec_operations()? {
        for m in &methods {
            let spare = if m == "POST" && template == "/api/auth/logout" {
                c.login(&user.email, &user.password)?
            } else {
                second.clone()
            };
            match call(&c, m, &template, &user, &spare)? {
                Some(_) => done.push(format!("{m} {template}")),
                None => {
                    return Err(format!(
                        "{m} {template} is in openapi.yaml but this test does not know how to call it: add a row to `call`"
                    )
                    .into())
                }
            }
        }
    }
    ensure_eq!(done.len(), 22, "operations called: {done:?}");
    Ok(())
}

fn undocumented_methods_answer_405(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("spec-405")?;
    for (template, methods) in spec_operations()? {
        let path = concrete(&template, &user.device_id);
        let mut allowed: Vec<&str> = methods.iter().map(String::as_str).collect();
        allowed.sort();
        for m in METHODS.iter().filter(|m| !methods.contains(**m)) {
            let r = c.req(m, &path).bearer(&user.token).send()?;
            r.expect_error(405, "method_not_allowed")?;
            // RFC 9110: a 405 lists the methods the resource does support.
            let allow = r
                .header("allow")
                .ok_or_else(|| format!("{m} {template}: 405 without an Allow header"))?;
            let mut listed: Vec<String> = allow
                .split(',')
                .map(|x| x.trim().to_uppercase())
                .filter(|x| !x.is_empty() && x != "OPTIONS" && x != "HEAD")
                .collect();
            listed.sort();
            ensure_eq!(listed, allowed, "{m} {template}: Allow header {allow:?}");
        }
    }
    Ok(())
}

fn undocumented_paths_answer_404(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("spec-404")?;
    for path in [
        "/api",
        "/api/auth",
        "/api/nope",
        "/api/sync/k/nope",
        "/api/sync/k/history/1/more",
        "/api/devices/x/y",
        "/api/openapi.json",
    ] {
        for m in ["GET", "POST"] {
            c.req(m, path)
                .bearer(&user.token)
                .send()?
                .expect_error(404, "not_found")?;
        }
    }
    Ok(())
}

fn openapi_yaml_is_served(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let r = c.req("GET", "/api/openapi.yaml").send()?;
    ensure_eq!(r.status, 200, "GET /api/openapi.yaml: {}", r.excerpt());
    let ct = r.header("content-type").unwrap_or_default();
    ensure!(
        ct.starts_with("application/yaml"),
        "GET /api/openapi.yaml: Content-Type {ct:?}"
    );
    ensure!(
        r.text() == spec_text()?,
        "GET /api/openapi.yaml is not openapi.yaml as it is now: rebuild the Worker (scripts/build.sh)"
    );
    Ok(())
}
