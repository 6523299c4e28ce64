// Starts the real Worker under `wrangler dev` for the browser tests, the way
// tests/api/server.rs does: the project (wrangler.toml, schema, migrations,
// client-demo/, build/) is copied into a fresh temporary directory so that a
// rebuild or an edit during the run cannot restart the server, and wrangler
// runs there in its own process group, led by a watchdog shell that stops it
// should this test process die. stop() signals that group by its id.

import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WRANGLER = path.join(ROOT, 'node_modules/.bin/wrangler');
const READY_TIMEOUT_MS = 60_000;

/** `n` distinct free loopback ports (all bound before any is released). */
export async function freePorts(n) {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => resolve(s));
    })),
  );
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function tail(file, lines = 40) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Sets `[vars]` entries in a copied wrangler.toml (replacing the line of a var already there). */
function setVars(toml, vars) {
  let text = fs.readFileSync(toml, 'utf8');
  for (const [name, value] of Object.entries(vars)) {
    const line = `${name} = ${JSON.stringify(String(value))}`;
    const re = new RegExp(`^${name} = .*$`, 'm');
    text = re.test(text) ? text.replace(re, line) : text.replace(/^\[vars\]$/m, `[vars]\n${line}`);
  }
  fs.writeFileSync(toml, text);
}

function copyProject(dest) {
  const build = path.join(ROOT, 'build');
  const stamp = () =>
    ['index.js', 'index_bg.wasm', 'worker/shim.mjs']
      .map((f) => {
        try {
          const s = fs.statSync(path.join(build, f));
          return `${s.size}:${s.mtimeMs}`;
        } catch {
          return 'missing';
        }
      })
      .join(',');
  fs.mkdirSync(dest, { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'wrangler.toml'), path.join(dest, 'wrangler.toml'));
  for (const dir of ['migrations', 'client-demo']) {
    if (fs.existsSync(path.join(ROOT, dir))) fs.cpSync(path.join(ROOT, dir), path.join(dest, dir), { recursive: true });
  }
  return (async () => {
    for (let i = 0; i < 10; i++) {
      const before = stamp();
      fs.rmSync(path.join(dest, 'build'), { recursive: true, force: true });
      fs.cpSync(build, path.join(dest, 'build'), { recursive: true });
      if (!before.includes('missing') && stamp() === before) return;
      await sleep(2000); // a build is being written right now
    }
    throw new Error(`${build} kept changing while being copied: is scripts/build.sh running?`);
  })();
}

function run(cmd, args, opts) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { ...opts, timeout: 90_000, maxBuffer: 8 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(cmd)} ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/**
 * Starts the Worker; `vars` overrides wrangler.toml's [vars] (e.g.
 * ALLOWED_ORIGINS) for this server only; `assets` ({path: text}) adds files
 * to the static assets it serves (test pages of the app's own origin).
 */
export async function startServer({ vars = {}, assets = {} } = {}) {
  if (!fs.existsSync(path.join(ROOT, 'build/worker/shim.mjs'))) {
    throw new Error('build/worker/shim.mjs is missing: run scripts/build.sh first');
  }
  if (!fs.existsSync(path.join(ROOT, 'client-demo/dist/alternassist-sync.mjs'))) {
    throw new Error('client-demo/dist/ is missing: run node scripts/build-client.mjs (scripts/build.sh does)');
  }
  if (!fs.existsSync(WRANGLER)) throw new Error(`${WRANGLER} is missing: run npm ci (or scripts/setup.sh)`);
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'alternassist-sync-browser-'));
  const project = path.join(stateDir, 'project');
  const data = path.join(stateDir, 'data');
  const logPath = path.join(stateDir, 'wrangler-dev.log');
  const env = {
    ...process.env,
    WRANGLER_SEND_METRICS: 'false',
    WRANGLER_LOG_PATH: path.join(stateDir, 'wrangler-logs'),
    NO_COLOR: '1',
    FORCE_COLOR: '0',
    CI: '1',
  };
  const common = ['--config', path.join(project, 'wrangler.toml'), '--persist-to', data];
  let child = null;
  const stop = async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
      const done = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
      if (!done) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    child = null;
    fs.rmSync(stateDir, { recursive: true, force: true });
  };
  try {
    await copyProject(project);
    setVars(path.join(project, 'wrangler.toml'), vars);
    for (const [file, text] of Object.entries(assets)) fs.writeFileSync(path.join(project, 'client-demo', file), text);
    await run(WRANGLER, ['d1', 'migrations', 'apply', 'DB', '--local', ...common], { cwd: project, env: { ...env, CI: 'true' } });
    const [port, inspectorPort] = await freePorts(2);
    const args = [
      'dev', '--ip', '127.0.0.1', '--port', String(port), '--inspector-port', String(inspectorPort),
      '--show-interactive-dev-session=false', '--log-level', 'warn', ...common,
    ];
    // The watchdog leads the process group; it stops wrangler if we die first.
    const watchdog = `parent=$1; shift
"$@" &
child=$!
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 1; done
kill -TERM 0 2>/dev/null
wait`;
    const log = fs.openSync(logPath, 'w');
    child = spawn('sh', ['-c', watchdog, 'sh', String(process.pid), WRANGLER, ...args], {
      cwd: project,
      env,
      detached: true,
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    const base = `http://127.0.0.1:${port}`;
    const start = Date.now();
    for (;;) {
      try {
        const res = await fetch(`${base}/api/nope`, { signal: AbortSignal.timeout(3000) });
        const body = await res.json().catch(() => null);
        if (body?.error?.code === 'not_found') break;
      } catch {
        /* not up yet */
      }
      if (child.exitCode !== null) throw new Error(`wrangler dev exited early; log tail:\n${tail(logPath)}`);
      if (Date.now() - start > READY_TIMEOUT_MS) {
        throw new Error(`wrangler dev did not answer on ${base} within ${READY_TIMEOUT_MS} ms; log tail:\n${tail(logPath)}`);
      }
      await sleep(200);
    }
    return { base, stop, logTail: () => tail(logPath) };
  } catch (err) {
    await stop();
    throw err;
  }
}
