//! Integration tests against the real Worker under `wrangler dev` (workerd,
//! local D1, local Durable Objects), spoken to over HTTP as a client would.
//!
//! `cargo test --test api` after `scripts/build.sh`. The harness starts its
//! servers at once, each with fresh state in a copy of the project (so a
//! rebuild during the run changes nothing): `main` with wrangler.toml's
//! configuration, `strict` with tiny rate limits for the few rate-limit
//! tests, and `oversize` for the requests whose bodies exceed the limit.
//! Every test registers its own users, so tests run in parallel without
//! interfering. Requests go straight to the runtime rather than through
//! wrangler dev's proxy (see `server::Endpoint`); the database is read from
//! a copy (see `Server::db`).
//!
//! Environment: `API_TESTS_KEEP_STATE=1` keeps the state directories (D1
//! files and wrangler logs) for inspection; `API_TESTS_TIMING=1` (with
//! `--nocapture`) prints how long each test took; `API_TESTS_VIA_PROXY=1`
//! sends requests through wrangler dev's proxy as a browser would.

use libtest_mimic::{Arguments, Failed, Trial};
use std::sync::OnceLock;
use std::thread;
use std::time::Instant;

/// Fails the test with a message (and where) unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(libtest_mimic::Failed::from(format!(
                "{} (at {}:{})", format!($($arg)+), file!(), line!()
            )));
        }
    };
}

/// Fails the test unless `got == expected`, showing both.
macro_rules! ensure_eq {
    ($got:expr, $expected:expr, $($arg:tt)+) => {
        match (&$got, &$expected) {
            (got, expected) => {
                if *got != *expected {
                    return Err(libtest_mimic::Failed::from(format!(
                        "{}: expected {:?}, got {:?} (at {}:{})",
                        format!($($arg)+), expected, got, file!(), line!()
                    )));
                }
            }
        }
    };
}

mod auth;
mod backup;
mod client;
mod concurrency;
mod conflicts;
mod cors;
mod devices;
mod hardening;
mod history;
mod limits;
mod live;
mod merging;
mod quotas;
mod ratelimit;
mod records;
mod retry;
mod security;
mod server;
mod sessions;
mod spec;
mod sync;
mod upgrade;
mod values;

use server::Server;

/// Which server a test needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    Main,
    Strict,
    /// Bodies over the limit, refused before they are read. An unread
    /// streamed body breaks wrangler dev's proxy for every later request
    /// (with `API_TESTS_VIA_PROXY`), and an early answer to a large upload can
    /// cut its connection: such requests get a server of their own.
    Oversize,
    /// Device tokens that expire after a few idle seconds (and 20 s after
    /// sign-in however used), and a history that keeps only a few versions.
    Expiry,
    /// A database written by schema version 1, upgraded by migrations/.
    Upgrade,
    /// wrangler.toml's own registration setting, as a fresh deployment has it.
    Locked,
    /// Tiny per-user quotas.
    Quota,
    /// A tiny history byte budget (retention by count only above it).
    Retention,
}

impl On {
    const ALL: [On; 8] = [
        On::Main,
        On::Strict,
        On::Oversize,
        On::Expiry,
        On::Upgrade,
        On::Locked,
        On::Quota,
        On::Retention,
    ];

    fn label(self) -> &'static str {
        match self {
            On::Main => "main",
            On::Strict => "strict",
            On::Oversize => "oversize",
            On::Expiry => "expiry",
            On::Upgrade => "upgrade",
            On::Locked => "locked",
            On::Quota => "quota",
            On::Retention => "retention",
        }
    }

    fn start(self) -> Result<Server, String> {
        match self {
            On::Upgrade => Server::start_upgraded(self.label(), &upgrade::seed()),
            _ => Server::start(self.label(), self.vars()),
        }
    }

    /// `--var` overrides of wrangler.toml's `[vars]`.
    fn vars(self) -> &'static [(&'static str, &'static str)] {
        match self {
            On::Main | On::Oversize | On::Upgrade => &[],
            On::Strict => STRICT_VARS,
            On::Expiry => EXPIRY_VARS,
            On::Locked => &[("REGISTRATION", "")],
            On::Quota => QUOTA_VARS,
            On::Retention => RETENTION_VARS,
        }
    }
}

