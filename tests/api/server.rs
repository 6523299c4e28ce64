//! Starts and stops the real Worker under `wrangler dev`, each with a fresh
//! local D1 database, and reads that database directly for checks.

use libtest_mimic::Failed;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(90);
const POLL_EVERY: Duration = Duration::from_millis(200);
const STOP_GRACE: Duration = Duration::from_secs(5);
const DB_COPY_ATTEMPTS: u32 = 50;

static STATE_DIRS: AtomicUsize = AtomicUsize::new(0);

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn wrangler() -> PathBuf {
    repo_root().join("node_modules/.bin/wrangler")
}

/// Ports this process has handed out, so servers starting at the same time
/// never get the same one.
static PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// `n` free loopback ports, distinct from each other and from every port
/// handed out before: all `n` are bound before any is released.
pub fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let mut handed_out = PORTS.lock().unwrap_or_else(|p| p.into_inner());
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..(n + 20) {
        if ports.len() == n {
            break;
        }
        let l = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("cannot bind a loopback port: {e}"))?;
        let port = l
            .local_addr()
            .map_err(|e| format!("cannot read a bound port: {e}"))?
            .port();
        if handed_out.insert(port) {
            ports.push(port);
        }
        listeners.push(l);
    }
    if ports.len() < n {
        return Err("could not find free loopback ports".to_string());
    }
    Ok(ports)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn describe_output(out: &Output) -> String {
    format!(
        "exit status {}\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
        out.status,
        tail(&String::from_utf8_lossy(&out.stdout), 30),
        tail(&String::from_utf8_lossy(&out.stderr), 30)
    )
}

/// A running `wrangler dev` with its own state directory.
pub struct Server {
    pub label: &'static str,
    pub base_url: String,
    pub state_dir: PathBuf,
    log_path: PathBuf,
    /// The process group leader (a small `sh` watchdog); its pid is the pgid.
    child: Mutex<Option<Child>>,
    /// Where the tests send requests; see `Endpoint`.
    endpoint: Mutex<Option<Endpoint>>,
}

/// Where tests send HTTP requests, with the headers that address needs.
///
/// `wrangler dev` answers on `base_url` through a proxy Worker of its own,
/// which relays each request to the runtime (workerd) that runs the Worker
/// under test. That proxy is not part of what gets deployed and, under load,
/// it drops responses the Worker did send (a 503 "Your worker restarted
/// mid-request" for a write the Worker had applied) and breaks for good on a
/// streamed request body the Worker refuses. So the tests talk to the
/// runtime directly, at the address and with the shared-secret header that
/// wrangler hands its proxy (read from wrangler's debug log). Set
/// `API_TESTS_VIA_PROXY=1` to go through the proxy instead.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

impl Server {
    /// Starts a Worker with `vars` overriding wrangler.toml's `[vars]`.
    pub fn start(label: &'static str, vars: &[(&str, &str)]) -> Result<Server, String> {
        Self::start_with(label, vars, None)
    }

    /// Starts a Worker on an upgraded database: migrations/0001 only, then
    /// the rows of `seed` (SQL, as version 1 stored them), then the rest of
    /// migrations/, as `wrangler d1 migrations apply` upgrades a deployment.
    pub fn start_upgraded(label: &'static str, seed: &Path) -> Result<Server, String> {
        Self::start_with(label, &[], Some(seed))
    }

