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
    /// `POST /api/auth/logout-all`: every device of the account, this one too.
    LogoutAll,
    /// `POST /api/auth/password`
    ChangePassword,
    /// `GET /api/account`: usage and limits.
    Account,
    /// `GET /api/sync[?since=N]`
    Snapshot {
        since: u64,
    },
    /// `POST /api/sync`
    Batch,
    /// `GET /api/sync/:key`: one key's current value and version.
    Get(Key),
    Put(Key),
    Delete(Key),
    /// `GET /api/sync/:key/history[?before=V&limit=N]`: newest first.
    History {
        key: Key,
        before: Option<u64>,
        limit: usize,
    },
    /// `GET /api/sync/:key/history/:version`
    HistoryVersion {
        key: Key,
        version: u64,
    },
    /// `POST /api/sync/:key/restore`
    Restore(Key),
    /// `GET /api/sync/:key/records/:id/history[?limit=N]`: one record of a
    /// record list, every version kept, newest first.
    RecordHistory {
        key: Key,
        id: String,
        limit: usize,
    },
    /// `POST /api/sync/:key/records/:id/restore`: one record as it was at a
    /// version of the key, the others untouched.
    RecordRestore {
        key: Key,
        id: String,
    },
    /// `GET /api/export`
    Export,
    /// `POST /api/import`
    Import,
    /// `GET /api/devices`
    Devices,
    /// `DELETE /api/devices/:id`
    RevokeDevice(String),
    /// `GET /api/ws`: the live WebSocket.
    Socket,
    /// `GET /api/openapi.yaml`: the API description; no token needed.
    OpenApi,
}

/// History entries one request returns unless it asks for fewer.
pub const HISTORY_PAGE: usize = 100;
pub const MAX_HISTORY_PAGE: usize = 1000;

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
        ["api", "auth", "logout-all"] => allow(&["POST"], Route::LogoutAll),
        ["api", "auth", "password"] => allow(&["POST"], Route::ChangePassword),
        ["api", "account"] => allow(&["GET"], Route::Account),
        ["api", "ws"] => allow(&["GET"], Route::Socket),
        ["api", "openapi.yaml"] => allow(&["GET"], Route::OpenApi),
        ["api", "export"] => allow(&["GET"], Route::Export),
        ["api", "import"] => allow(&["POST"], Route::Import),
        ["api", "devices"] => allow(&["GET"], Route::Devices),
        ["api", "devices", raw_id] => {
            let id = percent_decode_str(raw_id).decode_utf8_lossy().into_owned();
            allow(&["DELETE"], Route::RevokeDevice(id))
        }
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
                "GET" => Ok(Route::Get(key)),
                "PUT" => Ok(Route::Put(key)),
                "DELETE" => Ok(Route::Delete(key)),
                _ => Err(SyncError::MethodNotAllowed),
            }
        }
        ["api", "sync", raw_key, "history"] => {
            let key = decode_key(raw_key)?;
            let (before, limit) = parse_page(query)?;
            allow(&["GET"], Route::History { key, before, limit })
        }
        ["api", "sync", raw_key, "history", raw_version] => {
            let key = decode_key(raw_key)?;
            let version = safe_u64(raw_version).filter(|v| *v > 0).ok_or_else(|| {
                SyncError::InvalidRequest("version must be a positive integer".into())
            })?;
            allow(&["GET"], Route::HistoryVersion { key, version })
        }
        ["api", "sync", raw_key, "restore"] => {
            let key = decode_key(raw_key)?;
            allow(&["POST"], Route::Restore(key))
        }
        ["api", "sync", raw_key, "records", raw_id, "history"] => {
            let key = decode_key(raw_key)?;
            let id = decode_record_id(raw_id)?;
            let (_, limit) = parse_page(query)?;
            allow(&["GET"], Route::RecordHistory { key, id, limit })
        }
        ["api", "sync", raw_key, "records", raw_id, "restore"] => {
            let key = decode_key(raw_key)?;
            let id = decode_record_id(raw_id)?;
            allow(&["POST"], Route::RecordRestore { key, id })
        }
        _ => Err(SyncError::NotFound),
    }
}

/// The methods `path` answers, for the `Allow` header of a 405.
pub fn allowed_methods(path: &str) -> Vec<&'static str> {
    let mut allowed: Vec<&'static str> = ["GET", "POST", "PUT", "DELETE"]
        .into_iter()
        .filter(|m| {
            !matches!(
                route(m, path, None),
                Err(SyncError::MethodNotAllowed | SyncError::NotFound)
            )
        })
        .collect();
    allowed.push("OPTIONS");
    allowed
}

fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// `before` (a version) and `limit` of a history page.
fn parse_page(query: Option<&str>) -> Result<(Option<u64>, usize), SyncError> {
    let mut before = None;
    let mut limit = HISTORY_PAGE;
    for (name, value) in query_pairs(query) {
        match name {
            "before" => {
                before = Some(safe_u64(value).ok_or_else(|| {
                    SyncError::InvalidRequest("before must be a non-negative integer".into())
                })?)
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_HISTORY_PAGE).contains(n))
                    .ok_or_else(|| {
                        SyncError::InvalidRequest(format!(
                            "limit must be an integer from 1 to {MAX_HISTORY_PAGE}"
                        ))
                    })?
            }
            _ => {}
        }
    }
    Ok((before, limit))
}

