//! Live sync over WebSockets: handshake, fan-out, REST broadcast, catch-up,
//! idempotent retries, bad frames, revocation, restart.

use crate::client::{Client, User};
use crate::server::Server;
use crate::Test;
use libtest_mimic::Failed;
use serde_json::{json, Value};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Response;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

pub const PROTOCOL: &str = "alternassist-sync.v1";
const WAIT: Duration = Duration::from_secs(10);

pub fn tests() -> Vec<Test> {
    vec![
        Test::main("live::two_devices_put_ack_and_change", two_devices),
        Test::main("live::ten_devices_fan_out", ten_devices),
        Test::main("live::other_user_hears_nothing", other_user_hears_nothing),
        Test::main("live::rest_write_is_broadcast", rest_write_is_broadcast),
        Test::main("live::request_id_retry_is_idempotent", request_id_retry),
        Test::main("live::reconnect_catches_up_exactly", reconnect_catches_up),
        Test::main("live::conflict_acked_with_winner", conflict_ack),
        Test::main("live::handshake_refusals", handshake_refusals),
        Test::main("live::origin_allow_list", origin_allow_list),
        Test::main("live::bad_frames_keep_the_socket", bad_frames),
        Test::main("live::oversized_frame_gets_error", oversized_frame),
        Test::main("live::large_rest_value_reaches_sockets", large_rest_value),
        Test::main("live::revoked_device_socket_closed", revoke_closes),
        Test::main("live::presence_lists_devices", presence),
        Test::main("live::restart_loses_nothing_acknowledged", restart),
        Test::strict("live::flood_gets_rate_limited", flood),
    ]
}

pub struct Socket {
    ws: WebSocket<TcpStream>,
    /// Frames read while waiting for something else, oldest first.
    backlog: Vec<Value>,
}

/// Why a handshake failed: the HTTP status and body, when there was one.
#[derive(Debug)]
pub struct Refused {
    status: u16,
    body: String,
}

fn ws_url(base_url: &str) -> String {
    format!("{}/api/ws", base_url.replacen("http://", "ws://", 1))
}

/// Opens `/api/ws` with the given subprotocol offer and extra headers.
fn open_raw(
    base_url: &str,
    url: &str,
    protocols: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<Socket, Refused> {
    let refused = |body: String| Refused { status: 0, body };
    let mut request = url
        .into_client_request()
        .map_err(|e| refused(e.to_string()))?;
    if let Some(p) = protocols {
        let value = p.parse().map_err(|_| refused("bad header".into()))?;
        request
            .headers_mut()
            .insert("sec-websocket-protocol", value);
    }
    for (k, v) in headers {
        let name: tungstenite::http::HeaderName =
            k.parse().map_err(|_| refused("bad header".into()))?;
        let value = v.parse().map_err(|_| refused("bad header".into()))?;
        request.headers_mut().insert(name, value);
    }
    let addr = base_url.trim_start_matches("http://").to_string();
    let stream = TcpStream::connect(&addr).map_err(|e| refused(e.to_string()))?;
    let _ = stream.set_read_timeout(Some(WAIT));
    let _ = stream.set_write_timeout(Some(WAIT));
    match tungstenite::client(request, stream) {
        Ok((ws, response)) => {
            check_protocol(&response).map_err(refused)?;
            Ok(Socket {
                ws,
                backlog: Vec::new(),
            })
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err(Refused {
                status: resp.status().as_u16(),
                body,
            })
        }
        Err(e) => Err(refused(e.to_string())),
    }
}

fn check_protocol(response: &Response) -> Result<(), String> {
    let got = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok());
    if got == Some(PROTOCOL) {
        Ok(())
    } else {
        Err(format!("server answered subprotocol {got:?}"))
    }
}