    fn start_with(
        label: &'static str,
        vars: &[(&str, &str)],
        seed: Option<&Path>,
    ) -> Result<Server, String> {
        let root = repo_root();
        if !root.join("build/worker/shim.mjs").exists() {
            return Err(format!(
                "{} does not exist: run scripts/build.sh first",
                root.join("build/worker/shim.mjs").display()
            ));
        }
        if !wrangler().exists() {
            return Err(format!(
                "{} does not exist: run `npm ci` (or scripts/build.sh) first",
                wrangler().display()
            ));
        }
        let state_dir = std::env::temp_dir().join(format!(
            "alternassist-sync-api-{}-{}-{label}",
            std::process::id(),
            STATE_DIRS.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&state_dir);
        fs::create_dir_all(&state_dir)
            .map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
        let log_path = state_dir.join("wrangler-dev.log");
        let ports = free_ports(2)?;
        let server = Server {
            label,
            base_url: format!("http://127.0.0.1:{}", ports[0]),
            state_dir,
            log_path,
            child: Mutex::new(None),
            endpoint: Mutex::new(None),
        };
        // From here on, dropping `server` stops whatever was started and
        // removes the state directory.
        server.snapshot_project()?;
        if let Some(seed) = seed {
            server.seed_v1(seed)?;
        }
        server.apply_schema()?;
        server.spawn(ports[0], ports[1], vars)?;
        server.wait_ready()?;
        Ok(server)
    }

    /// Copies what `wrangler dev` serves (wrangler.toml, the built Worker,
    /// the static assets, the schema) into the state directory, which then
    /// acts as the project directory. `wrangler dev` reloads when any of those
    /// change: a rebuild or an edit during the run would otherwise restart
    /// the servers under the tests. Every test also sees one build, and
    /// concurrent runs never share wrangler's `.wrangler/` scratch directory.
    fn snapshot_project(&self) -> Result<(), String> {
        let root = repo_root();
        let build = root.join("build");
        let stamp = || -> Option<Vec<(u64, std::time::SystemTime)>> {
            ["index.js", "index_bg.wasm", "worker/shim.mjs"]
                .iter()
                .map(|f| {
                    let m = fs::metadata(build.join(f)).ok()?;
                    Some((m.len(), m.modified().ok()?))
                })
                .collect()
        };
        let copy = |name: &str| -> Result<(), String> {
            let (src, dst) = (root.join(name), self.project_dir().join(name));
            let result = if src.is_dir() {
                let _ = fs::remove_dir_all(&dst);
                copy_tree(&src, &dst)
            } else {
                fs::copy(&src, &dst).map(|_| ())
            };
            result.map_err(|e| format!("cannot copy {}: {e}", src.display()))
        };
        fs::create_dir_all(self.project_dir())
            .map_err(|e| format!("cannot create project dir: {e}"))?;
        copy("wrangler.toml")?;
        for dir in ["migrations", "client-demo"] {
            if root.join(dir).is_dir() {
                copy(dir)?;
            }
        }
        for _ in 0..10 {
            let before = stamp();
            copy("build")?;
            if before.is_some() && stamp() == before {
                return Ok(());
            }
            // A build is being written right now: wait for it to settle.
            thread::sleep(Duration::from_secs(2));
        }
        Err(format!(
            "{} kept changing (or lost files) while being copied: is scripts/build.sh running?",
            build.display()
        ))
    }

    /// The copy of the project that wrangler runs in.
    fn project_dir(&self) -> PathBuf {
        self.state_dir.join("project")
    }

    /// Where wrangler keeps the local D1 and Durable Object data.
    fn persist_dir(&self) -> PathBuf {
        self.state_dir.join("data")
    }

    /// A wrangler command run in the project copy with its configuration.
    fn wrangler_cmd(&self, args: &[&str], persist_to: &Path) -> Command {
        let project = self.project_dir();
        wrangler_command(
            args,
            &project.join("wrangler.toml"),
            &project,
            persist_to,
            &self.state_dir,
        )
    }

    /// Applies migrations/0001 alone and runs `seed` on that database.
    fn seed_v1(&self, seed: &Path) -> Result<(), String> {
        let project = self.project_dir();
        let all = project.join("migrations-all");
        let io = |e: std::io::Error| format!("seed: {e}");
        fs::rename(project.join("migrations"), &all).map_err(io)?;
        fs::create_dir_all(project.join("migrations")).map_err(io)?;
        for entry in fs::read_dir(&all).map_err(io)? {
            let entry = entry.map_err(io)?;
            if entry.file_name().to_string_lossy().starts_with("0001_") {
                fs::copy(
                    entry.path(),
                    project.join("migrations").join(entry.file_name()),
                )
                .map_err(io)?;
            }
        }
        self.apply_schema()?;
        let seed = seed.display().to_string();
        let mut cmd = self.wrangler_cmd(
            &["d1", "execute", "DB", "--local", "--file", &seed, "--yes"],
            &self.persist_dir(),
        );
        let out = cmd
            .stdin(Stdio::null())
            .env("CI", "true")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", wrangler().display()))?;
        if !out.status.success() {
            return Err(format!(
                "[{}] seeding the version-1 database failed: {}",
                self.label,
                describe_output(&out)
            ));
        }
        fs::remove_dir_all(project.join("migrations")).map_err(io)?;
        fs::rename(&all, project.join("migrations")).map_err(io)?;
        Ok(())
    }

    fn apply_schema(&self) -> Result<(), String> {
        let mut cmd = self.wrangler_cmd(
            &["d1", "migrations", "apply", "DB", "--local"],
            &self.persist_dir(),
        );
        // Without a terminal and with CI set, wrangler asks no confirmation.
        cmd.stdin(Stdio::null()).env("CI", "true");
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {}: {e}", wrangler().display()))?;
        if !out.status.success() {
            return Err(format!(
                "[{}] applying migrations/ with `wrangler d1 migrations apply` failed: {}",
                self.label,
                describe_output(&out)
            ));
        }
        Ok(())
    }

    fn spawn(&self, port: u16, inspector_port: u16, vars: &[(&str, &str)]) -> Result<(), String> {
        let project = self.project_dir();
        let child = spawn_dev(&DevSpawn {
            config: &project.join("wrangler.toml"),
            project: &project,
            persist_to: &self.persist_dir(),
            state: &self.state_dir,
            log: &self.log_path,
            port,
            inspector_port,
            vars,
        })?;
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = fs::read(&self.log_path).unwrap_or_default();
        tail(&String::from_utf8_lossy(&text), 40)
    }

    fn wait_ready(&self) -> Result<(), String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(3)))
            .build()
            .into();
        let url = format!("{}/api/does-not-exist", self.base_url);
        let started = Instant::now();
        loop {
            if agent.get(&url).call().is_ok() {
                let direct = self.find_direct_endpoint();
                *self.endpoint.lock().unwrap_or_else(|p| p.into_inner()) = direct;
                return Ok(());
            }
            let exited = {
                let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
                guard.as_mut().and_then(|c| c.try_wait().ok().flatten())
            };
            if let Some(status) = exited {
                return Err(format!(
                    "[{}] wrangler dev exited early ({status}); log tail:\n{}",
                    self.label,
                    self.log_tail()
                ));
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "[{}] wrangler dev did not answer on {} within {:?}; log tail:\n{}",
                    self.label,
                    self.base_url,
                    READY_TIMEOUT,
                    self.log_tail()
                ));
            }
            thread::sleep(POLL_EVERY);
        }
    }

    /// Where requests go: the runtime directly when its address is known,
    /// else `base_url` (wrangler's proxy).
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| Endpoint {
                url: self.base_url.clone(),
                headers: Vec::new(),
            })
    }

    /// The runtime's own address and secret header, from the last
    /// `reloadComplete` message in wrangler's debug logs, checked with one
    /// request. `None` (use the proxy) when asked to, or when not found.
    fn find_direct_endpoint(&self) -> Option<Endpoint> {
        if std::env::var_os("API_TESTS_VIA_PROXY").is_some() {
            return None;
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        // The message may not be logged yet, or (after a restart) the newest
        // log may still be the previous run's: retry until one answers.
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last_try = String::from("no reloadComplete message in wrangler's logs");
        while Instant::now() < deadline {
            if let Some(endpoint) = self.read_proxy_data() {
                let mut req = agent.get(format!("{}/api/does-not-exist", endpoint.url));
                for (n, v) in &endpoint.headers {
                    req = req.header(n, v);
                }
                match req.call() {
                    Ok(r) if r.status() == 404 => return Some(endpoint),
                    other => {
                        last_try = format!(
                            "the runtime at {} answered {:?}",
                            endpoint.url,
                            other.map(|r| r.status())
                        )
                    }
                }
            }
            thread::sleep(POLL_EVERY);
        }
        eprintln!(
            "api tests: [{}] {last_try}; going through wrangler's proxy",
            self.label
        );
        None
    }

    fn read_proxy_data(&self) -> Option<Endpoint> {
        read_proxy_data(&self.state_dir.join("wrangler-logs"))
    }

    /// Stops the process group (TERM, then KILL after a grace period) and
    /// removes the state directory. Safe to call more than once.
    pub fn stop(&self) {
        self.kill();
        if std::env::var_os("API_TESTS_KEEP_STATE").is_none() {
            let _ = fs::remove_dir_all(&self.state_dir);
        }
    }

    /// Stops `wrangler dev` and starts it again on the same port with the
    /// same state directory, as a deploy or a crash would (no `--var`s).
    pub fn restart(&self) -> Result<(), String> {
        self.restart_with(&[])
    }

    /// `restart` with `--var` overrides (the soak test keeps its raised
    /// rate limits across the restart).
    pub fn restart_with(&self, vars: &[(&str, &str)]) -> Result<(), String> {
        self.kill();
        let port: u16 = self
            .base_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or("no port in base_url")?;
        let inspector = free_ports(1)?[0];
        self.spawn(port, inspector, vars)?;
        self.wait_ready()
    }

    fn kill(&self) {
        let child = self.child.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(child) = child {
            stop_group(child, STOP_GRACE);
        }
    }

    /// Runs SQL against this server's local D1 and returns the rows of each
    /// statement. Read-only use: the tests look, they never write.
    pub fn db(&self, sql: &str) -> Result<Vec<Rows>, Failed> {
        // Reading the live database from a second runtime takes SQLite locks
        // that make the Worker's own writes fail with SQLITE_BUSY. So the
        // tests read a private copy, taken while the files were at rest.
        let copy = self.copy_d1()?;
        let mut cmd = self.wrangler_cmd(
            &["d1", "execute", "DB", "--local", "--json", "--command", sql],
            &copy,
        );
        cmd.stdin(Stdio::null());
        let out = cmd.output();
        let _ = fs::remove_dir_all(&copy);
        let out = out.map_err(|e| format!("cannot run wrangler d1 execute: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "wrangler d1 execute {sql:?} failed: {}",
                describe_output(&out)
            )
            .into());
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let start = stdout.find('[').ok_or_else(|| {
            format!(
                "wrangler d1 execute printed no JSON: {}",
                describe_output(&out)
            )
        })?;
        let parsed: Value = serde_json::from_str(stdout[start..].trim())
            .map_err(|e| format!("cannot parse wrangler d1 JSON ({e}): {}", tail(&stdout, 20)))?;
        let statements = parsed
            .as_array()
            .ok_or_else(|| format!("wrangler d1 JSON is not an array: {parsed}"))?;
        statements
            .iter()
            .map(|s| {
                let rows = s["results"]
                    .as_array()
                    .ok_or_else(|| format!("statement without results: {s}"))?;
                rows.iter()
                    .map(|r| {
                        r.as_object()
                            .cloned()
                            .ok_or_else(|| Failed::from(format!("row is not an object: {r}")))
                    })
                    .collect::<Result<Vec<_>, Failed>>()
            })
            .collect()
    }

    /// Copies the local D1 files (database and write-ahead log; SQLite
    /// rebuilds the shared-memory index) into a fresh directory laid out like
    /// `--persist-to`, retrying until no file changed while it was copied.
    fn copy_d1(&self) -> Result<PathBuf, Failed> {
        let rel = Path::new("v3/d1/miniflare-D1DatabaseObject");
        let src = self.persist_dir().join(rel);
        let root = self.state_dir.join(format!(
            "d1-read-{}",
            STATE_DIRS.fetch_add(1, Ordering::SeqCst)
        ));
        let dst = root.join(rel);
        let stamp = || -> std::io::Result<Vec<(std::ffi::OsString, u64, std::time::SystemTime)>> {
            let mut files = Vec::new();
            for entry in fs::read_dir(&src)? {
                let entry = entry?;
                let name = entry.file_name();
                if name.to_string_lossy().ends_with("-shm") {
                    continue;
                }
                let m = entry.metadata()?;
                files.push((name, m.len(), m.modified()?));
            }
            files.sort();
            Ok(files)
        };
        for _ in 0..DB_COPY_ATTEMPTS {
            let before = stamp().map_err(|e| format!("cannot list {}: {e}", src.display()))?;
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(&dst)
                .map_err(|e| format!("cannot create {}: {e}", dst.display()))?;
            for (name, _, _) in &before {
                // A file may vanish between listing and copying (WAL reset).
                let _ = fs::copy(src.join(name), dst.join(name));
            }
            if stamp().ok().as_ref() == Some(&before) {
                return Ok(root);
            }
            thread::sleep(Duration::from_millis(100));
        }
        let _ = fs::remove_dir_all(&root);
        Err(format!(
            "the D1 files in {} never stopped changing long enough to copy",
            src.display()
        )
        .into())
    }

    /// The rows of a single statement.
    pub fn db_rows(&self, sql: &str) -> Result<Rows, Failed> {
        let mut all = self.db(sql)?;
        if all.len() != 1 {
            return Err(format!(
                "expected one statement's results for {sql:?}, got {}",
                all.len()
            )
            .into());
        }
        Ok(all.remove(0))
    }

    /// Everything stored for one user's sync data, as one comparable string:
    /// current rows (each key's newest history row with a version), history (values by length and hash, not in full), chunks,
    /// counters and remembered requests.
    pub fn db_fingerprint(&self, user_id: &str) -> Result<String, Failed> {
        Ok(self.db_fingerprint_and(user_id, "")?.0)
    }

    /// The fingerprint plus the results of `extra` (more statements), read in
    /// one go: each read starts a runtime, which takes a few seconds.
    pub fn db_fingerprint_and(
        &self,
        user_id: &str,
        extra: &str,
    ) -> Result<(String, Vec<Rows>), Failed> {
        let u = sql_str(user_id);
        let sql = format!(
            "SELECT h.key, h.version, h.id AS hist_id, h.deleted, h.updated_at, h.hash FROM sync_history h \
               WHERE h.user_id = {u} AND h.id = (SELECT max(x.id) FROM sync_history x \
               WHERE x.user_id = h.user_id AND x.key = h.key AND x.version IS NOT NULL) ORDER BY h.key; \
             SELECT id, key, version, deleted, updated_at, size, chunks, hash, length(CAST(data AS BLOB)) AS data_bytes \
               FROM sync_history WHERE user_id = {u} ORDER BY id; \
             SELECT hist_id, idx, length(CAST(data AS BLOB)) AS data_bytes FROM sync_chunks WHERE user_id = {u} ORDER BY hist_id, idx; \
             SELECT cursor, hist_seq FROM sync_state WHERE user_id = {u}; \
             SELECT request_id, response FROM sync_requests WHERE user_id = {u} ORDER BY request_id"
        );
        let sql = if extra.trim().is_empty() {
            sql
        } else {
            format!("{sql}; {extra}")
        };
        let mut all = self.db(&sql)?;
        let rest = all.split_off(FINGERPRINT_STATEMENTS.min(all.len()));
        Ok((serde_json::to_string(&all)?, rest))
    }
}

