//! HTTP helpers: a small request builder over ureq, the response as bytes,
//! and the checks every test repeats (error shape, success shape).

use crate::server::Server;
use libtest_mimic::Failed;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Generous enough for 5 MiB bodies on a slow machine, bounded all the same.
pub const TIMEOUT: Duration = Duration::from_secs(30);
pub const BIG_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest response body read (a 5 MiB value JSON-escaped stays well below).
const MAX_RESPONSE_BYTES: u64 = 64 << 20;

/// Everything but RFC 3986 unreserved characters is percent-encoded.
const KEY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub fn enc(key: &str) -> String {
    utf8_percent_encode(key, KEY_SET).to_string()
}

static COUNTER: AtomicU32 = AtomicU32::new(1);

fn next() -> u32 {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A fresh address per call: `t-<tag>-<nanos>-<n>@example.com`.
pub fn unique_email(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000_000)
        .unwrap_or(0);
    let tag: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(24)
        .collect();
    format!("t-{tag}-{nanos}-{}@example.com", next())
}

/// A fresh client address for `CF-Connecting-IP`, so failed logins in one test
/// never count against another test's per-IP limit. Only a header value: no
/// traffic goes there.
pub fn unique_ip() -> String {
    let n = next();
    format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
}

pub struct Resp {
    pub what: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The value of a header (joined with ", " when repeated).
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body for messages, cut short.
    pub fn excerpt(&self) -> String {
        let t = self.text();
        if t.len() > 400 {
            let mut cut = 400;
            while !t.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}… ({} bytes)", &t[..cut], t.len())
        } else {
            t
        }
    }

    pub fn json(&self) -> Result<Value, Failed> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Failed::from(format!(
                "{}: body is not JSON ({e}): {}",
                self.what,
                self.excerpt()
            ))
        })
    }

    fn check_json_content_type(&self) -> Result<(), Failed> {
        let ct = self.header("content-type").unwrap_or_default();
        if !ct.to_ascii_lowercase().starts_with("application/json") {
            return Err(format!(
                "{}: Content-Type is {ct:?}, expected application/json; body {}",
                self.what,
                self.excerpt()
            )
            .into());
        }
        Ok(())
    }

    /// The JSON body, once the status is `status` (`expected` names it in the
    /// failure) and the content type is JSON.
    pub fn json_with_status(&self, status: u16, expected: &str) -> Result<Value, Failed> {
        if self.status != status {
            return Err(format!(
                "{}: expected {expected}, got {}: {}",
                self.what,
                self.status,
                self.excerpt()
            )
            .into());
        }
        self.check_json_content_type()?;
        self.json()
    }

    /// Asserts a JSON error: exact status, `success: false`, exact code, a
    /// message, JSON content type, and never a token.
    pub fn expect_error(&self, status: u16, code: &str) -> Result<Value, Failed> {
        let v = self.json_with_status(status, &format!("{status} {code}"))?;
        let got_code = v["error"]["code"].as_str().unwrap_or("<missing>");
        if v["success"] != json!(false) || got_code != code {
            return Err(format!(
                "{}: expected error code {code:?} with success false, got {}",
                self.what,
                self.excerpt()
            )
            .into());
        }
        if v["error"]["message"].as_str().is_none_or(str::is_empty) {
            return Err(
                format!("{}: error without a message: {}", self.what, self.excerpt()).into(),
            );
        }
        if v.get("token").is_some() {
            return Err(format!(
                "{}: an error carries a token: {}",
                self.what,
                self.excerpt()
            )
            .into());
        }
        Ok(v)
    }

    /// Asserts a successful JSON answer with `success: true`.
    pub fn expect_ok(&self, status: u16) -> Result<Value, Failed> {
        let v = self.json_with_status(status, &status.to_string())?;
        if v["success"] != json!(true) {
            return Err(format!("{}: success is not true: {}", self.what, self.excerpt()).into());
        }
        Ok(v)
    }

    /// `Retry-After` as whole seconds, required on a 429.
    pub fn retry_after(&self) -> Result<u64, Failed> {
        let raw = self
            .header("retry-after")
            .ok_or_else(|| format!("{}: 429 without Retry-After", self.what))?;
        let secs: u64 = raw
            .trim()
            .parse()
            .map_err(|_| format!("{}: Retry-After {raw:?} is not whole seconds", self.what))?;
        if secs < 1 {
            return Err(
                format!("{}: Retry-After is {secs}, expected at least 1", self.what).into(),
            );
        }
        Ok(secs)
    }
}

