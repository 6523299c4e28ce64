//! The Worker's entry point: CORS, routing, authentication, the auth
//! endpoints, and forwarding of every sync request to the user's UserHub.

use super::config::Config;
use super::d1::{self, NewDevice};
use super::identity::{forward, send_command, Command, Identity};
use super::{crypto, http, now_ms};
use crate::account::{ChangePasswordRequest, SignedOutResponse};
use crate::auth::{self, decoy_record, PasswordRecord};
use crate::error::SyncError;
use crate::model::{self, Email, Password, MAX_BODY_BYTES};
use crate::protocol::{parse_json, ws_offer, AuthRequest, AuthResponse, OkResponse};
use crate::ratelimit::ip_bucket;
use crate::route::{route, Route};
use wasm_bindgen::JsValue;
use worker::{event, Context, D1Database, Env, Headers, Request, Response};

/// Auth bodies are tiny; anything bigger is not a person signing in.
const AUTH_BODY_LIMIT: usize = 16 * 1024;

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let config = Config::from_env(&env);
    let origin = req.headers().get("origin").ok().flatten();
    if req.inner().method().eq_ignore_ascii_case("OPTIONS") {
        return Ok(http::preflight(origin.as_deref(), &config));
    }
    let resp = http::from_result(handle(&mut req, &env, &config).await);
    if resp.status_code() == 101 {
        return Ok(resp);
    }
    if resp.status_code() == 405 {
        let path = req.path();
        let _ = resp
            .headers()
            .set("allow", &crate::route::allowed_methods(&path).join(", "));
    }
    Ok(http::with_cors(resp, origin.as_deref(), &config))
}

fn internal<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> SyncError {
    move |e| SyncError::Internal(format!("{what}: {e}"))
}

async fn handle(req: &mut Request, env: &Env, config: &Config) -> Result<Response, SyncError> {
    let url = req.url().map_err(internal("url"))?;
    let method = req.inner().method();
    let route = route(&method, url.path(), url.query())?;
    let db = env.d1("DB").map_err(internal("D1 binding"))?;
    match route {
        Route::Register => register(req, &db, config).await,
        Route::Login => login(req, &db, config).await,
        Route::Logout => {
            let id = authenticate(req, &db, config).await?;
            let device = id.device_id.clone();
            revoke(env, &db, id, &device).await
        }
        Route::RevokeDevice(device) => {
            let id = authenticate(req, &db, config).await?;
            revoke(env, &db, id, &device).await
        }
        Route::LogoutAll => {
            let id = authenticate(req, &db, config).await?;
            let revoked = d1::revoke_all(&db, &id.user_id, None, now_ms()).await?;
            signed_out(env, &id, revoked).await
        }
        Route::ChangePassword => change_password(req, env, &db, config).await,
        Route::OpenApi => Ok(http::text(
            200,
            "application/yaml; charset=utf-8",
            OPENAPI_YAML,
        )),
        Route::Socket => {
            let id = authenticate_socket(req, &url, &db, config).await?;
            let headers = Headers::new();
            headers
                .set("upgrade", "websocket")
                .map_err(internal("header"))?;
            forward(env, &id, "GET", &hub_path(&url, None), None, headers).await
        }
        _ => {
            let id = authenticate(req, &db, config).await?;
            // The body streams through to the object, which enforces the
            // limit while reading; buffering it here too would hold every
            // large value twice in memory.
            http::check_declared_length(req, MAX_BODY_BYTES)?;
            let body = req.inner().body().map(JsValue::from);
            let path = hub_path(&url, url.query());
            forward(env, &id, &method, &path, body, Headers::new()).await
        }
    }
}

/// The API description, shipped inside the Worker so it always matches it.
const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// Signs `device` of the caller's user out and closes its sockets. Another
/// user's device is answered like one that does not exist.
async fn revoke(
    env: &Env,
    db: &D1Database,
    caller: Identity,
    device: &str,
) -> Result<Response, SyncError> {
    if !d1::revoke_device(db, &caller.user_id, device, now_ms()).await? {
        return Err(SyncError::Missing(format!(
            "no signed-in device {device:?} on this account"
        )));
    }
    // The revocation already holds for every new request; closing the live
    // sockets can only fail if the object is unreachable, so it is logged.
    let close = Command::CloseDevice(device.to_owned());
    if let Err(e) = send_command(env, &caller, &close).await {
        worker::console_error!("closing sockets of a revoked device: {e}");
    }
    Ok(http::json(200, &OkResponse { success: true }))
}

