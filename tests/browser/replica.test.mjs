// `tidemark/replica` from the built npm package in headless Chromium: the in-memory replica
// apps use with their own transport.

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

test('replicas write in transactions, exchange deltas and converge', async () => {
  const context = await browser.newContext();
  const page = await openPage(context, `${site.url}/page.html`);
  const result = await page.evaluate(async () => {
    const { Replica } = await import('/pkg/replica.js');
    const phone = new Replica();
    const laptop = new Replica({ device: 'ab'.repeat(32) });
    const id = phone.transact((tx) => {
      tx.set('orders', 'o1', 'table', 4);
      tx.increment('stock', 'tea', 'left', -2);
      return tx.upsert('orders', { items: ['tea'], done: false });
    });
    laptop.set('orders', 'o1', 'paid', true);
    laptop.upsert('orders', { id: 'o9', table: 9 });
    laptop.delete('orders', 'o9');

    laptop.merge(phone.encodeSince(laptop.versionVector()));
    phone.merge(laptop.encodeSince(phone.versionVector()));
    const copy = Replica.load(phone.encode());
    return {
      id,
      device: laptop.device,
      o1: laptop.get('orders', 'o1'),
      made: laptop.get('orders', id),
      deleted: phone.get('orders', 'o9'),
      stock: phone.get('stock', 'tea'),
      converged: phone.encode().join() === laptop.encode().join(),
      sameJson: JSON.stringify(copy.toJSON()) === JSON.stringify(phone.toJSON()),
      collections: Object.keys(copy.toJSON()).sort(),
    };
  });
  assert.match(result.id, /^[0-9a-f]{32}$/);
  assert.equal(result.device, 'ab'.repeat(32));
  assert.deepEqual(result.o1, { id: 'o1', table: 4, paid: true });
  assert.deepEqual(result.made, { id: result.id, items: ['tea'], done: false });
  assert.equal(result.deleted, undefined);
  assert.deepEqual(result.stock, { id: 'tea', left: -2 });
  assert.ok(result.converged);
  assert.ok(result.sameJson);
  assert.deepEqual(result.collections, ['orders', 'stock']);
  await context.close();
});

test('refusals carry a code and change nothing', async () => {
  const context = await browser.newContext();
  const page = await openPage(context, `${site.url}/page.html`);
  const result = await page.evaluate(async () => {
    const { Replica } = await import('/pkg/replica.js');
    const replica = new Replica();
    replica.set('docs', 'd1', 'f', 1);
    const before = replica.encode().join();
    const code = (fn) => {
      try {
        fn();
        return 'no error';
      } catch (error) {
        return `${error.name}:${error.code}`;
      }
    };
    const damaged = replica.encode().slice(0, -2);
    return {
      atomic: code(() =>
        replica.transact((tx) => {
          tx.set('docs', 'd1', 'f', 2);
          tx.set('docs', 'd1', '_reserved', 3);
        }),
      ),
      nan: code(() => replica.set('docs', 'd1', 'f', Number.NaN)),
      fractional: code(() => replica.transact((tx) => tx.increment('docs', 'd1', 'n', 0.5))),
      corrupt: code(() => replica.merge(damaged)),
      notState: code(() => Replica.load(new Uint8Array([1, 2, 3]))),
      badVector: code(() => replica.encodeSince(new Uint8Array([7]))),
      badDevice: code(() => new Replica({ device: 'me' })),
      unchanged: replica.encode().join() === before,
      value: replica.get('docs', 'd1').f,
    };
  });
  assert.equal(result.atomic, 'TidemarkError:write.invalid_field');
  assert.equal(result.nan, 'TidemarkError:write.non_finite_float');
  assert.equal(result.fractional, 'TidemarkError:store.bad_argument');
  assert.equal(result.corrupt, 'TidemarkError:decode.truncated');
  assert.match(result.notState, /^TidemarkError:decode\./);
  assert.equal(result.badVector, 'TidemarkError:store.bad_argument');
  assert.equal(result.badDevice, 'TidemarkError:store.bad_argument');
  assert.ok(result.unchanged);
  assert.equal(result.value, 1);
  await context.close();
});