/// `wrangler <args> --config <config> --persist-to <persist_to>`, run in
/// `project`, with its debug logs and instance registry under `state`.
pub fn wrangler_command(
    args: &[&str],
    config: &Path,
    project: &Path,
    persist_to: &Path,
    state: &Path,
) -> Command {
    let mut cmd = Command::new(wrangler());
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .arg("--persist-to")
        .arg(persist_to)
        .current_dir(project)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("WRANGLER_LOG_PATH", state.join("wrangler-logs"))
        // wrangler dev instances find each other through a shared registry
        // and react when another one starts or stops; keep ours private.
        .env("WRANGLER_REGISTRY_PATH", state.join("registry"))
        .env("NO_COLOR", "1")
        .env("FORCE_COLOR", "0")
        .env("CI", "1");
    cmd
}

/// Where and how to start one `wrangler dev`.
pub struct DevSpawn<'a> {
    pub config: &'a Path,
    pub project: &'a Path,
    pub persist_to: &'a Path,
    pub state: &'a Path,
    /// stdout and stderr go here.
    pub log: &'a Path,
    pub port: u16,
    pub inspector_port: u16,
    pub vars: &'a [(&'a str, &'a str)],
}

/// Starts `wrangler dev` on 127.0.0.1 as the leader of a new process group
/// (stop it with `stop_group`). A watchdog shell leads the group: it runs
/// wrangler and, should this process die without stopping the server
/// (Ctrl-C, a crash), signals its own group so no `wrangler dev` is left.
pub fn spawn_dev(d: &DevSpawn<'_>) -> Result<Child, String> {
    let log = File::create(d.log).map_err(|e| format!("cannot create {}: {e}", d.log.display()))?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("cannot clone log handle: {e}"))?;
    let watchdog = r#"parent=$1; shift
