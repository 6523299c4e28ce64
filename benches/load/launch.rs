//! Starts a `wrangler dev` for any configuration (the JavaScript floors in
//! `bench/`, or a copy of the real Worker for the start-up measurement) and
//! times its first answer. `server::Server` does the same for the real Worker
//! with its D1 schema; this is the part of it that works for any project
//! directory.

use crate::server::{
    free_ports, read_proxy_data, spawn_dev, stop_group, wrangler_command, DevSpawn, Endpoint,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(120);

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A running `wrangler dev`, stopped (its whole process group) on drop.
pub struct Proc {
    child: Option<Child>,
    pub base_url: String,
    /// Direct address of the runtime, as in `server::Server::endpoint`.
    pub endpoint: Endpoint,
    /// From spawning `wrangler dev` to the first answer `ready` accepted.
    pub first_answer: Duration,
    work: PathBuf,
}

/// Spawns `wrangler dev` on `config` (run in `project`), keeping its state
/// and logs under `work`, and waits until GET `probe_path` answers in a way
/// `ready(status, body)` accepts.
pub fn start(
    config: &Path,
    project: &Path,
    work: &Path,
    vars: &[(&str, &str)],
    probe_path: &str,
    ready: fn(u16, &str) -> bool,
) -> Result<Proc, String> {
    fs::create_dir_all(work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let ports = free_ports(2)?;
    let started = Instant::now();
    let child = spawn_dev(&DevSpawn {
        config,
        project,
        persist_to: &work.join("data"),
        state: work,
        log: &work.join("wrangler-dev.log"),
        port: ports[0],
        inspector_port: ports[1],
        vars,
    })?;
    let base_url = format!("http://127.0.0.1:{}", ports[0]);
    let mut proc = Proc {
        child: Some(child),
        endpoint: Endpoint {
            url: base_url.clone(),
            headers: Vec::new(),
        },
        base_url,
        first_answer: Duration::ZERO,
        work: work.to_path_buf(),
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let url = format!("{}{probe_path}", proc.base_url);
    loop {
        if let Ok(mut r) = agent.get(&url).call() {
            let status = r.status().as_u16();
            let body = r.body_mut().read_to_string().unwrap_or_default();
            if ready(status, &body) {
                proc.first_answer = started.elapsed();
                break;
            }
        }
        if started.elapsed() > READY_TIMEOUT {
            let log = fs::read_to_string(work.join("wrangler-dev.log")).unwrap_or_default();
            return Err(format!(
                "wrangler dev ({}) gave no answer in {READY_TIMEOUT:?}; log:\n{log}",
                config.display()
            ));
        }
        if let Some(Ok(Some(status))) = proc.child.as_mut().map(Child::try_wait) {
            let log = fs::read_to_string(work.join("wrangler-dev.log")).unwrap_or_default();
            return Err(format!("wrangler dev exited ({status}); log:\n{log}"));
        }
        thread::sleep(Duration::from_millis(20));
    }
    if let Some(ep) = find_direct(work, probe_path, ready) {
        proc.endpoint = ep;
    }
    Ok(proc)
}

/// The runtime's own address from wrangler's `reloadComplete` debug log
/// message, checked with one request (see `server::Server::endpoint`).
fn find_direct(work: &Path, probe_path: &str, ready: fn(u16, &str) -> bool) -> Option<Endpoint> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(ep) = read_proxy_data(&work.join("wrangler-logs")) {
            let mut req = agent.get(format!("{}{probe_path}", ep.url));
            for (n, v) in &ep.headers {
                req = req.header(n, v);
            }
            if let Ok(mut r) = req.call() {
                let status = r.status().as_u16();
                let body = r.body_mut().read_to_string().unwrap_or_default();
                if ready(status, &body) {
                    return Some(ep);
                }
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
    eprintln!("load: no direct endpoint found; going through wrangler's proxy");
    None
}

fn js_ready(status: u16, body: &str) -> bool {
    status == 200 && body == "ok"
}

/// Starts the JavaScript Durable Object in `bench/<name>/` (`baseline` or
/// `d1floor`), with its `schema.sql`, if it has one, applied to a fresh local
/// D1 first. It runs in a copy of `bench/` (the floors share code), so
/// wrangler's scratch files stay out of the repository.
pub fn start_js(name: &str, work: &Path) -> Result<Proc, String> {
    let copy = work.join("project");
    fs::create_dir_all(&copy).map_err(|e| e.to_string())?;
    copy_into(&[repo_root().join("bench")], &copy)?;
    let dir = copy.join("bench").join(name);
    let config = dir.join("wrangler.toml");
    if dir.join("schema.sql").exists() {
        let mut cmd = wrangler_command(
            &[
                "d1",
                "execute",
                "DB",
                "--local",
                "--file",
                "schema.sql",
                "--yes",
            ],
            &config,
            &dir,
            &work.join("data"),
            work,
        );
        cmd.stdin(std::process::Stdio::null());
        run(&mut cmd, &format!("applying bench/{name}/schema.sql"))?;
    }
    start(&config, &dir, work, &[], "/", js_ready)
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_group(child, Duration::from_secs(5));
        }
        let _ = fs::remove_dir_all(&self.work);
    }
}

/// Copies what `wrangler dev` serves for the real Worker into `dst` (as
/// `Server` does), so a rebuild during the run changes nothing.
pub fn copy_project(dst: &Path) -> Result<(), String> {
    let root = repo_root();
    fs::create_dir_all(dst).map_err(|e| e.to_string())?;
    let names = ["wrangler.toml", "build", "client-demo", "migrations"];
    copy_into(&names.map(|n| root.join(n)), dst)
}

/// `cp -r <srcs> dst`.
fn copy_into(srcs: &[PathBuf], dst: &Path) -> Result<(), String> {
    let mut cmd = Command::new("cp");
    cmd.arg("-r").args(srcs).arg(dst);
    run(&mut cmd, &format!("copying {srcs:?}"))
}

/// Runs `cmd` to its end; an error names `what` and has its stderr.
fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}
