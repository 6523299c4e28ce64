//! openapi.yaml and asyncapi.yaml against the code they describe, so the
//! documents cannot drift from it: every route `route()` knows has a spec
//! path and every spec path routes; every WebSocket frame type and field of
//! `ClientMessage`/`ServerMessage` is in the AsyncAPI document with the same
//! required, optional and nullable fields (and nothing more); the REST
//! request and response bodies match their Rust types the same way; the
//! error codes and the close codes the server sends are the documented ones.
//!
//! Rust types carry no reflection, so fields are found by probing serde: a
//! sample built from the document's schema must parse; dropping a field, or
//! setting it to `null` or to a value of the wrong type, must fail exactly
//! when the document says the field is required, not nullable, or exists.

use alternassist_sync::account::{AccountResponse, ChangePasswordRequest, SignedOutResponse};
use alternassist_sync::error::{Quota, SyncError};
use alternassist_sync::protocol::{
    AuthRequest, AuthResponse, BatchRequest, BatchResponse, Change, ClientMessage, Conflict,
    DeviceInfo, DevicesResponse, ExportDocument, HistoryEntry, HistoryResponse,
    HistoryValueResponse, OkResponse, PresenceDevice, PutRequest, RecordHistoryResponse,
    RestoreRequest, ServerMessage, SnapshotResponse, WriteOptions, WriteResponse,
};
use alternassist_sync::route::{route, Route};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn load(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"))
}

struct Docs {
    openapi: Value,
    asyncapi: Value,
}

impl Docs {
    fn new() -> Self {
        Docs {
            openapi: load("openapi.yaml"),
            asyncapi: load("asyncapi.yaml"),
        }
    }

    /// Follows `$ref`s (`#/...` within `base`, `openapi.yaml#/...` across)
    /// and `with_base` wrappers until `v` is a plain schema; returns the
    /// document it is in and the schema.
    fn resolve<'a>(&'a self, base: &'a Value, v: &'a Value) -> (&'a Value, &'a Value) {
        let (mut base, mut v) = (base, v);
        loop {
            if let Some(inner) = v.get("__schema") {
                base = if v["__base"] == "openapi" {
                    &self.openapi
                } else {
                    &self.asyncapi
                };
                v = inner;
                continue;
            }
            let Some(r) = v.get("$ref").and_then(Value::as_str) else {
                break;
            };
            let (doc, pointer) = r.split_once('#').unwrap_or_else(|| panic!("bad $ref {r}"));
            base = match doc {
                "" => base,
                "openapi.yaml" => &self.openapi,
                other => panic!("$ref to unknown document {other}"),
            };
            v = base
                .pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {r} points nowhere"));
        }
        (base, v)
    }

    /// The object schema's properties and required names, merging `allOf`.
    fn object(&self, base: &Value, schema: &Value) -> (Map<String, Value>, BTreeSet<String>) {
        let (base, schema) = self.resolve(base, schema);
        let mut props = Map::new();
        let mut required = BTreeSet::new();
        for part in schema["allOf"].as_array().into_iter().flatten() {
            let (p, r) = self.object(base, part);
            props.extend(p);
            required.extend(r);
        }
        if let Some(p) = schema["properties"].as_object() {
            for (k, v) in p {
                props.insert(k.clone(), with_base(base, v));
            }
        }
        for r in schema["required"].as_array().into_iter().flatten() {
            required.insert(r.as_str().unwrap_or_default().to_string());
        }
        (props, required)
    }

    /// Whether the schema admits `null`.
    fn nullable(&self, schema: &Value) -> bool {
        let (base, s) = self.resolve(&self.asyncapi, schema);
        let types = match &s["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        types.contains(&"null")
            || ["anyOf", "oneOf"].iter().any(|k| {
                s[*k]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|alt| self.nullable(&with_base(base, alt)))
            })
    }

    /// A value the schema admits (the first alternative, the smallest number).
    fn sample(&self, schema: &Value) -> Value {
        let (base, s) = self.resolve(&self.asyncapi, schema);
        if let Some(c) = s.get("const") {
            return c.clone();
        }
        if let Some(e) = s["enum"].as_array() {
            return e[0].clone();
        }
        for k in ["anyOf", "oneOf"] {
            if let Some(alts) = s[k].as_array() {
                let alt = alts
                    .iter()
                    .find(|a| !self.nullable(&with_base(base, a)))
                    .unwrap_or(&alts[0]);
                return self.sample(&with_base(base, alt));
            }
        }
        let ty = match &s["type"] {
            Value::String(t) => t.as_str(),
            Value::Array(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("null"),
            _ if s.get("allOf").is_some() || s.get("properties").is_some() => "object",
            _ => "string",
        };
        match ty {
            "integer" | "number" => json!(s["minimum"].as_u64().unwrap_or(0).max(1)),
            "boolean" => json!(true),
            "null" => Value::Null,
            "array" => match s["prefixItems"].as_array() {
                // A tuple: one sample per position.
                Some(items) => Value::Array(
                    items
                        .iter()
                        .map(|i| self.sample(&with_base(base, i)))
                        .collect(),
                ),
                None => json!([self.sample(&with_base(base, &s["items"]))]),
            },
            "object" => {
                let (props, _) = self.object(base, s);
                let mut out: Map<String, Value> = props
                    .iter()
                    .map(|(k, v)| (k.clone(), self.sample(v)))
                    .collect();
                if let Some(ap) = s.get("additionalProperties").filter(|v| v.is_object()) {
                    out.insert("k".into(), self.sample(&with_base(base, ap)));
                }
                Value::Object(out)
            }
            _ => json!("s@example.com"),
        }
    }
}

