// The API apps use: `Store`, `Collection`, `Sync` and `Attachments` (attachments.js), the
// same whether the store runs in this page or in the app's service worker. Both backends
// implement:
//   call(method, args) -> Promise    (methods of the wasm Store, see wasm/src/store.rs)
//   observe(collection, query, callback, onError) -> unsubscribe function
//   onSyncEvent(listener) -> unsubscribe function
//   close() -> Promise

import { Attachments } from './attachments.js';

/** A collection of documents: plain objects with a string `id`. */
export class Collection {
  #backend;

  constructor(backend, name) {
    this.#backend = backend;
    /** The collection's name. */
    this.name = name;
  }

  /** Creates or updates a document (a random `id` is made when missing); resolves to its id
   * once stored durably. */
  upsert(doc) {
    return this.#backend.call('upsert', [this.name, doc]);
  }

  /** Sets some fields of an existing document; rejects with `write.not_found` if none. */
  update(id, patch) {
    return this.#backend.call('update', [this.name, id, patch]);
  }

  /** The document, or `undefined`. */
  get(id) {
    return this.#backend.call('get', [this.name, id]);
  }

  /** Soft-deletes a document: it leaves queries until restored. */
  delete(id) {
    return this.#backend.call('delete', [this.name, id]);
  }

  /** Restores a soft-deleted document with the fields it had. */
  restore(id) {
    return this.#backend.call('restore', [this.name, id]);
  }

  /** Adds `by` (an integer, default 1) to a counter field; increments from every device add
   * up. */
  increment(id, field, by = 1) {
    return this.#backend.call('increment', [this.name, id, field, by]);
  }

  /** The documents matching `{ where, orderBy, limit, offset, includeDeleted }`. */
  find(query = {}) {
    return this.#backend.call('find', [this.name, query]);
  }

  /** Calls `callback(results)` now and whenever the query's results change, from a write in
   * any tab or from sync. Returns a function that stops it. A query the store refuses
   * (`query.*` codes) goes to `onError`, asynchronously in either mode, and the observation
   * ends; without `onError` it is logged with `console.error`. */
  observe(query, callback, onError = logObserveError) {
    return this.#backend.observe(this.name, query ?? {}, callback, onError);
  }
}

/** Syncing through a tidemark-server and the object storage behind it. */
export class Sync {
  #backend;

  constructor(backend) {
    this.#backend = backend;
    // Back online: sync now rather than at the next poll.
    globalThis.addEventListener?.('online', () => this.#backend.call('syncNow', []).catch(() => {}));
  }

  /** `{ server, invite }` joins the space of an invite (a join link's `#join=` code);
   * `{ server, token, space }` uses a session the app already has; no argument resumes the
   * last connection. Resolves to the status once this device is registered; syncing then
   * goes on in the background, offline or not, and resumes by itself when the store opens. */
  connect(options) {
    return this.#backend.call('connect', [options ?? null]);
  }

  /** Pauses syncing and keeps the connection, also across reloads (an "offline" switch);
   * `connect()` resumes. Writes and attachment uploads wait on this device meanwhile. */
  pause() {
    return this.#backend.call('pause', []);
  }

  /** An invite to this space (admin devices only): `{ role: 'writer' | 'reader' | 'admin',
   * expiresInSecs, maxUses }` → `{ code, role, expiresAt, maxUses, link }`, where `link` is
   * the join link to share (with the space key in its fragment when the space is encrypted). */
  invite(options) {
    return this.#backend.call('invite', [options ?? null]);
  }

  /** Stops syncing and forgets the connection; local reads and writes go on. */
  disconnect() {
    return this.#backend.call('disconnect', []);
  }

  /** `{ connected, server, space, device, online, live, pendingWrites, lastPushedAt,
   * lastSyncedAt, error: { code, message } | null, stopped }`. */
  status() {
    return this.#backend.call('syncStatus', []);
  }

  /** Syncs now instead of at the next poll. */
  syncNow() {
    return this.#backend.call('syncNow', []);
  }

  /** The space's end-to-end key (43 characters, for a join link's `&key=`), or `undefined`
   * when the space is not encrypted. Whoever has it can read the space. */
  spaceKey() {
    return this.#backend.call('spaceKey', []);
  }

  /** The space's devices as the server lists them (name, role, last seen, last push). */
  devices() {
    return this.#backend.call('devices', []);
  }

  /** Calls `listener(event)` for every sync event; `event.type` is `status` (with
   * `event.status`), `acknowledged`, `changed`, `round`, `rejected`, `problem` or `stopped`.
   * Returns a function that stops it. */
  on(listener) {
    return this.#backend.onSyncEvent(listener);
  }
}

/** An open store. */
export class Store {
  #backend;
  #collections = new Map();

  constructor(backend, info) {
    this.#backend = backend;
    /** This device's id (its public key, hex). */
    this.device = info.device;
    /** `'page'` or `'service-worker'`: where the store runs. */
    this.mode = backend.mode;
    /** Syncing (see `Sync`). */
    this.sync = new Sync(backend);
    /** Files attached to documents by token (see attachments.js). */
    this.attachments = new Attachments(backend, info.name, this.sync);
  }

  /** The collection called `name`. */
  collection(name) {
    let collection = this.#collections.get(name);
    if (!collection) {
      collection = new Collection(this.#backend, name);
      this.#collections.set(name, collection);
    }
    return collection;
  }

  /** Forgets a collection, or some of its documents, on this device only. Resolves to how
   * many documents were dropped. */
  evict(collection, ids) {
    return this.#backend.call('evict', [collection, ids ?? null]);
  }

  /** What the store holds, and the browser's storage estimate for this origin. */
  async usage() {
    const usage = await this.#backend.call('usage', []);
    const estimate = await globalThis.navigator?.storage?.estimate?.();
    return { ...usage, storage: estimate ? { usage: estimate.usage, quota: estimate.quota } : null };
  }

  /** Every document, deleted ones included, for a local data browser. */
  export() {
    return this.#backend.call('export', []);
  }

  /** Resolves once every write made so far is stored. */
  flushed() {
    return this.#backend.call('flushed', []);
  }

  /** Closes the store (in page mode: stores what is pending and releases it). */
  close() {
    return this.#backend.close();
  }
}

function logObserveError(error) {
  console.error(`tidemark: observe failed (${error.code}): ${error.message}`);
}
