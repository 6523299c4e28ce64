// The client as an app developer gets it: `npm pack` of this repository (its
// `prepare` builds the bundles), installed into an empty app; the ES module
// imports, the classic build resolves, and tsc finds the types through the
// package's `exports`.
//
//   node --test tests/browser/package.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './server.mjs';

const run = (cmd, args, cwd) =>
  execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });

test('npm pack, install into an app: import, script build and types resolve', { timeout: 180_000 }, () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'alternassist-sync-pack-'));
  try {
    const [packed] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', tmp], ROOT));
    const files = packed.files.map((f) => f.path);
    for (const f of ['client-demo/dist/alternassist-sync.mjs', 'client-demo/dist/alternassist-sync.js', 'client-demo/sync-manager.d.ts', 'package.json']) {
      assert.ok(files.includes(f), `${f} is in the tarball`);
    }
    assert.ok(!files.some((f) => f.startsWith('src/') || f.startsWith('tests/') || f.startsWith('node_modules/')), 'only the client is packed');

    const app = path.join(tmp, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'some-app', private: true, type: 'module' }));
    run('npm', ['install', '--no-audit', '--no-fund', '--offline', path.join(tmp, packed.filename)], app);

    const out = run(process.execPath, ['--input-type=module', '-e', `
      import Default, { SyncManager, SyncError, DEFAULT_KEYS } from 'alternassist-sync';
      console.log(JSON.stringify({
        manager: typeof SyncManager, same: Default === SyncManager, error: typeof SyncError, keys: DEFAULT_KEYS.length,
        classic: import.meta.resolve('alternassist-sync/classic'),
        status: import.meta.resolve('alternassist-sync/status'),
      }));`], app);
    const r = JSON.parse(out);
    assert.deepEqual([r.manager, r.same, r.error, r.keys], ['function', true, 'function', 7]);
    assert.match(r.classic, /node_modules\/alternassist-sync\/client-demo\/dist\/alternassist-sync\.js$/);
    assert.match(r.status, /node_modules\/alternassist-sync\/client-demo\/sync-status\.js$/);

    fs.writeFileSync(path.join(app, 'main.ts'), `
      import { SyncManager, type SyncStatus, type ConflictRecord } from 'alternassist-sync';
      import { timeAgo } from 'alternassist-sync/status';
      const sync = new SyncManager({ apiBase: 'https://sync.example.com/api' });
      const s: SyncStatus = sync.status;
      sync.on('conflict', (c: ConflictRecord) => c.restore?.());
      console.log(s, timeAgo(sync.lastSyncedAt));
      // @ts-expect-error a number is not a status
      const wrong: SyncStatus = 3;
      void wrong;
    `);
    fs.writeFileSync(path.join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { strict: true, noEmit: true, target: 'es2022', module: 'es2022', moduleResolution: 'bundler', lib: ['es2022', 'dom'], types: [] },
      files: ['main.ts'],
    }));
    run(path.join(ROOT, 'node_modules/.bin/tsc'), ['-p', app], app);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
