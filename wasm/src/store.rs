//! The store: a sync engine's replica kept in IndexedDB.
//!
//! A write is applied in memory at once (reads and live queries see it), joins the batch of
//! writes made in the same JavaScript turn, and its promise resolves when that batch's
//! IndexedDB transaction has committed. Batching is what makes durable writes cheap: a
//! thousand `upsert`s issued together cost one transaction.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use js_sys::{Array, Function, Promise};
use tidemark_core::sync::{SyncConfig, SyncEngine};
use tidemark_core::{DeviceKey, LiveQuery, Query, SpaceKey, State, Value, WriteError, Writer};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;

use crate::disk::{Disk, Stored};
use crate::error::StoreError;
use crate::js::{self, JS_ID, Pending};
use crate::sync::{Connection, SyncState};

/// The space a store belongs to until it joins one: its writes wait in the outbox.
const UNJOINED_SPACE: &str = "local";
/// Fold the journal into a checkpoint once it holds this many batches…
const JOURNAL_MAX_RECORDS: usize = 512;
/// …or this many bytes: cold start replays the journal, so it stays short.
const JOURNAL_MAX_BYTES: usize = 4 << 20;

/// A Tidemark store in this browser profile (`Store` in JavaScript; the npm package wraps it).
#[wasm_bindgen]
#[derive(Debug)]
pub struct Store {
    pub(crate) inner: Rc<RefCell<Inner>>,
    pub(crate) disk: Rc<Disk>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) engine: SyncEngine,
    /// The device key's seed (the engine holds the key; registering signs with it too).
    pub(crate) device_seed: [u8; 32],
    /// Syncing, once connected.
    pub(crate) sync: Option<SyncState>,
    /// The app's sync event listeners (`onSyncEvent`), kept across reconnections.
    pub(crate) sync_listeners: Vec<Function>,
    /// How many times syncing was started: numbers each start's driver loop.
    pub(crate) sync_runs: u64,
    /// The sequence number of the next journal record.
    next_seq: u64,
    /// The journal's size since the last checkpoint.
    journal_records: usize,
    journal_bytes: usize,
    /// Writes applied in memory and not yet handed to IndexedDB.
    batch: Option<Batch>,
    observers: BTreeMap<u32, Observer>,
    next_observer: u32,
    /// Documents changed since observers were last told.
    changed: Vec<(String, String)>,
    notify_scheduled: bool,
    /// Set when IndexedDB failed: memory is then ahead of the disk, so later writes are
    /// refused rather than acknowledged on a store that cannot keep them.
    pub(crate) failed: Option<String>,
    /// The next flush writes a checkpoint (eviction is stored that way).
    force_checkpoint: bool,
    pub(crate) closed: bool,
}

#[derive(Debug)]
struct Batch {
    changes: State,
    /// Each write's promise: resolved with its value once the batch is durable.
    acks: Vec<(JsValue, Pending)>,
}

#[derive(Debug)]
struct Observer {
    live: LiveQuery,
    callback: Function,
}

/// What a flush writes.
enum Flush {
    Append {
        seq: u64,
        batch: Vec<u8>,
    },
    Checkpoint(Checkpoint),
    /// Nothing new: an empty transaction, which commits after every earlier one.
    Barrier,
}

/// A checkpoint to store, and the journal records it holds.
pub(crate) struct Checkpoint {
    space: String,
    bytes: Vec<u8>,
    journal_upto: Option<u64>,
}

impl Checkpoint {
    /// Stores it (replacing the previous one, dropping the journal records it holds).
    pub(crate) async fn store(&self, disk: &Disk) -> Result<(), StoreError> {
        disk.save_checkpoint(&self.space, &self.bytes, self.journal_upto)
            .await
    }
}

#[wasm_bindgen]
impl Store {
    /// Opens the store called `name`, creating it on first use: reads the checkpoint and
    /// the journal from IndexedDB. Fails with `store.corrupt` if a record cannot be read;
    /// nothing stored is changed then.
    pub async fn open(name: String) -> Result<Store, JsValue> {
        Ok(Store::open_store(&name).await?)
    }

    /// This device's id (its public key, hex).
    #[wasm_bindgen(getter)]
    pub fn device(&self) -> String {
        self.inner.borrow().engine.device().to_string()
    }

