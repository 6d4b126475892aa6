// Browsers syncing through the real tidemark-server binary and its embedded object store:
// two browser contexts are two devices.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { launchBrowser, openPage, startServer, until } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A device: a fresh browser context with the store open on `path` and connected. Each
 * test writes its own collection (`orders` plus a tag): devices read only the collections
 * they use, so tests sharing the server's space stay apart. */
async function device(path, name, collection, connectOptions = {}, role = 'writer') {
  const context = await browser.newContext();
  if (process.env.TIDEMARK_TEST_DEBUG) {
    context.on('serviceworker', (w) => w.on('console', (m) => console.log(`[${name} worker]`, m.text())));
    context.on('console', (m) => console.log(`[${name}]`, m.text()));
  }
  const page = await openPage(context, `${server.url}/${path}`);
  const invite = await server.invite(role);
  await page.evaluate(async ({ invite, name, collection, connectOptions }) => {
    window.store = await tm.openStore({ name: 'restaurant' });
    window.orders = window.store.collection(collection);
    window.events = [];
    window.store.sync.on((event) => window.events.push(event));
    await window.orders.upsert({ id: `before-${name}`, by: name });
    // Joining by link, as a user would: the key (if any) travels in the fragment.
    const link = tm.joinLink({ server: location.origin, invite, spaceKey: connectOptions.spaceKey });
    const { server, invite: code, spaceKey } = tm.parseJoinLink(link);
    window.connection = await window.store.sync.connect({ ...connectOptions, server, invite: code, spaceKey, name });
  }, { invite, name, collection, connectOptions });
  return { context, page };
}

/** Every document of every collection, as one comparable value. */
function snapshot(page) {
  return page.evaluate(async () => {
    const { collections } = await window.store.export();
    return JSON.stringify(Object.keys(collections).sort().map((name) =>
      [name, collections[name].sort((a, b) => a.id.localeCompare(b.id))]));
  });
}

