// Tidemark Diner: an offline-first order board. Every device keeps the whole restaurant in
// its own Tidemark store (IndexedDB, hosted by the service worker for all tabs) and syncs
// through the server's bucket whenever it can.

import { openStore, parseJoinLink } from './pkg/index.js';
import { attempt, h, toast } from './views/ui.js';
import * as counter from './views/counter.js';
import * as kitchen from './views/kitchen.js';
import * as menu from './views/menu.js';
import * as devices from './views/devices.js';

const VIEWS = { counter, kitchen, menu, devices };
const NAME_KEY = 'diner:device-name';

async function main() {
  let unmount = () => {};
  if ('serviceWorker' in navigator) {
    await navigator.serviceWorker.register('sw.js', { type: 'module' });
  }
  const store = await openStore({ name: 'diner' });
  const app = {
    store,
    menu: store.collection('menu'),
    orders: store.collection('orders'),
    counters: store.collection('counters'),
    /** This device's name, shown on what it changes. */
    get deviceName() {
      return localStorage.getItem(NAME_KEY) || `Device ${store.device.slice(0, 4)}`;
    },
    set deviceName(name) {
      localStorage.setItem(NAME_KEY, name);
    },
    show,
  };
  window.diner = app; // for the console, and for the end-to-end tests

  watchLink(app);
  for (const button of document.querySelectorAll('nav [data-view]')) {
    button.addEventListener('click', () => show(button.dataset.view));
  }
  const link = parseJoinLink(location.href);
  if (link) {
    // The invite is for one use: keep it out of the address bar and history.
    history.replaceState(null, '', location.pathname + location.search);
    await offerJoin(app, link);
  } else {
    show(new URLSearchParams(location.search).get('view') ?? localStorage.getItem('diner:view') ?? 'counter');
  }

  function show(name) {
    const view = VIEWS[name] ?? VIEWS.counter;
    localStorage.setItem('diner:view', name);
    for (const button of document.querySelectorAll('nav [data-view]')) {
      button.setAttribute('aria-current', button.dataset.view === name ? 'page' : 'false');
    }
    unmount();
    const root = document.getElementById('view');
    root.replaceChildren();
    root.dataset.view = name;
    unmount = view.mount(root, app) ?? (() => {});
  }
}

/** Joining a restaurant from a join link: name this device, then connect. */
async function offerJoin(app, link) {
  const status = await app.store.sync.status();
  if (status.connected) {
    toast('This device already belongs to a restaurant; the link was not used.');
    app.show('devices');
    return;
  }
  const root = document.getElementById('view');
  const name = h('input', { id: 'join-name', name: 'name', required: true, value: app.deviceName, autocomplete: 'off' });
  const form = h('form', { class: 'card join', onsubmit: async (event) => {
    event.preventDefault();
    form.querySelector('button').disabled = true;
    app.deviceName = name.value.trim();
    const joined = await attempt(() => app.store.sync.connect({
      server: link.server,
      invite: link.invite,
      spaceKey: link.spaceKey,
      // A link without a key is the server's first admin link: this device makes the
      // restaurant's end-to-end key, and every invite it makes carries it.
      encrypt: !link.spaceKey,
      name: app.deviceName,
    }));
    if (joined) {
      toast(`Joined as ${app.deviceName}`);
      app.show('devices');
    } else {
      form.querySelector('button').disabled = false;
    }
  } },
  h('h2', {}, 'Join this restaurant'),
  h('p', {}, 'This device will keep its own copy of the orders and the menu, and sync them whenever it is online.'),
  h('label', { for: 'join-name' }, 'Name this device'),
  name,
  h('button', { type: 'submit', class: 'primary' }, 'Join'));
  root.replaceChildren(form);
  name.focus();
}

/** The header's line on the link: online, live, pending writes, paused. */
function watchLink(app) {
  const line = document.getElementById('link-status');
  const render = (status) => {
    let text;
    let state;
    if (!status.connected) [text, state] = ['Local only: not joined to a restaurant', 'local'];
    else if (status.paused) [text, state] = [`Offline switch on · ${status.pendingWrites} waiting`, 'paused'];
    else if (status.error && !status.online) [text, state] = [`Offline · ${status.pendingWrites} waiting`, 'offline'];
    else if (status.pendingWrites > 0) [text, state] = [`Syncing · ${status.pendingWrites} waiting`, 'syncing'];
    else [text, state] = [status.live ? 'Online · live' : 'Online', 'online'];
    line.textContent = text;
    line.dataset.state = state;
  };
  app.store.sync.status().then(render);
  app.store.sync.on((event) => {
    if (event.type === 'status') render(event.status);
  });
}

main().catch((error) => {
  document.getElementById('view').replaceChildren(
    h('p', { class: 'card error' }, `The store could not open: ${error.message} (${error.code ?? 'error'})`));
  console.error(error);
});