    /// Write batches not yet in the bucket.
    #[wasm_bindgen(getter, js_name = pendingWrites)]
    pub fn pending_writes(&self) -> u32 {
        self.inner.borrow().engine.pending_writes() as u32
    }

    /// Creates or updates a document from a plain object; its `id` property names it (a
    /// random id is made when missing). Resolves to the id once stored durably.
    pub fn upsert(&self, collection: String, doc: JsValue) -> Promise {
        let prepared = js::to_json(&doc, "the document").and_then(|json| {
            let serde_json::Value::Object(mut fields) = json else {
                return Err(StoreError::Write(WriteError::NotAnObject));
            };
            let id = match fields.remove(JS_ID) {
                Some(serde_json::Value::String(id)) => id,
                None | Some(serde_json::Value::Null) => js::random_id()?,
                Some(other) => {
                    return Err(StoreError::BadArgument(format!(
                        "a document's id is a string, not {other}"
                    )));
                }
            };
            Ok((id, fields))
        });
        let (id, fields) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => return Promise::reject(&error.to_js()),
        };
        let result = JsValue::from(&id);
        self.write(result, |w| {
            if fields.is_empty() {
                // A document with no fields still exists: its `_deleted` register says so.
                return w.restore(&collection, &id);
            }
            w.upsert(
                &collection,
                &id,
                fields.iter().map(|(k, v)| (k, Value::from(v.clone()))),
            )
        })
    }

    /// Sets some fields of an existing document; fails with `write.not_found` if there is
    /// none (or it is deleted).
    pub fn update(&self, collection: String, id: String, patch: JsValue) -> Promise {
        let fields = match js::to_json(&patch, "the patch") {
            Ok(serde_json::Value::Object(fields)) => fields,
            Ok(_) => return Promise::reject(&StoreError::Write(WriteError::NotAnObject).to_js()),
            Err(error) => return Promise::reject(&error.to_js()),
        };
        self.write(JsValue::UNDEFINED, |w| {
            w.update(
                &collection,
                &id,
                fields
                    .iter()
                    .filter(|(k, _)| *k != JS_ID)
                    .map(|(k, v)| (k, Value::from(v.clone()))),
            )
        })
    }

    /// Soft-deletes a document: it leaves queries until restored.
    pub fn delete(&self, collection: String, id: String) -> Promise {
        self.write(JsValue::UNDEFINED, |w| w.delete(&collection, &id))
    }

    /// Restores a soft-deleted document with the fields it had.
    pub fn restore(&self, collection: String, id: String) -> Promise {
        self.write(JsValue::UNDEFINED, |w| w.restore(&collection, &id))
    }

    /// Adds `by` (an integer, may be negative) to a counter field. Concurrent increments
    /// from every device add up.
    pub fn increment(&self, collection: String, id: String, field: String, by: f64) -> Promise {
        if by.fract() != 0.0 || by.abs() > 9_007_199_254_740_991.0 {
            let error = StoreError::BadArgument(format!("increment by an integer, not {by}"));
            return Promise::reject(&error.to_js());
        }
        self.write(JsValue::UNDEFINED, |w| {
            w.increment(&collection, &id, &field, by as i64)
        })
    }

    /// The document, or `undefined` when there is none or it is deleted.
    pub fn get(&self, collection: &str, id: &str) -> JsValue {
        self.follow(collection);
        let inner = self.inner.borrow();
        match inner.engine.replica().get(collection, id) {
            Some(doc) => js::from_json(&js::document_json(&doc)),
            None => JsValue::UNDEFINED,
        }
    }

    /// The documents of `collection` matching `query` (`{ where, orderBy, limit, offset,
    /// includeDeleted }`), as plain objects.
    pub fn find(&self, collection: &str, query: JsValue) -> Result<Array, JsValue> {
        let query = parse_query(collection, &query)?;
        self.follow(collection);
        let inner = self.inner.borrow();
        Ok(inner
            .engine
            .replica()
            .find(&query)
            .iter()
            .map(|doc| js::from_json(&js::document_json(doc)))
            .collect())
    }

    /// Calls `callback` with the query's results now and whenever they change (by a write
    /// from here or a merge from another device). Returns a handle for `unobserve`.
    pub fn observe(
        &self,
        collection: &str,
        query: JsValue,
        callback: Function,
    ) -> Result<u32, JsValue> {
        let query = parse_query(collection, &query)?;
        self.follow(collection);
        let mut inner = self.inner.borrow_mut();
        let live = LiveQuery::new(query, inner.engine.replica());
        let handle = inner.next_observer;
        inner.next_observer += 1;
        let initial = results(&live, &inner.engine);
        inner.observers.insert(
            handle,
            Observer {
                live,
                callback: callback.clone(),
            },
        );
        drop(inner);
        // The first call comes asynchronously, like every later one.
        let inner = Rc::downgrade(&self.inner);
        spawn_local(async move {
            if inner
                .upgrade()
                .is_some_and(|i| i.borrow().observers.contains_key(&handle))
            {
                let _ = callback.call1(&JsValue::NULL, &initial);
            }
        });
        Ok(handle)
    }

    /// Stops calling an `observe` callback.
    pub fn unobserve(&self, handle: u32) {
        self.inner.borrow_mut().observers.remove(&handle);
    }

    /// Every document of every collection, deleted ones included (with `_deleted: true`),
    /// for a local data browser: `{ device, space, pendingWrites, collections: { name: [..] } }`.
    pub fn export(&self) -> JsValue {
        let inner = self.inner.borrow();
        let replica = inner.engine.replica();
        let mut collections = serde_json::Map::new();
        for name in replica.collection_names() {
            let docs = replica
                .documents_any(name)
                .map(|doc| js::document_json(&doc))
                .collect();
            collections.insert(name.to_string(), serde_json::Value::Array(docs));
        }
        js::from_json(&serde_json::json!({
            "device": inner.engine.device().to_string(),
            "space": inner.engine.space(),
            "pendingWrites": inner.engine.pending_writes(),
            "collections": collections,
        }))
    }

    /// What the store holds: `{ documents, registers, journalRecords, journalBytes }`.
    pub fn usage(&self) -> JsValue {
        let inner = self.inner.borrow();
        let state = inner.engine.replica().state();
        js::from_json(&serde_json::json!({
            "documents": state.document_count(),
            "registers": state.register_count(),
            "journalRecords": inner.journal_records,
            "journalBytes": inner.journal_bytes,
        }))
    }

    /// Forgets a whole collection (no `ids`) or some documents on this device only: they
    /// are dropped here and ignored in later merges, and not deleted anywhere else.
    /// Resolves to how many documents were dropped, once that is stored.
    pub fn evict(&self, collection: String, ids: Option<Vec<String>>) -> Promise {
        let mut inner = self.inner.borrow_mut();
        if let Err(error) = inner.writable() {
            return Promise::reject(&error.to_js());
        }
        let dropped = match &ids {
            None => inner.engine.evict_collection(&collection),
            Some(ids) => inner
                .engine
                .evict_documents(&collection, ids.iter().map(String::as_str)),
        };
        // Eviction is not a journaled write: it is stored by a checkpoint.
        let pending = Pending::new();
        let promise = pending.promise.clone();
        inner.force_checkpoint = true;
        inner.enqueue(
            JsValue::from(dropped as u32),
            pending,
            &self.inner,
            &self.disk,
        );
        promise
    }

    /// Resolves once every write made so far is stored.
    pub fn flushed(&self) -> Promise {
        let mut inner = self.inner.borrow_mut();
        let pending = Pending::new();
        let promise = pending.promise.clone();
        // Always through a flush, even with nothing new: an earlier flush may still be
        // committing, and this one's transaction is ordered after it.
        inner.enqueue(JsValue::UNDEFINED, pending, &self.inner, &self.disk);
        promise
    }

    /// Closes the store: stores what is pending, then closes IndexedDB. Later calls fail
    /// with `store.closed`.
    pub async fn close(self) -> Result<(), JsValue> {
        let flushed = self.flushed();
        wasm_bindgen_futures::JsFuture::from(flushed).await?;
        self.stop_sync();
        let Store { inner, disk } = self;
        inner.borrow_mut().closed = true;
        inner.borrow_mut().observers.clear();
        if let Ok(disk) = Rc::try_unwrap(disk) {
            disk.close();
        }
        Ok(())
    }
}