/// A non-negative integer no larger than a JavaScript number holds exactly.
fn safe_u64(raw: &str) -> Option<u64> {
    raw.parse::<u64>()
        .ok()
        .filter(|v| *v <= crate::model::MAX_SAFE_INTEGER)
}

fn decode_key(raw: &str) -> Result<Key, SyncError> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| SyncError::InvalidKey("key is not valid UTF-8".into()))?;
    Key::parse(&decoded)
}

/// Longest record id a route names (ids are the lists' own `id` fields).
pub const MAX_RECORD_ID_BYTES: usize = 1024;

/// A record's id: a string id as it is, a number id as written (`7`).
fn decode_record_id(raw: &str) -> Result<String, SyncError> {
    let id = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| SyncError::InvalidRequest("record id is not valid UTF-8".into()))?;
    if id.is_empty() || id.len() > MAX_RECORD_ID_BYTES {
        return Err(SyncError::InvalidRequest(format!(
            "record id must be 1–{MAX_RECORD_ID_BYTES} bytes"
        )));
    }
    Ok(id.into_owned())
}

fn parse_since(query: Option<&str>) -> Result<u64, SyncError> {
    let mut since = 0;
    for (name, value) in query_pairs(query) {
        if name == "since" {
            since = safe_u64(value).ok_or_else(|| {
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
        assert_eq!(
            route("GET", "/api/sync/k%2F1/history", Some("before=9&limit=5")),
            Ok(Route::History {
                key: key("k/1"),
                before: Some(9),
                limit: 5
            })
        );
        assert_eq!(
            route("GET", "/api/sync/k/history", None),
            Ok(Route::History {
                key: key("k"),
                before: None,
                limit: HISTORY_PAGE
            })
        );
        assert_eq!(
            route("GET", "/api/sync/k/history/12", None),
            Ok(Route::HistoryVersion {
                key: key("k"),
                version: 12
            })
        );
        assert_eq!(
            route("POST", "/api/sync/k/restore", None),
            Ok(Route::Restore(key("k")))
        );
        assert_eq!(
            route(
                "GET",
                "/api/sync/k/records/inv%2F7/history",
                Some("limit=3")
            ),
            Ok(Route::RecordHistory {
                key: key("k"),
                id: "inv/7".into(),
                limit: 3
            })
        );
        assert_eq!(
            route("POST", "/api/sync/k/records/7/restore", None),
            Ok(Route::RecordRestore {
                key: key("k"),
                id: "7".into()
            })
        );
        assert_eq!(
            route("GET", "/api/sync/k/records/7/restore", None),
            Err(SyncError::MethodNotAllowed)
        );
        assert_eq!(
            route("GET", "/api/sync/k/records//history", None).map_err(|e| e.code()),
            Err("invalid_request")
        );
        assert_eq!(route("GET", "/api/export", None), Ok(Route::Export));
        assert_eq!(route("POST", "/api/import", None), Ok(Route::Import));
        assert_eq!(route("GET", "/api/devices", None), Ok(Route::Devices));
        assert_eq!(
            route("DELETE", "/api/devices/ab%20c", None),
            Ok(Route::RevokeDevice("ab c".into()))
        );
        assert_eq!(route("GET", "/api/openapi.yaml", None), Ok(Route::OpenApi));
        assert_eq!(
            route("POST", "/api/auth/logout-all", None),
            Ok(Route::LogoutAll)
        );
        assert_eq!(
            route("POST", "/api/auth/password", None),
            Ok(Route::ChangePassword)
        );
        assert_eq!(route("GET", "/api/account", None), Ok(Route::Account));
    }

    #[test]
    fn allow_lists_the_methods_a_path_answers() {
        assert_eq!(allowed_methods("/api/sync"), ["GET", "POST", "OPTIONS"]);
        assert_eq!(
            allowed_methods("/api/sync/k"),
            ["GET", "PUT", "DELETE", "OPTIONS"]
        );
        assert_eq!(allowed_methods("/api/devices/d"), ["DELETE", "OPTIONS"]);
        assert_eq!(allowed_methods("/api/sync/k/history/3"), ["GET", "OPTIONS"]);
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
        assert_eq!(
            route("PUT", "/api/sync/k/history", None),
            Err(SyncError::MethodNotAllowed)
        );
        assert_eq!(
            route("GET", "/api/devices/x/y", None),
            Err(SyncError::NotFound)
        );
        for v in [
            "0",
            "-1",
            "x",
            "",
            "1.5",
            "99999999999999999999",
            "9007199254740992",
        ] {
            assert_eq!(
                route("GET", &format!("/api/sync/k/history/{v}"), None)
                    .unwrap_err()
                    .code(),
                "invalid_request",
                "version {v:?}"
            );
        }
        for q in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "before=-2",
            "before=9007199254740992",
        ] {
            assert_eq!(
                route("GET", "/api/sync/k/history", Some(q))
                    .unwrap_err()
                    .code(),
                "invalid_request",
                "{q}"
            );
        }
        assert_eq!(
            route("GET", "/api/sync", Some("since=9007199254740991")),
            Ok(Route::Snapshot {
                since: 9_007_199_254_740_991
            })
        );
        for q in ["since=-1", "since=abc", "since=", "since=9007199254740992"] {
            assert_eq!(
                route("GET", "/api/sync", Some(q)).unwrap_err().code(),
                "invalid_request"
            );
        }
    }
}