/// A schema together with the document its `#/` refs point into, so nested
/// schemas can be passed around as one value.
fn with_base(base: &Value, schema: &Value) -> Value {
    json!({ "__base": base_name(base), "__schema": schema })
}

fn base_name(base: &Value) -> &'static str {
    if base.get("openapi").is_some() {
        "openapi"
    } else {
        "asyncapi"
    }
}

thread_local! {
    static DOCS: &'static Docs = Box::leak(Box::new(Docs::new()));
}

fn docs() -> &'static Docs {
    DOCS.with(|d| *d)
}

/// Serde's view of a request type's fields, probed with samples of the schema.
fn check_request<T: DeserializeOwned>(what: &str, schema: &Value, skip: &[&str]) {
    let d = docs();
    let (props, required) = d.object(&d.asyncapi, schema);
    let sample = d.sample(schema);
    let parse = |v: &Value| serde_json::from_value::<T>(v.clone()).is_ok();
    assert!(
        parse(&sample),
        "{what}: the document's sample {sample} does not parse"
    );
    for (name, prop) in &props {
        if name == "type" || skip.contains(&name.as_str()) {
            continue;
        }
        let mut without = sample.clone();
        without.as_object_mut().unwrap().remove(name);
        assert_eq!(
            !parse(&without),
            required.contains(name),
            "{what}.{name}: the document says required = {}, the server disagrees",
            required.contains(name)
        );
        let mut null = sample.clone();
        null[name] = Value::Null;
        assert_eq!(
            parse(&null),
            d.nullable(prop),
            "{what}.{name}: the document says nullable = {}, the server disagrees",
            d.nullable(prop)
        );
        // A field the server does not have ignores any value.
        let mut wrong = sample.clone();
        wrong[name] = json!({"~": [[]]});
        assert!(
            !parse(&wrong),
            "{what}.{name}: the document has this field, the server ignores it"
        );
    }
}

/// Field names of a derived `Debug` of a struct(-like) value, camelCased.
fn debug_fields(debug: &str) -> BTreeSet<String> {
    let Some(open) = debug.find('{') else {
        return BTreeSet::new();
    };
    let inner = debug[open + 1..].trim_end().trim_end_matches('}');
    inner
        .split(", ")
        .filter_map(|f| f.split_once(": ").map(|(n, _)| camel(n.trim())))
        .collect()
}

fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in snake.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A response type: the document's sample parses, and serialising it back
/// gives exactly the documented fields, all of them always present.
/// `nullable_ok` names fields Rust keeps optional that the server always fills.
fn check_response<T: Serialize + DeserializeOwned>(
    what: &str,
    schema: &Value,
    nullable_ok: &[&str],
) {
    check_response_with_optional::<T>(what, schema, nullable_ok, &[]);
}

