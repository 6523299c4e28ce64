//! The operator's API under `/api/admin/` (what `scripts/admin.sh` calls),
//! authenticated by the `ADMIN_TOKEN` secret rather than a device: it is
//! off unless that secret is set. It runs in the Worker because disabling
//! and deleting must close live sockets and drop a hub's memory at once,
//! which only the Worker can ask of a Durable Object.

use super::config::Config;
use super::d1;
use super::identity::{forward, send_command, Command, Identity};
use super::router::{bearer, client_ip, erase, signed_out};
use super::{crypto, http, now_ms};
use crate::account::{
    allowlist_entries, AdminUsersResponse, AllowRequest, AllowlistResponse, QuotaRequest,
    QuotaResponse, ResetCodeResponse,
};
use crate::auth::{self, RESET_CODE_BYTES, RESET_CODE_TTL_MS};
use crate::error::SyncError;
use crate::model::Email;
use crate::protocol::{parse_json, OkResponse};
use crate::registration::parse_entry;
use crate::route::Route;
use worker::{D1Database, Env, Headers, Request, Response};

/// Admin bodies are tiny.
const ADMIN_BODY_LIMIT: usize = 16 * 1024;

pub async fn handle(
    req: &mut Request,
    env: &Env,
    db: &D1Database,
    config: &Config,
    route: Route,
) -> Result<Response, SyncError> {
    let Some(expected) = config.admin_token.as_deref() else {
        return Err(SyncError::Missing(
            "the admin API is off on this server: set the ADMIN_TOKEN secret \
             (`wrangler secret put ADMIN_TOKEN`, at least 32 characters)"
                .into(),
        ));
    };
    // Counted before the check, as sign-ins are: guesses from one address
    // stop at LOGIN_FAILURES_PER_IP a minute; the operator's own requests
    // are taken back.
    let bucket = format!("admin-ip:{}", client_ip(req));
    let buckets = [(bucket.as_str(), config.login_failures_per_ip)];
    let windows = d1::count_attempts(db, &buckets, now_ms()).await?;
    let given = bearer(req).unwrap_or_default();
    if !auth::admin_token_matches(expected, &given) {
        return Err(SyncError::Unauthorized);
    }
    d1::forgive(db, &buckets, &windows).await?;
    match route {
        Route::AdminUsers => {
            let users = d1::admin_users(db, config.quota, now_ms()).await?;
            Ok(http::json(
                200,
                &AdminUsersResponse {
                    success: true,
                    users,
                },
            ))
        }
        Route::AdminResetCode(email) => {
            let user = user(db, &email).await?;
            let code = auth::reset_code_from_bytes(&crypto::random_bytes::<RESET_CODE_BYTES>()?);
            let normal = auth::normalize_reset_code(&code)
                .ok_or_else(|| SyncError::Internal("a reset code did not read back".into()))?;
            let now = now_ms();
            let expires_at = now + RESET_CODE_TTL_MS;
            d1::issue_reset_code(
                db,
                &user.id,
                &auth::reset_code_hash(&normal),
                now,
                expires_at,
            )
            .await?;
            Ok(http::json(
                200,
                &ResetCodeResponse {
                    success: true,
                    email: user.email,
                    code,
                    expires_at,
                },
            ))
        }
        Route::AdminDisable(email) => {
            let user = user(db, &email).await?;
            let revoked = d1::disable_account(db, &user.id, now_ms()).await?;
            signed_out(env, &Identity::operator(&user.id), revoked).await
        }
        Route::AdminEnable(email) => {
            let user = user(db, &email).await?;
            d1::enable_account(db, &user.id).await?;
            Ok(http::json(200, &OkResponse { success: true }))
        }
        Route::AdminDeleteUser(email) => {
            let user = user(db, &email).await?;
            let revoked = erase(env, db, &user.id, &user.email).await?;
            Ok(http::json(
                200,
                &crate::account::SignedOutResponse {
                    success: true,
                    signed_out: revoked.len() as u64,
                },
            ))
        }
        Route::AdminQuota(email) => {
            let user = user(db, &email).await?;
            let body = http::read_body(req, ADMIN_BODY_LIMIT).await?;
            let r: QuotaRequest = parse_json(&body)?;
            let overrides = r.apply_to(d1::quota_overrides(db, &user.id).await?);
            d1::set_quota(db, &user.id, &overrides).await?;
            // The hub holds the old limits with its state: it drops them.
            let id = Identity::operator(&user.id);
            if let Err(e) = send_command(env, &id, &Command::Forget).await {
                worker::console_error!("telling a hub of new limits: {e}");
            }
            Ok(http::json(
                200,
                &QuotaResponse {
                    success: true,
                    email: user.email,
                    quota: overrides.apply(config.quota),
                    overrides,
                },
            ))
        }
        Route::AdminExport(email) => {
            let user = user(db, &email).await?;
            let id = Identity::operator(&user.id);
            forward(env, &id, "GET", "/api/export", None, Headers::new()).await
        }
        Route::AdminAllowlist => allowlist(db, config).await,
        Route::AdminAllow => {
            let body = http::read_body(req, ADMIN_BODY_LIMIT).await?;
            let r: AllowRequest = parse_json(&body)?;
            d1::set_allowlist(db, &parse_entry(&r.entry)?, true, now_ms()).await?;
            allowlist(db, config).await
        }
        Route::AdminDisallow(entry) => {
            d1::set_allowlist(db, &parse_entry(&entry)?, false, now_ms()).await?;
            allowlist(db, config).await
        }
        _ => Err(SyncError::NotFound),
    }
}

/// The account an admin route names; 404 when there is none.
async fn user(db: &D1Database, raw: &str) -> Result<d1::UserRow, SyncError> {
    let email = Email::parse(raw)?;
    d1::user_by_email(db, email.as_str())
        .await?
        .ok_or_else(|| SyncError::Missing(format!("no account with the email {raw:?}")))
}

async fn allowlist(db: &D1Database, config: &Config) -> Result<Response, SyncError> {
    let rows = d1::allowlist_rows(db, None).await?;
    Ok(http::json(
        200,
        &AllowlistResponse {
            success: true,
            mode: config.registration.mode().to_owned(),
            entries: allowlist_entries(config.registration.seed(), &rows),
        },
    ))
}