/// Closes the sockets of devices just revoked and says how many there were.
async fn signed_out(
    env: &Env,
    caller: &Identity,
    revoked: Vec<String>,
) -> Result<Response, SyncError> {
    let signed_out = revoked.len() as u64;
    if !revoked.is_empty() {
        // As for one device: the revocation already holds; a failure to
        // reach the object is logged.
        let close = Command::CloseDevices(revoked);
        if let Err(e) = send_command(env, caller, &close).await {
            worker::console_error!("closing sockets of revoked devices: {e}");
        }
    }
    Ok(http::json(
        200,
        &SignedOutResponse {
            success: true,
            signed_out,
        },
    ))
}

/// The WebSocket handshake: Origin allow-list (requests without Origin, like
/// the desktop app's, pass), then the token from `Sec-WebSocket-Protocol`.
/// A token in the URL is never looked at.
async fn authenticate_socket(
    req: &Request,
    url: &worker::Url,
    db: &D1Database,
    config: &Config,
) -> Result<Identity, SyncError> {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    if !header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        return Err(SyncError::UpgradeRequired);
    }
    if let Some(origin) = header("origin") {
        let own = url.origin().ascii_serialization();
        if origin != own && !config.origin_allowed(&origin) {
            return Err(SyncError::OriginNotAllowed);
        }
    }
    let offered = header("sec-websocket-protocol").unwrap_or_default();
    let (ours, token) = ws_offer(&offered);
    let token = token.ok_or(SyncError::Unauthorized)?;
    if !ours {
        return Err(SyncError::InvalidRequest(format!(
            "offer the WebSocket subprotocol {}",
            crate::protocol::WS_PROTOCOL
        )));
    }
    authenticate_token(token, db, config).await
}

