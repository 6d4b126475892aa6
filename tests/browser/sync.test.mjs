// Browsers syncing through the real tidemark-server binary and its embedded object store:
// two browser contexts are two devices.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, openPage, startServer } from './harness.mjs';

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
async function device(path, name, collection) {
  const context = await browser.newContext();
  if (process.env.TIDEMARK_TEST_DEBUG) {
    context.on('serviceworker', (w) => w.on('console', (m) => console.log(`[${name} worker]`, m.text())));
    context.on('console', (m) => console.log(`[${name}]`, m.text()));
  }
  const page = await openPage(context, `${server.url}/${path}`);
  const invite = await server.invite();
  await page.evaluate(async ({ invite, name, collection }) => {
    window.store = await tm.openStore({ name: 'restaurant' });
    window.orders = window.store.collection(collection);
    window.events = [];
    window.store.sync.on((event) => window.events.push(event));
    await window.orders.upsert({ id: `before-${name}`, by: name });
    window.connection = await window.store.sync.connect({ server: location.origin, invite, name });
  }, { invite, name, collection });
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
  assert.equal(await snapshot(a.page), await snapshot(b.page), 'the devices did not converge');
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
  await a.context.close();
});