/// `check_response` where the fields `optional` may be left out: they are
/// documented, not required, and the server sends them only when they say
/// something.
fn check_response_with_optional<T: Serialize + DeserializeOwned>(
    what: &str,
    schema: &Value,
    nullable_ok: &[&str],
    optional: &[&str],
) {
    let d = docs();
    let (props, required) = d.object(&d.asyncapi, schema);
    let sample = d.sample(schema);
    let typed: T = serde_json::from_value(sample.clone())
        .unwrap_or_else(|e| panic!("{what}: the document's sample {sample} does not parse: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    let sent: BTreeSet<String> = back.as_object().unwrap().keys().cloned().collect();
    let documented: BTreeSet<String> = props.keys().cloned().collect();
    let optional: BTreeSet<String> = optional.iter().map(|s| s.to_string()).collect();
    assert!(
        sent.is_subset(&documented),
        "{what}: fields sent {sent:?} vs documented {documented:?}"
    );
    assert!(
        documented.difference(&sent).all(|f| optional.contains(f)),
        "{what}: fields sent {sent:?} vs documented {documented:?}"
    );
    assert_eq!(
        required,
        documented
            .difference(&optional)
            .cloned()
            .collect::<BTreeSet<_>>(),
        "{what}: the server always sends every field, so all are required"
    );
    // (An optional field that is null is the same as one left out.)
    for name in documented.difference(&optional) {
        let mut null = sample.clone();
        null[name] = Value::Null;
        let rust_nullable = serde_json::from_value::<T>(null).is_ok();
        if rust_nullable && !nullable_ok.contains(&name.as_str()) {
            assert!(
                d.nullable(&props[name]),
                "{what}.{name}: the server may send null, the document does not say so"
            );
        }
    }
}

// ------------------------------------------------------------ REST routes

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

/// Every documented path with sample parameters, and its documented methods.
fn spec_operations() -> Vec<(String, String, BTreeSet<String>)> {
    let d = docs();
    let paths = d.openapi["paths"].as_object().expect("openapi.yaml: paths");
    paths
        .iter()
        .map(|(template, item)| {
            let concrete = template
                .replace("{key}", "k%2F1%20%F0%9F%99%82")
                .replace("{version}", "3")
                .replace("{id}", "d-1");
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|m| METHODS.contains(&m.to_uppercase().as_str()))
                .map(|m| m.to_uppercase())
                .collect();
            (template.clone(), concrete, methods)
        })
        .collect()
}

/// Which spec path and method a route is. Exhaustive on purpose: a new
/// route does not compile until it is named here (and so in the spec).
fn route_template(r: &Route) -> (&'static str, &'static str) {
    match r {
        Route::Register => ("POST", "/api/auth/register"),
        Route::Login => ("POST", "/api/auth/login"),
        Route::Logout => ("POST", "/api/auth/logout"),
        Route::LogoutAll => ("POST", "/api/auth/logout-all"),
        Route::ChangePassword => ("POST", "/api/auth/password"),
        Route::Account => ("GET", "/api/account"),
        Route::Snapshot { .. } => ("GET", "/api/sync"),
        Route::Batch => ("POST", "/api/sync"),
        Route::Put(_) => ("PUT", "/api/sync/{key}"),
        Route::Delete(_) => ("DELETE", "/api/sync/{key}"),
        Route::History { .. } => ("GET", "/api/sync/{key}/history"),
        Route::HistoryVersion { .. } => ("GET", "/api/sync/{key}/history/{version}"),
        Route::Restore(_) => ("POST", "/api/sync/{key}/restore"),
        Route::RecordHistory { .. } => ("GET", "/api/sync/{key}/records/{id}/history"),
        Route::RecordRestore { .. } => ("POST", "/api/sync/{key}/records/{id}/restore"),
        Route::Get(_) => ("GET", "/api/sync/{key}"),
        Route::Export => ("GET", "/api/export"),
        Route::Import => ("POST", "/api/import"),
        Route::Devices => ("GET", "/api/devices"),
        Route::RevokeDevice(_) => ("DELETE", "/api/devices/{id}"),
        Route::Socket => ("GET", "/api/ws"),
        Route::OpenApi => ("GET", "/api/openapi.yaml"),
    }
}
/// How many arms `route_template` has.
const ROUTES: usize = 22;

#[test]
fn every_spec_operation_routes_and_every_route_is_in_the_spec() {
    let mut seen = BTreeSet::new();
    for (template, path, methods) in spec_operations() {
        for m in METHODS {
            let got = route(m, &path, None);
            if methods.contains(m) {
                let r = got
                    .unwrap_or_else(|e| panic!("{m} {template} is documented, route() says {e:?}"));
                assert_eq!(route_template(&r), (m, template.as_str()), "{m} {template}");
                seen.insert((m, template.clone()));
            } else if m != "OPTIONS" {
                // OPTIONS is the CORS preflight, answered before routing.
                assert_eq!(
                    got,
                    Err(SyncError::MethodNotAllowed),
                    "{m} {template} is not documented: expected 405"
                );
            }
        }
    }
    assert_eq!(
        seen.len(),
        ROUTES,
        "documented operations vs routes: {seen:?}"
    );
    assert_eq!(
        route("GET", "/api/not-documented", None),
        Err(SyncError::NotFound)
    );
}

#[test]
fn every_documented_operation_has_its_errors_and_security() {
    let d = docs();
    for (template, _, methods) in spec_operations() {
        for m in methods {
            let op = &d.openapi["paths"][&template][m.to_lowercase()];
            let responses = op["responses"].as_object().unwrap();
            let public = op.get("security") == Some(&json!([]));
            if !public {
                assert!(responses.contains_key("401"), "{m} {template}: 401");
            }
            let rate_limited = responses.contains_key("429");
            let writes = m != "GET"
                && !template.starts_with("/api/auth/logout")
                && !template.starts_with("/api/devices");
            assert_eq!(
                rate_limited, writes,
                "{m} {template}: 429 iff it writes or signs in"
            );
            if let Some(r) = responses.get("429") {
                let (_, r) = d.resolve(&d.openapi, r);
                assert!(
                    r["headers"].get("Retry-After").is_some(),
                    "{m} {template}: Retry-After"
                );
            }
            for (status, r) in responses {
                let (_, r) = d.resolve(&d.openapi, r);
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error",
                        "{m} {template} {status}: the error body"
                    );
                }
            }
        }
    }
}