"$@" &
child=$!
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 1; done
kill -TERM 0 2>/dev/null
wait"#;
    let (port, inspector_port) = (d.port.to_string(), d.inspector_port.to_string());
    let mut args = vec![
        "dev",
        "--ip",
        "127.0.0.1",
        "--port",
        &port,
        "--inspector-port",
        &inspector_port,
        "--show-interactive-dev-session=false",
        "--log-level",
        "warn",
    ];
    let vars: Vec<String> = d.vars.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    for v in &vars {
        args.extend(["--var", v.as_str()]);
    }
    let wrangler_dev = wrangler_command(&args, d.config, d.project, d.persist_to, d.state);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(watchdog)
        .arg("sh")
        .arg(std::process::id().to_string())
        .arg(wrangler_dev.get_program())
        .args(wrangler_dev.get_args())
        .current_dir(d.project);
    for (k, v) in wrangler_dev.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .process_group(0);
    cmd.spawn()
        .map_err(|e| format!("cannot start wrangler dev: {e}"))
}

/// The runtime's address and the headers wrangler's proxy adds, from the
/// newest `reloadComplete` message in the wrangler debug logs in `dir`.
pub fn read_proxy_data(dir: &Path) -> Option<Endpoint> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    // Named wrangler-<date>_<time>.log: name order is time order.
    files.sort();
    let marker = r#"{"type":"reloadComplete""#;
    let mut last = None;
    for f in files {
        let text = fs::read_to_string(&f).unwrap_or_default();
        if let Some(line) = text.lines().rfind(|l| l.contains(marker)) {
            last = Some(line[line.find(marker)?..].to_string());
        }
    }
    let last = last?;
    let message: Value = serde_json::Deserializer::from_str(&last)
        .into_iter::<Value>()
        .next()?
        .ok()?;
    let data = &message["proxyData"];
    let url = &data["userWorkerUrl"];
    let url = format!(
        "{}//{}:{}",
        url["protocol"].as_str()?,
        url["hostname"].as_str()?,
        url["port"].as_str()?
    );
    let headers = data["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Some(Endpoint { url, headers })
}

