// Menu: dishes with prices, stock and a photo. Prices and names are plain fields (the last
// edit wins); stock is a counter the counters decrement, and setting it here starts it
// again from the count entered. Photos are attachments: stored on this device at once, and
// uploaded to the bucket when the device is online.

import { attempt, h, money, toast } from './ui.js';

const SAMPLE = [
  { id: 'burger', name: 'Harbour burger', price: 1250, stock: 30 },
  { id: 'chowder', name: 'Clam chowder', price: 950, stock: 20 },
  { id: 'fish', name: 'Fish & chips', price: 1400, stock: 25 },
  { id: 'salad', name: 'Kelp salad', price: 800, stock: 15 },
  { id: 'pie', name: 'Key lime pie', price: 650, stock: 12 },
  { id: 'lemonade', name: 'Lemonade', price: 350, stock: 40 },
];

/** Object URLs of photos already read, by token. */
const photoUrls = new Map();

export function mount(root, app) {
  const rows = h('ul', { class: 'menu-items', 'aria-label': 'Dishes' });
  const name = h('input', { id: 'new-name', name: 'name', required: true, autocomplete: 'off' });
  const price = h('input', { id: 'new-price', name: 'price', required: true, inputmode: 'decimal', placeholder: '9.50' });
  const stock = h('input', { id: 'new-stock', name: 'stock', inputmode: 'numeric', value: '10' });
  const add = h('form', { class: 'card add-item', onsubmit: (event) => {
    event.preventDefault();
    attempt(async () => {
      await app.menu.upsert({
        name: name.value.trim(),
        price: cents(price.value),
        stock: Number.parseInt(stock.value, 10) || 0,
        changedBy: app.deviceName,
      });
      add.reset();
      stock.value = '10';
      name.focus();
    });
  } },
  h('h2', {}, 'Add a dish'),
  h('label', { for: 'new-name' }, 'Name'), name,
  h('label', { for: 'new-price' }, 'Price'), price,
  h('label', { for: 'new-stock' }, 'Stock'), stock,
  h('button', { type: 'submit', class: 'primary' }, 'Add'));
  root.append(h('section', { class: 'menu' }, h('div', { class: 'card' }, h('h2', {}, 'Dishes'), rows), add));

  const row = (item) => {
    const nameInput = h('input', { value: item.name, 'aria-label': `Name of ${item.name}` });
    const priceInput = h('input', { value: (item.price / 100).toFixed(2), inputmode: 'decimal', 'aria-label': `Price of ${item.name}` });
    const stockInput = h('input', { value: String(item.stock ?? 0), inputmode: 'numeric', 'aria-label': `Stock of ${item.name}` });
    const photo = h('img', { class: 'photo', alt: item.photo ? `Photo of ${item.name}` : '', hidden: !item.photo });
    if (item.photo) showPhoto(app, item.photo, photo);
    const file = h('input', {
      type: 'file', accept: 'image/*', 'aria-label': `Photo of ${item.name}`,
      onchange: () => attempt(async () => {
        const [chosen] = file.files;
        if (!chosen) return;
        const token = await app.store.attachments.put(chosen);
        await app.menu.update(item.id, { photo: token, changedBy: app.deviceName });
        const waiting = (await app.store.attachments.queued()).includes(token);
        toast(waiting ? 'Photo saved on this device; it uploads when online' : 'Photo uploaded');
      }),
    });
    const save = () => attempt(async () => {
      const patch = { name: nameInput.value.trim(), price: cents(priceInput.value), changedBy: app.deviceName };
      const count = Number.parseInt(stockInput.value, 10);
      // Only a changed stock is set: a set restarts the counter from the count entered.
      if (Number.isFinite(count) && count !== (item.stock ?? 0)) patch.stock = count;
      await app.menu.update(item.id, patch);
      toast(`${patch.name} saved`);
    });
    return h('li', { class: 'menu-item', 'data-item': item.id },
      photo,
      h('div', { class: 'fields' }, nameInput, priceInput, stockInput),
      h('p', { class: 'who' }, `${money(item.price)} · ${item.stock ?? 0} left`,
        item.changedBy ? ` · last change by ${item.changedBy}` : ''),
      h('div', { class: 'row-actions' },
        h('button', { type: 'button', onclick: save }, 'Save'),
        h('label', { class: 'file' }, 'Photo…', file),
        h('button', { type: 'button', 'aria-label': `Remove ${item.name}`, onclick: () => attempt(() => app.menu.delete(item.id)) }, 'Remove')));
  };

  return app.menu.observe({ orderBy: 'name' }, (items) => {
    rows.replaceChildren(...(items.length === 0
      ? [h('li', { class: 'empty' }, 'No dishes yet. ',
        h('button', { type: 'button', id: 'load-sample', onclick: () => attempt(() =>
          Promise.all(SAMPLE.map((dish) => app.menu.upsert({ ...dish, changedBy: app.deviceName })))) }, 'Load the sample menu'))]
      : items.map(row)));
  });
}

function cents(text) {
  const value = Math.round(Number.parseFloat(String(text).replace(',', '.')) * 100);
  if (!Number.isFinite(value) || value < 0) throw Object.assign(new Error(`not a price: ${text}`), { code: 'demo.bad_price' });
  return value;
}

async function showPhoto(app, token, img) {
  let url = photoUrls.get(token);
  if (!url) {
    const blob = await app.store.attachments.get(token).catch(() => null);
    if (!blob) return; // not on this device, and the bucket is out of reach: try next time
    url = URL.createObjectURL(blob);
    photoUrls.set(token, url);
  }
  img.src = url;
  img.hidden = false;
}
