// Yjs: a root Y.Map "docs" holding one nested Y.Map per document. Updates are Yjs's default
// (v1) encoding, as y-protocols send them.

import * as Y from 'yjs';

export const name = 'yjs';
export const packageName = 'yjs';
/** Concurrently created nested maps under one key: one wins and the other's fields vanish
 * (Y.Map is last-writer-wins per key). The usual remedy is to create the structure once and
 * share it, so with care both replicas start from one genesis update that holds every
 * document's map. */
export const care = 'shared genesis: both replicas load one update that creates every nested map';
/** Whether W2 runs twice, without and with that care. */
export const careMatters = true;
/** The workloads this adapter runs (null: all). */
export const only = null;

export async function init() {}

export function genesis(K) {
  const doc = new Y.Doc();
  const docs = doc.getMap('docs');
  doc.transact(() => {
    for (const dk of K.docs) docs.set(dk, new Y.Map());
  });
  return Y.encodeStateAsUpdate(doc);
}

export function create({ genesis: start } = {}) {
  const doc = new Y.Doc();
  if (start) Y.applyUpdate(doc, start);
  return new Replica(doc);
}

export function load(bytes) {
  return create({ genesis: bytes });
}

class Replica {
  constructor(doc) {
    this.doc = doc;
    this.docs = doc.getMap('docs');
  }

  transact(s, from, to, K) {
    const docs = this.docs;
    this.doc.transact(() => {
      for (let i = from; i < to; i++) {
        const dk = K.docs[s.doc[i]];
        let map = docs.get(dk);
        if (map === undefined) {
          map = new Y.Map();
          docs.set(dk, map);
        }
        map.set(K.fields[s.field[i]], s.value[i]);
      }
    });
  }

  setRoot(key, value) {
    this.docs.set(key, value);
  }

  rootValue(key) {
    return this.docs.get(key);
  }

  update() {
    return Y.encodeStateAsUpdate(this.doc);
  }

  applyUpdate(bytes) {
    Y.applyUpdate(this.doc, bytes);
  }

  encode() {
    return Y.encodeStateAsUpdate(this.doc);
  }

  summary() {
    return Y.encodeStateVector(this.doc);
  }

  encodeSince(summary) {
    return Y.encodeStateAsUpdate(this.doc, summary);
  }

  merge(bytes) {
    Y.applyUpdate(this.doc, bytes);
  }

  readAll() {
    // Iterating the shared types reads every value without copying the document.
    let count = 0;
    let sum = 0;
    this.docs.forEach((map) => {
      map.forEach((value) => {
        count++;
        sum += value;
      });
    });
    return { count, sum };
  }

  snapshot() {
    return this.docs.toJSON();
  }

  free() {
    this.doc.destroy();
  }
}
