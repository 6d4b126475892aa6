// `tidemark/sw`: host the store in the app's service worker, so every tab shares one store
// (one writer per origin) and live queries fire in every tab.
//
//   // sw.js of the app, registered with { type: 'module' }
//   import { serveStore } from 'tidemark/sw';
//   serveStore();

import init, { Store as WasmStore } from './tidemark_wasm.js';
import { VERSION, errorData, lockStore } from './protocol.js';

/** Methods a page may call on the store (besides hello/observe/unobserve). */
const METHODS = new Set([
  'upsert', 'update', 'get', 'delete', 'restore', 'increment', 'find',
  'evict', 'usage', 'export', 'flushed',
  'connect', 'disconnect', 'syncStatus', 'syncNow', 'devices', 'spaceKey', 'syncAccess',
]);

/**
 * Serves the store to the pages of this origin. Call it once, at the top level of the
 * service worker script (listeners must be added during its first evaluation). It also
 * claims open pages on activation, so the first page load already talks to the worker.
 */
export function serveStore() {
  // One life of this worker: pages seeing a new one register their live queries again.
  const epoch = crypto.randomUUID();
  const wasm = init({ module_or_path: new URL('./tidemark_wasm_bg.wasm', import.meta.url) });
  const stores = new Map();
  const observations = new Map();

  const open = (name) => {
    if (!stores.has(name)) {
      // The lock is held for the worker's life: no page can open the store beside it.
      const opening = wasm
        .then(() => lockStore(name))
        .then((release) => WasmStore.open(name).catch((error) => {
          release(); // so that the next request may try again
          throw error;
        }))
        .then((store) => {
          // Sync runs here; every page hears its events.
          store.onSyncEvent((syncEvent) => broadcast({ tidemark: VERSION, store: name, syncEvent }));
          return store;
        });
      // A store that failed to open is retried on the next request.
      opening.catch(() => stores.delete(name));
      stores.set(name, opening);
    }
    return stores.get(name);
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
  self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));
  // Pages open from an earlier life of the worker learn of this one.
  self.clients.matchAll({ type: 'window' }).then((clients) => {
    for (const client of clients) client.postMessage({ tidemark: VERSION, hello: epoch });
  });
}
