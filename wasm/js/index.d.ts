// Types of the npm package `tidemark` (hand-written; `tsc --noEmit` checks them in the tests).

/** A JSON value as stored in a field. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A document: a plain object with a string `id`. Extend it to type a collection:
 * `interface Order extends Doc { table: number }` (fields hold JSON values). */
export interface Doc {
  id: string;
}

/** A document of an untyped collection: any JSON fields. */
export interface AnyDoc extends Doc {
  [field: string]: Json;
}

/** A document to store: its `id` may be left out (a random one is made). */
export type NewDoc<T extends Doc> = Omit<T, 'id'> & { id?: string };

/** A comparison on one field; a bare value means equality. */
export type Condition =
  | Json
  | {
      '='?: Json;
      '!='?: Json;
      '<'?: Json;
      '<='?: Json;
      '>'?: Json;
      '>='?: Json;
      in?: Json[];
      exists?: boolean;
    };

/** A field to order by: `"name"`, `"-name"` (descending), or an object. */
export type OrderKey = string | { field: string; direction?: 'asc' | 'desc' };

export interface Query {
  /** Every condition must hold; `id` names the document id. */
  where?: Record<string, Condition>;
  orderBy?: OrderKey | OrderKey[];
  limit?: number;
  offset?: number;
  /** Include soft-deleted documents (default false). */
  includeDeleted?: boolean;
}

/** Errors are `Error`s with `name` `"TidemarkError"` and a stable `code`, e.g.
 * `write.not_found`, `write.invalid_field`, `query.invalid`, `store.locked`,
 * `store.corrupt`, `store.storage`, `store.interrupted`, `sync.other_space`. */
export interface TidemarkError extends Error {
  name: 'TidemarkError';
  code: string;
}

export interface Collection<T extends Doc = AnyDoc> {
  readonly name: string;
  /** Creates or updates a document (a random id is made when `id` is missing); resolves to
   * the id once the write is stored durably in IndexedDB. */
  upsert(doc: NewDoc<T>): Promise<string>;
  /** Sets some fields of an existing document; rejects with `write.not_found` if none. */
  update(id: string, patch: Partial<Omit<T, 'id'>>): Promise<void>;
  /** The document, or `undefined` when there is none or it is deleted. */
  get(id: string): Promise<T | undefined>;
  /** Soft-deletes a document: it leaves queries until restored. */
  delete(id: string): Promise<void>;
  /** Restores a soft-deleted document with the fields it had. */
  restore(id: string): Promise<void>;
  /** Adds `by` (an integer, default 1, may be negative) to a counter field. Concurrent
   * increments from every device add up. */
  increment(id: string, field: string, by?: number): Promise<void>;
  find(query?: Query): Promise<T[]>;
  /** Calls `callback` with the results now and whenever they change, from a write in any
   * tab or from sync. Returns a function that stops it. A query the store refuses
   * (`query.*` codes) goes to `onError` (asynchronously, in either mode) and the observation
   * ends; without `onError` it is logged with `console.error`. */
  observe(
    query: Query,
    callback: (results: T[]) => void,
    onError?: (error: TidemarkError) => void,
  ): () => void;
}

export interface Usage {
  documents: number;
  registers: number;
  journalRecords: number;
  journalBytes: number;
  /** `navigator.storage.estimate()` for this origin, when the browser has it. */
  storage: { usage?: number; quota?: number } | null;
}

export interface Export {
  device: string;
  space: string;
  pendingWrites: number;
  /** Every document, deleted ones with `_deleted: true`. */
  collections: Record<string, Array<AnyDoc & { _deleted?: true }>>;
}

export type ConnectOptions = (
  | { server: string; invite: string }
  | { server: string; token: string; space: string }
) & {
  /** This device's name in the space's device list. */
  name?: string;
  /** The space's end-to-end key, from a join link's `&key=`. */
  spaceKey?: string;
  /** Make a new space key when there is none: the first device of an encrypted space. */
  encrypt?: boolean;
};

export interface InviteOptions {
  /** Default `'writer'`. */
  role?: 'admin' | 'writer' | 'reader';
  /** Default 7 days. */
  expiresInSecs?: number;
  /** Default 1. */
  maxUses?: number;
}

export interface Invite {
  code: string;
  space: string;
  role: 'admin' | 'writer' | 'reader';
  expiresAt: number;
  maxUses: number;
  /** The join link to share: opens the app and joins; carries the space key in its
   * fragment when the space is end-to-end encrypted. */
  link: string;
}

