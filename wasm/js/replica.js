// `tidemark/replica`: a replica held in memory, for apps that move bytes themselves (a
// WebSocket, WebRTC, a file). The same documents, transactions and merge as the store, with
// no IndexedDB and no sync engine: encode, send, merge — in any order, any number of times.

// Its own wasm module (`tidemark_replica_bg.wasm`): the replica's code without the store's,
// the sync engine's or IndexedDB's, so an app that only needs this downloads far less. A page
// that also opens a store loads both modules; replicas and stores exchange the same bytes.
import init, { Replica as WasmReplica } from './tidemark_replica.js';
import { tidemarkError } from './protocol.js';

// Top-level await: the module is usable as soon as its import resolves, and every method
// below is synchronous.
await init({ module_or_path: new URL('./tidemark_replica_bg.wasm', import.meta.url) });

// Kinds of writes, as wasm/src/replica.rs reads them.
const SET = 0;
const UPSERT = 1;
const DELETE = 2;
const RESTORE = 3;
const INCREMENT = 4;

/** The writes of one transaction, applied together by `Replica.transact`. */
export class Transaction {
  /** @internal */
  constructor() {
    // Five slots a write: kind, collection, id, field, value. Encoded only when the
    // transaction ends, so values are taken as they are then (as JSON.stringify always took
    // them).
    this.ops = [];
  }

  /** Sets one field; `null` removes it. */
  set(collection, id, field, value) {
    this.ops.push(SET, collection, id, field, checkValue(value));
    return this;
  }

  /** Sets the fields of `doc` (creating or restoring the document); others keep their
   * values. A missing `doc.id` gets a random one; returns the id. */
  upsert(collection, doc) {
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
      throw tidemarkError({ code: 'write.not_an_object', message: 'a document is an object' });
    }
    const { id = randomId(), ...fields } = doc;
    if (typeof id !== 'string') {
      throw tidemarkError({ code: 'store.bad_argument', message: `a document's id is a string, not ${typeof id}` });
    }
    this.ops.push(UPSERT, collection, id, null, fields);
    return id;
  }

  /** Soft-deletes a document. */
  delete(collection, id) {
    this.ops.push(DELETE, collection, id, null, null);
    return this;
  }

  /** Restores a soft-deleted document with the fields it had. */
  restore(collection, id) {
    this.ops.push(RESTORE, collection, id, null, null);
    return this;
  }

  /** Adds `by` (an integer) to a counter field; concurrent increments add up. */
  increment(collection, id, field, by = 1) {
    if (!Number.isSafeInteger(by)) {
      throw tidemarkError({ code: 'store.bad_argument', message: `increment by an integer, not ${by}` });
    }
    this.ops.push(INCREMENT, collection, id, field, by);
    return this;
  }
}

// The compact form of a transaction (`Replica::write_compact` in wasm/src/replica.rs): six
// numbers a write, names and strings in one text, other values as JSON. Names, integers,
// strings, booleans and null travel without JSON, whose building and parsing were most of a
// write's cost.
const NUMBERS_PER_WRITE = 6;
/** In place of a name's length: the previous write's name in the same place. */
const NAME_SAME = -1;
/** In place of a field name's length: none. */
const NAME_NONE = -2;
const VALUE_NULL = 0;
const VALUE_FALSE = 1;
const VALUE_TRUE = 2;
const VALUE_INT = 3;
const VALUE_STRING = 4;
const VALUE_JSON = 5;

/** Whether `text` has no lone surrogates (which TextEncoder would silently replace). */
const isWellFormed = String.prototype.isWellFormed
  ? (text) => text.isWellFormed()
  : (text) => !/\p{Surrogate}/u.test(text);

/**
 * `ops` (a transaction's slots) as `Replica::write_compact` takes them: `[text, numbers,
 * json]`, or `null` when an argument is not for the compact form (a name that is not a
 * string; text with lone surrogates). The JSON form carries those, and refuses or takes them
 * exactly as before.
 */