/// Every `SyncError`; the match makes a new variant fail to compile here.
fn every_error() -> Vec<SyncError> {
    let all = vec![
        SyncError::InvalidJson(String::new()),
        SyncError::InvalidRequest(String::new()),
        SyncError::InvalidKey(String::new()),
        SyncError::InvalidEmail,
        SyncError::WeakPassword { min: 8 },
        SyncError::Unauthorized,
        SyncError::InvalidCredentials,
        SyncError::NotFound,
        SyncError::Missing(String::new()),
        SyncError::MethodNotAllowed,
        SyncError::EmailTaken,
        SyncError::NotRecords { key: String::new() },
        SyncError::RegistrationClosed { allowlist: true },
        SyncError::WrongPassword,
        SyncError::QuotaExceeded {
            quota: Quota::Bytes,
            limit: 1,
        },
        SyncError::QuotaExceeded {
            quota: Quota::WritesPerDay {
                retry_after_secs: 1,
            },
            limit: 1,
        },
        SyncError::PayloadTooLarge { limit: 1 },
        SyncError::ValueTooLarge {
            key: String::new(),
            limit: 1,
        },
        SyncError::FrameTooLarge { limit: 1 },
        SyncError::BinaryFrame,
        SyncError::UpgradeRequired,
        SyncError::OriginNotAllowed,
        SyncError::RateLimited {
            retry_after_secs: 1,
        },
        SyncError::Unavailable,
        SyncError::Internal(String::new()),
    ];
    for e in &all {
        match e {
            SyncError::InvalidJson(_)
            | SyncError::InvalidRequest(_)
            | SyncError::InvalidKey(_)
            | SyncError::InvalidEmail
            | SyncError::WeakPassword { .. }
            | SyncError::Unauthorized
            | SyncError::InvalidCredentials
            | SyncError::NotFound
            | SyncError::Missing(_)
            | SyncError::MethodNotAllowed
            | SyncError::EmailTaken
            | SyncError::NotRecords { .. }
            | SyncError::RegistrationClosed { .. }
            | SyncError::WrongPassword
            | SyncError::QuotaExceeded { .. }
            | SyncError::PayloadTooLarge { .. }
            | SyncError::ValueTooLarge { .. }
            | SyncError::FrameTooLarge { .. }
            | SyncError::BinaryFrame
            | SyncError::UpgradeRequired
            | SyncError::OriginNotAllowed
            | SyncError::RateLimited { .. }
            | SyncError::Unavailable
            | SyncError::Internal(_) => {}
        }
    }
    all
}

