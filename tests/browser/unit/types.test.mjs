// The hand-written declarations (client-demo/sync-manager.d.ts) name exactly
// what the module exports, and every method and property they give
// SyncManager exists on it; tsc (tests/types) checks that they are valid.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as lib from '../../../client-demo/sync-manager.js';
import { MemoryStorage } from './fakes.mjs';

const dts = readFileSync(new URL('../../../client-demo/sync-manager.d.ts', import.meta.url), 'utf8');

test('the .d.ts declares exactly the runtime exports', () => {
  const declared = new Set([...dts.matchAll(/^export declare (?:const|function|class) (\w+)/gm)].map((m) => m[1]));
  if (/^export default /m.test(dts)) declared.add('default');
  assert.deepEqual([...declared].sort(), Object.keys(lib).sort());
});

test("every member the .d.ts gives SyncManager exists at run time", () => {
  const body = dts.slice(dts.indexOf('export declare class SyncManager'), dts.indexOf('export declare class SyncError'));
  const members = [...body.matchAll(/^ {2}(?:readonly )?(\w+)[(<?:]/gm)].map((m) => m[1]).filter((n) => n !== 'constructor');
  assert.ok(members.length > 30, `found ${members.length} members`);
  const sm = new lib.SyncManager({ storage: new MemoryStorage(), fetch: async () => { throw new Error('offline'); }, window: new EventTarget() });
  try {
    for (const name of members) assert.ok(name in sm, `SyncManager has ${name}`);
  } finally {
    sm.destroy();
  }
});