/// Stops the process group `child` leads: TERM, then KILL if anything of it
/// is left after `grace`. By process group id, never by name.
pub fn stop_group(mut child: Child, grace: Duration) {
    let group = format!("-{}", child.id());
    let signal = |sig: &str| {
        Command::new("kill")
            .args([sig, "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    signal("-TERM");
    let deadline = Instant::now() + grace;
    // The group is gone once no member is left to receive signal 0.
    while Instant::now() < deadline && signal("-0") {
        let _ = child.try_wait();
        thread::sleep(Duration::from_millis(100));
    }
    if signal("-0") {
        signal("-KILL");
    }
    let _ = child.wait();
}

const FINGERPRINT_STATEMENTS: usize = 5;

/// The rows one SQL statement returned.
pub type Rows = Vec<Map<String, Value>>;

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Copies the files under `src` (skipping hidden entries such as a build's
/// `.tmp`) to `dst`.
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dst)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let ty = entry.file_type()?;
        if ty.is_dir() {
            copy_tree(&entry.path(), &dst.join(&name))?;
        } else if ty.is_file() {
            fs::copy(entry.path(), dst.join(&name))?;
        }
    }
    Ok(())
}

/// A SQL string literal. The tests only quote values they generated
/// themselves, but quote properly anyway.
pub fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
