// Counter: take an order from the menu. Placing it writes the order and takes each item's
// quantity off its stock counter, in one local transaction; counters from every device add
// up, so stock stays exact when two counters sell the same dish at once, online or not.

import { attempt, h, money, toast } from './ui.js';

export function mount(root, app) {
  /** The order being taken: item id → { item, quantity }. */
  const ticket = new Map();
  let items = [];

  const grid = h('div', { class: 'menu-grid', role: 'list', 'aria-label': 'Menu' });
  const lines = h('ul', { class: 'ticket-lines', 'aria-label': 'Order' });
  const table = h('input', { id: 'order-table', name: 'table', inputmode: 'numeric', placeholder: 'e.g. 4', autocomplete: 'off' });
  const notes = h('textarea', { id: 'order-notes', name: 'notes', rows: 2, placeholder: 'No onions…' });
  const total = h('p', { class: 'total' });
  const place = h('button', { type: 'submit', class: 'primary', id: 'place-order' }, 'Place order');
  const form = h('form', { class: 'card ticket', onsubmit: (event) => { event.preventDefault(); submit(); } },
    h('h2', {}, 'Order'), lines,
    h('label', { for: 'order-table' }, 'Table'), table,
    h('label', { for: 'order-notes' }, 'Notes'), notes,
    total, place);
  root.append(h('section', { class: 'counter' },
    h('div', { class: 'card' }, h('h2', {}, 'Menu'), grid), form));

  // Buttons are kept and updated in place, not rebuilt: stock changes arrive from other
  // devices all the time, and a button replaced under a finger loses the tap.
  const buttons = new Map();
  const renderMenu = () => {
    const ids = new Set(items.map((item) => item.id));
    for (const [id, button] of buttons) {
      if (!ids.has(id)) {
        button.remove();
        buttons.delete(id);
      }
    }
    grid.querySelector('.empty')?.remove();
    if (items.length === 0) grid.append(h('p', { class: 'empty' }, 'No dishes yet: add some in Menu.'));
    for (const [index, item] of items.entries()) {
      let button = buttons.get(item.id);
      if (!button) {
        button = h('button', { type: 'button', role: 'listitem', class: 'dish', 'data-item': item.id, onclick: () => add(current(item.id)) },
          h('span', { class: 'dish-name' }), h('span', { class: 'dish-price' }), h('span', { class: 'stock' }));
        buttons.set(item.id, button);
      }
      const stock = item.stock ?? 0;
      button.classList.toggle('sold-out', stock <= 0);
      button.setAttribute('aria-label', `Add ${item.name}, ${money(item.price)}, ${stock} left`);
      button.querySelector('.dish-name').textContent = item.name;
      button.querySelector('.dish-price').textContent = money(item.price);
      button.querySelector('.stock').textContent = `${stock} left`;
      // Moved only when out of menu order: moving a node between a press and its release
      // cancels the click.
      const there = grid.children[index] ?? null;
      if (there !== button) grid.insertBefore(button, there);
    }
  };
  const current = (id) => items.find((item) => item.id === id);

  const renderTicket = () => {
    const entries = [...ticket.values()];
    lines.replaceChildren(...(entries.length === 0
      ? [h('li', { class: 'empty' }, 'Tap dishes to add them.')]
      : entries.map(({ item, quantity }) => h('li', {},
        h('span', {}, `${quantity} × ${item.name}`),
        h('span', { class: 'line-actions' },
          h('button', { type: 'button', 'aria-label': `One less ${item.name}`, onclick: () => change(item, -1) }, '−'),
          h('button', { type: 'button', 'aria-label': `One more ${item.name}`, onclick: () => change(item, 1) }, '+'))))));
    const sum = entries.reduce((cents, { item, quantity }) => cents + item.price * quantity, 0);
    total.textContent = `Total ${money(sum)}`;
    place.disabled = entries.length === 0;
  };

  const add = (item) => change(item, 1);
  const change = (item, by) => {
    const quantity = (ticket.get(item.id)?.quantity ?? 0) + by;
    if (quantity <= 0) ticket.delete(item.id);
    else ticket.set(item.id, { item, quantity });
    renderTicket();
  };

  const submit = () => attempt(async () => {
    const taken = [...ticket.values()];
    if (taken.length === 0) return;
    const lineItems = taken.map(({ item, quantity }) => ({
      item: item.id, name: item.name, quantity, price: item.price,
    }));
    const order = { table: table.value.trim(), notes: notes.value.trim() };
    // The ticket is cleared now, not once the writes resolve: dishes tapped for the next
    // order in the meantime belong to that order and must not be wiped with this one.
    ticket.clear();
    table.value = '';
    notes.value = '';
    renderTicket();
    try {
      const number = await nextOrderNumber(app);
      const now = Date.now();
      // Issued together: one IndexedDB transaction, one batch to push.
      await Promise.all([
        app.orders.upsert({
          id: crypto.randomUUID(),
          number,
          lines: lineItems,
          ...order,
          placedAt: now,
          placedBy: app.deviceName,
          changedBy: app.deviceName,
          changedAt: now,
        }),
        ...lineItems.map((line) => app.menu.increment(line.item, 'stock', -line.quantity)),
      ]);
      toast(`Order ${number} sent to the kitchen`);
    } catch (error) {
      // Not placed: its lines go back on the ticket, beside anything tapped since.
      for (const { item, quantity } of taken) {
        ticket.set(item.id, { item, quantity: (ticket.get(item.id)?.quantity ?? 0) + quantity });
      }
      table.value ||= order.table;
      notes.value ||= order.notes;
      renderTicket();
      throw error;
    }
  });

  renderTicket();
  return app.menu.observe({ orderBy: 'name' }, (results) => {
    items = results;
    // Keep the ticket's prices and names current.
    for (const [id, line] of ticket) {
      const item = items.find((i) => i.id === id);
      if (item) line.item = item;
    }
    renderMenu();
    renderTicket();
  });
}

/** A short order number: a letter for this device and its own running count ("K12"). Only
 * this device increments its count, so the number is unique without asking anyone. */
async function nextOrderNumber(app) {
  await app.counters.increment(app.store.device, 'orders', 1);
  const { orders } = await app.counters.get(app.store.device);
  const letter = String.fromCharCode(65 + (parseInt(app.store.device.slice(0, 2), 16) % 26));
  return `${letter}${orders}`;
}
