// Bundles the client library (client-demo/sync-manager.js and its lib/
// modules) with esbuild into client-demo/dist/, which the Worker serves as
// static assets and the npm package exports. The output is not committed:
// scripts/build.sh (so dev.sh and deploy.sh), `npm pack` and an install
// from the repository (npm's `prepare`) all run this.
//   dist/alternassist-sync.mjs  one ES module:   import { SyncManager } from '.../alternassist-sync.mjs'
//   dist/alternassist-sync.js   a classic script: window.AlternassistSync.SyncManager (+ the <sync-status> element)
// Chromium already has a global `SyncManager` (the Background Sync API), so
// the classic build defines only its own namespace global.
//
//   node scripts/build-client.mjs [--quiet]
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DIST = path.join(ROOT, 'client-demo/dist');
const common = {
  bundle: true,
  minify: true,
  sourcemap: true,
  target: ['es2022'],
  legalComments: 'none',
  logLevel: 'warning',
  absWorkingDir: ROOT,
};
const outputs = [
  { entryPoints: ['client-demo/sync-manager.js'], format: 'esm', outfile: 'client-demo/dist/alternassist-sync.mjs' },
  {
    entryPoints: ['client-demo/lib/classic.js'],
    format: 'iife',
    globalName: 'AlternassistSync',
    outfile: 'client-demo/dist/alternassist-sync.js',
  },
];

fs.rmSync(DIST, { recursive: true, force: true });
for (const o of outputs) await build({ ...common, ...o });
if (!process.argv.includes('--quiet')) {
  for (const o of outputs) {
    const code = fs.readFileSync(path.join(ROOT, o.outfile));
    const gz = zlib.gzipSync(code, { level: 9 }).length;
    console.log(`build-client: ${o.outfile}: ${code.length} bytes minified, ${gz} bytes gzip -9`);
  }
}
