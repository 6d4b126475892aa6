// The API apps use: `Store` and `Collection`, the same whether the store runs in this page
// or in the app's service worker. Both backends implement:
//   call(method, args) -> Promise    (methods of the wasm Store, see wasm/src/store.rs)
//   observe(collection, query, callback) -> unsubscribe function
//   close() -> Promise

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
   * any tab or from sync. Returns a function that stops it. */
  observe(query, callback) {
    return this.#backend.observe(this.name, query ?? {}, callback);
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
