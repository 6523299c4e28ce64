//! The route table: which endpoint a method and path name. Used by the
//! Worker (to authenticate and forward) and by the Durable Object (to
//! dispatch), so the two cannot disagree.

use crate::error::SyncError;
use crate::model::Key;
use percent_encoding::percent_decode_str;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Register,
    Login,
    Logout,
    /// `GET /api/sync[?since=N]`
    Snapshot {
        since: u64,
    },
    /// `POST /api/sync`
    Batch,
    Put(Key),
    Delete(Key),
    /// `GET /api/ws`: the live WebSocket.
    Socket,
}

impl Route {
    /// Routes served by the user's Durable Object.
    pub fn is_hub(&self) -> bool {
        !matches!(self, Route::Register | Route::Login | Route::Logout)
    }

    pub fn writes(&self) -> bool {
        matches!(self, Route::Batch | Route::Put(_) | Route::Delete(_))
    }
}

/// `path` is the raw (still percent-encoded) URL path, `query` the raw query.
pub fn route(method: &str, path: &str, query: Option<&str>) -> Result<Route, SyncError> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = method.to_ascii_uppercase();
    let allow = |allowed: &[&str], r: Route| {
        if allowed.contains(&method.as_str()) {
            Ok(r)
        } else {
            Err(SyncError::MethodNotAllowed)
        }
    };
    match segments.as_slice() {
        ["api", "auth", "register"] => allow(&["POST"], Route::Register),
        ["api", "auth", "login"] => allow(&["POST"], Route::Login),
        ["api", "auth", "logout"] => allow(&["POST"], Route::Logout),
        ["api", "ws"] => allow(&["GET"], Route::Socket),
        ["api", "sync"] => match method.as_str() {
            "GET" => Ok(Route::Snapshot {
                since: parse_since(query)?,
            }),
            "POST" => Ok(Route::Batch),
            _ => Err(SyncError::MethodNotAllowed),
        },
        ["api", "sync", raw_key] => {
            let key = decode_key(raw_key)?;
            match method.as_str() {
                "PUT" => Ok(Route::Put(key)),
                "DELETE" => Ok(Route::Delete(key)),
                _ => Err(SyncError::MethodNotAllowed),
            }
        }
        _ => Err(SyncError::NotFound),
    }
}

fn decode_key(raw: &str) -> Result<Key, SyncError> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| SyncError::InvalidKey("key is not valid UTF-8".into()))?;
    Key::parse(&decoded)
}

fn parse_since(query: Option<&str>) -> Result<u64, SyncError> {
    let mut since = 0;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "since" {
            since = value.parse().map_err(|_| {
                SyncError::InvalidRequest("since must be a non-negative integer".into())
            })?;
        }
    }
    Ok(since)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Key {
        Key::parse(k).unwrap()
    }

    #[test]
    fn table() {
        assert_eq!(
            route("POST", "/api/auth/register", None),
            Ok(Route::Register)
        );
        assert_eq!(route("post", "/api/auth/login", None), Ok(Route::Login));
        assert_eq!(
            route("GET", "/api/sync", Some("since=12")),
            Ok(Route::Snapshot { since: 12 })
        );
        assert_eq!(
            route("GET", "/api/sync", None),
            Ok(Route::Snapshot { since: 0 })
        );
        assert_eq!(route("POST", "/api/sync", None), Ok(Route::Batch));
        assert_eq!(route("GET", "/api/ws", None), Ok(Route::Socket));
        assert_eq!(
            route("PUT", "/api/sync/kanban-projects", None),
            Ok(Route::Put(key("kanban-projects")))
        );
        assert_eq!(
            route("DELETE", "/api/sync/a%2Fb%20%F0%9F%99%82", None),
            Ok(Route::Delete(key("a/b 🙂")))
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            route("GET", "/api/auth/login", None),
            Err(SyncError::MethodNotAllowed)
        );
        assert_eq!(
            route("PATCH", "/api/sync/k", None),
            Err(SyncError::MethodNotAllowed)
        );
        assert_eq!(route("GET", "/api/nope", None), Err(SyncError::NotFound));
        assert_eq!(
            route("GET", "/api/sync/a/b", None),
            Err(SyncError::NotFound)
        );
        assert_eq!(
            route("PUT", "/api/sync/", None).unwrap_err().code(),
            "invalid_key"
        );
        assert_eq!(
            route("PUT", "/api/sync/%0A", None).unwrap_err().code(),
            "invalid_key"
        );
        assert_eq!(
            route("PUT", "/api/sync/%FF", None).unwrap_err().code(),
            "invalid_key"
        );
        let long = "a".repeat(257);
        assert_eq!(
            route("PUT", &format!("/api/sync/{long}"), None)
                .unwrap_err()
                .code(),
            "invalid_key"
        );
        for q in ["since=-1", "since=abc", "since="] {
            assert_eq!(
                route("GET", "/api/sync", Some(q)).unwrap_err().code(),
                "invalid_request"
            );
        }
    }
}