pub type TestFn = fn(&Server) -> Result<(), Failed>;

pub struct Test {
    pub name: &'static str,
    pub on: On,
    pub run: TestFn,
}

impl Test {
    pub const fn main(name: &'static str, run: TestFn) -> Test {
        Test {
            name,
            on: On::Main,
            run,
        }
    }

    pub const fn strict(name: &'static str, run: TestFn) -> Test {
        Test {
            name,
            on: On::Strict,
            run,
        }
    }

    pub const fn expiry(name: &'static str, run: TestFn) -> Test {
        Test {
            name,
            on: On::Expiry,
            run,
        }
    }

    pub const fn retention(name: &'static str, run: TestFn) -> Test {
        Test {
            name,
            on: On::Retention,
            run,
        }
    }

    pub const fn upgrade(name: &'static str, run: TestFn) -> Test {
        Test {
            name,
            on: On::Upgrade,
            run,
        }
    }

    pub const fn on(on: On, name: &'static str, run: TestFn) -> Test {
        Test { name, on, run }
    }

    pub const fn oversize(name: &'static str, run: TestFn) -> Test {
        Test {
            name,
            on: On::Oversize,
            run,
        }
    }
}

/// The expiry server's idle period.
pub const EXPIRY_IDLE_MS: u64 = 4_000;
/// The expiry server's absolute token lifetime.
pub const EXPIRY_MAX_MS: u64 = 20_000;
/// The expiry server also keeps a short history: 3 versions, no extra days,
/// pruned on every write.
const EXPIRY_VARS: &[(&str, &str)] = &[
    ("TOKEN_IDLE_SECONDS", "4"),
    ("TOKEN_MAX_SECONDS", "20"),
    ("HISTORY_VERSIONS", "3"),
    ("HISTORY_DAYS", "0"),
    ("HISTORY_PRUNE_EVERY", "1"),
];

/// The strict server's limits; the rate-limit tests read them from here.
pub const STRICT_WRITE_BURST: u32 = 5;
pub const STRICT_LOGIN_FAILURES_PER_EMAIL: u32 = 3;
pub const STRICT_LOGIN_FAILURES_PER_IP: u32 = 5;
pub const STRICT_REGISTRATIONS_PER_IP: u32 = 5;
/// The strict server also admits only these sign-ups (the tests' emails
/// are all at example.com).
pub const STRICT_ALLOWLIST: &str = "@example.com, Owner@Family.test";
const STRICT_VARS: &[(&str, &str)] = &[
    ("WRITE_BURST", "5"),
    ("WRITES_PER_MINUTE", "6"),
    ("LOGIN_FAILURES_PER_EMAIL", "3"),
    ("LOGIN_FAILURES_PER_IP", "5"),
    ("REGISTRATIONS_PER_IP", "5"),
    ("REGISTRATION", "allowlist"),
    ("REGISTRATION_ALLOWLIST", STRICT_ALLOWLIST),
];

/// The retention server: history kept 30 days (the default) but with a
/// byte budget of 3,000 per user, retention on every write.
const RETENTION_VARS: &[(&str, &str)] = &[
    ("HISTORY_BYTES", "3000"),
    ("HISTORY_VERSIONS", "2"),
    ("HISTORY_PRUNE_EVERY", "1"),
];