export interface SyncStatus {
  connected: boolean;
  /** Sync is paused (`pause()`); `connect()` resumes it. */
  paused: boolean;
  server: string | null;
  space: string | null;
  device: string;
  /** The last request to the server or the object store got an answer. */
  online: boolean;
  /** Announcements are flowing (changes from others arrive at once). */
  live: boolean;
  /** Write batches not yet in the bucket. */
  pendingWrites: number;
  lastPushedAt: number | null;
  lastSyncedAt: number | null;
  error: { code: string; message: string } | null;
  /** Syncing stopped for good (device revoked, server key changed). */
  stopped: boolean;
  /** Packs are sealed with the space key. A missing or wrong key shows as `error`
   * (`pack.key_required`, `pack.decryption_failed`, `pack.not_encrypted`). */
  encrypted: boolean;
}

export type SyncEvent =
  | { type: 'status'; status: SyncStatus }
  | { type: 'acknowledged'; collection: string; writes: number }
  | { type: 'changed'; documents: number }
  | { type: 'round'; changed: boolean }
  | { type: 'rejected'; device: string; collection: string; level: number; code: string; message: string }
  | { type: 'problem'; code: string; message: string }
  | { type: 'stopped'; code: string; message: string };

export interface Sync {
  /** Joins a space (invite) or uses a session (token), registers this device and starts
   * syncing in the background; no argument resumes the last connection. */
  connect(options?: ConnectOptions): Promise<SyncStatus>;
  /** Pauses syncing and keeps the connection, across reloads too; `connect()` resumes.
   * Writes and attachment uploads wait on this device meanwhile. */
  pause(): Promise<void>;
  /** An invite to this space (admin devices only, else `role.insufficient`). */
  invite(options?: InviteOptions): Promise<Invite>;
  /** Stops syncing and forgets the connection; local reads and writes go on. */
  disconnect(): Promise<void>;
  status(): Promise<SyncStatus>;
  syncNow(): Promise<void>;
  /** The space's end-to-end key (for a join link), or `undefined` when not encrypted. */
  spaceKey(): Promise<string | undefined>;
  /** The space's devices as the server lists them. */
  devices(): Promise<unknown>;
  /** Calls `listener` for every sync event; returns a function that stops it. */
  on(listener: (event: SyncEvent) => void): () => void;
}

export interface TransferOptions {
  /** Called with bytes done and the total as the transfer goes. */
  onProgress?: (done: number, total: number) => void;
  /** Cancels the transfer (rejects with `attachment.cancelled`); the next call resumes. */
  signal?: AbortSignal;
}

export interface Attachments {
  /** Stores `blob` on this device and uploads it to the bucket; resolves to its token
   * (`sha256:…`, to keep in a document) once uploaded, or once queued on this device when
   * the server or the bucket cannot be reached (offline, or before `sync.connect`): queued
   * uploads go up by themselves when sync reaches the server. */
  put(blob: Blob, options?: TransferOptions): Promise<string>;
  /** Tokens of the attachments put on this device and not uploaded yet. */
  queued(): Promise<string[]>;
  /** Uploads the queued attachments now; refusals for good stay queued, listed in `failed`. */
  flush(): Promise<{
    uploaded: string[];
    waiting: string[];
    failed: { token: string; code: string; message: string }[];
  }>;
  /** The attachment: from this device when it has it (offline too), else downloaded and
   * checked against its SHA-256 (`attachment.corrupt` if it does not match). */
  get(token: string, options?: TransferOptions): Promise<Blob>;
}

export interface Store {
  /** This device's id (its public key, hex). */
  readonly device: string;
  /** Where the store runs. */
  readonly mode: 'page' | 'service-worker';
  readonly sync: Sync;
  readonly attachments: Attachments;
  collection<T extends Doc = AnyDoc>(name: string): Collection<T>;
  /** Forgets a collection, or some of its documents, on this device only (nothing is
   * deleted elsewhere); resolves to how many documents were dropped. */
  evict(collection: string, ids?: string[]): Promise<number>;
  usage(): Promise<Usage>;
  export(): Promise<Export>;
  /** Resolves once every write made so far is stored. */
  flushed(): Promise<void>;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** The store's name (default `"default"`): one IndexedDB database per name. */
  name?: string;
  /** `'auto'` (default): the service worker's store when one is registered, else in this
   * page. */
  mode?: 'auto' | 'page' | 'service-worker';
}

export function openStore(options?: OpenOptions): Promise<Store>;

/** `{server}/#join={invite}`, with `&key={spaceKey}` for an encrypted space (the fragment
 * never reaches a server). */
export function joinLink(parts: { server: string; invite: string; spaceKey?: string }): string;

/** The parts of a join link, or `null` if `link` is not one. */
export function parseJoinLink(
  link: string,
): { server: string; invite: string; spaceKey?: string } | null;