/// Errors only a WebSocket frame can cause.
const WS_ONLY: [&str; 2] = ["frame_too_large", "binary_frame"];

fn enum_set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .expect("an enum")
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn error_codes_match() {
    let d = docs();
    let all: BTreeSet<String> = every_error().iter().map(|e| e.code().to_string()).collect();
    let rest: BTreeSet<String> = all
        .iter()
        .filter(|c| !WS_ONLY.contains(&c.as_str()))
        .cloned()
        .collect();
    let documented = enum_set(
        &d.openapi["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]
            ["enum"],
    );
    assert_eq!(
        documented, rest,
        "openapi.yaml Error.code vs SyncError::code()"
    );
    let ws = enum_set(
        &d.asyncapi["components"]["messages"]["error"]["payload"]["properties"]["code"]["enum"],
    );
    assert!(
        ws.is_subset(&all),
        "asyncapi.yaml error codes {ws:?} not all SyncError codes"
    );
    for c in WS_ONLY {
        assert!(ws.contains(c), "asyncapi.yaml error frame lacks {c}");
    }
    // Every REST error status is documented on some operation.
    let statuses: BTreeSet<String> = d.openapi["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op.get("responses").and_then(Value::as_object))
        .flat_map(|r| r.keys().cloned())
        .collect();
    // 405 answers methods that are not operations; the spec's description says so.
    for e in every_error() {
        if !WS_ONLY.contains(&e.code()) && e.code() != "method_not_allowed" {
            assert!(
                statuses.contains(&e.status().to_string()),
                "{} ({}) undocumented",
                e.code(),
                e.status()
            );
        }
    }
}

// ------------------------------------------------------------ REST bodies

fn schema(name: &str) -> Value {
    let d = docs();
    with_base(
        &d.openapi,
        &json!({ "$ref": format!("#/components/schemas/{name}") }),
    )
}

fn response_schema(path: &str, method: &str, status: &str) -> Value {
    let d = docs();
    let r = &d.openapi["paths"][path][method]["responses"][status];
    let (base, r) = d.resolve(&d.openapi, r);
    let s = &r["content"]["application/json"]["schema"];
    assert!(!s.is_null(), "{method} {path} {status}: no JSON schema");
    with_base(base, s)
}

fn request_schema(path: &str, method: &str) -> Value {
    let d = docs();
    let s =
        &d.openapi["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"];
    assert!(!s.is_null(), "{method} {path}: no request schema");
    with_base(&d.openapi, s)
}

#[test]
fn rest_bodies_match_the_rust_types() {
    check_request::<AuthRequest>(
        "register",
        &request_schema("/api/auth/register", "post"),
        &[],
    );
    check_request::<AuthRequest>("login", &request_schema("/api/auth/login", "post"), &[]);
    check_request::<PutRequest>("put", &request_schema("/api/sync/{key}", "put"), &[]);
    check_request::<WriteOptions>("delete", &request_schema("/api/sync/{key}", "delete"), &[]);
    check_request::<BatchRequest>("batch", &request_schema("/api/sync", "post"), &[]);
    check_request::<RestoreRequest>(
        "restore",
        &request_schema("/api/sync/{key}/restore", "post"),
        &[],
    );
    check_request::<ExportDocument>("import", &request_schema("/api/import", "post"), &[]);
    check_request::<ChangePasswordRequest>(
        "change password",
        &request_schema("/api/auth/password", "post"),
        &[],
    );
    for (path, what) in [
        ("/api/auth/password", "change password 200"),
        ("/api/auth/logout-all", "logout everywhere 200"),
    ] {
        check_response::<SignedOutResponse>(what, &response_schema(path, "post", "200"), &[]);
    }
    check_response::<AccountResponse>(
        "account",
        &response_schema("/api/account", "get", "200"),
        &[],
    );

    check_response::<AuthResponse>(
        "register 201",
        &response_schema("/api/auth/register", "post", "201"),
        &[],
    );
    check_response::<AuthResponse>(
        "login 200",
        &response_schema("/api/auth/login", "post", "200"),
        &[],
    );
    check_response::<OkResponse>(
        "logout 200",
        &response_schema("/api/auth/logout", "post", "200"),
        &[],
    );
    check_response::<SnapshotResponse>(
        "snapshot",
        &response_schema("/api/sync", "get", "200"),
        &[],
    );
    check_response::<BatchResponse>("batch", &response_schema("/api/sync", "post", "200"), &[]);
    check_response::<WriteResponse>(
        "put",
        &response_schema("/api/sync/{key}", "put", "200"),
        &[],
    );
    check_response::<WriteResponse>(
        "delete",
        &response_schema("/api/sync/{key}", "delete", "200"),
        &[],
    );
    check_response::<WriteResponse>(
        "restore",
        &response_schema("/api/sync/{key}/restore", "post", "200"),
        &[],
    );
    check_response::<BatchResponse>(
        "import",
        &response_schema("/api/import", "post", "200"),
        &[],
    );
    check_response::<HistoryResponse>(
        "history",
        &response_schema("/api/sync/{key}/history", "get", "200"),
        &[],
    );
    check_response::<HistoryEntry>("history entry", &schema("HistoryEntry"), &[]);
    check_response::<HistoryValueResponse>(
        "history version",
        &response_schema("/api/sync/{key}/history/{version}", "get", "200"),
        &[],
    );
    // Optional in the type because an import may leave it out; an export always has it.
    check_response::<ExportDocument>(
        "export",
        &response_schema("/api/export", "get", "200"),
        &["exportedAt"],
    );
    check_response::<DevicesResponse>(
        "devices",
        &response_schema("/api/devices", "get", "200"),
        &[],
    );
    check_response::<DeviceInfo>("device", &schema("Device"), &[]);
    check_response::<OkResponse>(
        "revoke",
        &response_schema("/api/devices/{id}", "delete", "200"),
        &[],
    );
    check_response_with_optional::<Conflict>("conflict", &schema("Conflict"), &[], &["records"]);
    check_response::<HistoryValueResponse>(
        "get one key",
        &response_schema("/api/sync/{key}", "get", "200"),
        &[],
    );
    check_response::<RecordHistoryResponse>(
        "record history",
        &response_schema("/api/sync/{key}/records/{id}/history", "get", "200"),
        &[],
    );
    check_response::<WriteResponse>(
        "record restore",
        &response_schema("/api/sync/{key}/records/{id}/restore", "post", "200"),
        &[],
    );

    // The error body is serialise-only: compare its fields directly.
    let e = serde_json::to_value(SyncError::NotFound.body()).unwrap();
    let d = docs();
    let (props, required) = d.object(&d.openapi, &schema("Error"));
    let keys: BTreeSet<String> = e.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        props.keys().cloned().collect::<BTreeSet<_>>(),
        "error body"
    );
    assert_eq!(keys, required, "error body: all required");
    let (inner, inner_required) = d.object(&d.openapi, &props["error"]);
    let inner_keys: BTreeSet<String> = e["error"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        inner_keys,
        inner.keys().cloned().collect::<BTreeSet<_>>(),
        "error.error"
    );
    assert_eq!(inner_keys, inner_required, "error.error: all required");
}

#[test]
fn conflict_enums_match() {
    let d = docs();
    let c = &d.openapi["components"]["schemas"]["Conflict"]["properties"];
    let wire = |v: Value| serde_json::from_value::<Conflict>(v).is_ok();
    let mut sample = d.sample(&schema("Conflict"));
    for (field, values) in [
        ("resolution", &c["resolution"]["enum"]),
        ("winner", &c["winner"]["enum"]),
    ] {
        for v in values.as_array().unwrap() {
            sample[field] = v.clone();
            assert!(
                wire(sample.clone()),
                "Conflict.{field} = {v} is documented, the server does not know it"
            );
        }
        sample[field] = json!("not-documented");
        assert!(!wire(sample.clone()));
        sample[field] = values[0].clone();
    }
}

// ------------------------------------------------------------ WebSocket

fn ws_messages(operation: &str) -> BTreeMap<String, Value> {
    let d = docs();
    d.asyncapi["operations"][operation]["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("asyncapi.yaml: operations.{operation}.messages"))
        .iter()
        .map(|m| {
            let (base, msg) = d.resolve(&d.asyncapi, m);
            let payload = with_base(base, &msg["payload"]);
            let ty = d.sample(&payload)["type"].as_str().unwrap().to_string();
            (ty, payload)
        })
        .collect()
}

/// `ClientMessage`'s variants by wire name; exhaustive, so a new variant
/// does not compile until it is listed.
fn client_type(m: &ClientMessage) -> &'static str {
    match m {
        ClientMessage::Hello { .. } => "hello",
        ClientMessage::Put { .. } => "put",
        ClientMessage::Delete { .. } => "delete",
        ClientMessage::Ping => "ping",
    }
}
/// Frames parsed as a `ClientMessage`; `patch` is parsed on its own
/// (`parse_frame`), checked below.
const CLIENT_TYPES: [&str; 4] = ["hello", "put", "delete", "ping"];

fn server_type(m: &ServerMessage) -> &'static str {
    match m {
        ServerMessage::Changes { .. } => "changes",
        ServerMessage::Ack { .. } => "ack",
        ServerMessage::Change(_) => "change",
        ServerMessage::Presence { .. } => "presence",
        ServerMessage::Error { .. } => "error",
        ServerMessage::Pong => "pong",
    }
}
const SERVER_TYPES: [&str; 6] = ["changes", "ack", "change", "presence", "error", "pong"];