pub fn open(server: &Server, token: &str) -> Result<Socket, Failed> {
    let offer = format!("{PROTOCOL}, bearer.{token}");
    open_raw(
        &server.base_url,
        &ws_url(&server.base_url),
        Some(&offer),
        &[],
    )
    .map_err(|r| Failed::from(format!("handshake refused: {} {}", r.status, r.body)))
}

impl Socket {
    pub fn send(&mut self, v: &Value) -> Result<(), Failed> {
        self.send_text(&v.to_string())
    }

    pub fn send_text(&mut self, text: &str) -> Result<(), Failed> {
        self.ws
            .send(Message::text(text))
            .map_err(|e| Failed::from(format!("send: {e}")))
    }

    fn set_timeout(&mut self, t: Duration) {
        let _ = self.ws.get_mut().set_read_timeout(Some(t));
    }

    /// The next frame from the server, or `None` if none arrives in time.
    fn read(&mut self, timeout: Duration) -> Result<Option<Value>, Failed> {
        self.set_timeout(timeout.max(Duration::from_millis(1)));
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    return serde_json::from_str(t.as_str())
                        .map(Some)
                        .map_err(|e| Failed::from(format!("frame is not JSON ({e}): {t}")));
                }
                Ok(Message::Close(frame)) => {
                    return Err(Failed::from(format!("socket closed: {frame:?}")));
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(Failed::from(format!("read: {e}"))),
            }
        }
    }

    /// Waits for the first frame matching `pred`, keeping the others.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value, Failed> {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return Ok(self.backlog.remove(i));
        }
        let deadline = Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.read(left)? {
                Some(v) if pred(&v) => return Ok(v),
                Some(v) => self.backlog.push(v),
                None => break,
            }
        }
        Err(Failed::from(format!(
            "no {what} within {WAIT:?}; got {:?}",
            self.backlog
        )))
    }

    pub fn wait_type(&mut self, ty: &str) -> Result<Value, Failed> {
        self.wait_for(ty, |v| v["type"] == ty)
    }

    /// Every frame of type `ty` that arrives within `window` (plus the backlog).
    pub fn collect(&mut self, ty: &str, window: Duration) -> Result<Vec<Value>, Failed> {
        let deadline = Instant::now() + window;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.read(left)? {
                Some(v) => self.backlog.push(v),
                None => break,
            }
        }
        let (matching, rest) = std::mem::take(&mut self.backlog)
            .into_iter()
            .partition(|v| v["type"] == ty);
        self.backlog = rest;
        Ok(matching)
    }

    pub fn ping(&mut self) -> Result<(), Failed> {
        self.send(&json!({"type": "ping"}))?;
        self.wait_type("pong").map(|_| ())
    }

    pub fn put(&mut self, key: &str, value: &str, rid: &str) -> Result<Value, Failed> {
        self.send(&json!({"type": "put", "key": key, "value": value, "requestId": rid}))?;
        self.wait_for("ack", |v| v["type"] == "ack" && v["requestId"] == rid)
    }

    /// Waits for the server's close frame and returns its code.
    pub fn wait_close(&mut self) -> Result<u16, Failed> {
        let deadline = Instant::now() + WAIT;
        self.set_timeout(WAIT);
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(Message::Close(Some(frame))) => return Ok(u16::from(frame.code)),
                Ok(Message::Close(None)) => return Ok(1005),
                Ok(_) => continue,
                Err(e) => return Err(Failed::from(format!("no close frame: {e}"))),
            }
        }
        Err("no close frame in time".into())
    }

    pub fn close(mut self) {
        let _ = self.ws.close(Some(tungstenite::protocol::CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }));
        let _ = self.ws.flush();
    }
}

pub fn second_device(c: &Client, user: &User) -> Result<User, Failed> {
    c.login(&user.email, &user.password)
}