test('values and names of every kind are written as given, and odd arguments refused', async () => {
  const context = await browser.newContext();
  const page = await openPage(context, `${site.url}/page.html`);
  const result = await page.evaluate(async () => {
    const { Replica } = await import('/pkg/replica.js');
    const replica = new Replica();
    const later = { n: 1 };
    replica.transact((tx) => {
      tx.set('docs', 'd1', 'int', -42);
      tx.set('docs', 'd1', 'safe', Number.MAX_SAFE_INTEGER);
      tx.set('docs', 'd1', 'big', 2 ** 60);
      tx.set('docs', 'd1', 'float', 0.1);
      tx.set('docs', 'd1', 'text', 'é 日本 😀 "q" \\ \u0000');
      tx.set('docs', 'd1', 'empty', '');
      tx.set('docs', 'd1', 'yes', true);
      tx.set('docs', 'd1', 'no', false);
      tx.set('docs', 'd1', 'gone', 1);
      tx.set('docs', 'd1', 'gone', null);
      tx.set('docs', 'd1', 'list', [1, 'x', { y: null }]);
      tx.set('docs', 'd1', 'when', new Date(0));
      tx.set('docs', 'd1', 'later', later);
      tx.set('docs', '日本', '😀', 'x😀y');
      tx.set('docs', '日本', 'n', 1);
      tx.set('more', '日本', '😀', 2);
      tx.increment('docs', 'd1', 'count', 3);
      later.n = 2; // Values are taken as they are when the transaction ends.
    });
    later.n = 3;
    replica.transact((tx) => {
      for (let i = 0; i < 1000; i++) tx.set('many', `d${i % 7}`, `f${i % 3}`, i);
    });
    const before = replica.encode().join();
    const code = (fn) => {
      try {
        replica.transact((tx) => {
          tx.set('docs', 'd1', 'int', 0);
          fn(tx);
        });
        return 'no error';
      } catch (error) {
        return `${error.name}:${error.code}`;
      }
    };
    return {
      d1: replica.get('docs', 'd1'),
      japanese: replica.get('docs', '日本'),
      more: replica.get('more', '日本'),
      many: replica.get('many', 'd3'),
      loneSurrogate: code((tx) => tx.set('docs', 'd1', 'text', 'a\ud800b')),
      loneSurrogateId: code((tx) => tx.set('docs', '\udc00', 'f', 1)),
      numberField: code((tx) => tx.set('docs', 'd1', 5, 1)),
      nullField: code((tx) => tx.set('docs', 'd1', null, 1)),
      numberCollection: code((tx) => tx.upsert(5, { id: 'x' })),
      bigint: code((tx) => tx.set('docs', 'd1', 'f', 5n)),
      cycle: code((tx) => {
        const o = {};
        o.o = o;
        tx.set('docs', 'd1', 'f', o);
      }),
      tooDeep: code((tx) => tx.set('docs', 'd1', 'f', JSON.parse('['.repeat(40) + ']'.repeat(40)))),
      unchanged: replica.encode().join() === before,
    };
  });
  assert.deepEqual(result.d1, {
    id: 'd1',
    int: -42,
    safe: Number.MAX_SAFE_INTEGER,
    big: 2 ** 60,
    float: 0.1,
    text: 'é 日本 😀 "q" \\ \u0000',
    empty: '',
    yes: true,
    no: false,
    list: [1, 'x', { y: null }],
    when: '1970-01-01T00:00:00.000Z',
    later: { n: 2 },
    count: 3,
  });
  assert.deepEqual(result.japanese, { id: '日本', '😀': 'x😀y', n: 1 });
  assert.deepEqual(result.more, { id: '日本', '😀': 2 });
  const many = { id: 'd3' };
  for (let i = 0; i < 1000; i++) if (i % 7 === 3) many[`f${i % 3}`] = i;
  assert.deepEqual(result.many, many);
  for (const name of ['loneSurrogate', 'loneSurrogateId', 'numberField', 'nullField', 'numberCollection', 'bigint', 'cycle']) {
    assert.equal(result[name], 'TidemarkError:store.bad_argument', name);
  }
  assert.equal(result.tooDeep, 'TidemarkError:write.value_too_deep');
  assert.ok(result.unchanged);
  await context.close();
});

test('a replica and a store work side by side in one page, each on its own wasm module', async () => {
  const context = await browser.newContext();
  const page = await openPage(context, `${site.url}/page.html`);
  const result = await page.evaluate(async () => {
    const { Replica } = await import('/pkg/replica.js');
    const replica = new Replica();
    replica.set('menu', 'soup', 'price', 5);
    const store = await tm.openStore({ name: 'with-replica' });
    await store.collection('menu').upsert({ id: 'soup', price: 6 });
    return { replica: replica.get('menu', 'soup').price, store: (await store.collection('menu').get('soup')).price };
  });
  assert.deepEqual(result, { replica: 5, store: 6 });
  await context.close();
});
