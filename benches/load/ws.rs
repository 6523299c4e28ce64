//! A blocking WebSocket connection to either Worker, sending the headers the
//! runtime's direct endpoint needs (see `server::Endpoint`).

use crate::server::Endpoint;
use serde_json::Value;
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

pub const PROTOCOL: &str = "alternassist-sync.v1";

pub struct Conn {
    ws: WebSocket<TcpStream>,
    timeout: Option<Duration>,
}

/// Opens `path` on `ep`, offering `protocols` (comma-separated).
pub fn connect(ep: &Endpoint, path: &str, protocols: &str) -> Result<Conn, String> {
    let url = format!("{}{path}", ep.url.replacen("http://", "ws://", 1));
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("{url}: {e}"))?;
    let headers = request.headers_mut();
    let mut add = |k: &str, v: &str| -> Result<(), String> {
        let name: tungstenite::http::HeaderName =
            k.parse().map_err(|_| format!("bad header name {k}"))?;
        headers.insert(name, v.parse().map_err(|_| format!("bad header {k}"))?);
        Ok(())
    };
    add("sec-websocket-protocol", protocols)?;
    for (k, v) in &ep.headers {
        add(k, v)?;
    }
    let addr = ep.url.trim_start_matches("http://").to_string();
    let stream = TcpStream::connect(&addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let (ws, response) = tungstenite::client(request, stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r)) => format!(
            "handshake refused: {} {}",
            r.status(),
            r.body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        ),
        other => format!("handshake: {other}"),
    })?;
    let got = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok());
    if got != Some(PROTOCOL) {
        return Err(format!("server answered subprotocol {got:?}"));
    }
    Ok(Conn { ws, timeout: None })
}

impl Conn {
    pub fn send(&mut self, text: &str) -> Result<(), String> {
        self.ws
            .send(Message::text(text))
            .map_err(|e| format!("send: {e}"))
    }

    /// The next text frame, or `None` when none arrives within `timeout`.
    pub fn read(&mut self, timeout: Duration) -> Result<Option<String>, String> {
        let timeout = timeout.max(Duration::from_millis(1));
        if self.timeout != Some(timeout) {
            let _ = self.ws.get_mut().set_read_timeout(Some(timeout));
            self.timeout = Some(timeout);
        }
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => return Ok(Some(t.as_str().to_owned())),
                Ok(Message::Close(f)) => return Err(format!("closed by server: {f:?}")),
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Like `read`, parsed as JSON.
    pub fn read_json(&mut self, timeout: Duration) -> Result<Option<Value>, String> {
        match self.read(timeout)? {
            Some(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| format!("frame is not JSON ({e})")),
            None => Ok(None),
        }
    }

    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}