impl Store {
    async fn open_store(name: &str) -> Result<Store, StoreError> {
        let disk = Disk::open(name).await?;
        let stored = disk.load().await?;
        let (engine, device_seed) = match &stored {
            Stored {
                device_seed: None, ..
            } => {
                let mut seed = [0u8; 32];
                js::random_bytes(&mut seed)?;
                disk.init(&seed, UNJOINED_SPACE).await?;
                let engine = SyncEngine::new(
                    SyncConfig::new(UNJOINED_SPACE),
                    DeviceKey::from_seed(seed),
                    None,
                );
                (engine, seed)
            }
            Stored {
                device_seed: Some(seed),
                space,
                checkpoint,
                space_key,
                ..
            } => {
                let key = DeviceKey::from_seed(*seed);
                let space = space.clone().unwrap_or_else(|| UNJOINED_SPACE.into());
                let config = SyncConfig {
                    space_key: space_key.map(SpaceKey::from_bytes),
                    ..SyncConfig::new(space)
                };
                let engine = match checkpoint {
                    None => SyncEngine::new(config, key, None),
                    Some(bytes) => SyncEngine::restore(config, key, bytes)
                        .map_err(|e| StoreError::Corrupt(format!("the checkpoint: {e}")))?,
                };
                (engine, *seed)
            }
        };
        let connection = stored
            .connection
            .as_deref()
            .map(Connection::parse)
            .transpose()?;
        let mut inner = Inner {
            engine,
            device_seed,
            sync: None,
            sync_listeners: Vec::new(),
            sync_runs: 0,
            next_seq: 0,
            journal_records: 0,
            journal_bytes: 0,
            batch: None,
            observers: BTreeMap::new(),
            next_observer: 0,
            changed: Vec::new(),
            notify_scheduled: false,
            failed: None,
            closed: false,
            force_checkpoint: false,
        };
        let now = js::now_millis();
        for (seq, bytes) in &stored.journal {
            let changes = State::decode(bytes)
                .map_err(|e| StoreError::Corrupt(format!("journal record {seq}: {e}")))?;
            inner.engine.replay_journaled(now, &changes);
            inner.next_seq = seq + 1;
            inner.journal_records += 1;
            inner.journal_bytes += bytes.len();
        }
        let store = Store {
            inner: Rc::new(RefCell::new(inner)),
            disk: Rc::new(disk),
        };
        if let Some(connection) = connection {
            // A store that was syncing resumes by itself, offline or not.
            store.start_sync(connection);
        }
        Ok(store)
    }