function encodeCompact(ops) {
  // A fresh array each time (zeros where a value has no number): `toJSON` of a value, run
  // by JSON.stringify below, may itself write to a replica.
  const numbers = new Float64Array((ops.length / 5) * NUMBERS_PER_WRITE);
  let text = '';
  let json = null;
  // The previous write's names by slot: 1 collection, 2 document id, 3 field.
  const previous = [null, null, null, null];
  for (let i = 0, n = 0; i < ops.length; i += 5, n += NUMBERS_PER_WRITE) {
    numbers[n] = ops[i];
    for (let slot = 1; slot <= 3; slot++) {
      const name = ops[i + slot];
      if (name === null && slot === 3) {
        numbers[n + slot] = NAME_NONE; // only a field may be absent
      } else if (typeof name !== 'string') {
        return null;
      } else if (name === previous[slot]) {
        numbers[n + slot] = NAME_SAME;
      } else {
        text += name;
        numbers[n + slot] = name.length;
        previous[slot] = name;
      }
    }
    const value = ops[i + 4];
    switch (typeof value) {
      case 'number':
        // Other numbers as JSON, which reads them exactly as before (floats, and integers
        // beyond 2^53 as JSON.stringify writes them).
        if (Number.isSafeInteger(value)) {
          numbers[n + 4] = VALUE_INT;
          numbers[n + 5] = value;
          continue;
        }
        break;
      case 'string':
        text += value;
        numbers[n + 4] = VALUE_STRING;
        numbers[n + 5] = value.length;
        continue;
      case 'boolean':
        numbers[n + 4] = value ? VALUE_TRUE : VALUE_FALSE;
        continue;
      default:
        if (value === null) {
          numbers[n + 4] = VALUE_NULL;
          continue;
        }
    }
    (json ??= []).push(value);
    numbers[n + 4] = VALUE_JSON;
  }
  if (!isWellFormed(text)) return null;
  // A list inside a list: values as deeply nested as in the JSON form, so serde_json's depth
  // limit refuses the same ones.
  return [text, numbers, json && stringify([json])];
}

/** `ops` in the JSON form `Replica::write` takes: `[[kind, collection, id, field, value], …]`. */
function encodeJson(ops) {
  const writes = [];
  for (let i = 0; i < ops.length; i += 5) writes.push(ops.slice(i, i + 5));
  return stringify(writes);
}

function stringify(value) {
  try {
    return JSON.stringify(value);
  } catch (error) {
    throw tidemarkError({ code: 'store.bad_argument', message: `values are JSON data: ${error.message}` });
  }
}

// The wasm replica `Replica.load` hands to the constructor (private fields can only be set
// there).
let loaded = null;

/** A replica in memory. Writes are synchronous transactions; bytes from `encode` and
 * `encodeSince` of any replica merge into any other. */
export class Replica {
  #wasm;

  /** An empty replica writing as `device` (64 hex digits), or as a fresh random device. */
  constructor({ device } = {}) {
    this.#wasm = loaded ?? new WasmReplica(device);
  }

  /** A replica holding `bytes` (from `encode`); rejects other bytes with a `decode.*` code. */
  static load(bytes, { device } = {}) {
    loaded = WasmReplica.load(bytes, device);
    try {
      return new Replica();
    } finally {
      loaded = null;
    }
  }

  /** The id this replica writes as. */
  get device() {
    return this.#wasm.device;
  }

  /**
   * Runs `fn(tx)` and applies its writes as one transaction: all of them or, if one is
   * refused (or `fn` throws), none. Returns what `fn` returns.
   */
  transact(fn) {
    const tx = new Transaction();
    const result = fn(tx);
    if (tx.ops.length > 0) {
      const compact = encodeCompact(tx.ops);
      if (compact) this.#wasm.writeCompact(...compact);
      else this.#wasm.write(encodeJson(tx.ops));
    }
    return result;
  }

  /** Sets one field, as a transaction of its own. */
  set(collection, id, field, value) {
    this.transact((tx) => tx.set(collection, id, field, value));
  }

  /** Creates or updates a document, as a transaction of its own; returns its id. */
  upsert(collection, doc) {
    return this.transact((tx) => tx.upsert(collection, doc));
  }

  /** Soft-deletes a document, as a transaction of its own. */
  delete(collection, id) {
    this.transact((tx) => tx.delete(collection, id));
  }

  /** The live document as `{ id, ...fields }`, or `undefined`. */
  get(collection, id) {
    return this.#wasm.get(collection, id);
  }

  /** Every live document: `{ [collection]: { [id]: { ...fields } } }`. */
  toJSON() {
    return JSON.parse(this.#wasm.toJsonText());
  }

  /** The whole replica as bytes (canonical: equal replicas give equal bytes). */
  encode() {
    return this.#wasm.encode();
  }

  /** A summary of what this replica has: send it to a peer, which answers with
   * `encodeSince`. */
  versionVector() {
    return this.#wasm.versionVector();
  }

  /** What a peer with version vector `vv` lacks; `merge` it there. */
  encodeSince(vv) {
    return this.#wasm.encodeSince(vv);
  }

  /** Merges bytes from any replica's `encode` or `encodeSince`; returns how many documents
   * changed. Other bytes are refused with a `decode.*` code and change nothing. */
  merge(bytes) {
    return this.#wasm.merge(bytes);
  }

  /** Frees the wasm memory now rather than when the garbage collector gets to it. */
  free() {
    this.#wasm.free();
  }
}

function checkValue(value) {
  // JSON.stringify would turn these into null silently.
  if (typeof value === 'number' && !Number.isFinite(value)) {
    throw tidemarkError({ code: 'write.non_finite_float', message: `${value} cannot be stored` });
  }
  if (value === undefined) {
    throw tidemarkError({ code: 'store.bad_argument', message: 'undefined is not a value; set null to remove a field' });
  }
  return value;
}

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
