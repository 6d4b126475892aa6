// Kitchen: the open orders, oldest first, live from every counter. Bumping an order done is
// a soft delete (it leaves the list on every screen) and recalling it restores it.

import { age, attempt, h, money } from './ui.js';

export function mount(root, app) {
  let open = [];
  let bumped = [];
  const list = h('ol', { class: 'orders', 'aria-label': 'Open orders' });
  const done = h('ol', { class: 'orders bumped', 'aria-label': 'Recently bumped' });
  root.append(h('section', { class: 'kitchen' },
    h('h2', {}, 'Open orders ', h('span', { class: 'count', id: 'open-count' })), list,
    h('h2', {}, 'Recently bumped'), done));

  const card = (order, action) => h('li', { class: 'card order', 'data-order': order.id, 'data-number': order.number },
    h('header', {},
      h('strong', { class: 'number' }, order.number),
      order.table ? h('span', { class: 'table' }, `Table ${order.table}`) : null,
      h('span', { class: 'age', 'data-placed': order.placedAt }, age(order.placedAt))),
    h('ul', { class: 'lines' }, ...(order.lines ?? []).map((line) =>
      h('li', {}, `${line.quantity} × ${line.name}`))),
    order.notes ? h('p', { class: 'notes' }, order.notes) : null,
    h('p', { class: 'who' }, `Placed by ${order.placedBy}`,
      order.changedBy && order.changedBy !== order.placedBy ? ` · last change by ${order.changedBy}` : '',
      ` · ${money((order.lines ?? []).reduce((sum, l) => sum + l.price * l.quantity, 0))}`),
    action);

  const render = () => {
    document.getElementById('open-count').textContent = `(${open.length})`;
    list.replaceChildren(...(open.length === 0
      ? [h('li', { class: 'empty' }, 'No open orders.')]
      : open.map((order) => card(order, h('button', {
        type: 'button', class: 'primary', 'aria-label': `Bump order ${order.number}`,
        onclick: () => attempt(async () => {
          const now = Date.now();
          // One turn, one transaction: the mark and the soft delete travel together.
          await Promise.all([
            app.orders.update(order.id, { bumpedAt: now, changedBy: app.deviceName, changedAt: now }),
            app.orders.delete(order.id),
          ]);
        }),
      }, 'Bump')))));
    done.replaceChildren(...bumped.map((order) => card(order, h('button', {
      type: 'button', 'aria-label': `Recall order ${order.number}`,
      onclick: () => attempt(async () => {
        await Promise.all([
          app.orders.restore(order.id),
          app.orders.update(order.id, { changedBy: app.deviceName, changedAt: Date.now() }),
        ]);
      }),
    }, 'Recall'))));
  };

  const stopOpen = app.orders.observe({ orderBy: 'placedAt' }, (orders) => {
    open = orders;
    render();
  });
  const stopBumped = app.orders.observe({ includeDeleted: true, orderBy: '-bumpedAt', limit: 40 }, (orders) => {
    bumped = orders.filter((order) => order._deleted).slice(0, 8);
    render();
  });
  // Ages tick without re-rendering the lists.
  const ticking = setInterval(() => {
    for (const element of root.querySelectorAll('.age[data-placed]')) {
      element.textContent = age(Number(element.dataset.placed));
    }
  }, 1000);
  return () => {
    stopOpen();
    stopBumped();
    clearInterval(ticking);
  };
}
