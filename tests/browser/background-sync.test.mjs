// Background Sync: writes made while the server is unreachable are pushed by the service
// worker when the browser fires the sync event, with every tab of the app closed and the
// worker stopped in between.
//
// Run alone: `node --test background-sync.test.mjs` in tests/browser.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
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

/** Ids of the documents in the `tabs` collection, sorted. */
const tabIds = (page) =>
  page.evaluate(async () => (await window.tabs.find({})).map((doc) => doc.id).sort());

test('service worker: offline writes are pushed by a Background Sync event, no tab open', { timeout: 90_000 }, async () => {
  // Device A: the store in the service worker, connected, its first write pushed.
  const contextA = await browser.newContext();
  const pageA = await openPage(contextA, `${server.url}/app.html`);
  await pageA.evaluate(async (invite) => {
    window.store = await tm.openStore({ name: 'restaurant' });
    window.tabs = window.store.collection('tabs');
    await window.tabs.upsert({ id: 'table-1', covers: 2 });
    await window.store.sync.connect({ server: location.origin, invite, name: 'counter' });
  }, await server.invite());
  await until(pageA, async () => (await window.store.sync.status()).pendingWrites === 0);

  // The server goes away; A keeps writing, and its worker asks for a sync event.
  await server.halt();
  await pageA.evaluate(async () => {
    for (const id of ['table-2', 'table-3', 'table-4']) await window.tabs.upsert({ id, covers: 4 });
  });
  const stuck = await until(pageA, async () => {
    const status = await window.store.sync.status();
    return !status.online && status.pendingWrites > 0 && status;
  });
  assert.equal(stuck.pendingWrites, 3);
  const tags = await until(pageA, async () => {
    const tags = await (await navigator.serviceWorker.ready).sync.getTags();
    return tags.length > 0 && tags;
  });
  assert.deepEqual(tags, ['tidemark:restaurant']);
  assert.ok(await pageA.evaluate(() => caches.has('tidemark-wasm')), 'the worker keeps its wasm for offline starts');

  // Every tab of A closes and its worker stops: no code of A runs any more.
  const control = await contextA.newPage(); // outlives pageA, to drive the worker over CDP
  const cdp = await contextA.newCDPSession(control);
  const registrations = new Promise((resolve) =>
    cdp.on('ServiceWorker.workerRegistrationUpdated', ({ registrations }) => {
      const ours = registrations.find((r) => r.scopeURL === `${server.url}/` && !r.isDeleted);
      if (ours) resolve(ours);
    }));
  await cdp.send('ServiceWorker.enable');
  const { registrationId } = await registrations;
  await pageA.close();
  await cdp.send('ServiceWorker.stopAllWorkers');

  // The server is back. Device B joins and reads the collection (a reader follows it too).
  await server.resume();
  const contextB = await browser.newContext();
  const pageB = await openPage(contextB, `${server.url}/page.html`);
  await pageB.evaluate(async (invite) => {
    window.store = await tm.openStore({ name: 'restaurant' });
    window.tabs = window.store.collection('tabs');
    await window.store.sync.connect({ server: location.origin, invite, name: 'kitchen' });
  }, await server.invite());
  await until(pageB, async () => (await window.tabs.find({})).length > 0);

  // The browser fires the sync event when the network is back (Chromium also retries a
  // failed one by itself, on its own schedule, which may come first): the worker starts with
  // the WebAssembly it cached, opens the store, resumes its connection and pushes.
  await cdp.send('ServiceWorker.dispatchSyncEvent', {
    origin: server.url, registrationId, tag: 'tidemark:restaurant', lastChance: false,
  });
  await until(pageB, async () => (await window.tabs.find({})).length === 4);
  assert.deepEqual(await tabIds(pageB), ['table-1', 'table-2', 'table-3', 'table-4']);

  await contextA.close();
  await contextB.close();
});
