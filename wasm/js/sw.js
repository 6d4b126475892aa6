// `tidemark/sw`: host the store in the app's service worker, so every tab shares one store
// (one writer per origin) and live queries fire in every tab.
//
//   // sw.js of the app, registered with { type: 'module' }
//   import { serveStore } from 'tidemark/sw';
//   serveStore();

import init, { Store as WasmStore } from './tidemark_wasm.js';
import { VERSION, errorData, lockStore, tidemarkError } from './protocol.js';

/** Methods a page may call on the store (besides hello/observe/unobserve). */
const METHODS = new Set([
  'upsert', 'update', 'get', 'delete', 'restore', 'increment', 'find',
  'evict', 'usage', 'export', 'flushed',
  'connect', 'pause', 'disconnect', 'syncStatus', 'syncNow', 'devices', 'invite', 'spaceKey',
  'syncAccess',
]);

/** Background Sync tags are `tidemark:<store name>`. */
const SYNC_TAG = 'tidemark:';
/** How long one Background Sync event tries before it gives up and lets the browser retry
 * later (browsers end a sync event after a few minutes). */
const SYNC_EVENT_MILLIS = 30_000;

/** The store's WebAssembly, and the cache that keeps a copy of it: a worker that starts
 * offline (the browser stops idle workers) cannot fetch it, and fetches made by a service
 * worker do not go through its own fetch handler, so the app's shell cache does not help. */
const WASM_URL = new URL('./tidemark_wasm_bg.wasm', import.meta.url);
const WASM_CACHE = 'tidemark-wasm';

/** The wasm from the network when it answers (so an updated package gets its own), else
 * the copy kept by the last successful fetch. */
async function fetchWasm() {
  const cache = await caches.open(WASM_CACHE);
  try {
    const response = await fetch(WASM_URL);
    if (!response.ok) throw new Error(`${WASM_URL}: HTTP ${response.status}`);
    await cache.put(WASM_URL, response.clone());
    return response;
  } catch (error) {
    const kept = await cache.match(WASM_URL);
    if (!kept) {
      throw tidemarkError({ code: 'store.unavailable', message: `cannot load the store's WebAssembly: ${error.message}` });
    }
    return kept;
  }
}

/**
 * Serves the store to the pages of this origin. Call it once, at the top level of the
 * service worker script (listeners must be added during its first evaluation). It also
 * claims open pages on activation, so the first page load already talks to the worker.
 *
 * Where the browser has Background Sync, writes that could not be pushed (offline, server
 * down) ask for a sync event, and the browser wakes this worker to push them when the
 * network is back, even with every tab of the app closed.
 *
 * The worker keeps a copy of the store's WebAssembly in the Cache API (`tidemark-wasm`),
 * fetched when it installs, so that it can start with no network.
 */
export function serveStore() {
  // One life of this worker: pages seeing a new one register their live queries again.
  const epoch = crypto.randomUUID();
  // Loaded once per life of the worker; a failed load is tried again by the next request.
  let wasm = null;
  const ready = () => {
    wasm ??= init({ module_or_path: fetchWasm() }).catch((error) => {
      wasm = null;
      throw error;
    });
    return wasm;
  };
  const stores = new Map();
  const observations = new Map();

  const open = (name) => {
    if (!stores.has(name)) {
      // The lock is held for the worker's life: no page can open the store beside it.
      const opening = ready()
        .then(() => lockStore(name))
        .then((release) => WasmStore.open(name).catch((error) => {
          release(); // so that the next request may try again
          throw error;
        }))
        .then((store) => {
          // Sync runs here; every page hears its events.
          store.onSyncEvent((syncEvent) => {
            broadcast({ tidemark: VERSION, store: name, syncEvent });
            if (syncEvent.type === 'status') askForBackgroundSync(name, syncEvent.status);
          });
          return store;
        });
      // A store that failed to open is retried on the next request.
      opening.catch(() => stores.delete(name));
      stores.set(name, opening);
    }
    return stores.get(name);
  };

  // Stores whose Background Sync is asked for in this life of the worker.
  const syncAsked = new Set();
  const askForBackgroundSync = (name, status) => {
    const stuck = status.connected && !status.paused && !status.stopped && !status.online
      && status.pendingWrites > 0;
    if (!stuck) {
      syncAsked.delete(name);
    } else if (!syncAsked.has(name) && self.registration.sync) {
      syncAsked.add(name);
      self.registration.sync.register(SYNC_TAG + name).catch(() => syncAsked.delete(name));
    }
  };

  // Resolves once the store's writes are pushed; rejects (the browser retries later with
  // backoff) when they are still waiting after SYNC_EVENT_MILLIS.
  const pushPending = async (name) => {
    const store = await open(name); // resumes its connection by itself
    store.syncNow();
    const deadline = Date.now() + SYNC_EVENT_MILLIS;
    for (;;) {
      const status = store.syncStatus();
      if (!status.connected || status.paused || status.stopped || status.pendingWrites === 0) return;
      if (Date.now() > deadline) {
        throw new Error(`${status.pendingWrites} writes still waiting: ${status.error?.code ?? 'offline'}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  };

  const broadcast = async (message) => {
    for (const client of await self.clients.matchAll({ type: 'window' })) client.postMessage(message);
  };

  const tell = async (clientId, key, results) => {
    const client = await self.clients.get(clientId);
    if (client) {
      client.postMessage({ tidemark: VERSION, observation: key, results });
    } else {
      // The page is gone: stop computing its results.
      const observation = observations.get(key);
      observations.delete(key);
      (await stores.get(observation?.store))?.unobserve(observation.handle);
    }
  };

  const handle = async (source, { store: name, id, method, args }) => {
    let reply;
    try {
      const store = await open(name);
      let value;
      if (method === 'hello') {
        value = { device: store.device };
      } else if (method === 'observe') {
        const [collection, query, key] = args;
        const handle = store.observe(collection, query, (results) => tell(source.id, key, results));
        observations.set(key, { store: name, handle });
        value = true;
      } else if (method === 'unobserve') {
        const observation = observations.get(args[0]);
        observations.delete(args[0]);
        if (observation) store.unobserve(observation.handle);
      } else if (METHODS.has(method)) {
        value = await store[method](...args);
      } else {
        throw Object.assign(new Error(`unknown method ${method}`), { code: 'store.bad_argument' });
      }
      reply = { tidemark: VERSION, id, epoch, value };
    } catch (error) {
      reply = { tidemark: VERSION, id, epoch, error: errorData(error) };
    }
    source.postMessage(reply);
  };

  self.addEventListener('message', (event) => {
    const message = event.data;
    if (message?.tidemark !== VERSION || !Array.isArray(message.requests)) return;
    // All requests of the message start in this task: writes among them share one
    // IndexedDB transaction. Keeps the worker alive until every answer is sent.
    const { store, requests } = message;
    event.waitUntil(Promise.all(requests.map((request) => handle(event.source, { store, ...request }))));
  });
  self.addEventListener('sync', (event) => {
    if (event.tag.startsWith(SYNC_TAG)) event.waitUntil(pushPending(event.tag.slice(SYNC_TAG.length)));
  });
  self.addEventListener('install', (event) => event.waitUntil(fetchWasm()));
  self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));
  // Pages open from an earlier life of the worker learn of this one.
  self.clients.matchAll({ type: 'window' }).then((clients) => {
    for (const client of clients) client.postMessage({ tidemark: VERSION, hello: epoch });
  });
}
