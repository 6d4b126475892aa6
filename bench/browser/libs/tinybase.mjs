// TinyBase's MergeableStore: table "docs", one row per document, one cell per field. Every
// cell carries its own hybrid logical clock, so concurrently created rows merge cell by cell.
// Bytes are JSON, as TinyBase's persisters and synchronizers send them.

import { createMergeableStore } from 'tinybase';

export const name = 'tinybase';
export const packageName = 'tinybase';
export const care = 'none needed: rows and cells merge by key (per-cell clocks)';
export const careMatters = false;
/** The workloads this adapter runs (null: all). */
export const only = null;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const toBytes = (value) => encoder.encode(JSON.stringify(value));
const fromBytes = (bytes) => JSON.parse(decoder.decode(bytes));

export async function init() {}

export function create() {
  return new Replica(createMergeableStore());
}

export function load(bytes) {
  const store = createMergeableStore();
  store.setMergeableContent(fromBytes(bytes));
  return new Replica(store);
}

class Replica {
  constructor(store) {
    this.store = store;
  }

  transact(s, from, to, K) {
    const store = this.store;
    store.transaction(() => {
      for (let i = from; i < to; i++) {
        store.setCell('docs', K.docs[s.doc[i]], K.fields[s.field[i]], s.value[i]);
      }
    });
  }

  // W3's single key is one of TinyBase's keyed values, its analogue of a root map key.
  setRoot(key, value) {
    this.store.setValue(key, value);
  }

  rootValue(key) {
    return this.store.getValue(key);
  }

  update() {
    return toBytes(this.store.getMergeableContent());
  }

  applyUpdate(bytes) {
    this.store.applyMergeableChanges(fromBytes(bytes));
  }

  encode() {
    return toBytes(this.store.getMergeableContent());
  }

  /**
   * Brings this store up to date with `other` the way TinyBase's synchronizers do: table,
   * row and cell hashes go one way, the differing tables, rows and cells come back. Every
   * message crosses as JSON bytes. Returns the bytes exchanged.
   */
  pullFrom(other) {
    let bytes = 0;
    const send = (value) => {
      const encoded = toBytes(value);
      bytes += encoded.length;
      return fromBytes(encoded);
    };
    const mine = this.store;
    const theirs = other.store;
    const [newTables, differingTables] = send(
      theirs.getMergeableTableDiff(send(mine.getMergeableTableHashes())),
    );
    const [newRows, differingRows] = send(
      theirs.getMergeableRowDiff(send(mine.getMergeableRowHashes(differingTables))),
    );
    const cells = send(theirs.getMergeableCellDiff(send(mine.getMergeableCellHashes(differingRows))));
    mine.transaction(() => {
      for (const tables of [newTables, newRows, cells]) {
        mine.applyMergeableChanges([tables, [{}], 1]);
      }
    });
    return bytes;
  }

  readAll() {
    let count = 0;
    let sum = 0;
    const rows = this.store.getTable('docs');
    for (const id in rows) {
      const row = rows[id];
      for (const field in row) {
        count++;
        sum += row[field];
      }
    }
    return { count, sum };
  }

  snapshot() {
    return this.store.getTable('docs');
  }

  free() {}
}
