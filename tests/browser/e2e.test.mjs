// Browser tests: headless Chromium (Debian's /usr/bin/chromium through
// playwright-core) against the real Worker under `wrangler dev`. Two browser
// contexts are two devices with their own localStorage; the page is the demo
// at `/`, whose SyncManager is `window.sync`.
//
//   node --test tests/browser/e2e.test.mjs
//
// Needs build/worker/shim.mjs (scripts/build.sh) and `apt-get install chromium`.
// Screenshots go to tests/browser/artifacts/.

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { ROOT, startServer } from './server.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'tests/browser/artifacts');
const WAIT = 10_000; // for anything that should take "seconds" at most
const PASSWORD = 'correct horse battery';

let server;
let browser;
// E2E_TRACE=1 prints how long the slow steps take.
const trace = process.env.E2E_TRACE ? (what, t0) => console.log(`[trace] ${what}: ${Date.now() - t0} ms`) : () => {};
const contexts = new Set();

before(async () => {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get update && apt-get install -y chromium`);
  server = await startServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
    ],
    timeout: 30_000,
  });
  fs.mkdirSync(ARTIFACTS, { recursive: true });
});

// Each test's devices go away with it: idle pages still cost rendering time.
afterEach(async () => {
  const t0 = Date.now();
  await Promise.all([...contexts].map((c) => c.close().catch(() => {})));
  contexts.clear();
  trace('close devices', t0);
});

after(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close().catch(() => {});
  await server?.stop();
});

let accounts = 0;
const newEmail = () => `device-test-${process.pid}-${Date.now()}-${++accounts}@example.com`;

/** A device: a browser context (its own storage) with the demo page open. */
async function openDevice({ viewport = { width: 1360, height: 820 } } = {}) {
  const t0 = Date.now();
  const context = await browser.newContext({ viewport, reducedMotion: 'reduce' });
  contexts.add(context);
  context.setDefaultTimeout(WAIT);
  const page = await newPage(context);
  trace('open device', t0);
  return { context, page };
}

async function newPage(context, hash = '') {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));
  await page.goto(`${server.base}/${hash}`);
  await page.waitForFunction(() => window.sync !== undefined);
  return page;
}

/** Signs the page's SyncManager in through its API (the modal is tested on its own). */
async function signIn(page, email, register) {
  const t0 = Date.now();
  await page.evaluate(
    async ([email, password, register]) => {
      if (register) await window.sync.register(email, password, 'test device');
      else await window.sync.login(email, password, 'test device');
    },
    [email, PASSWORD, register],
  );
  trace(register ? 'register' : 'login', t0);
  await waitSynced(page);
  trace('signed in and synced', t0);
}

const waitSynced = (page) =>
  page.waitForFunction(() => window.sync.status === 'synced' && window.sync.pendingCount === 0, null, { timeout: WAIT });

async function twoDevices() {
  const email = newEmail();
  const a = await openDevice();
  const b = await openDevice();
  await signIn(a.page, email, true);
  await signIn(b.page, email, false);
  return { a, b, email };
}

const setItem = (page, key, value) => page.evaluate(([k, v]) => localStorage.setItem(k, v), [key, value]);
const getItem = (page, key) => page.evaluate((k) => localStorage.getItem(k), key);
const waitValue = (page, key, predicate, what) =>
  page
    .waitForFunction(([k, src]) => new Function('v', `return (${src})(v)`)(localStorage.getItem(k)), [key, predicate.toString()], { timeout: WAIT })
    .catch(async (err) => {
      throw new Error(`${what}: ${err.message}\nlast value: ${await getItem(page, key)}`);
    });

async function goOffline({ context, page }) {
  await context.setOffline(true);
  await page.evaluate(() => window.dispatchEvent(new Event('offline')));
}
async function goOnline({ context, page }) {
  await context.setOffline(false);
  await page.evaluate(() => window.dispatchEvent(new Event('online')));
}

/** The indicator's state and text, read from its shadow DOM. */
const indicator = (page) =>
  page.evaluate(() => {
    const el = document.querySelector('sync-status');
    return { state: el.getAttribute('state'), text: el.shadowRoot.textContent.replace(/\s+/g, ' ').trim() };
  });

test('an edit through localStorage.setItem on one device appears on the other within seconds', { timeout: 60_000 }, async () => {
  const { a, b } = await twoDevices();
  await b.page.evaluate(() => (location.hash = '#estimates'));
  const value = JSON.stringify([{ id: 'est-live', client: 'Live Client Ltd', project: 'Trailer', amount: 1200, status: 'Sent', updatedAt: Date.now() }]);
  const t0 = Date.now();
  await setItem(a.page, 'estimates', value);
  await waitValue(b.page, 'estimates', (v) => v !== null && v.includes('est-live'), 'the edit reaches device b');
  const elapsed = Date.now() - t0;
  assert.ok(elapsed < 5000, `took ${elapsed} ms`);
  // b's page re-rendered from the `change` event.
  await b.page.getByText('Live Client Ltd').waitFor();
  await waitSynced(a.page);
  await waitSynced(b.page);
  assert.equal(await getItem(b.page, 'estimates'), value);
});

test('offline on one device, both edit the same array, reconnect: both edits everywhere, honest indicator', { timeout: 60_000 }, async () => {
  const { a, b } = await twoDevices();
  const start = [
    { id: 'p1', title: 'Northern Lights', columnId: 'c1', updatedAt: 1000 },
    { id: 'p2', title: 'Tidewater', columnId: 'c1', updatedAt: 1000 },
  ];
  await setItem(a.page, 'kanban-columns', JSON.stringify([{ id: 'c1', title: 'Writing', updatedAt: 1000 }]));
  await setItem(a.page, 'kanban-projects', JSON.stringify(start));
  await waitValue(b.page, 'kanban-projects', (v) => v !== null && v.includes('Tidewater'), 'initial value on b');
  await waitSynced(b.page);

  await goOffline(b);
  await b.page.waitForFunction(() => document.querySelector('sync-status').getAttribute('state') === 'offline');
  // Both edit a different element of the same key.
  await b.page.evaluate(() => {
    const items = JSON.parse(localStorage.getItem('kanban-projects'));
    items[1] = { ...items[1], title: 'Tidewater (edited offline on B)', updatedAt: Date.now() };
    localStorage.setItem('kanban-projects', JSON.stringify(items));
  });
  await a.page.evaluate(() => {
    const items = JSON.parse(localStorage.getItem('kanban-projects'));
    items[0] = { ...items[0], title: 'Northern Lights (edited on A)', updatedAt: Date.now() };
    localStorage.setItem('kanban-projects', JSON.stringify(items));
  });
  await waitSynced(a.page);

  const offline = await indicator(b.page);
  assert.equal(offline.state, 'offline');
  assert.match(offline.text, /Offline/);
  assert.match(offline.text, /1 edit waiting/);
  assert.equal(await b.page.evaluate(() => window.sync.status), 'offline');
  await b.page.locator('.topbar').screenshot({ path: path.join(ARTIFACTS, 'indicator-offline.png') });

  // Record every state the indicator shows from here on.
  await b.page.evaluate(() => {
    const el = document.querySelector('sync-status');
    window.__states = [el.getAttribute('state')];
    new MutationObserver(() => {
      const s = el.getAttribute('state');
      if (window.__states.at(-1) !== s) window.__states.push(s);
    }).observe(el, { attributes: true, attributeFilter: ['state'] });
  });
  await goOnline(b);
  const both = (v) => v !== null && v.includes('edited on A') && v.includes('edited offline on B');
  await waitValue(b.page, 'kanban-projects', both, 'b has both edits');
  await waitValue(a.page, 'kanban-projects', both, 'a has both edits');
  await waitSynced(a.page);
  await waitSynced(b.page);
  assert.equal(await getItem(a.page, 'kanban-projects'), await getItem(b.page, 'kanban-projects'));
  const states = await b.page.evaluate(() => window.__states);
  assert.equal(states[0], 'offline');
  assert.equal(states.at(-1), 'synced');
  assert.ok(states.includes('syncing'), `the indicator went through syncing: ${states.join(' → ')}`);
  assert.match((await indicator(b.page)).text, /Synced.*Last synced: just now/);
  // The merge is in b's conflict log, nothing was lost.
  assert.ok(await b.page.evaluate(() => window.sync.conflicts.some((c) => c.resolution === 'merged')));
  await b.page.click('#conflicts-btn');
  await b.page.getByText('Edits from two devices were merged').first().waitFor();
  await b.page.screenshot({ path: path.join(ARTIFACTS, 'conflict-log.png') });
});

test('an edit made offline survives closing the page and syncs from a new page', { timeout: 60_000 }, async () => {
  const { a, b } = await twoDevices();
  await goOffline(b);
  const value = JSON.stringify([{ id: 'cue-offline', project: 'Lantern', cue: '1M1', minutes: 45, updatedAt: Date.now() }]);
  await setItem(b.page, 'cue-tracker-sessions', value);
  const queued = await getItem(b.page, 'sync-queue');
  assert.ok(queued?.includes('cue-tracker-sessions'), 'the edit is queued in localStorage');
  await b.page.close();
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await getItem(a.page, 'cue-tracker-sessions'), null, 'nothing left b while offline');

  await b.context.setOffline(false);
  const page = await newPage(b.context);
  await waitValue(a.page, 'cue-tracker-sessions', (v) => v !== null && v.includes('cue-offline'), 'the offline edit reaches a');
  await waitSynced(page);
  assert.equal(await getItem(page, 'sync-queue'), null, 'queue drained');
});

test('a removal propagates', { timeout: 60_000 }, async () => {
  const { a, b, email } = await twoDevices();
  await setItem(a.page, 'accountingTransactions', JSON.stringify([{ id: 't1', description: 'Strings', amount: 10 }]));
  await waitValue(b.page, 'accountingTransactions', (v) => v !== null, 'value on b');
  await a.page.evaluate(() => localStorage.removeItem('accountingTransactions'));
  await waitValue(b.page, 'accountingTransactions', (v) => v === null, 'removal on b');
  // The server holds a tombstone, so a device signing in later does not bring it back.
  const c = await openDevice();
  await signIn(c.page, email, false);
  assert.equal(await getItem(c.page, 'accountingTransactions'), null);
});

test('two tabs of one browser: one syncs, the other follows through storage events', { timeout: 60_000 }, async () => {
  const { a, b } = await twoDevices();
  const tab2 = await newPage(b.context, '#payments');
  await tab2.waitForFunction(() => window.sync.status === 'synced');
  const leaders = [await b.page.evaluate(() => window.sync._leader), await tab2.evaluate(() => window.sync._leader)];
  assert.deepEqual(leaders, [true, false], 'one syncing tab per browser');
  // An edit in the follower tab is synced by the leader tab...
  await setItem(tab2, 'alternatone-payments', JSON.stringify([{ id: 'pay-tab', payer: 'From Tab Two', amount: 75, updatedAt: Date.now() }]));
  await waitValue(a.page, 'alternatone-payments', (v) => v !== null && v.includes('From Tab Two'), 'edit from the second tab reaches a');
  // ...and a remote edit shows up in both tabs' pages.
  await setItem(a.page, 'alternatone-payments', JSON.stringify([{ id: 'pay-a', payer: 'Remote Payer', amount: 5, updatedAt: Date.now() }]));
  await tab2.getByText('Remote Payer').waitFor();
  await waitValue(b.page, 'alternatone-payments', (v) => v !== null && v.includes('Remote Payer'), 'leader tab has it');
  await tab2.close();
});

test('the demo page: register through the modal, load data, sign in on a second device through the modal and edit', { timeout: 90_000 }, async () => {
  const email = newEmail();
  const one = await openDevice();
  const modal = one.page.locator('#auth-dialog');
  await modal.waitFor({ state: 'visible' });
  assert.equal((await indicator(one.page)).state, 'offline');
  await one.page.click('#auth-dialog [data-mode=register]');
  await one.page.fill('#auth-form [name=email]', email);
  await one.page.fill('#auth-form [name=password]', PASSWORD);
  await one.page.fill('#auth-form [name=deviceName]', 'Studio iMac');
  await one.page.screenshot({ path: path.join(ARTIFACTS, 'demo-signin.png') });
  await one.page.click('#auth-submit');
  await modal.waitFor({ state: 'hidden' });
  await one.page.waitForFunction(() => document.querySelector('sync-status').getAttribute('state') === 'synced');
  await one.page.click('[data-action=sample]');
  await one.page.getByText('Northern Lights (feature)').waitFor();
  await waitSynced(one.page);

  // A wrong password is refused with a readable message.
  const two = await openDevice();
  await two.page.locator('#auth-dialog').waitFor({ state: 'visible' });
  await two.page.fill('#auth-form [name=email]', email);
  await two.page.fill('#auth-form [name=password]', 'wrong password!');
  await two.page.click('#auth-submit');
  await two.page.getByText('That email and password do not match.').waitFor();
  await two.page.fill('#auth-form [name=password]', PASSWORD);
  await two.page.fill('#auth-form [name=deviceName]', 'Laptop');
  await two.page.click('#auth-submit');
  await two.page.locator('#auth-dialog').waitFor({ state: 'hidden' });
  await two.page.getByText('Northern Lights (feature)').waitFor();
  await two.page.waitForFunction(() => document.querySelector('sync-status').getAttribute('state') === 'synced');

  // Edit a card through the UI on the second device; the first shows it.
  await two.page.getByText('Tidewater, S2').click();
  await two.page.fill('#edit-form [name=title]', 'Tidewater, Season 2');
  await two.page.click('#edit-save');
  await one.page.getByText('Tidewater, Season 2').waitFor();
  await waitSynced(two.page);

  await two.page.screenshot({ path: path.join(ARTIFACTS, 'demo-board.png') });
  await two.page.click('.tabs [data-view=invoices]');
  await two.page.getByText('INV-1042').waitFor();
  await two.page.screenshot({ path: path.join(ARTIFACTS, 'demo-invoices.png') });

  // Sign out keeps the data on the device.
  await two.page.click('#account-btn');
  await two.page.click('#signout-btn');
  await two.page.locator('#signin-btn').waitFor({ state: 'visible' });
  assert.ok((await getItem(two.page, 'kanban-projects')).includes('Tidewater, Season 2'));
  assert.match((await indicator(two.page)).text, /Not syncing/);
});