    /// Applies a write in memory, tells observers, and returns a promise that resolves to
    /// `result` once the write is stored.
    fn write(
        &self,
        result: JsValue,
        f: impl FnOnce(&mut Writer<'_>) -> Result<(), WriteError>,
    ) -> Promise {
        let mut inner = self.inner.borrow_mut();
        let applied = inner
            .writable()
            .and_then(|()| Ok(inner.engine.write_journaled(js::now_millis(), f)?));
        let changes = match applied {
            Ok(changes) => changes,
            Err(error) => return Promise::reject(&error.to_js()),
        };
        inner.note_changed(changes.document_ids(), &self.inner);
        if let Some(sync) = &inner.sync {
            sync.nudge();
        }
        let pending = Pending::new();
        let promise = pending.promise.clone();
        match &mut inner.batch {
            Some(batch) => {
                batch.changes.merge(&changes);
            }
            None => {
                inner.batch = Some(Batch {
                    changes,
                    acks: Vec::new(),
                });
            }
        }
        inner.enqueue(result, pending, &self.inner, &self.disk);
        promise
    }
}

impl Inner {
    fn writable(&self) -> Result<(), StoreError> {
        if self.closed {
            return Err(StoreError::Closed);
        }
        if let Some(failure) = &self.failed {
            return Err(StoreError::Storage(format!(
                "{failure}; reopen the store (writes since then were not stored)"
            )));
        }
        Ok(())
    }

    /// Adds a promise to the batch, starting a flush if none is scheduled.
    fn enqueue(
        &mut self,
        result: JsValue,
        pending: Pending,
        this: &Rc<RefCell<Inner>>,
        disk: &Rc<Disk>,
    ) {
        let batch = self.batch.get_or_insert_with(|| Batch {
            changes: State::new(),
            acks: Vec::new(),
        });
        let first = batch.acks.is_empty();
        batch.acks.push((result, pending));
        if first {
            // Runs after the current JavaScript turn: every write made in it joins the batch.
            spawn_local(flush(Rc::clone(this), Rc::clone(disk)));
        }
    }

