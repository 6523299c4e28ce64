//! CORS: origins from configuration only, preflight answered, never `*`.

use crate::client::{Client, Resp};
use crate::server::Server;
use crate::Test;
use libtest_mimic::Failed;
use serde_json::json;

/// In wrangler.toml's default `ALLOWED_ORIGINS`.
const ALLOWED: &str = "http://localhost:8787";
const ALLOWED_2: &str = "http://127.0.0.1:8787";

pub fn tests() -> Vec<Test> {
    vec![
        Test::main("cors::allowed_origin_is_echoed", allowed_origin_is_echoed),
        Test::main(
            "cors::unknown_origins_get_no_acao",
            unknown_origins_get_no_acao,
        ),
        Test::main("cors::preflight_is_answered", preflight_is_answered),
    ]
}

fn list_contains(list: &str, item: &str) -> bool {
    list.split(',').any(|x| x.trim().eq_ignore_ascii_case(item))
}

fn check_allowed(r: &Resp, origin: &str) -> Result<(), Failed> {
    let acao = r.header("access-control-allow-origin");
    ensure_eq!(
        acao.as_deref(),
        Some(origin),
        "{}: Access-Control-Allow-Origin",
        r.what
    );
    let vary = r.header("vary").unwrap_or_default();
    ensure!(
        list_contains(&vary, "origin"),
        "{}: Vary is {vary:?}, expected it to name Origin",
        r.what
    );
    Ok(())
}

fn allowed_origin_is_echoed(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("cors-ok")?;
    for origin in [ALLOWED, ALLOWED_2] {
        let r = c
            .req("GET", "/api/sync")
            .bearer(&user.token)
            .header("Origin", origin)
            .send()?;
        r.expect_ok(200)?;
        check_allowed(&r, origin)?;
        let r = c
            .req("PUT", "/api/sync/k")
            .bearer(&user.token)
            .header("Origin", origin)
            .json(&json!({"value": origin}))
            .send()?;
        r.expect_ok(200)?;
        check_allowed(&r, origin)?;
    }
    // Errors carry the header too, so a browser client can read them.
    let r = c.req("GET", "/api/sync").header("Origin", ALLOWED).send()?;
    r.expect_error(401, "unauthorized")?;
    check_allowed(&r, ALLOWED)?;
    let r = c
        .req("POST", "/api/auth/login")
        .header("Origin", ALLOWED)
        .json(&json!({"email": user.email, "password": user.password}))
        .send()?;
    r.expect_ok(200)?;
    check_allowed(&r, ALLOWED)?;
    Ok(())
}

fn unknown_origins_get_no_acao(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let user = c.register("cors-evil")?;
    for origin in [
        "https://evil.example",
        "null",
        "http://localhost:8788",
        "https://localhost:8787",
        "http://localhost:8787.evil.example",
        "http://evil.example/http://localhost:8787",
    ] {
        let r = c
            .req("GET", "/api/sync")
            .bearer(&user.token)
            .header("Origin", origin)
            .send()?;
        r.expect_ok(200)?;
        ensure_eq!(
            r.header("access-control-allow-origin"),
            None,
            "GET with Origin {origin}: ACAO"
        );
        ensure_eq!(
            r.header("access-control-allow-credentials"),
            None,
            "GET with Origin {origin}: ACAC"
        );

        let r = c
            .req("OPTIONS", "/api/sync")
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "PUT")
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type",
            )
            .send()?;
        ensure_eq!(
            r.header("access-control-allow-origin"),
            None,
            "preflight from {origin}: ACAO"
        );
    }
    // Never a wildcard, with or without an Origin.
    let r = c.req("GET", "/api/sync").bearer(&user.token).send()?;
    ensure!(
        r.header("access-control-allow-origin").as_deref() != Some("*"),
        "ACAO * without an Origin"
    );
    Ok(())
}

fn preflight_is_answered(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    for (path, method) in [
        ("/api/sync", "PUT"),
        ("/api/sync", "POST"),
        ("/api/sync/some%2Fkey", "PUT"),
        ("/api/sync/some-key", "DELETE"),
        ("/api/auth/login", "POST"),
    ] {
        let r = c
            .req("OPTIONS", path)
            .header("Origin", ALLOWED)
            .header("Access-Control-Request-Method", method)
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type",
            )
            .send()?;
        ensure_eq!(r.status, 204, "preflight {path} {method} ({})", r.excerpt());
        check_allowed(&r, ALLOWED)?;
        let methods = r.header("access-control-allow-methods").unwrap_or_default();
        ensure!(
            list_contains(&methods, method),
            "preflight {path}: Allow-Methods {methods:?} lacks {method}"
        );
        let headers = r.header("access-control-allow-headers").unwrap_or_default();
        for h in ["authorization", "content-type"] {
            ensure!(
                list_contains(&headers, h),
                "preflight {path}: Allow-Headers {headers:?} lacks {h}"
            );
        }
    }
    Ok(())
}
