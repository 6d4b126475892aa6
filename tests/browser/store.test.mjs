// The built npm package in real headless Chromium: durable writes in a page and in the
// service worker, one writer per origin, live queries across tabs, and a service worker
// stopped in the middle of writes.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, openPage, startSite } from './harness.mjs';

let site;
let browser;

before(async () => {
  site = await startSite();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await site?.close();
});

test('page mode: writes resolve once stored and survive a reload', async () => {
  const context = await browser.newContext();
  const page = await openPage(context, `${site.url}/page.html`);
  const device = await page.evaluate(async () => {
    const store = await tm.openStore({ name: 'kitchen' });
    const orders = store.collection('orders');
    // Issued together: one IndexedDB transaction; each promise resolves after its commit.
    await Promise.all(Array.from({ length: 500 }, (_, n) => orders.upsert({ id: `o${n}`, table: n % 12 })));
    await orders.increment('o1', 'rounds', 2);
    await orders.delete('o2');
    window.store = store;
    return { device: store.device, mode: store.mode };
  });
  assert.equal(device.mode, 'page');

  await page.reload();
  await page.evaluate(() => window.ready);
  const after = await page.evaluate(async () => {
    const store = await tm.openStore({ name: 'kitchen' });
    const orders = store.collection('orders');
    window.store = store;
    return {
      device: store.device,
      count: (await orders.find()).length,
      o1: await orders.get('o1'),
      o2: await orders.get('o2'),
      deleted: await orders.find({ where: { id: 'o2' }, includeDeleted: true }),
      table3: (await orders.find({ where: { table: 3 }, orderBy: 'id' })).map((d) => d.id).slice(0, 3),
      usage: await store.usage(),
    };
  });
  assert.equal(after.device, device.device, 'the device key is kept');
  assert.equal(after.count, 499);
  assert.deepEqual(after.o1, { id: 'o1', table: 1, rounds: 2 });
  assert.equal(after.o2, undefined);
  assert.deepEqual(after.deleted, [{ id: 'o2', table: 2, _deleted: true }]);
  assert.deepEqual(after.table3, ['o111', 'o123', 'o135']);
  assert.equal(after.usage.documents, 500);
  assert.ok(after.usage.storage.quota > 0);
  assert.match(await refusedQuery(page), /^query\./);
  await context.close();
});

test('page mode: a second tab is refused with store.locked', async () => {
  const context = await browser.newContext();
  const first = await openPage(context, `${site.url}/page.html`);
  await first.evaluate(async () => { window.store = await tm.openStore({ name: 'shared' }); });
  const second = await openPage(context, `${site.url}/page.html`);
  const refused = await second.evaluate(() =>
    tm.openStore({ name: 'shared' }).then(() => 'opened', (error) => [error.name, error.code]));
  assert.deepEqual(refused, ['TidemarkError', 'store.locked']);
  // Closing the first releases the store.
  await first.evaluate(() => window.store.close());
  const reopened = await second.evaluate(() => tm.openStore({ name: 'shared' }).then((s) => s.mode));
  assert.equal(reopened, 'page');
  await context.close();
});

