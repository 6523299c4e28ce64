// The operator's command line (run it as scripts/admin.sh): a thin client of
// the Worker's admin API under /api/admin/, authenticated by the ADMIN_TOKEN
// secret. See README "Operating it: scripts/admin.sh".
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync, chmodSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
// Where .dev.vars, .admin-token and .admin-url live (the repository root).
const DIR = process.env.ADMIN_CONFIG_DIR || ROOT;

const USAGE = `usage: scripts/admin.sh [--remote] [--url URL] COMMAND [ARGS]

Talks to the local Worker (scripts/dev.sh, http://127.0.0.1:\${PORT:-8787}) or,
with --remote, to the deployed one (ADMIN_URL, --url, or what init saved).

  init [URL]             set up the admin token: locally in .dev.vars (restart
                         scripts/dev.sh after); with --remote, a new secret via
                         \`wrangler secret put ADMIN_TOKEN\`, kept in .admin-token
  users [--json]         every account: email, created, last seen, devices,
                         keys, stored bytes, writes today, quota
  reset-code EMAIL       print a one-time password reset code (valid 1 hour)
  allow EMAIL|@domain    let that address (or domain) register
  disallow EMAIL|@domain stop it (existing accounts keep working)
  allowlist [--json]     the registration allow-list
  quota EMAIL [--bytes N] [--keys N] [--writes-per-day N]
                         per-person limits (N, or "default" for the server's)
  disable EMAIL          sign every device out; no sign-in until enabled
  enable EMAIL
  delete EMAIL [--yes]   delete the account and everything stored for it
  export EMAIL           that person's data as an export document (stdout)`;

class Usage extends Error {}

function fail(message) {
  process.stderr.write(`admin: ${message}\n`);
  process.exit(1);
}

function readVar(file, name) {
  if (!existsSync(file)) return null;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = line.match(/^\s*([A-Z_]+)\s*=\s*"?([^"]*)"?\s*$/);
    if (m && m[1] === name) return m[2].trim();
  }
  return null;
}

function readFile(name) {
  const f = join(DIR, name);
  return existsSync(f) ? readFileSync(f, 'utf8').trim() : null;
}

function newToken() {
  return randomBytes(32).toString('base64url');
}

function parseArgs(argv) {
  const opts = { remote: false, url: null, json: false, yes: false, rest: [], flags: {} };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--remote') opts.remote = true;
    else if (a === '--url') opts.url = argv[++i];
    else if (a === '--json') opts.json = true;
    else if (a === '--yes' || a === '-y') opts.yes = true;
    else if (a === '-h' || a === '--help') opts.rest.unshift('help');
    else if (['--bytes', '--keys', '--writes-per-day'].includes(a)) {
      if (i + 1 >= argv.length) throw new Usage(`${a} needs a value`);
      opts.flags[a.slice(2)] = argv[++i];
    } else if (a.startsWith('--')) throw new Usage(`unknown option ${a}`);
    else opts.rest.push(a);
  }
  return opts;
}

function target(opts) {
  let url = opts.url;
  let token = process.env.ADMIN_TOKEN || null;
  if (opts.remote) {
    url ??= process.env.ADMIN_URL || readFile('.admin-url');
    token ??= readFile('.admin-token');
    if (!url) fail('--remote needs the Worker\'s address: --url https://..., ADMIN_URL, or `scripts/admin.sh --remote init URL`');
    if (!token) fail('no admin token: set ADMIN_TOKEN, or run `scripts/admin.sh --remote init URL`');
  } else {
    url ??= `http://127.0.0.1:${process.env.PORT || 8787}`;
    token ??= readVar(join(DIR, '.dev.vars'), 'ADMIN_TOKEN');
    if (!token) fail('no admin token: run `scripts/admin.sh init` and restart scripts/dev.sh (or set ADMIN_TOKEN)');
  }
  return { base: url.replace(/\/+$/, '').replace(/\/api$/, ''), token };
}