async function converged(a, b) {
  for (let tries = 0; tries < 100; tries++) {
    const [x, y] = await Promise.all([snapshot(a.page), snapshot(b.page)]);
    if (x === y) return x;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const statuses = await Promise.all([a, b].map((d) => d.page.evaluate(() => window.store.sync.status())));
  assert.equal(await snapshot(a.page), await snapshot(b.page),
    `the devices did not converge; their status:\n${statuses.map((s) => JSON.stringify(s)).join('\n')}`);
}

for (const [mode, path, tag] of [['page', 'page.html', 'p'], ['service worker', 'app.html', 'w']]) {
  test(`${mode}: two devices converge, live and after offline edits`, { timeout: 60_000 }, async () => {
    const collection = `orders_${tag}`;
    const a = await device(path, 'counter', collection);
    const b = await device(path, 'kitchen', collection);
    const status = await a.page.evaluate(() => window.connection);
    assert.equal(status.connected, true);
    assert.equal(status.space, 'default');

    // Writes made before connecting were pushed; live writes arrive through announcements.
    await b.page.evaluate(() => {
      window.seen = [];
      window.orders.observe({ orderBy: 'id' }, (docs) => window.seen.push(docs.map((d) => d.id)));
    });
    await a.page.evaluate(() => window.orders.upsert({ id: 'live', table: 7 }));
    await b.page.waitForFunction(() => window.seen.at(-1)?.join() === 'before-counter,before-kitchen,live',
      null, { timeout: 15_000 });

    // Both offline: both keep working, with conflicting edits and concurrent increments.
    await a.context.setOffline(true);
    await b.context.setOffline(true);
    await a.page.evaluate(async () => {
      const orders = window.orders;
      await orders.update('live', { table: 8, note: 'from the counter' });
      await orders.increment('live', 'rounds', 2);
      await orders.upsert({ id: 'offline-a', by: 'counter' });
    });
    await b.page.evaluate(async () => {
      const orders = window.orders;
      await orders.update('live', { table: 9 });
      await orders.increment('live', 'rounds', 3);
      await orders.delete('before-counter');
    });
    const offline = await a.page.evaluate(() => window.store.sync.status());
    assert.ok(offline.pendingWrites > 0, 'offline writes wait in the outbox');

    await a.context.setOffline(false);
    await b.context.setOffline(false);
    const state = JSON.parse(await converged(a, b));
    const orders = Object.fromEntries(state.find(([name]) => name === collection)[1].map((d) => [d.id, d]));
    assert.equal(orders.live.rounds, 5, 'increments from both devices add up');
    assert.ok([8, 9].includes(orders.live.table));
    assert.equal(orders.live.note, 'from the counter');
    assert.equal(orders['before-counter']._deleted, true);
    assert.equal(orders['offline-a'].by, 'counter');

    const types = await a.page.evaluate(() => [...new Set(window.events.map((e) => e.type))]);
    assert.ok(types.includes('acknowledged') && types.includes('status'), types.join());
    await a.context.close();
    await b.context.close();
  });
}

test('an admin device invites another by link; a paused device keeps its writes until resumed', { timeout: 60_000 }, async () => {
  const a = await device('page.html', 'manager', 'orders_i', {}, 'admin');
  const invite = await a.page.evaluate(() => window.store.sync.invite({ role: 'reader' }));
  assert.equal(invite.role, 'reader');
  assert.match(invite.link, /^http:\/\/127\.0\.0\.1:\d+\/#join=tmi_/);

  // B joins by the link, as a second device opening it would.
  const context = await browser.newContext();
  const page = await openPage(context, `${server.url}/page.html`);
  await page.evaluate(async (link) => {
    window.store = await tm.openStore({ name: 'restaurant' });
    window.orders = window.store.collection('orders_i');
    const { server, invite, spaceKey } = tm.parseJoinLink(link);
    await window.store.sync.connect({ server, invite, spaceKey, name: 'kitchen' });
  }, invite.link);
  await until(page, async () => (await window.orders.get('before-manager')) !== undefined);
  const refused = await page.evaluate(() => window.store.sync.invite().then(() => 'invited', (e) => e.code));
  assert.equal(refused, 'role.insufficient');

  // A pauses: its writes wait on the device, across a reload too, until it resumes.
  await a.page.evaluate(async () => {
    await window.store.sync.pause();
    await window.orders.upsert({ id: 'while-paused' });
  });
  await a.page.reload();
  await a.page.evaluate(() => window.ready);
  const paused = await a.page.evaluate(async () => {
    window.store = await tm.openStore({ name: 'restaurant' });
    window.orders = window.store.collection('orders_i');
    return window.store.sync.status();
  });
  assert.equal(paused.paused, true);
  assert.equal(paused.pendingWrites, 1);
  const upload = await a.page.evaluate(() => window.store.attachments.put(new Blob(['menu photo']))
    .then(async () => (await window.store.attachments.queued()).length));
  assert.equal(upload, 1, 'an attachment put while paused waits too');
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  assert.equal(await page.evaluate(() => window.orders.get('while-paused')), undefined);

  const resumed = await a.page.evaluate(() => window.store.sync.connect());
  assert.equal(resumed.paused, false);
  await until(page, async () => (await window.orders.get('while-paused')) !== undefined);
  await until(a.page, async () => (await window.store.attachments.queued()).length === 0);
  await a.context.close();
  await context.close();
});

test('a store resumes syncing after a reload, and refuses a second space', { timeout: 60_000 }, async () => {
  const a = await device('page.html', 'resumer', 'orders_r');
  await a.page.reload();
  await a.page.evaluate(() => window.ready);
  const status = await a.page.evaluate(async () => {
    window.store = await tm.openStore({ name: 'restaurant' });
    await window.store.collection('orders_r').upsert({ id: 'after-reload' });
    for (let i = 0; i < 100; i++) {
      const status = await window.store.sync.status();
      if (status.pendingWrites === 0 && status.lastPushedAt) return status;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return window.store.sync.status();
  });
  assert.equal(status.connected, true);
  assert.equal(status.pendingWrites, 0, JSON.stringify(status));

  const refused = await a.page.evaluate(() => window.store.sync
    .connect({ server: location.origin, token: 'x', space: 'elsewhere' })
    .then(() => 'connected', (error) => error.code));
  assert.notEqual(refused, 'connected');
  const badInvite = await a.page.evaluate(() => window.store.sync
    .connect({ server: location.origin, invite: 'tmi_not_a_real_invite' })
    .then(() => 'connected', (error) => [error.name, typeof error.code]));
  assert.deepEqual(badInvite, ['TidemarkError', 'string']);

  // Disconnecting stops syncing and forgets the connection, across a reload too.
  await a.page.evaluate(() => window.store.sync.disconnect());
  assert.equal((await a.page.evaluate(() => window.store.sync.status())).connected, false);
  await a.page.evaluate(() => window.store.close());
  await a.page.reload();
  await a.page.evaluate(() => window.ready);
  const after = await a.page.evaluate(async () => {
    window.store = await tm.openStore({ name: 'restaurant' });
    const resumed = await window.store.sync.connect().then(() => 'resumed', (error) => error.code);
    return { status: await window.store.sync.status(), resumed };
  });
  assert.equal(after.status.connected, false);
  assert.equal(after.resumed, 'sync.not_connected');
  await a.context.close();
});

/** Every file under `dir`, with its bytes. */
async function files(dir) {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(await readFile(join(entry.parentPath, entry.name)));
  }
  return out;
}

test('end-to-end encryption: the key travels in the join link; without it, a clear error', { timeout: 60_000 }, async () => {
  const collection = 'orders_e';
  const a = await device('page.html', 'owner', collection, { encrypt: true });
  const spaceKey = await a.page.evaluate(() => window.store.sync.spaceKey());
  assert.equal(spaceKey.length, 43);
  await a.page.evaluate(() => window.orders.upsert({ id: 'secret', recipe: 'saffron-and-cardamom' }));

  const b = await device('app.html', 'cook', collection, { spaceKey });
  await until(b.page, async () => (await window.orders.get('secret'))?.recipe === 'saffron-and-cardamom');
  assert.equal((await b.page.evaluate(() => window.store.sync.status())).encrypted, true);

  // A device without the key verifies authorship but cannot read: it says so.
  const c = await device('page.html', 'stranger', collection);
  const status = await until(c.page, async () => {
    const status = await window.store.sync.status();
    return status.error?.code === 'pack.key_required' && status;
  });
  assert.equal(status.encrypted, false, JSON.stringify(status));
  assert.equal(await c.page.evaluate(() => window.orders.get('secret')), undefined);

  // The bucket holds no plaintext of the value, while the keyless device's own write (its
  // packs are not sealed) shows that the scan does find plaintext.
  await c.page.evaluate(() => window.orders.upsert({ id: 'open', note: 'plaintext-marker' }));
  await until(c.page, async () => (await window.store.sync.status()).pendingWrites === 0);
  const stored = await files(server.dataDir);
  assert.ok(stored.some((bytes) => bytes.includes('plaintext-marker')), 'the scan sees plaintext packs');
  assert.ok(!stored.some((bytes) => bytes.includes('saffron-and-cardamom')), 'plaintext in the server data folder');
  // The owner refuses the unsealed pack in its encrypted space, and says why.
  const owner = await until(a.page, async () => {
    const status = await window.store.sync.status();
    return status.error?.code === 'pack.not_encrypted' && status;
  });
  assert.equal(owner.encrypted, true);
  assert.equal(await a.page.evaluate(() => window.orders.get('open')), undefined);

  // A key in a bad shape is refused before anything changes.
  const refused = await c.page.evaluate(() => window.store.sync
    .connect({ server: location.origin, invite: 'unused', spaceKey: 'short' })
    .then(() => 'connected', (error) => error.code));
  assert.equal(refused, 'store.bad_argument');
  for (const d of [a, b, c]) await d.context.close();
});