test('service worker: tabs share one store and live queries fire in every tab', async () => {
  const context = await browser.newContext();
  const counter = await openPage(context, `${site.url}/app.html`);
  const kitchen = await openPage(context, `${site.url}/app.html`);
  const modes = await Promise.all([counter, kitchen].map((page) => page.evaluate(async () => {
    window.store = await tm.openStore({ name: 'restaurant' });
    return window.store.mode;
  })));
  assert.deepEqual(modes, ['service-worker', 'service-worker']);

  await kitchen.evaluate(() => {
    window.seen = [];
    window.stop = window.store.collection('orders').observe(
      { where: { done: false }, orderBy: 'placed' },
      (results) => window.seen.push(results.map((d) => d.id)),
    );
  });
  await kitchen.waitForFunction(() => window.seen.length === 1);
  await counter.evaluate(async () => {
    const orders = window.store.collection('orders');
    await orders.upsert({ id: 'a', placed: 1, done: false });
    await orders.upsert({ id: 'b', placed: 2, done: false });
    await orders.update('a', { done: true });
  });
  await kitchen.waitForFunction(() => window.seen.at(-1)?.join() === 'b');
  const seen = await kitchen.evaluate(() => window.seen);
  assert.deepEqual(seen[0], []);
  assert.ok(seen.some((ids) => ids.join() === 'a,b'), JSON.stringify(seen));

  // Writes issued in one turn share one transaction in the worker too: one journal record.
  const records = await counter.evaluate(async () => {
    const before = (await window.store.usage()).journalRecords;
    const menu = window.store.collection('menu');
    await Promise.all(Array.from({ length: 300 }, (_, n) => menu.upsert({ id: `m${n}`, price: n })));
    return (await window.store.usage()).journalRecords - before;
  });
  assert.equal(records, 1);

  // Errors cross the worker boundary with their code.
  const refused = await counter.evaluate(() => window.store.collection('orders')
    .update('missing', { done: true }).then(() => 'ok', (e) => [e.name, e.code]));
  assert.deepEqual(refused, ['TidemarkError', 'write.not_found']);
  assert.match(await refusedQuery(counter), /^query\./);
  await context.close();
});

/** Observes a query the store refuses; resolves to the code `onError` receives. */
function refusedQuery(page) {
  return page.evaluate(() => new Promise((resolve) => {
    window.store.collection('orders').observe(
      { where: { placed: { in: 3 } } }, // "in" takes an array
      () => resolve('the callback ran'),
      (error) => resolve(error.code),
    );
  }));
}

test('service worker stopped during writes: every acknowledged write is kept', async () => {
  const context = await browser.newContext();
  const page = await openPage(context, `${site.url}/app.html`);
  const cdp = await context.newCDPSession(page);
  await cdp.send('ServiceWorker.enable');
  await page.evaluate(async () => {
    window.store = await tm.openStore({ name: 'stopped' });
    window.acknowledged = [];
    window.interrupted = [];
    window.writing = (async () => {
      const orders = window.store.collection('orders');
      for (let n = 0; n < 400; n++) {
        const writes = Array.from({ length: 5 }, (_, k) => {
          const id = `o${n * 5 + k}`;
          return orders.upsert({ id, n }).then(
            () => window.acknowledged.push(id),
            (error) => window.interrupted.push([id, error.code]),
          );
        });
        await Promise.all(writes);
      }
    })();
  });
  // Stop the worker three times while writes are in flight; the next request wakes it.
  for (let stop = 0; stop < 3; stop++) {
    await page.waitForFunction((n) => window.acknowledged.length > n, 300 * (stop + 1));
    await cdp.send('ServiceWorker.stopAllWorkers');
  }
  await page.evaluate(() => window.writing);
  const { acknowledged, interrupted } = await page.evaluate(() => ({
    acknowledged: window.acknowledged,
    interrupted: window.interrupted,
  }));
  assert.ok(acknowledged.length >= 1_900, `acknowledged ${acknowledged.length}`);
  for (const [, code] of interrupted) assert.equal(code, 'store.interrupted');

  // A fresh worker and a fresh page read everything that was acknowledged.
  await cdp.send('ServiceWorker.stopAllWorkers');
  await page.reload();
  await page.evaluate(() => window.ready);
  const stored = await page.evaluate(async () => {
    const store = await tm.openStore({ name: 'stopped' });
    return (await store.collection('orders').find()).map((d) => d.id);
  });
  const kept = new Set(stored);
  const lost = acknowledged.filter((id) => !kept.has(id));
  assert.deepEqual(lost, [], 'acknowledged writes missing after the worker was stopped');
  console.log(`stopped the worker 3 times: ${acknowledged.length} acknowledged, ` +
    `${interrupted.length} interrupted, ${stored.length} stored`);
  await context.close();
});