#[test]
fn client_frames_match_client_message() {
    let d = docs();
    let documented = ws_messages("send");
    let names: BTreeSet<&str> = documented.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        CLIENT_TYPES.into_iter().chain(["patch"]).collect(),
        "client frame types"
    );
    for (ty, payload) in &documented {
        let sample = d.sample(payload);
        if ty == "patch" {
            let parsed = alternassist_sync::protocol::parse_frame(&sample.to_string());
            assert!(
                parsed.is_ok(),
                "patch: the document's sample {sample} is refused: {parsed:?}"
            );
            let (props, required) = d.object(&d.asyncapi, payload);
            let fields: BTreeSet<String> = props.keys().cloned().collect();
            assert_eq!(
                fields,
                alternassist_sync::protocol::PATCH_FRAME_FIELDS
                    .iter()
                    .map(|f| f.to_string())
                    .collect(),
                "patch: fields"
            );
            for f in &required {
                let mut without = sample.clone();
                without.as_object_mut().unwrap().remove(f);
                assert!(
                    alternassist_sync::protocol::parse_frame(&without.to_string()).is_err(),
                    "patch: {f} is documented as required, the server takes a frame without it"
                );
            }
            continue;
        }
        let msg: ClientMessage = serde_json::from_value(sample.clone())
            .unwrap_or_else(|e| panic!("{ty}: the document's sample {sample} does not parse: {e}"));
        assert_eq!(client_type(&msg), ty);
        let (props, _) = d.object(&d.asyncapi, payload);
        let documented_fields: BTreeSet<String> =
            props.keys().filter(|k| *k != "type").cloned().collect();
        assert_eq!(
            debug_fields(&format!("{msg:?}")),
            documented_fields,
            "{ty}: fields"
        );
        check_request::<ClientMessage>(ty, payload, &[]);
    }
}