    /// Remembers changed documents for live queries, and schedules telling them.
    pub(crate) fn note_changed<'a>(
        &mut self,
        documents: impl IntoIterator<Item = (&'a str, &'a str)>,
        this: &Rc<RefCell<Inner>>,
    ) {
        if self.observers.is_empty() {
            return;
        }
        self.changed.extend(
            documents
                .into_iter()
                .map(|(c, id)| (c.to_string(), id.to_string())),
        );
        if !self.notify_scheduled {
            self.notify_scheduled = true;
            spawn_local(notify(Rc::clone(this)));
        }
    }

    /// A checkpoint of everything in memory, holding every journal record written so far.
    pub(crate) fn checkpoint(&mut self) -> Checkpoint {
        self.journal_records = 0;
        self.journal_bytes = 0;
        Checkpoint {
            space: self.engine.space().to_string(),
            bytes: self.engine.checkpoint(),
            journal_upto: self.next_seq.checked_sub(1),
        }
    }

    /// What the next flush writes: the batch as a journal record, or a checkpoint when the
    /// journal is long (or eviction asked for one).
    fn plan_flush(&mut self, batch: State) -> Flush {
        if batch.is_empty() && !self.force_checkpoint {
            return Flush::Barrier;
        }
        let encoded = batch.encode();
        let over = self.journal_records + 1 > JOURNAL_MAX_RECORDS
            || self.journal_bytes + encoded.len() > JOURNAL_MAX_BYTES;
        if over || std::mem::take(&mut self.force_checkpoint) {
            Flush::Checkpoint(self.checkpoint())
        } else {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.journal_records += 1;
            self.journal_bytes += encoded.len();
            Flush::Append {
                seq,
                batch: encoded,
            }
        }
    }
}

/// Stores the current batch and settles its promises.
async fn flush(inner: Rc<RefCell<Inner>>, disk: Rc<Disk>) {
    let (plan, acks) = {
        let mut inner = inner.borrow_mut();
        let Some(batch) = inner.batch.take() else {
            return;
        };
        (inner.plan_flush(batch.changes), batch.acks)
    };
    let stored = match plan {
        Flush::Append { seq, batch } => disk.append(seq, &batch).await,
        Flush::Checkpoint(checkpoint) => checkpoint.store(&disk).await,
        Flush::Barrier => disk.barrier().await,
    };
    if let Err(error) = &stored {
        inner
            .borrow_mut()
            .failed
            .get_or_insert_with(|| error.to_string());
    }
    for (result, pending) in acks {
        let _ = match &stored {
            Ok(()) => pending.resolve.call1(&JsValue::NULL, &result),
            Err(error) => pending.reject.call1(&JsValue::NULL, &error.to_js()),
        };
    }
}

/// Re-evaluates live queries on the documents changed since the last call, then calls the
/// callbacks of those whose results changed, with no borrow held (they may use the store).
async fn notify(inner: Rc<RefCell<Inner>>) {
    let calls: Vec<(Function, Array)> = {
        let mut guard = inner.borrow_mut();
        let inner = &mut *guard;
        inner.notify_scheduled = false;
        let changed = std::mem::take(&mut inner.changed);
        let replica = inner.engine.replica();
        let mut calls = Vec::new();
        for observer in inner.observers.values_mut() {
            let collection = observer.live.query().collection().to_string();
            let ids = changed
                .iter()
                .filter(|(c, _)| *c == collection)
                .map(|(_, id)| id.as_str());
            if observer.live.update(replica, ids) {
                calls.push((
                    observer.callback.clone(),
                    results(&observer.live, &inner.engine),
                ));
            }
        }
        calls
    };
    for (callback, results) in calls {
        let _ = callback.call1(&JsValue::NULL, &results);
    }
}

fn results(live: &LiveQuery, engine: &SyncEngine) -> Array {
    live.results(engine.replica())
        .iter()
        .map(|doc| js::from_json(&js::document_json(doc)))
        .collect()
}

fn parse_query(collection: &str, query: &JsValue) -> Result<Query, StoreError> {
    Ok(Query::from_json(&js::query_json(collection, query)?)?)
}
