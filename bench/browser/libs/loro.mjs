// Loro: a root LoroMap "docs" holding one child map per document.

import initLoro, { LoroDoc, LoroMap, VersionVector } from 'loro-crdt/web';

export const name = 'loro';
export const packageName = 'loro-crdt';
/** Regular child containers created concurrently under one key fork, and the map keeps one
 * of them. Loro's documented remedy is `ensureMergeableMap`: the child's id derives from
 * (parent, key), so every peer's first write lands in the same map. */
export const care = 'ensureMergeableMap for every document map (deterministic child ids)';
/** Whether W2 runs twice, without and with that care. */
export const careMatters = true;
/** The workloads this adapter runs (null: all). */
export const only = null;

export async function init() {
  await initLoro({ module_or_path: new URL('./loro_wasm_bg.wasm', import.meta.url) });
}

export function create({ care: withCare = true } = {}) {
  return new Replica(new LoroDoc(), withCare);
}

export function load(bytes) {
  return new Replica(LoroDoc.fromSnapshot(bytes), true);
}

class Replica {
  constructor(doc, withCare) {
    this.doc = doc;
    this.docs = doc.getMap('docs');
    this.withCare = withCare;
    // Every `get` of a child returns a fresh handle across the wasm boundary; an app writing
    // often keeps them, so the benchmark does too.
    this.maps = new Map();
  }

  map(dk) {
    let map = this.maps.get(dk);
    if (map === undefined) {
      map = this.withCare
        ? this.docs.ensureMergeableMap(dk)
        : this.docs.getOrCreateContainer(dk, new LoroMap());
      this.maps.set(dk, map);
    }
    return map;
  }

  transact(s, from, to, K) {
    for (let i = from; i < to; i++) {
      this.map(K.docs[s.doc[i]]).set(K.fields[s.field[i]], s.value[i]);
    }
    this.doc.commit();
  }

  setRoot(key, value) {
    this.docs.set(key, value);
    this.doc.commit();
  }

  rootValue(key) {
    return this.docs.get(key);
  }

  update() {
    return this.doc.export({ mode: 'update' });
  }

  applyUpdate(bytes) {
    this.doc.import(bytes);
  }

  encode() {
    return this.doc.export({ mode: 'snapshot' });
  }

  summary() {
    return this.doc.oplogVersion().encode();
  }

  encodeSince(summary) {
    return this.doc.export({ mode: 'update', from: VersionVector.decode(summary) });
  }

  merge(bytes) {
    this.doc.import(bytes);
  }

  readAll() {
    // One call converts the whole document; reading child by child would cross the wasm
    // boundary twice per value.
    const docs = this.doc.toJSON().docs ?? {};
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
    return this.doc.toJSON().docs ?? {};
  }

  free() {
    this.doc.free();
  }
}