fn bearer(req: &Request) -> Option<String> {
    let header = req.headers().get("authorization").ok().flatten()?;
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

async fn authenticate(
    req: &Request,
    db: &D1Database,
    config: &Config,
) -> Result<Identity, SyncError> {
    let token = bearer(req).ok_or(SyncError::Unauthorized)?;
    authenticate_token(&token, db, config).await
}

/// Resolves a token to its live device, sliding the expiry on use.
async fn authenticate_token(
    token: &str,
    db: &D1Database,
    config: &Config,
) -> Result<Identity, SyncError> {
    if !auth::token_looks_valid(token) {
        return Err(SyncError::Unauthorized);
    }
    let hash = auth::token_hash(token);
    let device = d1::device_by_token_hash(db, &hash)
        .await?
        .ok_or(SyncError::Unauthorized)?;
    let now = now_ms();
    if !auth::constant_time_eq(device.token_hash.as_bytes(), hash.as_bytes())
        || device.expires_at as i64 <= now
    {
        return Err(SyncError::Unauthorized);
    }
    // Slide the expiry (never past the absolute lifetime) often enough
    // that a device in use never expires while idle.
    let lifetimes = config.lifetimes;
    let mut expires_at = device.expires_at as i64;
    if lifetimes.touch_due(device.last_seen_at as i64, now) {
        expires_at = lifetimes.expires_at(device.created_at as i64, now);
        d1::touch_device(db, &device.id, now, expires_at).await?;
    }
    Ok(Identity {
        user_id: device.user_id,
        device_id: device.id,
        device_name: device.name,
        expires_at,
    })
}

async fn new_device_token(
    db: &D1Database,
    config: &Config,
    user_id: &str,
    name: Option<&str>,
    create_user: Option<(&Email, &PasswordRecord)>,
) -> Result<AuthResponse, SyncError> {
    let token = crypto::new_token()?;
    let token_hash = auth::token_hash(&token);
    let device_id = crypto::new_id();
    let name = model::device_name(name);
    let now = now_ms();
    let device = NewDevice {
        id: &device_id,
        user_id,
        name: &name,
        token_hash: &token_hash,
        now,
        expires_at: config.lifetimes.expires_at(now, now),
    };
    match create_user {
        Some((email, record)) => {
            d1::create_user(db, email.as_str(), &record.encode(), &device).await?
        }
        None => d1::create_device(db, &device).await?,
    }
    Ok(AuthResponse {
        success: true,
        token,
        user_id: user_id.to_string(),
        device_id,
    })
}

/// The client's rate-limit bucket (IPv6 by /64).
fn client_ip(req: &Request) -> String {
    let ip = req.headers().get("cf-connecting-ip").ok().flatten();
    ip_bucket(ip.as_deref().unwrap_or(""))
}

async fn register(
    req: &mut Request,
    db: &D1Database,
    config: &Config,
) -> Result<Response, SyncError> {
    let body = http::read_body(req, AUTH_BODY_LIMIT).await?;
    let r: AuthRequest = parse_json(&body)?;
    let email = Email::parse(&r.email)?;
    let password = Password::parse(&r.password)?;
    config.registration.permits(&email)?;
    // Each registration costs a PBKDF2 derivation: counted (per IP, and per
    // email like a login) before hashing.
    let ip = format!("register-ip:{}", client_ip(req));
    let mail = format!("email:{}", email.as_str());
    let buckets = [
        (ip.as_str(), config.registrations_per_ip),
        (mail.as_str(), config.login_failures_per_email),
    ];
    let windows = d1::count_attempts(db, &buckets, now_ms()).await?;
    let record = crypto::hash_password(password.as_bytes()).await?;
    let user_id = crypto::new_id();
    let answer = new_device_token(
        db,
        config,
        &user_id,
        r.device_name.as_deref(),
        Some((&email, &record)),
    )
    .await?;
    d1::forgive(db, &buckets[1..], &windows[1..]).await?;
    Ok(http::json(201, &answer))
}

async fn login(req: &mut Request, db: &D1Database, config: &Config) -> Result<Response, SyncError> {
    let body = http::read_body(req, AUTH_BODY_LIMIT).await?;
    let r: AuthRequest = parse_json(&body)?;
    let email = Email::parse(&r.email)?;
    if r.password.len() > model::MAX_PASSWORD_BYTES {
        return Err(SyncError::InvalidCredentials);
    }
    let mail = format!("email:{}", email.as_str());
    let ip = format!("ip:{}", client_ip(req));
    let buckets = [
        (mail.as_str(), config.login_failures_per_email),
        (ip.as_str(), config.login_failures_per_ip),
    ];
    // Counted before hashing, atomically: concurrent guesses cannot all
    // reach the password check. A success is taken back below.
    let windows = d1::count_attempts(db, &buckets, now_ms()).await?;
    let user = d1::user_by_email(db, email.as_str()).await?;
    let record = user
        .as_ref()
        .and_then(|u| PasswordRecord::decode(&u.password));
    // Unknown emails cost the same hashing time as wrong passwords.
    let matches = crypto::verify_password(
        record.as_ref().unwrap_or(&decoy_record()),
        r.password.as_bytes(),
    )
    .await?;
    let user = match (user, record.is_some() && matches) {
        (Some(user), true) => user,
        _ => return Err(SyncError::InvalidCredentials),
    };
    d1::forgive(db, &buckets, &windows).await?;
    let answer = new_device_token(db, config, &user.id, r.device_name.as_deref(), None).await?;
    Ok(http::json(200, &answer))
}

/// `POST /api/auth/password`: the current password is required (and its
/// check counted like a login for the email); other devices are signed out
/// unless `signOutOthers` is false.
async fn change_password(
    req: &mut Request,
    env: &Env,
    db: &D1Database,
    config: &Config,
) -> Result<Response, SyncError> {
    let id = authenticate(req, db, config).await?;
    let body = http::read_body(req, AUTH_BODY_LIMIT).await?;
    let r: ChangePasswordRequest = parse_json(&body)?;
    let new = Password::parse(&r.new_password)?;
    if r.current_password.len() > model::MAX_PASSWORD_BYTES {
        return Err(SyncError::WrongPassword);
    }
    let user = d1::account(db, &id.user_id)
        .await?
        .ok_or(SyncError::Unauthorized)?;
    let mail = format!("email:{}", user.email);
    let buckets = [(mail.as_str(), config.login_failures_per_email)];
    let windows = d1::count_attempts(db, &buckets, now_ms()).await?;
    let record = PasswordRecord::decode(&user.password)
        .ok_or_else(|| SyncError::Internal("stored password record unreadable".into()))?;
    if !crypto::verify_password(&record, r.current_password.as_bytes()).await? {
        return Err(SyncError::WrongPassword);
    }
    d1::forgive(db, &buckets, &windows).await?;
    let record = crypto::hash_password(new.as_bytes()).await?;
    d1::set_password(db, &id.user_id, &record.encode()).await?;
    let revoked = if r.sign_out_others.unwrap_or(true) {
        d1::revoke_all(db, &id.user_id, Some(&id.device_id), now_ms()).await?
    } else {
        Vec::new()
    };
    signed_out(env, &id, revoked).await
}

/// The path and query a sync request has at the user's object.
fn hub_path(url: &worker::Url, query: Option<&str>) -> String {
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{}{query}", url.path())
}