pub struct Req<'a> {
    client: &'a Client,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    chunked: bool,
    timeout: Duration,
}

impl Req<'_> {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn headers(mut self, headers: &[(&str, &str)]) -> Self {
        for (n, v) in headers {
            self = self.header(n, v);
        }
        self
    }

    /// Sets `Authorization` to exactly this, or sends none.
    pub fn authorization(self, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.header("Authorization", v),
            None => self,
        }
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    pub fn json(mut self, body: &Value) -> Self {
        self.body = Some(body.to_string().into_bytes());
        self
    }

    /// Sends these bytes as an `application/json` body.
    pub fn raw(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sends the body with chunked transfer encoding (no Content-Length).
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub fn send(self) -> Result<Resp, Failed> {
        let what = format!("{} {}", self.method, self.path);
        let url = format!("{}{}", self.client.target, self.path);
        let mut builder = ureq::http::Request::builder()
            .method(self.method.as_str())
            .uri(url.as_str());
        let has_ip = self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("cf-connecting-ip"));
        if !has_ip {
            builder = builder.header("CF-Connecting-IP", self.client.ip.as_str());
        }
        for (n, v) in &self.client.endpoint_headers {
            builder = builder.header(n.as_str(), v.as_str());
        }
        let has_ct = self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        if self.body.is_some() && !has_ct {
            builder = builder.header("Content-Type", "application/json");
        }
        for (n, v) in &self.headers {
            builder = builder.header(n.as_str(), v.as_str());
        }
        let agent = &self.client.agent;
        let result = match self.body {
            None => {
                let req = builder.body(()).map_err(|e| format!("{what}: {e}"))?;
                let req = agent
                    .configure_request(req)
                    .timeout_global(Some(self.timeout))
                    .build();
                agent.run(req)
            }
            Some(bytes) if self.chunked => {
                let mut reader = std::io::Cursor::new(bytes);
                let body = ureq::SendBody::from_reader(&mut reader);
                let req = builder.body(body).map_err(|e| format!("{what}: {e}"))?;
                let req = agent
                    .configure_request(req)
                    .timeout_global(Some(self.timeout))
                    .build();
                agent.run(req)
            }
            Some(bytes) => {
                let req = builder.body(bytes).map_err(|e| format!("{what}: {e}"))?;
                let req = agent
                    .configure_request(req)
                    .timeout_global(Some(self.timeout))
                    .build();
                agent.run(req)
            }
        };
        let mut resp = result.map_err(|e| format!("{what}: request failed: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| format!("{what}: reading the response failed: {e}"))?;
        Ok(Resp {
            what,
            status,
            headers,
            body,
        })
    }
}

/// A registered account with the token of its first device.
#[derive(Debug, Clone)]
pub struct User {
    pub email: String,
    pub password: String,
    pub token: String,
    pub user_id: String,
    pub device_id: String,
}

pub struct Client {
    /// wrangler dev's address (its proxy), as a browser would use.
    pub base_url: String,
    /// Where this client's requests go, and the headers that needs: the
    /// runtime itself unless told otherwise (see `server::Endpoint`).
    target: String,
    endpoint_headers: Vec<(String, String)>,
    /// The `CF-Connecting-IP` sent unless a request sets its own.
    pub ip: String,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(server: &Server) -> Client {
        // A new connection per request: a pooled one the runtime has just
        // closed as idle fails the next request with "Peer disconnected"
        // before it is sent (seen under load), which no client of ours
        // should read as the server's answer.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            .max_redirects(0)
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .build()
            .into();
        let endpoint = server.endpoint();
        Client {
            base_url: server.base_url.clone(),
            target: endpoint.url,
            endpoint_headers: endpoint.headers,
            ip: unique_ip(),
            agent,
        }
    }

    pub fn req(&self, method: &str, path: &str) -> Req<'_> {
        Req {
            client: self,
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: None,
            chunked: false,
            timeout: TIMEOUT,
        }
    }

    pub fn register_as(&self, email: &str, password: &str) -> Result<User, Failed> {
        let r = self
            .req("POST", "/api/auth/register")
            .json(&json!({"email": email, "password": password, "deviceName": "api test"}))
            .send()?;
        let v = r.expect_ok(201)?;
        user_from(&r, &v, email.trim().to_lowercase(), password)
    }

    /// Registers a fresh account with a unique email.
    pub fn register(&self, tag: &str) -> Result<User, Failed> {
        self.register_as(&unique_email(tag), "correct horse battery")
    }

    pub fn login(&self, email: &str, password: &str) -> Result<User, Failed> {
        let r = self
            .req("POST", "/api/auth/login")
            .json(&json!({"email": email, "password": password}))
            .send()?;
        let v = r.expect_ok(200)?;
        user_from(&r, &v, email.trim().to_lowercase(), password)
    }

    /// `GET /api/sync[?since=N]`, checked for shape.
    pub fn snapshot(&self, token: &str, since: Option<u64>) -> Result<Value, Failed> {
        let path = match since {
            Some(n) => format!("/api/sync?since={n}"),
            None => "/api/sync".to_string(),
        };
        let r = self
            .req("GET", &path)
            .bearer(token)
            .timeout(BIG_TIMEOUT)
            .send()?;
        let v = r.expect_ok(200)?;
        let shaped = v["data"].is_object()
            && v["versions"].is_object()
            && v["deleted"].is_array()
            && v["cursor"].is_u64()
            && v["lastSync"].is_string();
        if !shaped {
            return Err(format!("{}: unexpected snapshot shape: {}", r.what, r.excerpt()).into());
        }
        Ok(v)
    }

    pub fn cursor(&self, token: &str) -> Result<u64, Failed> {
        Ok(self.snapshot(token, None)?["cursor"].as_u64().unwrap_or(0))
    }

    pub fn put(&self, token: &str, key: &str, body: &Value) -> Result<Resp, Failed> {
        self.req("PUT", &format!("/api/sync/{}", enc(key)))
            .bearer(token)
            .json(body)
            .send()
    }

    /// A plain `PUT` that must succeed; returns the answer.
    pub fn put_ok(&self, token: &str, key: &str, value: &str) -> Result<Value, Failed> {
        self.put(token, key, &json!({ "value": value }))?
            .expect_ok(200)
    }

    pub fn delete(&self, token: &str, key: &str, body: Option<&Value>) -> Result<Resp, Failed> {
        let req = self
            .req("DELETE", &format!("/api/sync/{}", enc(key)))
            .bearer(token);
        match body {
            Some(b) => req.json(b).send(),
            None => req.send(),
        }
    }

    pub fn batch(&self, token: &str, body: &Value) -> Result<Resp, Failed> {
        self.req("POST", "/api/sync")
            .bearer(token)
            .json(body)
            .timeout(BIG_TIMEOUT)
            .send()
    }
}

fn user_from(r: &Resp, v: &Value, email: String, password: &str) -> Result<User, Failed> {
    let field = |name: &str| {
        v[name]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| Failed::from(format!("{}: no {name} in {}", r.what, r.excerpt())))
    };
    Ok(User {
        email,
        password: password.to_string(),
        token: field("token")?,
        user_id: field("userId")?,
        device_id: field("deviceId")?,
    })
}

/// Failed checks collected across the cases of one test, so a run reports
/// every refused case that went wrong rather than only the first.
#[derive(Default)]
pub struct Mismatches(Vec<String>);

impl Mismatches {
    pub fn finish(self) -> Result<(), Failed> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} case(s) failed:\n  {}",
                self.0.len(),
                self.0.join("\n  ")
            )
            .into())
        }
    }
}

pub trait Note {
    /// Records a failed check under `label` and carries on.
    fn note(self, bad: &mut Mismatches, label: impl std::fmt::Display);
}

impl<T> Note for Result<T, Failed> {
    fn note(self, bad: &mut Mismatches, label: impl std::fmt::Display) {
        if let Err(e) = self {
            bad.0
                .push(format!("{label}: {}", e.message().unwrap_or_default()));
        }
    }
}
