// Automerge: the document root holds a map "docs" with one nested map per document, written
// through Automerge's standard `change` API. The wasm is loaded with the `slim` entry (no
// base64 copy of the wasm inside the JavaScript).

import * as A from '@automerge/automerge/slim';

export const name = 'automerge';
export const packageName = '@automerge/automerge';
/** Maps created concurrently under one key are a conflict: one wins, the other's fields are
 * hidden. Automerge's advice is to create such structure once and start every replica from
 * that shared genesis document. */
export const care = 'shared genesis: both replicas load one document that holds every nested map';
/** Whether W2 runs twice, without and with that care. */
export const careMatters = true;
/** The workloads this adapter runs (null: all). */
export const only = null;

export async function init() {
  await A.initializeWasm(new URL('./automerge.wasm', import.meta.url));
}

export function genesis(K) {
  const doc = A.change(A.init(), (d) => {
    d.docs = {};
    for (const dk of K.docs) d.docs[dk] = {};
  });
  return A.save(doc);
}

export function create({ genesis: start } = {}) {
  // `load` gives the replica a fresh random actor id, as `init` does.
  return new Replica(start ? A.load(start) : A.init());
}

export function load(bytes) {
  return new Replica(A.load(bytes));
}

class Replica {
  constructor(doc) {
    this.doc = doc;
  }

  transact(s, from, to, K) {
    this.doc = A.change(this.doc, (d) => {
      if (d.docs === undefined) d.docs = {};
      const docs = d.docs;
      for (let i = from; i < to; i++) {
        const dk = K.docs[s.doc[i]];
        if (docs[dk] === undefined) docs[dk] = {};
        docs[dk][K.fields[s.field[i]]] = s.value[i];
      }
    });
  }

  setRoot(key, value) {
    this.doc = A.change(this.doc, (d) => {
      d[key] = value;
    });
  }

  rootValue(key) {
    return this.doc[key];
  }

  // The change just made, as apps send it to peers.
  update() {
    return A.getLastLocalChange(this.doc);
  }

  applyUpdate(bytes) {
    [this.doc] = A.applyChanges(this.doc, [bytes]);
  }

  encode() {
    return A.save(this.doc);
  }

  /**
   * Brings this document up to date with `other` through Automerge's sync protocol (heads
   * and Bloom filters one way, the missing changes back), round after round until this side
   * has every head of the other. Returns the bytes of all messages.
   */
  pullFrom(other) {
    let mine = A.initSyncState();
    let theirs = A.initSyncState();
    let bytes = 0;
    const target = A.getHeads(other.doc);
    while (!A.hasHeads(this.doc, target)) {
      let message;
      [mine, message] = A.generateSyncMessage(this.doc, mine);
      if (message) {
        bytes += message.length;
        [other.doc, theirs] = A.receiveSyncMessage(other.doc, theirs, message);
      }
      [theirs, message] = A.generateSyncMessage(other.doc, theirs);
      if (!message) throw new Error('automerge sync stalled');
      bytes += message.length;
      [this.doc, mine] = A.receiveSyncMessage(this.doc, mine, message);
    }
    return bytes;
  }

  readAll() {
    // `load` materializes the document as plain JavaScript objects; reads are property reads.
    const docs = this.doc.docs ?? {};
    let count = 0;
    let sum = 0;
    for (const dk in docs) {
      const fields = docs[dk];
      for (const fk in fields) {
        count++;
        sum += fields[fk];
      }
    }
    return { count, sum };
  }

  snapshot() {
    return A.toJS(this.doc).docs ?? {};
  }

  free() {
    A.free(this.doc);
  }
}