async function call(t, method, path, body) {
  let res;
  try {
    res = await fetch(`${t.base}/api/admin${path}`, {
      method,
      headers: { authorization: `Bearer ${t.token}`, ...(body && { 'content-type': 'application/json' }) },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (err) {
    fail(`cannot reach ${t.base}: ${err.cause?.message ?? err.message} (is scripts/dev.sh running?)`);
  }
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON: reported below
  }
  if (!res.ok) {
    const msg = json?.error?.message ?? text.slice(0, 200);
    fail(`${res.status} ${json?.error?.code ?? ''}: ${msg}`);
  }
  if (json === null) fail(`${res.status}: not JSON: ${text.slice(0, 200)}`);
  return json;
}

const enc = encodeURIComponent;
const iso = (ms) => (ms ? new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z') : '-');
const need = (v, what) => {
  if (!v) throw new Usage(`${what} is missing`);
  return v;
};

function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => r.map((c, i) => String(c).padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

function limit(n) {
  if (n === undefined) return undefined;
  if (n === 'default') return null;
  if (!/^\d+$/.test(n)) throw new Usage(`a limit is a whole number or "default", not ${JSON.stringify(n)}`);
  return Number(n);
}

async function confirmDelete(email, yes) {
  if (yes) return;
  if (!process.stdin.isTTY) fail(`delete ${email}: pass --yes to confirm (nothing was deleted)`);
  process.stdout.write(`This deletes ${email} and everything stored for them, for good.\nType the email to confirm: `);
  const answer = await new Promise((resolve) => {
    process.stdin.setEncoding('utf8');
    process.stdin.once('data', (d) => resolve(String(d).trim()));
  });
  process.stdin.pause();
  if (answer.toLowerCase() !== email.toLowerCase()) fail('not confirmed: nothing was deleted');
}

async function init(opts, url) {
  if (!opts.remote) {
    const file = join(DIR, '.dev.vars');
    if (readVar(file, 'ADMIN_TOKEN')) {
      console.log(`${file} already has an ADMIN_TOKEN`);
      return;
    }
    const prev = existsSync(file) ? readFileSync(file, 'utf8') : '';
    const sep = prev && !prev.endsWith('\n') ? '\n' : '';
    writeFileSync(file, `${prev}${sep}ADMIN_TOKEN="${newToken()}"\n`, { mode: 0o600 });
    console.log(`wrote ADMIN_TOKEN to ${file}; restart scripts/dev.sh to use it`);
    return;
  }
  const address = need(url ?? opts.url ?? process.env.ADMIN_URL, "the Worker's address (https://...)");
  const token = newToken();
  const wrangler = join(ROOT, 'node_modules/.bin/wrangler');
  const r = spawnSync(wrangler, ['secret', 'put', 'ADMIN_TOKEN'], { input: `${token}\n`, stdio: ['pipe', 'inherit', 'inherit'], cwd: ROOT });
  if (r.status !== 0) fail('`wrangler secret put ADMIN_TOKEN` failed: nothing saved');
  writeFileSync(join(DIR, '.admin-token'), `${token}\n`, { mode: 0o600 });
  chmodSync(join(DIR, '.admin-token'), 0o600);
  writeFileSync(join(DIR, '.admin-url'), `${address}\n`);
  console.log(`ADMIN_TOKEN set on the Worker and kept in .admin-token; --remote talks to ${address}`);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const [cmd, arg] = opts.rest;
  if (!cmd || cmd === 'help') {
    console.log(USAGE);
    return;
  }
  if (cmd === 'init') return init(opts, arg);
  const known = ['users', 'reset-code', 'allow', 'disallow', 'allowlist', 'quota', 'disable', 'enable', 'delete', 'export'];
  if (!known.includes(cmd)) throw new Usage(`unknown command ${cmd}`);
  const t = target(opts);
  const user = (what) => `/users/${enc(need(arg, what))}`;
  switch (cmd) {
    case 'users': {
      const r = await call(t, 'GET', '/users');
      if (opts.json) return console.log(JSON.stringify(r.users, null, 2));
      const mark = (v, set) => `${v}${set === null || set === undefined ? '' : '*'}`;
      const rows = [['EMAIL', 'CREATED', 'LAST SEEN', 'DEVICES', 'KEYS', 'BYTES', 'WRITES TODAY', 'QUOTA (bytes/keys/writes a day, * set)', 'DISABLED']];
      for (const u of r.users) {
        const q = `${mark(u.quota.bytes, u.overrides.bytes)}/${mark(u.quota.keys, u.overrides.keys)}/${mark(u.quota.writesPerDay, u.overrides.writesPerDay)}`;
        rows.push([u.email, iso(u.createdAt), iso(u.lastSeenAt), u.devices, u.keys, u.bytes, u.writesToday, q, u.disabledAt ? iso(u.disabledAt) : '-']);
      }
      console.log(table(rows));
      process.stderr.write(`${r.users.length} account(s)\n`);
      return;
    }
    case 'reset-code': {
      const r = await call(t, 'POST', `${user('EMAIL')}/reset-code`);
      console.log(r.code);
      process.stderr.write(
        `One-time reset code for ${r.email}, valid until ${iso(r.expiresAt)} (an hour). Hand it over yourself (not by the same mail account if that may be what was lost); it sets a new password in the app's "Forgot password?" and signs out every device. A new code replaces this one.\n`,
      );
      return;
    }
    case 'allow':
    case 'disallow':
    case 'allowlist': {
      const r =
        cmd === 'allow'
          ? await call(t, 'POST', '/allowlist', { entry: need(arg, 'EMAIL or @domain') })
          : cmd === 'disallow'
            ? await call(t, 'DELETE', `/allowlist/${enc(need(arg, 'EMAIL or @domain'))}`)
            : await call(t, 'GET', '/allowlist');
      if (opts.json) return console.log(JSON.stringify(r, null, 2));
      for (const e of r.entries) console.log(`${e.entry}\t${e.allowed ? 'allowed' : 'disallowed'}\t${e.source}`);
      if (r.mode !== 'allowlist') process.stderr.write(`note: REGISTRATION is "${r.mode}": the list applies only under "allowlist"\n`);
      return;
    }
    case 'quota': {
      const body = {};
      const f = opts.flags;
      if ('bytes' in f) body.bytes = limit(f.bytes);
      if ('keys' in f) body.keys = limit(f.keys);
      if ('writes-per-day' in f) body.writesPerDay = limit(f['writes-per-day']);
      const r = await call(t, 'PUT', `${user('EMAIL')}/quota`, body);
      if (opts.json) return console.log(JSON.stringify(r, null, 2));
      const show = (name, k) => `${name} ${r.quota[k]}${r.overrides[k] === null ? ' (default)' : ''}`;
      console.log(`${r.email}: ${show('bytes', 'bytes')}, ${show('keys', 'keys')}, ${show('writes a day', 'writesPerDay')}`);
      return;
    }
    case 'disable': {
      const r = await call(t, 'POST', `${user('EMAIL')}/disable`);
      console.log(`${arg}: disabled, ${r.signedOut} device(s) signed out`);
      return;
    }
    case 'enable': {
      await call(t, 'POST', `${user('EMAIL')}/enable`);
      console.log(`${arg}: enabled (they sign in again with their password)`);
      return;
    }
    case 'delete': {
      need(arg, 'EMAIL');
      await confirmDelete(arg, opts.yes);
      const r = await call(t, 'DELETE', user('EMAIL'));
      console.log(`${arg}: deleted with everything stored for them, ${r.signedOut} device(s) signed out`);
      return;
    }
    case 'export': {
      const r = await call(t, 'GET', `${user('EMAIL')}/export`);
      process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      return;
    }
  }
}

main().catch((err) => {
  if (err instanceof Usage) {
    process.stderr.write(`admin: ${err.message}\n\n${USAGE}\n`);
    process.exit(2);
  }
  fail(err.stack ?? String(err));
});
