// `tidemark`: open a store, in the app's service worker when it hosts one (see 'tidemark/sw'),
// else in this page. The API is the same either way (see store.js).

import init, { Store as WasmStore } from './tidemark_wasm.js';
import { VERSION, lockStore, tidemarkError } from './protocol.js';
import { Store } from './store.js';

export { Store, Collection, Sync } from './store.js';

let wasmReady = null;

/** Loads and instantiates the wasm module once per global scope. */
export function loadWasm() {
  wasmReady ??= init({ module_or_path: new URL('./tidemark_wasm_bg.wasm', import.meta.url) });
  return wasmReady;
}

/**
 * Opens the store called `name`.
 *
 * `mode`: `'auto'` (default) uses the service worker when one is registered for this page
 * (it must call `serveStore()`), else runs the store in this page; `'page'` or
 * `'service-worker'` force one. In page mode one tab at a time may open a store (a Web Lock
 * guards it): register the service worker to share one store between tabs.
 */
export async function openStore({ name = 'default', mode = 'auto' } = {}) {
  if (typeof name !== 'string' || name === '') {
    throw tidemarkError({ code: 'store.bad_argument', message: 'a store name is a non-empty string' });
  }
  if (mode === 'service-worker' || (mode === 'auto' && (await controllingWorker()))) {
    const backend = new WorkerBackend(name);
    const info = await backend.call('hello', []);
    return new Store(backend, { ...info, name });
  }
  if (mode !== 'auto' && mode !== 'page') {
    throw tidemarkError({ code: 'store.bad_argument', message: `unknown mode ${mode}` });
  }
  await loadWasm();
  const release = await lockStore(name);
  try {
    const wasm = await WasmStore.open(name);
    return new Store(new PageBackend(wasm, release), { device: wasm.device, name });
  } catch (error) {
    release();
    throw error;
  }
}

/**
 * A join link: `{server}/#join={invite}`, with `&key={spaceKey}` for an encrypted space. The
 * key travels in the fragment, which browsers never send to a server.
 */
export function joinLink({ server, invite, spaceKey }) {
  const base = server.replace(/\/+$/, '');
  const key = spaceKey ? `&key=${encodeURIComponent(spaceKey)}` : '';
  return `${base}/#join=${encodeURIComponent(invite)}${key}`;
}

/** The parts of a join link (`{ server, invite, spaceKey }`), or `null` if it is not one. */
export function parseJoinLink(link) {
  let url;
  try {
    url = new URL(link);
  } catch {
    return null;
  }
  const fragment = new URLSearchParams(url.hash.slice(1));
  const invite = fragment.get('join');
  if (!invite) return null;
  return { server: url.origin, invite, spaceKey: fragment.get('key') ?? undefined };
}

/** The service worker controlling this page, waiting for one that is registered but not yet
 * in control (it claims open pages when it activates); `null` when none is registered. */
async function controllingWorker() {
  const container = globalThis.navigator?.serviceWorker;
  if (!container) return null;
  if (container.controller) return container.controller;
  const registration = await container.getRegistration();
  if (!registration) return null;
  await container.ready;
  if (container.controller) return container.controller;
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), 3000);
    container.addEventListener('controllerchange', () => {
      clearTimeout(timer);
      resolve(container.controller);
    }, { once: true });
  });
}

/** The store in this page: direct calls into wasm. */
class PageBackend {
  mode = 'page';
  #wasm;
  #release;
  #syncListeners = new Set();

