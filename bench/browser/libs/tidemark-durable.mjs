// Tidemark's durable store (`openStore`, in this page, on a fresh IndexedDB database): W1
// only. Each set is an `upsert` of one field; the upserts of one batch are issued in one
// JavaScript turn, so they share one IndexedDB transaction, and the batch counts as done when
// every promise has resolved, i.e. when the commit is durable.

import { openStore } from 'tidemark';

export const name = 'tidemark (durable)';
export const packageName = 'tidemark';
export const care = 'none needed';
export const careMatters = false;
export const only = ['W1'];

export async function init() {}

export async function create() {
  const store = await openStore({ name: `bench-${crypto.randomUUID()}`, mode: 'page' });
  return new Replica(store);
}

class Replica {
  constructor(store) {
    this.store = store;
    this.docs = store.collection('docs');
  }

  transact(s, from, to, K) {
    const writes = [];
    for (let i = from; i < to; i++) {
      writes.push(this.docs.upsert({ id: K.docs[s.doc[i]], [K.fields[s.field[i]]]: s.value[i] }));
    }
    return Promise.all(writes);
  }

  async snapshot() {
    const out = {};
    for (const { id, ...fields } of await this.docs.find()) out[id] = fields;
    return out;
  }

  free() {}
}
