//! A device's replica: its state, its clock, and the local write API.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use crate::clock::{Hlc, HybridClock, Stamp};
use crate::device::DeviceId;
use crate::error::WriteError;
use crate::query::Query;
use crate::state::{
    CounterCell, Document, LocalStamp, Register, State, VersionVector, counter_value,
    register_bytes,
};
use crate::value::{
    DELETED_FIELD, MAX_DOCUMENT_BYTES, Value, validate_collection_name, validate_document_id,
    validate_field_name,
};

/// Stamps of preloaded data lie in the first 2^30 ms (12.4 days) of the Unix epoch.
const PRELOAD_MILLIS_SPAN: u64 = 1 << 30;

/// The content-derived clock reading of a preloaded field: a hash of where it goes and what
/// it holds, so every device preloading the same record stamps it alike.
fn preload_hlc(collection: &str, id: &str, field: &str, value: &Value) -> Hlc {
    use sha2::Digest as _;
    let mut encoded = Vec::new();
    crate::codec::encode_value(&mut encoded, value);
    let mut hash = sha2::Sha256::new();
    for part in [
        collection.as_bytes(),
        id.as_bytes(),
        field.as_bytes(),
        &encoded,
    ] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    let digest = hash.finalize();
    let bits = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
    Hlc::from_millis(1 + bits % PRELOAD_MILLIS_SPAN)
}

/// One device's replica of a space.
///
/// Local writes happen in [`Replica::write`] transactions, which return the [`State`] they
/// added: that is what goes into the outbox and, later, into this device's packs. Remote states
/// come in through [`Replica::merge`].
#[derive(Clone, Debug)]
pub struct Replica {
    device: DeviceId,
    clock: HybridClock,
    state: State,
    eviction: Eviction,
}

/// What this device has chosen to forget: whole collections or single documents. Local only,
/// never replicated; merges skip whatever it names.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Eviction {
    collections: BTreeSet<String>,
    documents: BTreeMap<String, BTreeSet<String>>,
}

impl Eviction {
    /// Whether documents of `collection` with id `id` are kept.
    pub fn admits(&self, collection: &str, id: &str) -> bool {
        !self.collections.contains(collection)
            && !self
                .documents
                .get(collection)
                .is_some_and(|ids| ids.contains(id))
    }

    /// The evicted collections.
    pub fn collections(&self) -> impl Iterator<Item = &str> {
        self.collections.iter().map(String::as_str)
    }

    /// Whether nothing is evicted.
    pub fn is_empty(&self) -> bool {
        self.collections.is_empty() && self.documents.is_empty()
    }
}

/// Documents that a merge changed, as `(collection, id)` pairs: what live queries re-check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    documents: Vec<(Box<str>, Box<str>)>,
}

impl Changed {
    /// The changed documents.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.documents.iter().map(|(c, d)| (&**c, &**d))
    }

    /// Ids of the changed documents of one collection.
    pub fn in_collection<'a>(&'a self, collection: &'a str) -> impl Iterator<Item = &'a str> {
        self.iter()
            .filter(move |(c, _)| *c == collection)
            .map(|(_, d)| d)
    }

    /// Number of changed documents.
    pub fn len(&self) -> usize {
        self.documents.len()
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }
}

impl Replica {
    /// An empty replica for `device`.
    pub fn new(device: DeviceId) -> Replica {
        Replica::from_state(device, State::new())
    }

    /// A replica for `device` holding `state` (e.g. loaded from storage). The clock resumes
    /// after the device's own latest stamp in `state`; a platform that also persisted
    /// [`HybridClock::last`] should pass it to [`HybridClock::restore`] as well, since the
    /// device's newest writes may have been overwritten since.
    pub fn from_state(device: DeviceId, state: State) -> Replica {
        let mut clock = HybridClock::new();
        clock.restore(state.version_vector().get(&device));
        Replica {
            device,
            clock,
            state,
            eviction: Eviction::default(),
        }
    }

    /// This replica's device.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// The whole replicated state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The clock (for its offset and drift bound).
    pub fn clock(&self) -> &HybridClock {
        &self.clock
    }

