// Tidemark through its public in-memory API, `tidemark/replica`: collection "docs", one
// document per "d{n}", one field per "f{k}". Every call crosses into wasm as an app's would.

import { Replica as TidemarkReplica } from 'tidemark/replica';

export const name = 'tidemark';
export const packageName = 'tidemark';
export const care = 'none needed: documents and fields merge by key';
export const careMatters = false;
/** The workloads this adapter runs (null: all). */
export const only = null;

const COLLECTION = 'docs';
// W3's single key: a document is Tidemark's smallest map, so "v" is a field of one.
const ROOT_DOC = 'd0';

export async function init() {}

export function create() {
  return new Replica(new TidemarkReplica());
}

export function load(bytes) {
  return new Replica(TidemarkReplica.load(bytes));
}

class Replica {
  constructor(replica) {
    this.replica = replica;
  }

  transact(s, from, to, K) {
    this.replica.transact((tx) => {
      for (let i = from; i < to; i++) {
        tx.set(COLLECTION, K.docs[s.doc[i]], K.fields[s.field[i]], s.value[i]);
      }
    });
  }

  setRoot(key, value) {
    this.replica.set(COLLECTION, ROOT_DOC, key, value);
  }

  rootValue(key) {
    return this.replica.get(COLLECTION, ROOT_DOC)?.[key];
  }

  update() {
    return this.replica.encode();
  }

  applyUpdate(bytes) {
    this.replica.merge(bytes);
  }

  encode() {
    return this.replica.encode();
  }

  summary() {
    return this.replica.versionVector();
  }

  encodeSince(summary) {
    return this.replica.encodeSince(summary);
  }

  merge(bytes) {
    this.replica.merge(bytes);
  }

  readAll() {
    const docs = this.replica.toJSON()[COLLECTION] ?? {};
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
    return this.replica.toJSON()[COLLECTION] ?? {};
  }

  free() {
    this.replica.free();
  }
}
