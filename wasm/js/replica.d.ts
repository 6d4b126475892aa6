// Types of `tidemark/replica`: a replica held in memory, for apps that bring their own
// transport. Errors are `TidemarkError`s (see 'tidemark'): `write.*` codes for refused
// writes, `decode.*` for bytes that are not a replica's encoding, `store.bad_argument`.

import type { AnyDoc, Doc, Json, NewDoc } from './index.js';

/** The writes of one transaction (see `Replica.transact`). */
export interface Transaction {
  /** Sets one field; `null` removes it. */
  set(collection: string, id: string, field: string, value: Json): this;
  /** Sets the fields of `doc`, creating or restoring the document; other fields keep their
   * values. A missing `id` gets a random one; returns the id. */
  upsert<T extends Doc = AnyDoc>(collection: string, doc: NewDoc<T>): string;
  /** Soft-deletes a document. */
  delete(collection: string, id: string): this;
  /** Restores a soft-deleted document with the fields it had. */
  restore(collection: string, id: string): this;
  /** Adds `by` (an integer, default 1) to a counter field; concurrent increments add up. */
  increment(collection: string, id: string, field: string, by?: number): this;
}

/**
 * A replica in memory: synchronous transactions, reads, and bytes to exchange with other
 * replicas however the app likes. Merging is a join: any bytes, any order, any number of
 * times, and every replica that has merged the same bytes shows the same documents.
 *
 * @example
 * ```ts
 * import { Replica } from 'tidemark/replica';
 *
 * const phone = new Replica();
 * const laptop = new Replica();
 * phone.transact((tx) => {
 *   tx.set('orders', 'o1', 'table', 4);
 *   tx.set('orders', 'o1', 'done', false);
 * });
 * laptop.set('orders', 'o1', 'paid', true);
 *
 * // The laptop says what it has; the phone answers with what it lacks.
 * laptop.merge(phone.encodeSince(laptop.versionVector()));
 * laptop.get('orders', 'o1'); // { id: 'o1', table: 4, done: false, paid: true }
 * ```
 */
export class Replica {
  /** An empty replica writing as `device` (64 hex digits), or as a fresh random device.
   * Two replicas must never write as the same device. */
  constructor(options?: { device?: string });
  /** A replica holding `bytes` from `encode`; other bytes throw a `decode.*` error. */
  static load(bytes: Uint8Array, options?: { device?: string }): Replica;
  /** The device id this replica writes as. */
  readonly device: string;
  /** Runs `fn` and applies its writes as one transaction: all of them, or (when one is
   * refused or `fn` throws) none. Returns what `fn` returns. */
  transact<R>(fn: (tx: Transaction) => R): R;
  /** Sets one field, as a transaction of its own. */
  set(collection: string, id: string, field: string, value: Json): void;
  /** Creates or updates a document, as a transaction of its own; returns its id. */
  upsert<T extends Doc = AnyDoc>(collection: string, doc: NewDoc<T>): string;
  /** Soft-deletes a document, as a transaction of its own. */
  delete(collection: string, id: string): void;
  /** The live document, or `undefined`. */
  get<T extends Doc = AnyDoc>(collection: string, id: string): T | undefined;
  /** Every live document: `{ [collection]: { [id]: fields } }`. */
  toJSON(): Record<string, Record<string, Record<string, Json>>>;
  /** The whole replica as bytes (canonical: equal replicas give equal bytes). */
  encode(): Uint8Array;
  /** What this replica has, for a peer's `encodeSince`. */
  versionVector(): Uint8Array;
  /** What a replica with version vector `vv` lacks, to `merge` there. */
  encodeSince(vv: Uint8Array): Uint8Array;
  /** Merges bytes from any replica's `encode` or `encodeSince`; returns how many documents
   * changed. Other bytes throw a `decode.*` error and change nothing. */
  merge(bytes: Uint8Array): number;
  /** Frees the replica's wasm memory now. */
  free(): void;
}
