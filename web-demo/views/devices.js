// Devices: this device (name, role, link), an offline switch that pauses sync to show what
// happens, the restaurant's other devices with when they were last seen, and join links
// (with the end-to-end key in the fragment) as text and as a QR code.

import { renderSVG } from '../vendor/uqr.mjs';
import { ago, attempt, h } from './ui.js';

export function mount(root, app) {
  const me = h('dl', { class: 'facts', id: 'this-device' });
  const others = h('ul', { class: 'device-list', 'aria-label': 'Devices of this restaurant' });
  const offline = h('input', { type: 'checkbox', role: 'switch', id: 'offline-switch' });
  const inviteOut = h('div', { class: 'invite-out', 'aria-live': 'polite' });
  const role = h('select', { id: 'invite-role' },
    h('option', { value: 'writer' }, 'Staff (counter, kitchen)'),
    h('option', { value: 'reader' }, 'Screen (read only)'),
    h('option', { value: 'admin' }, 'Manager (can invite)'));
  const invite = h('form', { class: 'card', onsubmit: (event) => {
    event.preventDefault();
    attempt(async () => {
      const made = await app.store.sync.invite({ role: role.value, maxUses: 1 });
      const link = h('input', { readonly: true, value: made.link, id: 'invite-link', 'aria-label': 'Join link' });
      const qr = h('div', { class: 'qr', role: 'img', 'aria-label': 'QR code of the join link' });
      qr.innerHTML = renderSVG(made.link, { pixelSize: 4 });
      inviteOut.replaceChildren(link,
        h('button', { type: 'button', onclick: () => navigator.clipboard?.writeText(made.link) }, 'Copy'),
        qr,
        h('p', { class: 'who' }, `One use, until ${new Date(made.expiresAt).toLocaleString()}. The key after "key=" lets the device read the restaurant's data; share the link only with your staff.`));
    });
  } },
  h('h2', {}, 'Add a device'),
  h('label', { for: 'invite-role' }, 'Role'), role,
  h('button', { type: 'submit', class: 'primary', id: 'make-invite' }, 'Make a join link'),
  inviteOut);

  root.append(h('section', { class: 'devices' },
    h('div', { class: 'card' }, h('h2', {}, 'This device'), me,
      h('label', { class: 'switch', for: 'offline-switch' }, offline, ' Offline switch: stop syncing')),
    h('div', { class: 'card' }, h('h2', {}, 'Devices of this restaurant'), others),
    invite));

  let roleName = '…';
  const renderMe = (status) => {
    offline.checked = status.paused;
    offline.disabled = !status.connected;
    const facts = [
      ['Name', app.deviceName],
      ['Device', `${app.store.device.slice(0, 12)}…`],
      ['Role', status.connected ? roleName : 'not joined'],
      ['Link', !status.connected ? 'local only' : status.paused ? 'paused' : status.online ? (status.live ? 'online, live' : 'online') : 'offline'],
      ['Pending writes', String(status.pendingWrites)],
      ['Last sync', ago(status.lastSyncedAt)],
      ['Last push', ago(status.lastPushedAt)],
      ['End-to-end key', status.encrypted ? 'yes' : 'no'],
    ];
    me.replaceChildren(...facts.flatMap(([term, value]) => [h('dt', {}, term), h('dd', { 'data-fact': term }, value)]));
    invite.hidden = !status.connected || status.paused;
  };

  const refreshDevices = async () => {
    const status = await app.store.sync.status();
    if (!status.connected || status.paused) {
      others.replaceChildren(h('li', { class: 'empty' }, status.connected ? 'Paused: not asking the server.' : 'Join a restaurant with a join link to see its devices.'));
      return;
    }
    const list = await app.store.sync.devices().catch(() => null);
    if (!list) {
      others.replaceChildren(h('li', { class: 'empty' }, 'The server is out of reach; this device keeps working.'));
      return;
    }
    roleName = list.find((device) => device.id === app.store.device)?.role ?? '…';
    others.replaceChildren(...list.filter((device) => !device.revokedAt).map((device) =>
      h('li', { class: device.id === app.store.device ? 'me' : '' },
        h('strong', {}, device.name || device.id.slice(0, 8)),
        ` · ${device.role ?? 'left'} · last seen ${ago(device.lastSeen)}`,
        device.id === app.store.device ? ' (this device)' : '')));
    renderMe(status);
  };

  offline.addEventListener('change', () => attempt(async () => {
    if (offline.checked) await app.store.sync.pause();
    else await app.store.sync.connect();
    refreshDevices();
  }));
  app.store.sync.status().then(renderMe);
  const stop = app.store.sync.on((event) => {
    if (event.type === 'status') renderMe(event.status);
  });
  refreshDevices();
  const polling = setInterval(refreshDevices, 10_000);
  return () => {
    stop();
    clearInterval(polling);
  };
}
