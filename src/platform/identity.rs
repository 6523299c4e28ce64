//! How the Worker and a user's Durable Object talk: the verified identity
//! the Worker attaches to every request it forwards, and the Worker's own
//! commands to the object, which no client route maps to.

use crate::error::SyncError;
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use wasm_bindgen::JsValue;
use worker::{Env, Headers, Request, RequestInit, Response};

/// Identity headers. A client never reaches the object directly, and the
/// forwarded request is built from scratch, so a client-sent copy of these
/// never gets through.
const USER_HEADER: &str = "x-sync-user-id";
const DEVICE_HEADER: &str = "x-sync-device-id";
/// Percent-encoded device name, for presence.
const DEVICE_NAME_HEADER: &str = "x-sync-device-name";
/// When the device's token expires (ms), for its sockets.
const DEVICE_EXPIRES_HEADER: &str = "x-sync-device-expires";
/// The path of the Worker's commands to the object.
const COMMAND_PATH: &str = "/internal/command";
const COMMAND_HEADER: &str = "x-sync-command";
/// The name of `Command::CloseDevices` (the ids are in the body).
const CLOSE_DEVICES: &str = "close-devices";

/// Who a request is from, as the Worker verified it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user_id: String,
    pub device_id: String,
    pub device_name: String,
    /// When the device's token expires (ms), as the Worker last read it.
    pub expires_at: i64,
}

/// What the Worker asks of a user's object outside any client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Close the sockets of a device that was signed out.
    CloseDevice(String),
    /// Close the sockets of devices signed out together (signing out
    /// everywhere, a password change). The ids travel in the body: an
    /// account can have many devices.
    CloseDevices(Vec<String>),
}

fn internal<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> SyncError {
    move |e| SyncError::Internal(format!("{what}: {e}"))
}

impl Identity {
    /// The identity the Worker attached to a forwarded request.
    pub fn from_request(req: &Request) -> Result<Self, SyncError> {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .ok()
                .flatten()
                .ok_or_else(|| SyncError::Internal(format!("missing {name} from the Worker")))
        };
        let name = header(DEVICE_NAME_HEADER)?;
        let expires_at = header(DEVICE_EXPIRES_HEADER)?
            .parse()
            .map_err(internal("device expiry from the Worker"))?;
        Ok(Self {
            user_id: header(USER_HEADER)?,
            device_id: header(DEVICE_HEADER)?,
            device_name: percent_decode_str(&name).decode_utf8_lossy().into_owned(),
            expires_at,
        })
    }
}

impl Command {
    /// The command a request carries, if it is one (checked before routing).
    pub async fn from_request(req: &mut Request) -> Result<Option<Self>, SyncError> {
        if req.path() != COMMAND_PATH {
            return Ok(None);
        }
        let header = req.headers().get(COMMAND_HEADER).ok().flatten();
        match header.as_deref() {
            Some(CLOSE_DEVICES) => {
                let body = req.bytes().await.map_err(internal("command body"))?;
                let ids = serde_json::from_slice(&body).map_err(internal("device ids"))?;
                Ok(Some(Self::CloseDevices(ids)))
            }
            Some(h) => match h.strip_prefix("close-device:") {
                Some(device) => Ok(Some(Self::CloseDevice(device.to_owned()))),
                None => Err(SyncError::Internal(
                    "unknown command from the Worker".into(),
                )),
            },
            None => Err(SyncError::Internal("command without a name".into())),
        }
    }

    fn header(&self) -> String {
        match self {
            Self::CloseDevice(device) => format!("close-device:{device}"),
            Self::CloseDevices(_) => CLOSE_DEVICES.to_owned(),
        }
    }

    fn body(&self) -> Result<Option<JsValue>, SyncError> {
        match self {
            Self::CloseDevice(_) => Ok(None),
            Self::CloseDevices(ids) => {
                let json = serde_json::to_string(ids).map_err(internal("device ids"))?;
                Ok(Some(JsValue::from_str(&json)))
            }
        }
    }
}

/// Hands a request to the user's Durable Object with the verified identity.
/// The request is built afresh, so nothing a client sent besides the body
/// (and the path) reaches the object.
pub async fn forward(
    env: &Env,
    id: &Identity,
    method: &str,
    path_and_query: &str,
    body: Option<JsValue>,
    headers: Headers,
) -> Result<Response, SyncError> {
    let name = utf8_percent_encode(&id.device_name, NON_ALPHANUMERIC).to_string();
    let expires = id.expires_at.to_string();
    for (k, v) in [
        (USER_HEADER, id.user_id.as_str()),
        (DEVICE_HEADER, id.device_id.as_str()),
        (DEVICE_NAME_HEADER, name.as_str()),
        (DEVICE_EXPIRES_HEADER, expires.as_str()),
    ] {
        headers.set(k, v).map_err(internal("header"))?;
    }
    let mut init = RequestInit::new();
    init.with_method(worker::Method::from(method.to_string()))
        .with_headers(headers);
    init.with_body(body);
    let target = format!("https://user-hub{path_and_query}");
    let inner = Request::new_with_init(&target, &init).map_err(internal("request"))?;
    let namespace = env
        .durable_object("USER_HUB")
        .map_err(internal("durable object"))?;
    let stub = namespace
        .id_from_name(&id.user_id)
        .and_then(|oid| oid.get_stub())
        .map_err(internal("durable object"))?;
    stub.fetch_with_request(inner)
        .await
        .map_err(internal("durable object fetch"))
}

/// Sends a command to the object of `id`'s user.
pub async fn send_command(env: &Env, id: &Identity, command: &Command) -> Result<(), SyncError> {
    let headers = Headers::new();
    headers
        .set(COMMAND_HEADER, &command.header())
        .map_err(internal("header"))?;
    forward(env, id, "POST", COMMAND_PATH, command.body()?, headers).await?;
    Ok(())
}
