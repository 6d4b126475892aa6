// The demo app (web-demo/, assembled by `cargo xtask demo` into target/web-demo/) served by
// the real server binary: a manager, a counter and a kitchen, each its own browser context
// (own IndexedDB, own service worker), driven through the app's screens.
//
// Screenshots of every view land in target/demo-screenshots/ (TIDEMARK_SCREENSHOTS to move
// them); with TIDEMARK_README_SCREENSHOTS=1 the README's screenshot is written too.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchBrowser, startServer, until } from './harness.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const DEMO_DIR = process.env.TIDEMARK_DEMO_DIR ?? join(here, '../../target/web-demo');
const SHOTS = process.env.TIDEMARK_SCREENSHOTS ?? join(here, '../../target/demo-screenshots');
const README_SHOTS = join(here, '../../docs');

let server;
let browser;
/** The three devices, joined in the first test and used by the next ones. */
const devices = {};

before(async () => {
  server = await startServer({ appDir: DEMO_DIR });
  browser = await launchBrowser();
  await mkdir(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A device opening a join link and joining under `name`. */
async function joinAs(name, link) {
  const context = await browser.newContext({ viewport: { width: 1180, height: 820 } });
  const page = await context.newPage();
  page.on('pageerror', (error) => console.error(`[${name}] ${error.message}`));
  await page.goto(link);
  await page.fill('#join-name', name);
  await page.click('form.join button[type=submit]');
  await page.waitForSelector('#this-device dd');
  await until(page, async () => (await window.diner.store.sync.status()).pendingWrites === 0);
  return { name, context, page };
}

async function view(device, name) {
  await device.page.click(`nav [data-view=${name}]`);
  await device.page.waitForSelector(`#view[data-view=${name}]`);
}

/** Places an order on the counter screen: `dishes` are item ids, one tap each. */
async function placeOrder(device, dishes, { table = '', notes = '' } = {}) {
  for (const dish of dishes) await device.page.click(`.dish[data-item="${dish}"]`);
  if (table) await device.page.fill('#order-table', table);
  if (notes) await device.page.fill('#order-notes', notes);
  const before = await device.page.evaluate(() => window.diner.orders.find({}).then((o) => o.length));
  assert.equal(await device.page.locator('.ticket-lines li:not(.empty)').count(), new Set(dishes).size);
  await device.page.click('#place-order');
  return until(device.page, async (count) => {
    const orders = await window.diner.orders.find({ orderBy: '-placedAt' });
    return orders.length > count && orders[0];
  }, before);
}

/** What a device shows of the restaurant: open and bumped order numbers, the menu. */
function screenState(device) {
  return device.page.evaluate(async () => {
    const open = (await window.diner.orders.find({ orderBy: 'placedAt' })).map((o) => `${o.number}:${o.notes}`);
    const all = await window.diner.orders.find({ includeDeleted: true, orderBy: 'number' });
    const bumped = all.filter((o) => o._deleted).map((o) => o.number).sort();
    const menu = (await window.diner.menu.find({ orderBy: 'name' })).map((d) => `${d.id}:${d.price}:${d.stock}`);
    return JSON.stringify({ open, bumped, menu });
  });
}

async function converged(...all) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const states = await Promise.all(all.map(screenState));
    if (states.every((s) => s === states[0])) return JSON.parse(states[0]);
    if (Date.now() > deadline) {
      const statuses = await Promise.all(all.map((d) => d.page.evaluate(() => window.diner.store.sync.status())));
      assert.fail(`the devices did not converge:\n${states.join('\n')}\n${statuses.map((s) => JSON.stringify(s)).join('\n')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

test('a manager joins, loads the menu and invites a counter and a kitchen by link', { timeout: 120_000 }, async () => {
  const manager = await joinAs('Manager', `${server.url}/#join=${await server.invite('admin')}`);
  devices.manager = manager;
  const status = await manager.page.evaluate(() => window.diner.store.sync.status());
  assert.equal(status.encrypted, true, 'the first device makes the end-to-end key');

  await view(manager, 'menu');
  await manager.page.click('#load-sample');
  await until(manager.page, () => document.querySelectorAll('.menu-item').length === 6);

  for (const name of ['Counter', 'Kitchen']) {
    await view(manager, 'devices');
    await manager.page.selectOption('#invite-role', 'writer');
    await manager.page.click('#make-invite');
    const link = await manager.page.inputValue('#invite-link');
    assert.match(link, /#join=tmi_[^&]+&key=[\w-]{43}$/, 'the link carries the end-to-end key');
    assert.equal(await manager.page.locator('.qr svg').count(), 1, 'and shows as a QR code');
    devices[name.toLowerCase()] = await joinAs(name, link);
  }
  await view(devices.counter, 'counter');
  await view(devices.kitchen, 'kitchen');
  // Every device lists the others.
  await until(devices.kitchen.page, async () => (await window.diner.store.sync.devices()).length === 3);
});

test('orders reach the kitchen live; bump and recall propagate', { timeout: 120_000 }, async () => {
  const { counter, kitchen, manager } = devices;
  // The kitchen notes when each order's card appears.
  await kitchen.page.evaluate(() => {
    window.appeared = {};
    new MutationObserver(() => {
      for (const card of document.querySelectorAll('.orders:not(.bumped) [data-number]')) {
        window.appeared[card.dataset.number] ??= Date.now();
      }
    }).observe(document.getElementById('view'), { childList: true, subtree: true });
  });
  const latencies = [];
  for (let n = 0; n < 50; n++) {
    const order = await placeOrder(counter, [n % 2 ? 'lemonade' : 'burger']);
    const seen = await until(kitchen.page, (number) => window.appeared[number], order.number, 10_000);
    latencies.push(seen - order.placedAt);
  }
  latencies.sort((a, b) => a - b);
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
  console.log(`# order placed on the counter → on the kitchen screen, 50 orders: p50 ${at(0.5)} ms, p90 ${at(0.9)} ms, max ${latencies.at(-1)} ms`);

  const special = await placeOrder(counter, ['chowder', 'chowder', 'pie'], { table: '7', notes: 'no crackers' });
  const card = kitchen.page.locator(`.orders:not(.bumped) [data-number="${special.number}"]`);
  await card.waitFor();
  assert.match(await card.innerText(), /2 × Clam chowder[\s\S]*1 × Key lime pie[\s\S]*no crackers[\s\S]*Placed by Counter/);

  // Bump on the kitchen: it leaves every screen's open list; recall brings it back.
  await kitchen.page.click(`[aria-label="Bump order ${special.number}"]`);
  await view(manager, 'kitchen');
  const bumped = manager.page.locator(`.bumped [data-number="${special.number}"]`);
  await bumped.waitFor();
  assert.match(await bumped.innerText(), /last change by Kitchen/);
  await manager.page.click(`[aria-label="Recall order ${special.number}"]`);
  await kitchen.page.locator(`.orders:not(.bumped) [data-number="${special.number}"]`).waitFor();
  assert.match(await kitchen.page.locator(`[data-number="${special.number}"]`).first().innerText(), /last change by Manager/);

  // Everything but the special one is done.
  await kitchen.page.evaluate(async (keep) => {
    const open = await window.diner.orders.find({});
    await Promise.all(open.filter((o) => o.number !== keep).map((o) => window.diner.orders.delete(o.id)));
  }, special.number);
  await converged(counter, kitchen, manager);
});

test('stock stays exact under concurrent orders from two counters', { timeout: 120_000 }, async () => {
  const { counter, kitchen, manager } = devices;
  await view(manager, 'counter');
  const pie = () => window.diner.menu.get('pie').then((d) => d.stock);
  const start = await counter.page.evaluate(pie);
  // Both counters sell pie at the same time, five orders each.
  await Promise.all([counter, manager].map(async (device) => {
    for (let n = 0; n < 5; n++) await placeOrder(device, ['pie']);
  }));
  const state = await converged(counter, kitchen, manager);
  assert.ok(state.menu.includes(`pie:650:${start - 10}`), state.menu.join());
});

test('counter and kitchen offline: both keep working, reload included, and converge', { timeout: 180_000 }, async () => {
  const { counter, kitchen, manager } = devices;
  await view(counter, 'counter');
  await view(kitchen, 'kitchen');
  const [open] = await kitchen.page.evaluate(() => window.diner.orders.find({ orderBy: 'placedAt' }));
  await counter.context.setOffline(true);
  await kitchen.context.setOffline(true);

  // The counter takes an order and edits a price; the page reloads from the app shell.
  const offlineOrder = await placeOrder(counter, ['fish'], { notes: 'taken offline' });
  await counter.page.reload();
  await counter.page.waitForSelector('.dish[data-item="fish"]');
  assert.equal(await counter.page.locator('#link-status').getAttribute('data-state'), 'offline');
  await counter.page.evaluate(() => window.diner.menu.update('burger', { price: 1300, changedBy: 'Counter' }));
  // The kitchen, offline too, bumps the open order and sets another price for the same dish.
  await kitchen.page.reload();
  await kitchen.page.waitForSelector('#open-count');
  await kitchen.page.click(`[aria-label="Bump order ${open.number}"]`);
  await kitchen.page.evaluate(() => window.diner.menu.update('burger', { price: 1400, changedBy: 'Kitchen' }));
  await kitchen.page.screenshot({ path: join(SHOTS, 'kitchen-offline.png') });
  // Neither change is anywhere else yet.
  assert.ok(!(await screenState(manager)).includes('taken offline'));

  await counter.context.setOffline(false);
  await kitchen.context.setOffline(false);
  const state = await converged(counter, kitchen, manager);
  assert.ok(state.open.includes(`${offlineOrder.number}:taken offline`), state.open.join());
  assert.ok(state.bumped.includes(open.number));
  const burger = state.menu.find((d) => d.startsWith('burger:'));
  assert.ok(['burger:1300', 'burger:1400'].some((p) => burger.startsWith(p)), burger);
});

test('a server restart during use: clients recover on their own', { timeout: 120_000 }, async () => {
  const { counter, kitchen, manager } = devices;
  await server.halt();
  const order = await placeOrder(counter, ['salad'], { notes: 'during the restart' });
  await until(counter.page, () => document.querySelector('#link-status').dataset.state === 'offline');
  await server.resume();
  const state = await converged(counter, kitchen, manager);
  assert.ok(state.open.includes(`${order.number}:during the restart`));
});

test('screenshots of every view', { timeout: 60_000 }, async () => {
  const { manager } = devices;
  for (const name of ['counter', 'kitchen', 'menu', 'devices']) {
    await view(manager, name);
    await manager.page.waitForTimeout(300);
    await manager.page.screenshot({ path: join(SHOTS, `${name}.png`) });
  }
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
  const page = await phone.newPage();
  await page.goto(`${server.url}/?view=counter`);
  await page.waitForSelector('#view[data-view=counter]');
  await page.screenshot({ path: join(SHOTS, 'phone-counter.png') });
  await phone.close();
  if (process.env.TIDEMARK_README_SCREENSHOTS) {
    await mkdir(README_SHOTS, { recursive: true });
    await view(manager, 'kitchen');
    await manager.page.screenshot({ path: join(README_SHOTS, 'demo-kitchen.png') });
  }
});