    /// The clock, to set the offset to server time.
    pub fn clock_mut(&mut self) -> &mut HybridClock {
        &mut self.clock
    }

    /// Runs a write transaction at `local_wall_millis` (the device's wall clock).
    ///
    /// All writes made by `f` take effect together, or none does: if `f` returns an error the
    /// replica is unchanged. On success returns the changes, to persist and push.
    pub fn write(
        &mut self,
        local_wall_millis: u64,
        f: impl FnOnce(&mut Writer<'_>) -> Result<(), WriteError>,
    ) -> Result<State, WriteError> {
        let mut writer = Writer {
            base: self,
            clock: self.clock.clone(),
            wall: local_wall_millis,
            changes: State::new(),
        };
        f(&mut writer)?;
        let Writer { clock, changes, .. } = writer;
        self.clock = clock;
        self.state.merge(&changes);
        Ok(changes)
    }

    /// Joins a remote state (a transaction's changes, a pack's body, a snapshot) into this
    /// replica, skipping evicted documents. Returns the documents that changed.
    pub fn merge(&mut self, remote: &State, local_wall_millis: u64) -> Changed {
        for (device, hlc) in remote.version_vector().iter() {
            if *device != self.device {
                self.clock.observe(*hlc, local_wall_millis);
            }
        }
        let mut changed = Changed::default();
        let eviction = &self.eviction;
        self.state.merge_filtered(
            remote,
            |c, d| eviction.admits(c, d),
            |c, d| changed.documents.push((c.into(), d.into())),
        );
        changed
    }

    /// The entries written by this device that still win here: registers it wrote that no
    /// newer write has replaced, and its counter cells.
    ///
    /// Joined over all devices these give the whole state, so packs built from them are
    /// enough to converge. A write of this device that another device's newer write replaced
    /// is no longer here; that is harmless, because the newer write is in its own author's
    /// packs. (Packs are normally built from the outbox, which keeps such writes anyway.)
    pub fn own_state(&self) -> State {
        self.state.authored_by(&self.device)
    }

    /// The greatest clock seen per device.
    pub fn version_vector(&self) -> VersionVector {
        self.state.version_vector()
    }

    /// Everything newer than `vv`, see [`State::changes_since`].
    pub fn changes_since(&self, vv: &VersionVector) -> State {
        self.state.changes_since(vv)
    }

    /// A live (not deleted) document.
    pub fn get<'a>(&'a self, collection: &str, id: &str) -> Option<DocumentRef<'a>> {
        self.get_any(collection, id).filter(|d| !d.is_deleted())
    }

    /// A document, deleted or not.
    pub fn get_any<'a>(&'a self, collection: &str, id: &str) -> Option<DocumentRef<'a>> {
        let (collection, docs) = self.state.collections.get_key_value(collection)?;
        let (id, doc) = docs.docs.get_key_value(id)?;
        Some(DocumentRef {
            state: &self.state,
            collection,
            id,
            doc,
        })
    }

    /// The live documents of a collection, ordered by id.
    pub fn documents<'a>(&'a self, collection: &str) -> impl Iterator<Item = DocumentRef<'a>> + 'a {
        self.documents_any(collection).filter(|d| !d.is_deleted())
    }

    /// All documents of a collection, deleted ones included, ordered by id.
    pub fn documents_any<'a>(
        &'a self,
        collection: &str,
    ) -> impl Iterator<Item = DocumentRef<'a>> + 'a {
        let state = &self.state;
        self.state
            .collections
            .get_key_value(collection)
            .into_iter()
            .flat_map(move |(name, coll)| {
                coll.docs.iter().map(move |(id, doc)| DocumentRef {
                    state,
                    collection: name,
                    id,
                    doc,
                })
            })
    }

    /// Names of the collections that hold documents.
    pub fn collection_names(&self) -> impl Iterator<Item = &str> {
        self.state.collection_names()
    }

    /// The documents matching `query`, in its order, within its limit and offset.
    pub fn find<'a>(&'a self, query: &Query) -> Vec<DocumentRef<'a>> {
        query.run(self)
    }

    /// Forgets a whole collection on this device and ignores it in later merges. Returns how
    /// many documents were dropped. Nothing is deleted for other devices.
    pub fn evict_collection(&mut self, collection: &str) -> usize {
        self.eviction.collections.insert(collection.to_string());
        self.eviction.documents.remove(collection);
        self.drop_evicted()
    }

    /// Forgets some documents on this device and ignores them in later merges. Returns how
    /// many were dropped.
    pub fn evict_documents<'i>(
        &mut self,
        collection: &str,
        ids: impl IntoIterator<Item = &'i str>,
    ) -> usize {
        let evicted = self
            .eviction
            .documents
            .entry(collection.to_string())
            .or_default();
        evicted.extend(ids.into_iter().map(str::to_string));
        self.drop_evicted()
    }

    /// Drops every document the eviction list names; returns how many.
    fn drop_evicted(&mut self) -> usize {
        let eviction = &self.eviction;
        let mut dropped = 0;
        self.state.collections.retain(|name, collection| {
            collection.docs.retain(|id, _| {
                let keep = eviction.admits(name, id);
                dropped += usize::from(!keep);
                keep
            });
            !collection.docs.is_empty()
        });
        dropped
    }

    /// Stops ignoring an evicted collection (and its evicted documents). Its data returns with
    /// the next merges that carry it.
    pub fn readmit_collection(&mut self, collection: &str) {
        self.eviction.collections.remove(collection);
        self.eviction.documents.remove(collection);
    }

    /// Stops ignoring evicted documents.
    pub fn readmit_documents<'i>(
        &mut self,
        collection: &str,
        ids: impl IntoIterator<Item = &'i str>,
    ) {
        if let Some(evicted) = self.eviction.documents.get_mut(collection) {
            for id in ids {
                evicted.remove(id);
            }
            if evicted.is_empty() {
                self.eviction.documents.remove(collection);
            }
        }
    }

    /// What is evicted, to persist beside the state.
    pub fn eviction(&self) -> &Eviction {
        &self.eviction
    }

    /// Restores a persisted eviction list, dropping what it names.
    pub fn set_eviction(&mut self, eviction: Eviction) {
        self.eviction = eviction;
        self.drop_evicted();
    }
}