/// The quota server's limits (the write rate is out of the way).
pub const QUOTA_BYTES: u64 = 20_000;
pub const QUOTA_KEYS: u64 = 100;
pub const QUOTA_WRITES_PER_DAY: u64 = 150;
const QUOTA_VARS: &[(&str, &str)] = &[
    ("QUOTA_BYTES", "20000"),
    ("QUOTA_KEYS", "100"),
    ("WRITES_PER_DAY", "150"),
    ("WRITE_BURST", "100000"),
    ("WRITES_PER_MINUTE", "100000000"),
];

/// A server, or why it could not start (reported by every test that needs
/// it); `None` when no selected test needs it.
type Started = Option<Result<Server, String>>;

/// One slot per `On`, in `On::ALL` order.
static SERVERS: OnceLock<Vec<Started>> = OnceLock::new();

fn server_for(on: On) -> Result<&'static Server, Failed> {
    let servers = SERVERS.get().ok_or("servers were not started")?;
    match &servers[on as usize] {
        Some(Ok(s)) => Ok(s),
        Some(Err(e)) => Err(Failed::from(format!("server not available: {e}"))),
        None => Err(Failed::from("server was not started")),
    }
}

fn all_tests() -> Vec<Test> {
    let mut tests = Vec::new();
    tests.extend(auth::tests());
    tests.extend(sync::tests());
    tests.extend(conflicts::tests());
    tests.extend(retry::tests());
    tests.extend(concurrency::tests());
    tests.extend(live::tests());
    tests.extend(values::tests());
    tests.extend(limits::tests());
    tests.extend(security::tests());
    tests.extend(cors::tests());
    tests.extend(ratelimit::tests());
    tests.extend(history::tests());
    tests.extend(devices::tests());
    tests.extend(backup::tests());
    tests.extend(merging::tests());
    tests.extend(spec::tests());
    tests.extend(upgrade::tests());
    tests.extend(hardening::tests());
    tests.extend(sessions::tests());
    tests.extend(quotas::tests());
    tests.extend(records::tests());
    tests
}

fn main() {
    let mut args = Arguments::from_args();
    // The tests mostly wait on the Worker and on D1, so run more of them at
    // once than there are CPUs unless told otherwise.
    if args.test_threads.is_none() {
        args.test_threads = Some(6);
    }

    // API_TESTS_TIMING=1 prints each test's duration (with --nocapture).
    let timing = std::env::var_os("API_TESTS_TIMING").is_some();
    let tests = all_tests();
    let trials: Vec<(On, Trial)> = tests
        .iter()
        .map(|t| {
            let on = t.on;
            let run = t.run;
            let name = t.name;
            let trial = Trial::test(name, move || {
                let server = server_for(on)?;
                let started = Instant::now();
                let result = run(server);
                if timing {
                    eprintln!("api tests: {name} took {:.1?}", started.elapsed());
                }
                result
            });
            (on, trial)
        })
        .collect();

    // Start the servers that selected tests need, all at once.
    let needs = |on: On| {
        !args.list
            && trials
                .iter()
                .any(|(o, t)| *o == on && !args.is_filtered_out(t) && !args.is_ignored(t))
    };
    let handles: Vec<thread::JoinHandle<Started>> = On::ALL
        .iter()
        .map(|&on| {
            let needed = needs(on);
            thread::spawn(move || needed.then(|| on.start()))
        })
        .collect();
    let servers: Vec<Started> = handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| Some(Err("starting the server panicked".to_string())))
        })
        .collect();
    for (on, slot) in On::ALL.iter().zip(&servers) {
        match slot {
            Some(Ok(s)) => eprintln!("api tests: {} server at {}", on.label(), s.base_url),
            Some(Err(e)) => eprintln!("api tests: {} server failed to start:\n{e}", on.label()),
            None => {}
        }
    }
    let _ = SERVERS.set(servers);

    let conclusion = libtest_mimic::run(&args, trials.into_iter().map(|(_, t)| t).collect());

    for s in SERVERS.get().into_iter().flatten().flatten().flatten() {
        s.stop();
    }
    conclusion.exit();
}