#[test]
fn server_frames_match_server_message() {
    let d = docs();
    let documented = ws_messages("receive");
    let names: BTreeSet<&str> = documented.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        SERVER_TYPES.into_iter().collect(),
        "server frame types"
    );
    for (ty, payload) in &documented {
        // A change is sent whole, or with a patch instead of the value.
        let optional: &[&str] = if ty == "change" {
            &["value", "baseVersion", "patch"]
        } else {
            &["patches"]
        };
        check_response_with_optional::<ServerMessage>(ty, payload, &[], optional);
        let msg: ServerMessage = serde_json::from_value(d.sample(payload)).unwrap();
        assert_eq!(server_type(&msg), ty);
    }
    let schemas = &d.asyncapi["components"]["schemas"];
    // A change is sent whole (with `value`) or, to a socket that takes
    // patches, with `baseVersion` and `patch` instead.
    check_response_with_optional::<Change>(
        "Change",
        &with_base(&d.asyncapi, &schemas["Change"]),
        &[],
        &["value", "baseVersion", "patch"],
    );
    let patched = Change {
        key: "k".into(),
        value: None,
        version: 2,
        deleted: false,
        updated_at: 1,
        device_id: "d".into(),
        patch: Some(std::rc::Rc::new((
            1,
            alternassist_sync::records::Patch {
                upserts: vec![("1".into(), r#"{"id":1}"#.into())],
                removed: vec!["2".into()],
                after: vec![("1".into(), None)],
            },
        ))),
        list: None,
    };
    let frame: Value = serde_json::from_str(&patched.patch_json()).unwrap();
    let (props, required) = d.object(&d.asyncapi, &with_base(&d.asyncapi, &schemas["Change"]));
    let sent: BTreeSet<String> = frame
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "type")
        .cloned()
        .collect();
    let doc_fields: BTreeSet<String> = props.keys().cloned().collect();
    assert!(
        sent.is_subset(&doc_fields) && required.is_subset(&sent),
        "patch change {sent:?} vs {doc_fields:?}"
    );
    assert!(!sent.contains("value"), "a patch change has no value");
    let (patch_props, _) = d.object(
        &d.asyncapi,
        &with_base(&d.asyncapi, &schemas["RecordPatch"]),
    );
    let patch_fields: BTreeSet<String> = frame["patch"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        patch_fields,
        patch_props.keys().cloned().collect::<BTreeSet<_>>(),
        "patch fields"
    );
    let presence = &d.asyncapi["components"]["messages"]["presence"]["payload"]["properties"]
        ["devices"]["items"];
    check_response::<PresenceDevice>("presence device", &with_base(&d.asyncapi, presence), &[]);
    // Every fixture frame the client tests use is valid for the document too.
    let fixtures: Value = serde_json::from_str(include_str!("fixtures/protocol.json")).unwrap();
    for f in fixtures["server"].as_array().unwrap() {
        assert!(
            documented.contains_key(f["type"].as_str().unwrap()),
            "fixture {f}"
        );
    }
}

