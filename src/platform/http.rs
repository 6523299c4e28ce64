//! HTTP helpers: JSON answers, the error mapping, capped body reads, CORS.

use super::config::Config;
use crate::error::SyncError;
use futures_util::StreamExt;
use serde::Serialize;
use worker::{Headers, Request, Response};

pub fn json_string(status: u16, body: String) -> Response {
    text(status, "application/json; charset=utf-8", body)
}

pub fn text(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
    let headers = Headers::new();
    let _ = headers.set("content-type", content_type);
    let _ = headers.set("cache-control", "no-store");
    Response::builder()
        .with_status(status)
        .with_headers(headers)
        .fixed(body.into())
}

pub fn json<T: Serialize>(status: u16, body: &T) -> Response {
    match serde_json::to_string(body) {
        Ok(s) => json_string(status, s),
        Err(e) => error(&SyncError::Internal(format!("serialise: {e}"))),
    }
}

/// The one place a `SyncError` becomes an HTTP answer.
pub fn error(e: &SyncError) -> Response {
    if let SyncError::Internal(detail) = e {
        worker::console_error!("internal error: {detail}");
    }
    let body = serde_json::to_string(&e.body()).unwrap_or_default();
    let resp = json_string(e.status(), body);
    if let Some(secs) = e.retry_after_secs() {
        let _ = resp.headers().set("retry-after", &secs.to_string());
    }
    resp
}

pub fn from_result(r: Result<Response, SyncError>) -> Response {
    r.unwrap_or_else(|e| error(&e))
}

/// Refuses a body whose declared `Content-Length` exceeds `limit`; returns
/// the declared length, if any.
pub fn check_declared_length(req: &Request, limit: usize) -> Result<Option<u64>, SyncError> {
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(SyncError::PayloadTooLarge { limit });
    }
    Ok(declared)
}

/// Reads the whole body, refusing more than `limit` bytes before parsing.
pub async fn read_body(req: &mut Request, limit: usize) -> Result<Vec<u8>, SyncError> {
    let declared = check_declared_length(req, limit)?;
    if req.inner().body().is_none() {
        return Ok(Vec::new());
    }
    let mut stream = req
        .stream()
        .map_err(|e| SyncError::Internal(format!("body stream: {e}")))?;
    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(limit as u64) as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|_| SyncError::InvalidRequest("request body could not be read".into()))?;
        if body.len() + chunk.len() > limit {
            return Err(SyncError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Adds CORS headers for an allowed `Origin`; others get none, so browsers
/// refuse to hand the answer to the page.
pub fn with_cors(resp: Response, origin: Option<&str>, config: &Config) -> Response {
    let Some(origin) = origin.filter(|o| config.origin_allowed(o)) else {
        return resp;
    };
    // Answers from the Durable Object carry immutable headers: copy them.
    let headers = Headers::new();
    for (k, v) in resp.headers().entries() {
        let _ = headers.append(&k, &v);
    }
    let _ = headers.set("access-control-allow-origin", origin);
    let _ = headers.set(
        "access-control-expose-headers",
        "retry-after, content-disposition",
    );
    let _ = headers.append("vary", "Origin");
    resp.with_headers(headers)
}

pub fn preflight(origin: Option<&str>, config: &Config) -> Response {
    let resp = Response::builder().with_status(204).empty();
    let Some(origin) = origin.filter(|o| config.origin_allowed(o)) else {
        return resp;
    };
    let headers = Headers::new();
    let _ = headers.set("access-control-allow-origin", origin);
    let _ = headers.set(
        "access-control-allow-methods",
        "GET, POST, PUT, DELETE, OPTIONS",
    );
    let _ = headers.set(
        "access-control-allow-headers",
        "authorization, content-type",
    );
    let _ = headers.set("access-control-max-age", "86400");
    let _ = headers.set("vary", "Origin");
    resp.with_headers(headers)
}