  constructor(wasm, release) {
    this.#wasm = wasm;
    this.#release = release;
    wasm.onSyncEvent((event) => this.#syncListeners.forEach((listener) => listener(event)));
  }

  onSyncEvent(listener) {
    this.#syncListeners.add(listener);
    return () => this.#syncListeners.delete(listener);
  }

  call(method, args) {
    try {
      return Promise.resolve(this.#wasm[method](...args));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  observe(collection, query, callback, onError) {
    let handle;
    try {
      handle = this.#wasm.observe(collection, query, callback);
    } catch (error) {
      // Reported as the worker backend does: asynchronously, to `onError`.
      queueMicrotask(() => onError(error));
      return () => {};
    }
    return () => this.#wasm.unobserve(handle);
  }

  async close() {
    await this.#wasm.close();
    this.#release();
  }
}

/** How long a request may wait, once the worker has restarted, before it counts as lost. */
const INTERRUPTED_AFTER_MS = 2000;
/** With requests waiting and no message for this long, ping the worker: a stopped worker is
 * woken by the ping and its new epoch reveals the requests the old one lost. */
const SILENCE_MS = 1000;
/** While a page is open it pings the worker this often: browsers stop idle workers after
 * about 30 s, and syncing runs in the worker. */
const KEEPALIVE_MS = 20_000;

/** The store in the service worker: requests through `controller.postMessage`, which wakes a
 * stopped worker. */
class WorkerBackend {
  mode = 'service-worker';
  #name;
  #token = crypto.randomUUID();
  #nextId = 1;
  #pending = new Map();
  #observations = new Map();
  #epoch = null;
  #listener;
  #lastHeard = 0;
  #watchdog = null;
  #outgoing = [];
  #keepalive;
  #syncListeners = new Set();

  constructor(name) {
    this.#name = name;
    this.#listener = (event) => this.#receive(event.data);
    navigator.serviceWorker.addEventListener('message', this.#listener);
    this.#keepalive = setInterval(() => this.call('hello', []).catch(() => {}), KEEPALIVE_MS);
  }

  onSyncEvent(listener) {
    this.#syncListeners.add(listener);
    return () => this.#syncListeners.delete(listener);
  }

  call(method, args) {
    const id = `${this.#token}:${this.#nextId++}`;
    return new Promise((resolve, reject) => {
      const worker = navigator.serviceWorker.controller;
      if (!worker) {
        reject(tidemarkError({ code: 'store.no_worker', message: 'no service worker controls this page' }));
        return;
      }
      this.#pending.set(id, { resolve, reject, epoch: this.#epoch });
      // Requests of one turn travel as one message, handled in one task in the worker, so
      // writes issued together share one IndexedDB transaction there as they do in a page.
      this.#outgoing.push({ id, method, args });
      if (this.#outgoing.length === 1) queueMicrotask(() => this.#send());
      this.#watch();
    });
  }

  observe(collection, query, callback, onError) {
    const key = `${this.#token}:o${this.#nextId++}`;
    this.#observations.set(key, { collection, query, callback, onError });
    this.#register(key);
    return () => {
      if (this.#observations.delete(key)) this.call('unobserve', [key]).catch(() => {});
    };
  }

  #register(key) {
    const { collection, query, onError } = this.#observations.get(key);
    this.call('observe', [collection, query, key]).catch((error) => {
      this.#observations.delete(key);
      onError(error);
    });
  }

  #send() {
    const requests = this.#outgoing;
    this.#outgoing = [];
    const worker = navigator.serviceWorker.controller;
    if (worker) {
      worker.postMessage({ tidemark: VERSION, store: this.#name, requests });
      return;
    }
    for (const { id } of requests) {
      this.#pending.get(id)?.reject(tidemarkError({ code: 'store.no_worker', message: 'no service worker controls this page' }));
      this.#pending.delete(id);
    }
  }

  /** While requests wait, pings the worker whenever it has been silent for a while. */
  #watch() {
    if (this.#watchdog !== null) return;
    this.#lastHeard = Date.now();
    this.#watchdog = setInterval(() => {
      if (this.#pending.size === 0) {
        clearInterval(this.#watchdog);
        this.#watchdog = null;
      } else if (Date.now() - this.#lastHeard > SILENCE_MS) {
        this.#lastHeard = Date.now();
        this.call('hello', []).catch(() => {});
      }
    }, SILENCE_MS / 2);
  }

  #receive(message) {
    if (message?.tidemark !== VERSION) return;
    this.#lastHeard = Date.now();
    if (message.observation !== undefined) {
      this.#observations.get(message.observation)?.callback(message.results);
      return;
    }
    if (message.syncEvent !== undefined) {
      if (message.store === this.#name) this.#syncListeners.forEach((l) => l(message.syncEvent));
      return;
    }
    const epoch = message.hello ?? message.epoch;
    if (epoch && epoch !== this.#epoch) this.#restarted(epoch);
    const pending = this.#pending.get(message.id);
    if (!pending) return;
    this.#pending.delete(message.id);
    if (message.error) pending.reject(tidemarkError(message.error));
    else pending.resolve(message.value);
  }

  /** A new life of the worker: register live queries again, and fail requests the old one
   * never answered (they may or may not have been stored). */
  #restarted(epoch) {
    const previous = this.#epoch;
    this.#epoch = epoch;
    if (previous === null) return;
    for (const key of this.#observations.keys()) this.#register(key);
    setTimeout(() => {
      for (const [id, pending] of this.#pending) {
        if (pending.epoch !== previous) continue;
        this.#pending.delete(id);
        pending.reject(tidemarkError({
          code: 'store.interrupted',
          message: 'the service worker stopped while handling this request; it may or may not ' +
            'have been stored: read it back before retrying',
        }));
      }
    }, INTERRUPTED_AFTER_MS);
  }

  async close() {
    for (const key of [...this.#observations.keys()]) {
      this.#observations.delete(key);
      await this.call('unobserve', [key]).catch(() => {});
    }
    navigator.serviceWorker.removeEventListener('message', this.#listener);
    clearInterval(this.#keepalive);
  }
}

