//! Settings from `wrangler.toml` [vars], with defaults when unset or invalid.

use crate::lifetime::Lifetimes;
use crate::quota::Limits;
use crate::registration::Registration;
use worker::Env;

pub struct Config {
    pub allowed_origins: Vec<String>,
    pub lifetimes: Lifetimes,
    pub registration: Registration,
    pub quota: Limits,
    pub login_failures_per_email: u32,
    pub login_failures_per_ip: u32,
    pub registrations_per_ip: u32,
    pub write_burst: u32,
    pub writes_per_minute: u32,
    pub retention: Retention,
    /// Log D1's own row counts per statement (`D1_COST_LOG=1`, benchmarks).
    pub d1_cost_log: bool,
    /// How long a busy hub waits for more writes before a commit.
    pub group_linger_ms: u64,
}

/// How much history to keep per key: a version is dropped only once it is
/// neither among the key's newest `versions` nor younger than `max_age_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub versions: u32,
    pub max_age_ms: i64,
    /// Retention runs for a key once per this many of its versions.
    pub every: u64,
    /// Above this many stored bytes a user's history is kept by count only
    /// (`versions`), whatever its age.
    pub max_bytes: u64,
}

fn var<T: std::str::FromStr>(env: &Env, name: &str, default: T) -> T {
    env.var(name)
        .ok()
        .and_then(|v| v.to_string().trim().parse().ok())
        .unwrap_or(default)
}

/// `<PREFIX>_SECONDS` when set (> 0), else `<PREFIX>_DAYS`, in ms.
fn seconds_or_days(env: &Env, prefix: &str, default_days: i64) -> i64 {
    match var(env, &format!("{prefix}_SECONDS"), 0i64) {
        secs if secs > 0 => secs * 1000,
        _ => var(env, &format!("{prefix}_DAYS"), default_days).max(1) * 86_400_000,
    }
}

impl Config {
    pub fn from_env(env: &Env) -> Self {
        let origins: String = var(env, "ALLOWED_ORIGINS", String::new());
        Self {
            allowed_origins: origins
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect(),
            // *_SECONDS, when set, win: tests use a few seconds.
            lifetimes: Lifetimes {
                idle_ms: seconds_or_days(env, "TOKEN_IDLE", 90),
                max_ms: seconds_or_days(env, "TOKEN_MAX", 365),
            },
            registration: Registration::parse(
                env.var("REGISTRATION")
                    .ok()
                    .map(|v| v.to_string())
                    .as_deref(),
                &var(env, "REGISTRATION_ALLOWLIST", String::new()),
            ),
            quota: Limits {
                bytes: var(env, "QUOTA_BYTES", Limits::DEFAULT_BYTES),
                keys: var(env, "QUOTA_KEYS", Limits::DEFAULT_KEYS),
                writes_per_day: var(env, "WRITES_PER_DAY", Limits::DEFAULT_WRITES_PER_DAY),
            },
            login_failures_per_email: var(env, "LOGIN_FAILURES_PER_EMAIL", 10),
            login_failures_per_ip: var(env, "LOGIN_FAILURES_PER_IP", 30),
            registrations_per_ip: var(env, "REGISTRATIONS_PER_IP", 30),
            write_burst: var(env, "WRITE_BURST", 300),
            writes_per_minute: var(env, "WRITES_PER_MINUTE", 600),
            d1_cost_log: var(env, "D1_COST_LOG", 0u8) == 1,
            group_linger_ms: var(env, "GROUP_LINGER_MS", 1u64).min(50),
            retention: Retention {
                // The current version is always kept.
                versions: var(env, "HISTORY_VERSIONS", 50u32).max(1),
                max_age_ms: var(env, "HISTORY_DAYS", 30i64).max(0) * 86_400_000,
                every: var(env, "HISTORY_PRUNE_EVERY", 8u64).max(1),
                max_bytes: var(env, "HISTORY_BYTES", 50_000_000u64),
            },
        }
    }

    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == origin)
    }
}