fn two_devices(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("live-two")?;
    let b = second_device(&c, &a)?;
    let mut wa = open(s, &a.token)?;
    let mut wb = open(s, &b.token)?;
    let ack = wa.put("kanban-projects", "[{\"id\":1}]", "r1")?;
    ensure_eq!(ack["version"], json!(1), "ack version");
    ensure_eq!(ack["key"], json!("kanban-projects"), "ack key");
    ensure_eq!(ack["conflict"], Value::Null, "ack conflict");
    let change = wb.wait_type("change")?;
    ensure_eq!(change["key"], json!("kanban-projects"), "change key");
    ensure_eq!(change["value"], json!("[{\"id\":1}]"), "change value");
    ensure_eq!(change["version"], json!(1), "change version");
    ensure_eq!(change["deleted"], json!(false), "change deleted");
    ensure_eq!(change["deviceId"], json!(a.device_id), "change deviceId");
    ensure!(
        change["updatedAt"].as_i64().is_some(),
        "updatedAt: {change}"
    );
    // The sender gets its ack, not its own change back.
    let echoes = wa.collect("change", Duration::from_millis(300))?;
    ensure!(echoes.is_empty(), "sender got its own change: {echoes:?}");
    // A delete travels the same way.
    wb.send(
        &json!({"type": "delete", "key": "kanban-projects", "baseVersion": 1, "requestId": "d1"}),
    )?;
    let ack = wb.wait_for("delete ack", |v| {
        v["type"] == "ack" && v["requestId"] == "d1"
    })?;
    ensure_eq!(ack["version"], json!(2), "delete ack version");
    let change = wa.wait_type("change")?;
    ensure_eq!(change["deleted"], json!(true), "delete change");
    ensure_eq!(change["value"], Value::Null, "delete change value");
    let snap = c.snapshot(&a.token, None)?;
    ensure_eq!(
        snap["deleted"],
        json!(["kanban-projects"]),
        "stored tombstone"
    );
    Ok(())
}

fn ten_devices(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("live-ten")?;
    let mut sockets = vec![open(s, &a.token)?];
    for _ in 1..10 {
        let d = second_device(&c, &a)?;
        sockets.push(open(s, &d.token)?);
    }
    for (i, round) in (0..3).enumerate() {
        let sender = i * 3 % 10;
        let value = format!("round {round}");
        let ack = sockets[sender].put("estimates", &value, &format!("ten-{round}"))?;
        let version = ack["version"].clone();
        for (j, ws) in sockets.iter_mut().enumerate() {
            if j == sender {
                continue;
            }
            let change = ws.wait_for("change", |v| {
                v["type"] == "change" && v["version"] == version
            })?;
            ensure_eq!(change["value"], json!(value), "device {j} value");
        }
    }
    Ok(())
}

fn other_user_hears_nothing(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("live-iso-a")?;
    let b = c.register("live-iso-b")?;
    let mut wa = open(s, &a.token)?;
    let mut wb = open(s, &b.token)?;
    wa.put("estimates", "secret of a", "iso")?;
    c.put_ok(&a.token, "kanban-columns", "also a's")?;
    let heard = wb.collect("change", Duration::from_millis(800))?;
    ensure!(heard.is_empty(), "another user's socket heard {heard:?}");
    let presence = wb.collect("presence", Duration::from_millis(10))?;
    for p in presence {
        let devices = p["devices"].as_array().cloned().unwrap_or_default();
        ensure!(
            devices.iter().all(|d| d["deviceId"] == json!(b.device_id)),
            "presence leaked another user's device: {p}"
        );
    }
    Ok(())
}

fn rest_write_is_broadcast(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("live-rest")?;
    let b = second_device(&c, &a)?;
    let mut wa = open(s, &a.token)?;
    let mut wb = open(s, &b.token)?;
    c.put_ok(&a.token, "outstanding-payments", "from rest")?;
    for ws in [&mut wa, &mut wb] {
        let change = ws.wait_type("change")?;
        ensure_eq!(change["value"], json!("from rest"), "REST change value");
    }
    let r = c.batch(
        &a.token,
        &json!({"data": {"estimates": "e1", "accountingTransactions": "t1"}}),
    )?;
    r.expect_ok(200)?;
    let got = wb.collect("change", Duration::from_millis(800))?;
    let mut keys: Vec<String> = got
        .iter()
        .filter_map(|v| v["key"].as_str().map(String::from))
        .collect();
    keys.sort();
    ensure_eq!(
        keys,
        ["accountingTransactions", "estimates"],
        "batch changes"
    );
    Ok(())
}