/// The close codes the Worker sends (`close(Some(..))` in src/platform/,
/// constants resolved), read from the source: the glue only builds for wasm32.
fn sent_close_codes() -> BTreeSet<u64> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/platform");
    let mut text = String::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            text.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    // Close-code constants live beside the error type.
    let errors = std::fs::read_to_string(dir.join("../error.rs")).unwrap();
    let consts: BTreeMap<String, u64> = text
        .lines()
        .chain(errors.lines())
        .filter_map(|l| {
            let l = l.trim().trim_start_matches("pub ").strip_prefix("const ")?;
            let (name, rest) = l.split_once(": u16 = ")?;
            Some((
                name.to_string(),
                rest.trim_end_matches(';').trim().parse().ok()?,
            ))
        })
        .collect();
    // Errors that end a socket close it with their `close_code()`.
    let mut codes: BTreeSet<u64> = every_error()
        .iter()
        .filter_map(|e| e.close_code().map(u64::from))
        .collect();
    for piece in text.split(".close(Some(").skip(1) {
        let arg = piece.split(')').next().unwrap().trim();
        if let Ok(n) = arg.parse() {
            codes.insert(n);
        } else if let Some(n) = consts.get(arg) {
            codes.insert(*n);
        } else if arg != "code" {
            // `code` echoes the client's own close code back.
            panic!("close code {arg:?} in src/platform/ is neither a number nor a u16 constant");
        }
    }
    codes
}

#[test]
fn close_codes_match() {
    let d = docs();
    let documented: BTreeSet<u64> = d.asyncapi["channels"]["sync"]["x-close-codes"]
        .as_array()
        .expect("asyncapi.yaml: channels.sync.x-close-codes")
        .iter()
        .filter(|c| c["sentBy"] == "server")
        .map(|c| c["code"].as_u64().unwrap())
        .collect();
    assert_eq!(
        documented,
        sent_close_codes(),
        "close codes the server sends"
    );
}