/// A read-only view of one document.
#[derive(Clone, Copy, Debug)]
pub struct DocumentRef<'a> {
    state: &'a State,
    collection: &'a str,
    id: &'a str,
    doc: &'a Document,
}

impl<'a> DocumentRef<'a> {
    /// The document id.
    pub fn id(&self) -> &'a str {
        self.id
    }

    /// The collection it belongs to.
    pub fn collection(&self) -> &'a str {
        self.collection
    }

    /// Whether it is soft-deleted.
    pub fn is_deleted(&self) -> bool {
        self.state.is_deleted(self.doc)
    }

    /// The current value of a field (counters summed); `None` if it was never written.
    /// A removed field reads as [`Value::Null`].
    pub fn get(&self, field: &str) -> Option<Cow<'a, Value>> {
        let name = self.state.names.find(field)?;
        self.state.field_value(self.doc, name)
    }

    /// Who wrote the current register of `field`, and when.
    pub fn field_stamp(&self, field: &str) -> Option<Stamp> {
        let name = self.state.names.find(field)?;
        self.doc.register(name).map(|r| self.state.stamp(r.stamp()))
    }

    /// The document's latest change: its greatest stamp.
    pub fn last_change(&self) -> Option<Stamp> {
        self.state.last_change(self.doc)
    }

    /// The fields with non-null values, as a JSON object (without the id).
    pub fn to_json(&self) -> serde_json::Value {
        self.state.document_json(self.doc)
    }
}

/// The write side of a [`Replica::write`] transaction.
///
/// Writes are collected in a scratch state and reads through the writer see them
/// (read-your-writes); the replica itself changes only when the transaction succeeds.
#[derive(Debug)]
pub struct Writer<'r> {
    base: &'r Replica,
    clock: HybridClock,
    wall: u64,
    changes: State,
}