fn request_id_retry(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("live-retry")?;
    let b = second_device(&c, &a)?;
    let mut wa = open(s, &a.token)?;
    let mut wb = open(s, &b.token)?;
    let first = wa.put("cue-tracker-sessions", "v1", "same-id")?;
    // The retry carries a different value: it must still change nothing.
    let second = wa.put("cue-tracker-sessions", "v2", "same-id")?;
    ensure_eq!(first, second, "retried ack");
    let changes = wb.collect("change", Duration::from_millis(800))?;
    ensure_eq!(
        changes.len(),
        1,
        "changes broadcast for one requestId: {changes:?}"
    );
    let snap = c.snapshot(&a.token, None)?;
    ensure_eq!(
        snap["data"]["cue-tracker-sessions"],
        json!("v1"),
        "stored value"
    );
    ensure_eq!(snap["cursor"], json!(1), "cursor");
    // The same requestId over REST gets the same answer too.
    let r = c.put(
        &a.token,
        "cue-tracker-sessions",
        &json!({"value": "v3", "requestId": "same-id"}),
    )?;
    let v = r.expect_ok(200)?;
    ensure_eq!(v["version"], json!(1), "REST retry of a socket write");
    Ok(())
}

fn reconnect_catches_up(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("live-catchup")?;
    let b = second_device(&c, &a)?;
    let mut wa = open(s, &a.token)?;
    wa.put("k1", "one", "c1")?;
    wa.put("k2", "two", "c2")?;
    let mut wb = open(s, &b.token)?;
    wb.send(&json!({"type": "hello", "since": 0}))?;
    let all = wb.wait_type("changes")?;
    ensure_eq!(all["cursor"], json!(2), "cursor after hello");
    ensure_eq!(
        all["changes"].as_array().map(Vec::len),
        Some(2),
        "full catch-up"
    );
    wb.close();
    // Missed while offline: k2 twice, k3 once, k1 deleted.
    wa.put("k2", "two-b", "c3")?;
    wa.put("k2", "two-c", "c4")?;
    wa.put("k3", "three", "c5")?;
    wa.send(&json!({"type": "delete", "key": "k1", "requestId": "c6"}))?;
    wa.wait_for("delete ack", |v| v["requestId"] == "c6")?;
    let mut wb = open(s, &b.token)?;
    wb.send(&json!({"type": "hello", "since": 2}))?;
    let missed = wb.wait_type("changes")?;
    ensure_eq!(missed["cursor"], json!(6), "cursor");
    let got: Vec<(String, Value, u64)> = missed["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c["key"].as_str().unwrap_or("").to_string(),
                c["value"].clone(),
                c["version"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    ensure_eq!(
        got,
        vec![
            ("k2".to_string(), json!("two-c"), 4),
            ("k3".to_string(), json!("three"), 5),
            ("k1".to_string(), Value::Null, 6),
        ],
        "exactly the missed changes, oldest first, each once"
    );
    // Caught up: nothing more is pending.
    wb.send(&json!({"type": "hello", "since": 6}))?;
    let none = wb.wait_type("changes")?;
    ensure_eq!(none["changes"], json!([]), "nothing after the cursor");
    // A cursor from the future gets everything.
    wb.send(&json!({"type": "hello", "since": 999}))?;
    let reset = wb.wait_type("changes")?;
    ensure_eq!(
        reset["changes"].as_array().map(Vec::len),
        Some(3),
        "future cursor"
    );
    Ok(())
}

fn conflict_ack(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("live-conflict")?;
    let mut wa = open(s, &a.token)?;
    wa.send(&json!({"type": "put", "key": "estimates", "value": "new", "updatedAt": 2_000, "requestId": "n"}))?;
    wa.wait_for("ack", |v| v["requestId"] == "n")?;
    wa.send(&json!({"type": "put", "key": "estimates", "value": "old", "baseVersion": 0, "updatedAt": 1_000, "requestId": "o"}))?;
    let ack = wa.wait_for("ack", |v| v["requestId"] == "o")?;
    ensure_eq!(ack["conflict"]["winner"], json!("stored"), "winner");
    ensure_eq!(ack["version"], json!(1), "version unchanged");
    let lost = s.db_rows(&format!(
        "SELECT data FROM sync_history WHERE user_id = '{}' AND version IS NULL",
        a.user_id
    ))?;
    ensure_eq!(lost.len(), 1, "loser kept in history");
    ensure_eq!(lost[0]["data"], json!("old"), "loser value");
    Ok(())
}

/// Asserts a refused handshake twice: a real WebSocket client sees `status`,
/// and the same request over plain HTTP gets the JSON error body with `code`
/// (tungstenite does not hand over the body of a refusal).
pub fn expect_refused(
    c: &Client,
    query: &str,
    protocols: Option<&str>,
    origin: Option<&str>,
    status: u16,
    code: &str,
    what: &str,
) -> Result<(), Failed> {
    let url = format!("{}{query}", ws_url(&c.base_url));
    let headers: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
    match open_raw(&c.base_url, &url, protocols, &headers) {
        Ok(_) => return Err(Failed::from(format!("{what}: handshake accepted"))),
        Err(r) => ensure_eq!(r.status, status, "{what}: status ({})", r.body),
    }
    let mut req = c
        .req("GET", &format!("/api/ws{query}"))
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    if let Some(p) = protocols {
        req = req.header("sec-websocket-protocol", p);
    }
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    req.send()?
        .expect_error(status, code)
        .map_err(|e| Failed::from(format!("{what}: {}", e.message().unwrap_or_default())))?;
    Ok(())
}

fn handshake_refusals(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("live-refuse")?;
    let refused = |query: &str, protocols: Option<&str>, status: u16, code: &str, what: &str| {
        expect_refused(&c, query, protocols, None, status, code, what)
    };
    refused("", Some(PROTOCOL), 401, "unauthorized", "no token")?;
    refused("", None, 401, "unauthorized", "no subprotocol")?;
    let bogus = format!("{PROTOCOL}, bearer.{}", "A".repeat(43));
    refused("", Some(&bogus), 401, "unauthorized", "unknown token")?;
    let garbage = format!("{PROTOCOL}, bearer.not-a-token");
    refused("", Some(&garbage), 401, "unauthorized", "malformed token")?;
    // A token in the URL is never accepted, in any of the usual spellings.
    for q in ["token", "access_token", "bearer", "auth"] {
        let query = format!("?{q}={}", a.token);
        refused(&query, Some(PROTOCOL), 401, "unauthorized", q)?;
    }
    // The bearer without our protocol is refused too.
    let only_bearer = format!("bearer.{}", a.token);
    refused("", Some(&only_bearer), 400, "invalid_request", "no v1")?;
    // A plain GET is no upgrade.
    let r = c.req("GET", "/api/ws").bearer(&a.token).send()?;
    r.expect_error(426, "upgrade_required")?;
    // A revoked token.
    let d = second_device(&c, &a)?;
    c.req("POST", "/api/auth/logout")
        .bearer(&d.token)
        .send()?
        .expect_ok(200)?;
    let revoked = format!("{PROTOCOL}, bearer.{}", d.token);
    refused("", Some(&revoked), 401, "unauthorized", "revoked")?;
    // The valid token still works.
    open(s, &a.token)?.ping()
}

fn origin_allow_list(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("live-origin")?;
    let url = ws_url(&s.base_url);
    let offer = format!("{PROTOCOL}, bearer.{}", a.token);
    let evil = Some("https://evil.example");
    expect_refused(
        &c,
        "",
        Some(&offer),
        evil,
        403,
        "origin_not_allowed",
        "evil origin",
    )?;
    for origin in ["http://localhost:8787", s.base_url.as_str()] {
        let mut ws = open_raw(&s.base_url, &url, Some(&offer), &[("origin", origin)])
            .map_err(|r| Failed::from(format!("{origin}: refused {} {}", r.status, r.body)))?;
        ws.ping()?;
    }
    Ok(())
}

fn bad_frames(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("live-bad")?;
    let mut ws = open(s, &a.token)?;
    let cases: &[(&str, &str)] = &[
        ("{not json", "invalid_json"),
        ("[]", "invalid_request"),
        ("{\"type\":\"dance\"}", "invalid_request"),
        ("{\"noType\":1}", "invalid_request"),
        (
            "{\"type\":\"put\",\"key\":\"k\",\"value\":\"v\"}",
            "invalid_request",
        ),
        (
            "{\"type\":\"put\",\"key\":\"k\",\"value\":5,\"requestId\":\"b1\"}",
            "invalid_request",
        ),
        (
            "{\"type\":\"put\",\"key\":\"\",\"value\":\"v\",\"requestId\":\"b2\"}",
            "invalid_key",
        ),
        (
            "{\"type\":\"put\",\"key\":\"a\\nb\",\"value\":\"v\",\"requestId\":\"b3\"}",
            "invalid_key",
        ),
        (
            "{\"type\":\"delete\",\"key\":\"k\",\"updatedAt\":-1,\"requestId\":\"b4\"}",
            "invalid_request",
        ),
        ("{\"type\":\"hello\",\"since\":-3}", "invalid_request"),
    ];
    for (frame, code) in cases {
        ws.send_text(frame)?;
        let e = ws.wait_type("error")?;
        ensure_eq!(e["code"], json!(code), "error for {frame}");
        ensure!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "message for {frame}"
        );
        ws.ping()?;
    }
    let e = ws.wait_type("error").ok();
    ensure!(e.is_none(), "stray error {e:?}");
    // The requestId of a bad write comes back so the client can match it.
    ws.send_text("{\"type\":\"put\",\"key\":\"\",\"value\":\"v\",\"requestId\":\"mine\"}")?;
    let e = ws.wait_type("error")?;
    ensure_eq!(e["requestId"], json!("mine"), "error requestId");
    ws.ws
        .send(Message::binary(vec![1u8, 2, 3]))
        .map_err(|e| Failed::from(e.to_string()))?;
    let e = ws.wait_type("error")?;
    ensure_eq!(e["code"], json!("binary_frame"), "binary frame");
    ws.ping()?;
    ensure_eq!(c.cursor(&a.token)?, 0, "nothing stored");
    Ok(())
}

fn oversized_frame(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("live-big-frame")?;
    let mut ws = open(s, &a.token)?;
    let value = "x".repeat(1024 * 1024);
    ws.send(&json!({"type": "put", "key": "big", "value": value, "requestId": "big"}))?;
    let e = ws.wait_type("error")?;
    ensure_eq!(e["code"], json!("frame_too_large"), "oversized frame");
    ensure!(
        e["message"].as_str().unwrap_or("").contains("REST"),
        "message points to REST: {e}"
    );
    ws.ping()?;
    ensure_eq!(c.cursor(&a.token)?, 0, "nothing stored");
    Ok(())
}

fn large_rest_value(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("live-big-value")?;
    let mut ws = open(s, &a.token)?;
    let value = "é🙂".repeat(300_000); // 1.8 MB: two D1 chunks, bigger than a client frame
    let r = c
        .req("PUT", "/api/sync/big")
        .bearer(&a.token)
        .json(&json!({"value": value}))
        .timeout(crate::client::BIG_TIMEOUT)
        .send()?;
    r.expect_ok(200)?;
    let change = ws.wait_type("change")?;
    ensure!(
        change["value"] == json!(value),
        "large value arrived intact"
    );
    Ok(())
}

fn revoke_closes(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("live-revoke")?;
    let b = second_device(&c, &a)?;
    let mut wa = open(s, &a.token)?;
    let mut wb = open(s, &b.token)?;
    c.req("POST", "/api/auth/logout")
        .bearer(&b.token)
        .send()?
        .expect_ok(200)?;
    ensure_eq!(wb.wait_close()?, 4001, "close code for a revoked device");
    // The other device stays connected and usable.
    wa.ping()?;
    wa.put("estimates", "still here", "after-revoke")?;
    Ok(())
}

fn presence(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("live-presence")?;
    let b = second_device(&c, &a)?;
    let mut wa = open(s, &a.token)?;
    let wb = open(s, &b.token)?;
    let both = wa.wait_for("presence of two", |v| {
        v["type"] == "presence" && v["devices"].as_array().is_some_and(|d| d.len() == 2)
    })?;
    let names: Vec<&str> = both["devices"]
        .as_array()
        .map(|d| d.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    ensure!(!names.is_empty(), "names in presence: {both}");
    wb.close();
    wa.wait_for("presence of one", |v| {
        v["type"] == "presence"
            && v["devices"]
                .as_array()
                .is_some_and(|d| d.len() == 1 && d[0]["deviceId"] == json!(a.device_id))
    })?;
    Ok(())
}

fn restart(_: &Server) -> Result<(), Failed> {
    let s = Server::start("restart", &[]).map_err(Failed::from)?;
    let c = Client::new(&s);
    let a = c.register("live-restart")?;
    let mut ws = open(&s, &a.token)?;
    for i in 0..5 {
        ws.put(&format!("key{i}"), &format!("value {i}"), &format!("r{i}"))?;
    }
    s.restart().map_err(Failed::from)?;
    // The restarted runtime listens on a new internal endpoint.
    let c = Client::new(&s);
    // The old socket is gone; a new one catches up on everything acknowledged.
    let mut ws = open(&s, &a.token)?;
    ws.send(&json!({"type": "hello", "since": 0}))?;
    let all = ws.wait_type("changes")?;
    ensure_eq!(all["cursor"], json!(5), "cursor after restart");
    let snap = c.snapshot(&a.token, None)?;
    for i in 0..5 {
        ensure_eq!(
            snap["data"][format!("key{i}")],
            json!(format!("value {i}")),
            "key{i}"
        );
    }
    // Writing continues where it left off.
    let ack = ws.put("key0", "after restart", "r-after")?;
    ensure_eq!(ack["version"], json!(6), "next version");
    s.stop();
    Ok(())
}

fn flood(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("live-flood")?;
    let mut ws = open(s, &a.token)?;
    let burst = crate::STRICT_WRITE_BURST as usize;
    for i in 0..burst + 5 {
        ws.send(&json!({"type": "put", "key": "k", "value": format!("v{i}"), "requestId": format!("f{i}")}))?;
    }
    let mut limited = 0;
    let mut acked = 0;
    for i in 0..burst + 5 {
        let rid = format!("f{i}");
        let v = ws.wait_for("answer", |v| v["requestId"] == json!(rid))?;
        match v["type"].as_str() {
            Some("ack") => acked += 1,
            Some("error") if v["code"] == "rate_limited" => limited += 1,
            _ => return Err(format!("unexpected answer {v}").into()),
        }
    }
    ensure!(
        acked <= burst && limited >= 5,
        "acked {acked}, limited {limited}"
    );
    ws.ping()?;
    Ok(())
}