impl Writer<'_> {
    fn check_target(&self, collection: &str, id: &str) -> Result<(), WriteError> {
        validate_collection_name(collection)?;
        validate_document_id(id)?;
        if !self.base.eviction.admits(collection, id) {
            return Err(WriteError::Evicted {
                what: format!("document {id:?} of collection {collection:?}"),
            });
        }
        Ok(())
    }

    /// The register of a field as this transaction sees it: its own write, else the replica's.
    fn visible_register(&self, collection: &str, id: &str, field: &str) -> Option<(&Value, Stamp)> {
        fn lookup<'s>(
            state: &'s State,
            collection: &str,
            id: &str,
            field: &str,
        ) -> Option<(&'s Value, Stamp)> {
            let doc = state.document(collection, id)?;
            let register = doc.register(state.names.find(field)?)?;
            Some((&register.value, state.stamp(register.stamp())))
        }
        lookup(&self.changes, collection, id, field)
            .or_else(|| lookup(&self.base.state, collection, id, field))
    }

    fn visible_cell(
        &self,
        collection: &str,
        id: &str,
        field: &str,
    ) -> Option<(i64, Option<Stamp>)> {
        let lookup = |state: &State| -> Option<(i64, Option<Stamp>)> {
            let doc = state.document(collection, id)?;
            let me = state.devices.find(&self.base.device)?;
            let cell = doc.cell(state.names.find(field)?, me)?;
            Some((cell.total, cell.epoch.map(|e| state.stamp(e))))
        };
        lookup(&self.changes).or_else(|| lookup(&self.base.state))
    }

    /// A cheap upper bound on the document's size after the write: replica and transaction
    /// sizes added, as if nothing were replaced. Only when it exceeds the limit is the exact
    /// size worth computing.
    fn may_exceed_document_limit(&self, collection: &str, id: &str, new_size: usize) -> bool {
        let size_in = |state: &State| state.document(collection, id).map_or(0, |d| d.bytes);
        size_in(&self.base.state) + size_in(&self.changes) + new_size > MAX_DOCUMENT_BYTES
    }

    /// The document's size if `field` took a value of `new_size` bytes: the replica's
    /// document, with this transaction's registers in place of the ones they replace.
    fn projected_document_bytes(
        &self,
        collection: &str,
        id: &str,
        field: &str,
        new_size: usize,
    ) -> usize {
        let base = self.base.state.document(collection, id);
        let base_size = |name: &str| -> usize {
            base.and_then(|doc| {
                let n = self.base.state.names.find(name)?;
                doc.register(n).map(|r| register_bytes(&r.value))
            })
            .unwrap_or(0)
        };
        let mut size = base.map_or(0, |d| d.bytes) + new_size - base_size(field);
        if let Some(doc) = self.changes.document(collection, id) {
            for r in &doc.registers {
                let name = self.changes.names.get(r.name);
                if &**name != field {
                    size = size + register_bytes(&r.value) - base_size(name);
                }
            }
        }
        size
    }

    fn put_register(
        &mut self,
        collection: &str,
        id: &str,
        field: &str,
        value: Value,
        preload: bool,
    ) -> Result<(), WriteError> {
        // Validate first: it bounds the nesting depth that sizing recurses through.
        value.validate()?;
        let new_size = register_bytes(&value);
        let current = self
            .visible_register(collection, id, field)
            .map(|(value, stamp)| (register_bytes(value), stamp.hlc));
        let (current_size, floor) = current.unwrap_or((0, Hlc::ZERO));
        if new_size > current_size && self.may_exceed_document_limit(collection, id, new_size) {
            let size = self.projected_document_bytes(collection, id, field, new_size);
            if size > MAX_DOCUMENT_BYTES {
                return Err(WriteError::DocumentTooLarge {
                    id: id.chars().take(40).collect(),
                    size,
                    limit: MAX_DOCUMENT_BYTES,
                });
            }
        }
        let hlc = if preload {
            preload_hlc(collection, id, field, &value)
        } else {
            self.clock.tick_after(self.wall, floor)?
        };
        let device = self.changes.devices.intern(&self.base.device);
        let name = self.changes.names.intern_str(field);
        let register = Register {
            name,
            device,
            hlc,
            value,
        };
        self.changes
            .document_mut(collection, id)
            .offer_register(register, |_, _| true);
        Ok(())
    }

    /// Whether the document exists and is not deleted, as this transaction sees it.
    pub fn exists(&self, collection: &str, id: &str) -> bool {
        let in_changes = self.changes.document(collection, id).is_some();
        let in_base = self.base.state.document(collection, id).is_some();
        (in_changes || in_base) && !self.is_deleted(collection, id)
    }

    fn is_deleted(&self, collection: &str, id: &str) -> bool {
        self.visible_register(collection, id, DELETED_FIELD)
            .is_some_and(|(v, _)| *v == Value::Bool(true))
    }

    /// The current value of a field as this transaction sees it (counters summed).
    pub fn field(&self, collection: &str, id: &str, field: &str) -> Option<Value> {
        let register = self.visible_register(collection, id, field);
        let epoch = register.map(|(_, stamp)| stamp);
        let mut counted = false;
        let mut total: i128 = 0;
        // Other devices' cells are only in the replica; this device's newest cell may be in
        // the transaction.
        let base = &self.base.state;
        if let Some(doc) = base.document(collection, id)
            && let Some(name) = base.names.find(field)
        {
            for cell in doc.counters.iter().filter(|c| c.name == name) {
                let counts = cell.epoch.map(|e| base.stamp(e)) == epoch;
                if counts && base.device(cell.device) != self.base.device {
                    counted = true;
                    total += i128::from(cell.total);
                }
            }
        }
        if let Some((own_total, own_epoch)) = self.visible_cell(collection, id, field)
            && own_epoch == epoch
        {
            counted = true;
            total += i128::from(own_total);
        }
        if !counted {
            return register.map(|(value, _)| value.clone());
        }
        Some(counter_value(register.map(|(value, _)| value), total))
    }

    /// Sets one field. Writing [`Value::Null`] removes it.
    pub fn set(
        &mut self,
        collection: &str,
        id: &str,
        field: &str,
        value: impl Into<Value>,
    ) -> Result<(), WriteError> {
        self.check_target(collection, id)?;
        validate_field_name(field)?;
        self.put_register(collection, id, field, value.into(), false)
    }

    /// Preloads one field from external data: fills it only if it has no value yet (and the
    /// document is not deleted), with a stamp derived from the content instead of the clock.
    /// Returns whether it wrote.
    ///
    /// The stamp's time lies in January 1970, below every real write, so any edit supersedes
    /// preloaded data, and the same content preloaded by several devices converges with
    /// nothing for anyone to resolve. A device that already synced someone else's preload of
    /// the same data writes nothing, so importing a file on many devices does not flood the
    /// bucket. Different contents preloaded concurrently into the same field resolve
    /// deterministically (by content hash, then device).
    pub fn preload(
        &mut self,
        collection: &str,
        id: &str,
        field: &str,
        value: impl Into<Value>,
    ) -> Result<bool, WriteError> {
        self.check_target(collection, id)?;
        validate_field_name(field)?;
        if self.visible_register(collection, id, field).is_some() || self.is_deleted(collection, id)
        {
            return Ok(false);
        }
        self.put_register(collection, id, field, value.into(), true)?;
        Ok(true)
    }

    /// Removes one field (writes null).
    pub fn remove_field(
        &mut self,
        collection: &str,
        id: &str,
        field: &str,
    ) -> Result<(), WriteError> {
        self.set(collection, id, field, Value::Null)
    }

    /// Sets the given fields, creating the document if needed and restoring it if it was
    /// deleted. Fields not named keep their values.
    pub fn upsert<K: AsRef<str>, V: Into<Value>>(
        &mut self,
        collection: &str,
        id: &str,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), WriteError> {
        self.check_target(collection, id)?;
        if self.is_deleted(collection, id) {
            self.put_register(collection, id, DELETED_FIELD, Value::Bool(false), false)?;
        }
        self.set_each(collection, id, fields)
    }

    fn set_each<K: AsRef<str>, V: Into<Value>>(
        &mut self,
        collection: &str,
        id: &str,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), WriteError> {
        for (field, value) in fields {
            self.set(collection, id, field.as_ref(), value)?;
        }
        Ok(())
    }

    /// Like [`Writer::upsert`] with a JSON object.
    pub fn upsert_json(
        &mut self,
        collection: &str,
        id: &str,
        object: &serde_json::Value,
    ) -> Result<(), WriteError> {
        let serde_json::Value::Object(map) = object else {
            return Err(WriteError::NotAnObject);
        };
        self.upsert(
            collection,
            id,
            map.iter().map(|(k, v)| (k, Value::from(v.clone()))),
        )
    }

    /// Sets the given fields and removes every other field: the document becomes exactly
    /// `fields` (counters included: they are reset to the new values or removed).
    pub fn replace<K: AsRef<str>, V: Into<Value>>(
        &mut self,
        collection: &str,
        id: &str,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), WriteError> {
        let fields: Vec<(K, Value)> = fields.into_iter().map(|(k, v)| (k, v.into())).collect();
        let mut present: BTreeSet<String> = BTreeSet::new();
        for state in [&self.base.state, &self.changes] {
            if let Some(doc) = state.document(collection, id) {
                let names = doc
                    .registers
                    .iter()
                    .map(|r| r.name)
                    .chain(doc.counters.iter().map(|c| c.name));
                present.extend(names.map(|n| state.names.get(n).to_string()));
            }
        }
        for name in present {
            if !name.starts_with('_') && !fields.iter().any(|(k, _)| k.as_ref() == name) {
                self.remove_field(collection, id, &name)?;
            }
        }
        self.upsert(collection, id, fields)
    }

    /// Sets the given fields of an existing, live document.
    pub fn update<K: AsRef<str>, V: Into<Value>>(
        &mut self,
        collection: &str,
        id: &str,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), WriteError> {
        self.check_target(collection, id)?;
        if !self.exists(collection, id) {
            return Err(WriteError::NotFound {
                collection: collection.to_string(),
                id: id.to_string(),
            });
        }
        self.set_each(collection, id, fields)
    }

    /// Adds `by` (which may be negative) to a counter field. Increments from every device are
    /// all kept and summed; a field that holds a number counts from that number. Fails with
    /// [`WriteError::NotNumeric`] if the field holds something other than a number or null.
    pub fn increment(
        &mut self,
        collection: &str,
        id: &str,
        field: &str,
        by: i64,
    ) -> Result<(), WriteError> {
        self.check_target(collection, id)?;
        validate_field_name(field)?;
        let register = self.visible_register(collection, id, field);
        if let Some((value, _)) = register
            && !matches!(value, Value::Null | Value::Int(_) | Value::Float(_))
        {
            return Err(WriteError::NotNumeric {
                field: field.to_string(),
            });
        }
        let epoch = register.map(|(_, stamp)| stamp);
        let total = match self.visible_cell(collection, id, field) {
            Some((total, cell_epoch)) if cell_epoch == epoch => total.saturating_add(by),
            _ => by,
        };
        let hlc = self.clock.tick(self.wall)?;
        let device = self.changes.devices.intern(&self.base.device);
        let epoch = epoch.map(|s| LocalStamp {
            hlc: s.hlc,
            device: self.changes.devices.intern(&s.device),
        });
        let name = self.changes.names.intern_str(field);
        let cell = CounterCell {
            name,
            device,
            hlc,
            epoch,
            total,
        };
        self.changes
            .document_mut(collection, id)
            .offer_cell(cell, |_, _| true);
        Ok(())
    }

    /// Soft-deletes a document: it leaves queries until restored. Deleting an unknown id
    /// records the deletion anyway (the document may exist on another device).
    pub fn delete(&mut self, collection: &str, id: &str) -> Result<(), WriteError> {
        self.check_target(collection, id)?;
        self.put_register(collection, id, DELETED_FIELD, Value::Bool(true), false)
    }

    /// Restores a soft-deleted document with the fields it had.
    pub fn restore(&mut self, collection: &str, id: &str) -> Result<(), WriteError> {
        self.check_target(collection, id)?;
        self.put_register(collection, id, DELETED_FIELD, Value::Bool(false), false)
    }
}
