//! A device's replica: its state, its clock, and the local write API.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::clock::{Hlc, HybridClock, Stamp};
use crate::codec::Decoded;
use crate::device::DeviceId;
use crate::error::{DecodeError, WriteError};
use crate::query::Query;
use crate::state::{
    Collection, CounterCell, DeviceIdx, DocId, Document, LocalStamp, NameId, Register, State,
    VersionVector, counter_value, register_bytes, register_bytes_for,
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
    /// The log of the running transaction; between transactions empty, keeping its capacity.
    log: Log,
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
            log: Log::default(),
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
        let mut writer = self.writer(local_wall_millis);
        // On an error (or a panic) `writer` is dropped here, which undoes its writes.
        f(&mut writer)?;
        Ok(writer.commit())
    }

    /// [`Replica::write`] without building the changes, for a replica whose writes travel
    /// some other way: in a whole [`Replica::state`], or as [`State::changes_since`] a peer's
    /// version vector. The writes are the same; building their changes costs about a memory
    /// allocation per document written.
    pub fn apply(
        &mut self,
        local_wall_millis: u64,
        f: impl FnOnce(&mut Writer<'_>) -> Result<(), WriteError>,
    ) -> Result<(), WriteError> {
        let mut writer = self.writer(local_wall_millis);
        f(&mut writer)?;
        writer.keep();
        Ok(())
    }

    /// A transaction's writer, with the log buffers of the last one.
    fn writer(&mut self, local_wall_millis: u64) -> Writer<'_> {
        Writer {
            clock: self.clock.clone(),
            log: std::mem::take(&mut self.log),
            base: self,
            wall: local_wall_millis,
            me: None,
        }
    }

    /// Joins a remote state (a transaction's changes, a pack's body, a snapshot) into this
    /// replica, skipping evicted documents. Returns the documents that changed.
    pub fn merge(&mut self, remote: &State, local_wall_millis: u64) -> Changed {
        let mut changed = Changed::default();
        self.merge_reporting(remote, local_wall_millis, |c, d| {
            changed.documents.push((c.into(), d.into()));
        });
        changed
    }

    /// Decodes an encoded state (a replica's `encode`, a transaction's changes) and joins it
    /// like [`Replica::merge`], returning how many documents changed. Bad bytes change nothing.
    ///
    /// For callers that hold bytes and need only the count (the browser's in-memory replica):
    /// the decoded parts are joined as they are, without building a [`State`] that the merge
    /// would copy from and then drop. For an update of one write that is most of the work.
    pub fn merge_encoded(
        &mut self,
        bytes: &[u8],
        local_wall_millis: u64,
    ) -> Result<usize, DecodeError> {
        let remote = Decoded::read(bytes)?;
        let theirs = remote.device_rank(&self.device);
        for (_, doc) in &remote.documents {
            self.observe_stamps(doc, theirs, local_wall_millis);
        }
        let eviction = &self.eviction;
        let mut changed = 0;
        self.state
            .merge_decoded(remote, |c, d| eviction.admits(c, d), |_, _| changed += 1);
        Ok(changed)
    }

    /// Joins `remote`, calling `on_change` with each document that changed.
    fn merge_reporting(
        &mut self,
        remote: &State,
        local_wall_millis: u64,
        on_change: impl FnMut(&str, &str),
    ) {
        let theirs = remote.devices.find(&self.device);
        for (_, _, doc) in remote.documents() {
            self.observe_stamps(doc, theirs, local_wall_millis);
        }
        let eviction = &self.eviction;
        self.state
            .merge_filtered(remote, |c, d| eviction.admits(c, d), on_change);
    }

    /// Moves the clock past the stamps of `doc`, a remote document in which this device's own
    /// index is `me` (its own stamps it issued itself). Each stamp is observed on its own, so
    /// one stamp beyond the drift bound does not keep the others from counting.
    fn observe_stamps(&mut self, doc: &Document, me: Option<DeviceIdx>, local_wall_millis: u64) {
        for (device, hlc) in doc.stamps() {
            if Some(device) != me {
                self.clock.observe(hlc, local_wall_millis);
            }
        }
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
        let (id, doc) = docs.get_key_value(id)?;
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
        let name = self.state.names.find_str(field)?;
        self.state.field_value(self.doc, name)
    }

    /// Who wrote the current register of `field`, and when.
    pub fn field_stamp(&self, field: &str) -> Option<Stamp> {
        let name = self.state.names.find_str(field)?;
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
/// Writes go straight into the replica, each logged with what it replaced, so reads through
/// the writer see them (read-your-writes) at the cost of one lookup. A transaction that fails,
/// or panics, is undone from the log when the writer is dropped; one that succeeds turns its log
/// into the changes it returns. Either way the replica ends as if the transaction's changes
/// had been merged into it, or as it was.
#[derive(Debug)]
pub struct Writer<'r> {
    base: &'r mut Replica,
    clock: HybridClock,
    wall: u64,
    log: Log,
    /// This device's index in the replica's device table, once looked up.
    me: Option<DeviceIdx>,
}

/// What a transaction wrote, in the replica's indices: enough to undo it, or to build its
/// changes.
#[derive(Clone, Debug, Default)]
struct Log {
    /// The collections written to, and whether the transaction created them.
    collections: Vec<(Box<str>, bool)>,
    /// Consecutive writes to one document form a run; run `i` holds the entries from
    /// `runs[i].start` to the next run's start.
    runs: Vec<Run>,
    entries: Vec<Entry>,
    /// Counter cells that lost against this device's cell in the replica (possible only when
    /// the replica merged this device's own cells stamped ahead of its clock), as
    /// `(collection, id, cell)`. Merging the changes would not apply them either; reads in the
    /// transaction see them all the same, as the transaction's latest cell for their field.
    losing_cells: Vec<(Box<str>, Box<str>, CounterCell)>,
    /// Scratch space of `Writer::commit`.
    order: Vec<RunKey>,
}

/// Largest log whose buffers a replica keeps for its next transaction.
const KEPT_LOG_ENTRIES: usize = 1 << 10;

impl Log {
    fn clear(&mut self) {
        self.collections.clear();
        self.runs.clear();
        self.entries.clear();
        self.losing_cells.clear();
        self.order.clear();
        if self.entries.capacity() > KEPT_LOG_ENTRIES {
            *self = Log::default();
        }
    }
}

/// A run's place in the changes: its collection (32 bits), the first eight bytes of its
/// document id, and its index (32 bits), so that runs mostly sort as integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RunKey(u128);

impl RunKey {
    fn new(collection: usize, id_prefix: u64, run: usize) -> RunKey {
        let narrow = |n: usize| u128::from(u32::try_from(n).expect("fewer than 2^32 runs"));
        RunKey(narrow(collection) << 96 | u128::from(id_prefix) << 32 | narrow(run))
    }

    fn run(self) -> usize {
        self.0 as u32 as usize
    }
}

#[derive(Clone, Debug)]
struct Run {
    /// Index into [`Log::collections`].
    collection: usize,
    id: DocId,
    /// Whether the transaction created the document.
    created: bool,
    start: usize,
}

#[derive(Clone, Debug)]
enum Entry {
    Register {
        new: Register,
        old: Option<Register>,
    },
    Cell {
        new: CounterCell,
        /// Whether `new` went into the replica (it always does unless it lost), and what it
        /// replaced there.
        applied: bool,
        old: Option<CounterCell>,
    },
}

/// A map keyed by interned indices, which need no keyed hash: they are small dense integers.
type IndexMap = HashMap<u32, u32, BuildHasherDefault<IndexHasher>>;

/// A multiplicative hash for [`IndexMap`] keys.
#[derive(Default)]
struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        // Empty after a commit; otherwise the transaction failed.
        self.undo();
        self.log.clear();
        self.base.log = std::mem::take(&mut self.log);
    }
}

/// Creates the document `id` of `collection`, which is missing, and says whether the
/// collection was missing too.
fn create_document<'c>(
    collections: &'c mut BTreeMap<Box<str>, Collection>,
    collection: &str,
    id: &str,
) -> (&'c mut Document, bool) {
    let created_collection = !collections.contains_key(collection);
    let coll = collections.entry(collection.into()).or_default();
    (coll.docs.entry(id.into()).or_default(), created_collection)
}

impl Writer<'_> {
    fn check_target(&self, collection: &str, id: &str) -> Result<(), WriteError> {
        validate_collection_name(collection)?;
        validate_document_id(id)?;
        if !self.base.eviction.is_empty() && !self.base.eviction.admits(collection, id) {
            return Err(WriteError::Evicted {
                what: format!("document {id:?} of collection {collection:?}"),
            });
        }
        Ok(())
    }

    /// The register of a field as this transaction sees it.
    fn visible_register(&self, collection: &str, id: &str, field: &str) -> Option<(&Value, Stamp)> {
        let state = &self.base.state;
        let doc = state.document(collection, id)?;
        let register = doc.register(state.names.find_str(field)?)?;
        Some((&register.value, state.stamp(register.stamp())))
    }

    /// This device's counter cell of a field as this transaction sees it: `(total, epoch)`.
    fn visible_cell(
        &self,
        collection: &str,
        id: &str,
        field: &str,
    ) -> Option<(i64, Option<Stamp>)> {
        let state = &self.base.state;
        let name = state.names.find_str(field)?;
        let losing = self
            .log
            .losing_cells
            .iter()
            .find(|(c, d, cell)| cell.name == name && **c == *collection && **d == *id);
        let cell = match losing {
            Some((_, _, cell)) => cell,
            None => {
                let doc = state.document(collection, id)?;
                doc.cell(name, state.devices.find(&self.base.device)?)?
            }
        };
        Some((cell.total, cell.epoch.map(|e| state.stamp(e))))
    }

    /// Notes a write to a document of the replica that went in as `entry`.
    fn record(
        &mut self,
        collection: &str,
        id: &str,
        created_collection: bool,
        created_doc: bool,
        entry: Entry,
    ) {
        let log = &mut self.log;
        let same_run = !created_doc
            && log
                .runs
                .last()
                .is_some_and(|r| *r.id == *id && *log.collections[r.collection].0 == *collection);
        if !same_run {
            let slot = match log
                .collections
                .iter()
                .rposition(|(c, _)| **c == *collection)
            {
                Some(slot) => slot,
                None => {
                    log.collections
                        .push((collection.into(), created_collection));
                    log.collections.len() - 1
                }
            };
            log.runs.push(Run {
                collection: slot,
                id: id.into(),
                created: created_doc,
                start: log.entries.len(),
            });
        }
        log.entries.push(entry);
    }

    /// Takes every write of the log back out of the replica, newest first.
    fn undo(&mut self) {
        let Log {
            collections,
            runs,
            entries,
            ..
        } = &mut self.log;
        let state = &mut self.base.state;
        for run in runs.drain(..).rev() {
            let coll = state
                .collections
                .get_mut(&collections[run.collection].0)
                .expect("the transaction wrote to the collection");
            let doc = coll
                .docs
                .get_mut(&run.id)
                .expect("the transaction wrote to the document");
            for entry in entries.drain(run.start..).rev() {
                match entry {
                    Entry::Register { new, old } => {
                        match old {
                            Some(old) => doc.replace_register(old),
                            None => doc.remove_register(new.name),
                        };
                    }
                    Entry::Cell { new, applied, old } => {
                        if applied {
                            match old {
                                Some(old) => doc.replace_cell(old),
                                None => doc.remove_cell(new.name, new.device),
                            };
                        }
                    }
                }
            }
            if run.created {
                debug_assert!(doc.is_empty());
                coll.docs.remove(&run.id);
            }
        }
        for (name, created) in collections.drain(..) {
            if created {
                debug_assert!(
                    state
                        .collections
                        .get(&name)
                        .is_some_and(|c| c.docs.is_empty())
                );
                state.collections.remove(&name);
            }
        }
    }

    /// Ends a successful transaction whose changes are not wanted: the clock moves on and the
    /// log is forgotten.
    fn keep(mut self) {
        self.base.clock = self.clock.clone();
        self.log.clear();
    }

    /// Ends a successful transaction: the clock moves on and the log becomes the changes.
    fn commit(mut self) -> State {
        self.base.clock = self.clock.clone();
        let mut changes = State::new();
        let Log {
            collections,
            runs,
            entries,
            order,
            ..
        } = &mut self.log;
        if entries.is_empty() {
            return changes;
        }
        let base = &self.base.state;
        let State { devices, names, .. } = &mut changes;
        names.reserve(entries.len().min(16));
        let mut device_map = IndexMap::default();
        let mut name_map = IndexMap::default();
        let mut device = |idx: DeviceIdx| {
            *device_map
                .entry(idx)
                .or_insert_with(|| devices.intern(base.devices.get(idx)))
        };
        let mut name = |idx: NameId| {
            *name_map
                .entry(idx)
                .or_insert_with(|| names.intern_str(base.names.get(idx)))
        };
        // The runs of one document together, in the order they were written: sorted by
        // collection and the ids' first bytes, then by the whole ids where those tie.
        order.extend(
            runs.iter()
                .enumerate()
                .map(|(run, r)| RunKey::new(r.collection, r.id.head(), run)),
        );
        order.sort_unstable();
        for group in order.chunk_by_mut(|a, b| a.0 >> 32 == b.0 >> 32) {
            if group.len() > 1 {
                group.sort_unstable_by(|a, b| {
                    runs[a.run()]
                        .id
                        .cmp(&runs[b.run()].id)
                        .then(a.run().cmp(&b.run()))
                });
            }
        }
        let mut docs: Vec<Vec<(DocId, Document)>> = collections
            .iter()
            .map(|_| {
                Vec::with_capacity(if collections.len() == 1 {
                    runs.len()
                } else {
                    0
                })
            })
            .collect();
        let mut k = 0;
        while k < order.len() {
            let first = order[k].run();
            let mut doc = Document::default();
            while let Some(key) = order.get(k) {
                let i = key.run();
                if runs[i].collection != runs[first].collection || runs[i].id != runs[first].id {
                    break;
                }
                let end = runs.get(i + 1).map_or(entries.len(), |r| r.start);
                doc.registers.reserve(end - runs[i].start);
                for entry in &mut entries[runs[i].start..end] {
                    match entry {
                        Entry::Register { new, .. } => {
                            let register = Register {
                                name: name(new.name),
                                device: device(new.device),
                                hlc: new.hlc,
                                value: std::mem::replace(&mut new.value, Value::Null),
                            };
                            doc.offer_register(register, |_, _| true);
                        }
                        Entry::Cell { new, .. } => {
                            let cell = CounterCell {
                                name: name(new.name),
                                device: device(new.device),
                                hlc: new.hlc,
                                epoch: new.epoch.map(|e| LocalStamp {
                                    hlc: e.hlc,
                                    device: device(e.device),
                                }),
                                total: new.total,
                            };
                            doc.offer_cell(cell, |_, _| true);
                        }
                    }
                }
                k += 1;
            }
            let run = &mut runs[first];
            docs[run.collection].push((std::mem::take(&mut run.id), doc));
        }
        for ((collection, _), docs) in collections.drain(..).zip(docs) {
            if !docs.is_empty() {
                let docs = docs.into_iter().collect();
                changes.collections.insert(collection, Collection { docs });
            }
        }
        // Nothing left to undo.
        self.log.clear();
        changes
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
        let new_size = register_bytes_for(value.validate()?);
        let Replica { device, state, .. } = &mut *self.base;
        let State {
            devices,
            names,
            collections,
        } = state;
        let doc = collections.get_mut(collection).and_then(|c| c.get_mut(id));
        let name = names.find_str(field);
        // Where the field's register is or goes: a new name's index is the greatest, so its
        // register goes last.
        let position = match (doc.as_deref(), name) {
            (Some(doc), Some(name)) => doc.register_position(name),
            (Some(doc), None) => Err(doc.registers.len()),
            (None, _) => Err(0),
        };
        let current = match (doc.as_deref(), position) {
            (Some(doc), Ok(i)) => Some(&doc.registers[i]),
            _ => None,
        };
        let (current_size, floor) =
            current.map_or((0, Hlc::ZERO), |r| (register_bytes(&r.value), r.hlc));
        if new_size > current_size {
            // The document's size with this value in place of the field's current one.
            let size = doc.as_deref().map_or(0, |d| d.bytes) - current_size + new_size;
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
        let register = Register {
            name: name.unwrap_or_else(|| names.intern_str(field)),
            device: *self.me.get_or_insert_with(|| devices.intern(device)),
            hlc,
            value,
        };
        let (doc, created_collection, created_doc) = match doc {
            Some(doc) => (doc, false, false),
            None => {
                let (doc, created_collection) = create_document(collections, collection, id);
                (doc, created_collection, true)
            }
        };
        // The stamp lies past the field's current one, so the write wins as a merge would
        // let it.
        let old = doc.replace_register_at(position, register.clone(), new_size, current_size);
        debug_assert!(
            old.as_ref()
                .is_none_or(|old| State::register_wins(devices, &register, old))
        );
        self.record(
            collection,
            id,
            created_collection,
            created_doc,
            Entry::Register { new: register, old },
        );
        Ok(())
    }

    /// Whether the document exists and is not deleted, as this transaction sees it.
    pub fn exists(&self, collection: &str, id: &str) -> bool {
        self.base.state.document(collection, id).is_some() && !self.is_deleted(collection, id)
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
        // Other devices' cells; this device's is the transaction's latest (`visible_cell`).
        let base = &self.base.state;
        if let Some(doc) = base.document(collection, id)
            && let Some(name) = base.names.find_str(field)
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
        let state = &self.base.state;
        if let Some(doc) = state.document(collection, id) {
            let names = doc
                .registers
                .iter()
                .map(|r| r.name)
                .chain(doc.counters.iter().map(|c| c.name));
            present.extend(names.map(|n| state.names.get(n).to_string()));
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
        let Replica { device, state, .. } = &mut *self.base;
        let State {
            devices,
            names,
            collections,
        } = state;
        let me = devices.intern(device);
        let cell = CounterCell {
            name: names.intern_str(field),
            device: me,
            hlc,
            epoch: epoch.map(|s| LocalStamp {
                hlc: s.hlc,
                device: devices.intern(&s.device),
            }),
            total,
        };
        let exists = collections
            .get(collection)
            .is_some_and(|c| c.get(id).is_some());
        let (doc, created_collection, created_doc) = if exists {
            let doc = collections
                .get_mut(collection)
                .and_then(|c| c.get_mut(id))
                .expect("it exists");
            (doc, false, false)
        } else {
            let (doc, created_collection) = create_document(collections, collection, id);
            (doc, created_collection, true)
        };
        let applied = doc
            .cell(cell.name, me)
            .is_none_or(|current| State::cell_wins(devices, &cell, current));
        let old = if applied {
            doc.replace_cell(cell.clone())
        } else {
            None
        };
        let losing = &mut self.log.losing_cells;
        let same = |(c, d, l): &(Box<str>, Box<str>, CounterCell)| {
            l.name == cell.name && **c == *collection && **d == *id
        };
        losing.retain(|l| !same(l));
        if !applied {
            losing.push((collection.into(), id.into(), cell.clone()));
        }
        self.record(
            collection,
            id,
            created_collection,
            created_doc,
            Entry::Cell {
                new: cell,
                applied,
                old,
            },
        );
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::device::DeviceKey;

    const NOW: u64 = 1_750_000_000_000;
    const DOCS: [&str; 3] = ["a", "b", "c"];
    const FIELDS: [&str; 3] = ["x", "y", "z"];

    fn replica(seed: u8) -> Replica {
        Replica::new(DeviceKey::from_seed([seed; 32]).device_id())
    }

    /// Sizes add up, registers and cells are in order, and nothing is empty.
    fn check_invariants(state: &State) {
        for (name, collection) in &state.collections {
            assert!(!collection.docs.is_empty(), "empty collection {name:?}");
            for (id, doc) in &collection.docs {
                assert!(!doc.is_empty(), "empty document {id:?}");
                let bytes: usize = doc.registers.iter().map(|r| register_bytes(&r.value)).sum();
                assert_eq!(doc.bytes, bytes, "size of {id:?}");
                assert!(doc.registers.windows(2).all(|w| w[0].name < w[1].name));
                assert!(
                    doc.counters
                        .windows(2)
                        .all(|w| (w[0].name, w[0].device) < (w[1].name, w[1].device))
                );
            }
        }
    }

    /// Every field of every document as this replica reads it.
    fn reads(replica: &Replica) -> Vec<Option<Value>> {
        let mut out = Vec::new();
        for id in DOCS {
            out.push(Some(Value::Bool(replica.get("c", id).is_some())));
            let doc = replica.get_any("c", id);
            for field in FIELDS.into_iter().chain([DELETED_FIELD]) {
                out.push(doc.and_then(|d| d.get(field)).map(Cow::into_owned));
            }
        }
        out
    }

    /// The same, through a writer.
    fn writer_reads(w: &Writer<'_>) -> Vec<Option<Value>> {
        let mut out = Vec::new();
        for id in DOCS {
            out.push(Some(Value::Bool(w.exists("c", id))));
            for field in FIELDS.into_iter().chain([DELETED_FIELD]) {
                out.push(w.field("c", id, field));
            }
        }
        out
    }

    #[derive(Clone, Debug)]
    enum Op {
        Set(usize, usize, i64),
        SetText(usize, usize, usize),
        Remove(usize, usize),
        Increment(usize, usize, i64),
        Delete(usize),
        Restore(usize),
        Upsert(usize, usize, i64),
        Update(usize, usize, i64),
        Replace(usize, usize, i64),
        Preload(usize, usize, i64),
        /// A write that is refused; the transaction goes on.
        Refused(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        let (d, f) = (0..DOCS.len(), 0..FIELDS.len());
        prop_oneof![
            4 => (d.clone(), f.clone(), -3i64..300).prop_map(|(d, f, v)| Op::Set(d, f, v)),
            1 => (d.clone(), f.clone(), 0usize..40).prop_map(|(d, f, n)| Op::SetText(d, f, n)),
            1 => (d.clone(), f.clone()).prop_map(|(d, f)| Op::Remove(d, f)),
            3 => (d.clone(), f.clone(), -5i64..5).prop_map(|(d, f, v)| Op::Increment(d, f, v)),
            1 => d.clone().prop_map(Op::Delete),
            1 => d.clone().prop_map(Op::Restore),
            1 => (d.clone(), f.clone(), 0i64..9).prop_map(|(d, f, v)| Op::Upsert(d, f, v)),
            1 => (d.clone(), f.clone(), 0i64..9).prop_map(|(d, f, v)| Op::Update(d, f, v)),
            1 => (d.clone(), f.clone(), 0i64..9).prop_map(|(d, f, v)| Op::Replace(d, f, v)),
            1 => (d.clone(), f.clone(), 0i64..9).prop_map(|(d, f, v)| Op::Preload(d, f, v)),
            1 => (0usize..4).prop_map(Op::Refused),
        ]
    }

    fn apply(w: &mut Writer<'_>, op: &Op) -> Result<(), WriteError> {
        let c = "c";
        match *op {
            Op::Set(d, f, v) => w.set(c, DOCS[d], FIELDS[f], v),
            Op::SetText(d, f, n) => w.set(c, DOCS[d], FIELDS[f], "t".repeat(n).as_str()),
            Op::Remove(d, f) => w.remove_field(c, DOCS[d], FIELDS[f]),
            Op::Increment(d, f, by) => w.increment(c, DOCS[d], FIELDS[f], by),
            Op::Delete(d) => w.delete(c, DOCS[d]),
            Op::Restore(d) => w.restore(c, DOCS[d]),
            Op::Upsert(d, f, v) => w.upsert(c, DOCS[d], [(FIELDS[f], v)]),
            Op::Update(d, f, v) => w.update(c, DOCS[d], [(FIELDS[f], v)]),
            Op::Replace(d, f, v) => w.replace(c, DOCS[d], [(FIELDS[f], v)]),
            Op::Preload(d, f, v) => w.preload(c, DOCS[d], FIELDS[f], v).map(|_| ()),
            Op::Refused(kind) => match kind {
                0 => w.set(c, "a", "_reserved", 1),
                1 => w.set("bad name", "a", "x", 1),
                2 => w.set(c, "a", "x", f64::NAN),
                _ => w.increment(c, "a", "x", 1).and_then(|()| {
                    w.set(c, "a", "x", "text")?;
                    w.increment(c, "a", "x", 1)
                }),
            },
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// A transaction leaves the replica exactly as merging its changes into it would (and
        /// as `apply` leaves it), reads in it see what reads after it see, and a failed one
        /// leaves no trace. (Another device's changes are merged with `merge` and, from their
        /// encoding, with `merge_encoded`, which must agree.)
        #[test]
        fn a_transaction_is_its_changes_merged_or_nothing(
            transactions in proptest::collection::vec(
                (proptest::collection::vec(op(), 0..12), any::<bool>(), any::<bool>()),
                1..8,
            ),
        ) {
            let mut a = replica(1);
            let mut b = replica(2);
            for (i, (ops, fail, remote)) in transactions.iter().enumerate() {
                let now = NOW + i as u64;
                if *remote {
                    // Another device's concurrent writes, for registers and cells to compete.
                    let changes = b.write(now, |w| {
                        for op in ops.iter().take(3) {
                            let _ = apply(w, op);
                        }
                        Ok(())
                    }).unwrap();
                    // `merge_encoded` is the same join, counting what `merge` lists.
                    let mut counted = a.clone();
                    let count = counted.merge_encoded(&changes.encode(), now).unwrap();
                    let listed = a.merge(&changes, now);
                    prop_assert_eq!(count, listed.len());
                    prop_assert_eq!(counted.state(), a.state());
                    prop_assert_eq!(counted.clock().last(), a.clock().last());
                }
                let before = a.clone();
                let mut seen = Vec::new();
                let result = a.write(now, |w| {
                    for op in ops {
                        let _ = apply(w, op);
                    }
                    seen = writer_reads(w);
                    if *fail { Err(WriteError::NotAnObject) } else { Ok(()) }
                });
                check_invariants(a.state());
                // `apply` makes the same writes and only skips building the changes.
                let mut applied = before.clone();
                let applied_result = applied.apply(now, |w| {
                    for op in ops {
                        let _ = apply(w, op);
                    }
                    if *fail { Err(WriteError::NotAnObject) } else { Ok(()) }
                });
                prop_assert_eq!(applied_result.is_ok(), result.is_ok());
                prop_assert_eq!(applied.state(), a.state());
                prop_assert_eq!(applied.clock().last(), a.clock().last());
                match result {
                    Ok(changes) => {
                        check_invariants(&changes);
                        let mut merged = before.state().clone();
                        merged.merge(&changes);
                        prop_assert_eq!(a.state(), &merged);
                        prop_assert_eq!(a.state().document_count(), merged.document_count());
                        prop_assert_eq!(reads(&a), seen);
                        prop_assert!(a.clock().last() >= before.clock().last());
                    }
                    Err(_) => {
                        prop_assert_eq!(a.state(), before.state());
                        prop_assert_eq!(a.state().document_count(), before.state().document_count());
                        prop_assert_eq!(a.clock().last(), before.clock().last());
                        prop_assert_eq!(reads(&a), reads(&before));
                    }
                }
            }
        }
    }

    #[test]
    fn a_merge_moves_the_clock_past_every_stamp_it_can_trust() {
        // `b` wrote one field with its wall clock a minute ahead, then one an hour ahead, past
        // the drift bound. After merging either way, `a`'s next write, made with its own
        // earlier wall clock, comes after the minute-ahead stamp; the hour-ahead one it does
        // not follow.
        const MINUTE: u64 = 60 * 1000;
        let mut b = replica(2);
        b.write(NOW + MINUTE, |w| w.set("c", "d", "x", 1)).unwrap();
        b.write(NOW + 60 * MINUTE, |w| w.set("c", "d", "z", 1))
            .unwrap();
        let bytes = b.state().encode();
        for by_bytes in [false, true] {
            let mut a = replica(1);
            if by_bytes {
                a.merge_encoded(&bytes, NOW).unwrap();
            } else {
                a.merge(b.state(), NOW);
            }
            a.write(NOW, |w| w.set("c", "e", "x", 2)).unwrap();
            let stamp =
                |id: &str, field: &str| a.get("c", id).unwrap().field_stamp(field).unwrap().hlc;
            assert!(
                stamp("e", "x") > stamp("d", "x"),
                "merged by bytes: {by_bytes}"
            );
            assert!(
                stamp("e", "x").millis() < NOW + 2 * MINUTE,
                "merged by bytes: {by_bytes}"
            );
            assert!(stamp("d", "z").millis() >= NOW + 60 * MINUTE);
        }
    }

    #[test]
    fn a_refused_write_inside_a_transaction_leaves_no_empty_document() {
        let mut a = replica(1);
        let big = "x".repeat(crate::value::MAX_VALUE_BYTES - 100);
        let changes = a
            .write(NOW, |w| {
                for field in ["a", "b", "c", "d"] {
                    w.set("c", "big", field, big.as_str())?;
                }
                let refused = w.set("c", "new", "a", Value::Float(f64::INFINITY));
                assert!(refused.is_err());
                let refused = w.set("c", "big", "e", big.as_str());
                assert!(
                    matches!(refused, Err(WriteError::DocumentTooLarge { .. })),
                    "{refused:?}"
                );
                Ok(())
            })
            .unwrap();
        assert!(a.get("c", "big").unwrap().get("e").is_none());
        assert!(a.get_any("c", "new").is_none());
        assert_eq!(a.state().document_count(), 1);
        assert_eq!(changes.document_count(), 1);
    }

    #[test]
    fn short_and_long_ids_are_found_alike() {
        // Ids that fit a `DocId` inline are looked up by one, longer ones by their text; both
        // kinds share one map, in one order.
        let ids: Vec<String> = [1, 8, 12, 13, 24, 25, 100, 256]
            .iter()
            .map(|&n| "i".repeat(n - 1) + "z")
            .collect();
        let mut a = replica(1);
        for (i, id) in ids.iter().enumerate() {
            a.apply(NOW, |w| w.set("c", id, "n", i as i64)).unwrap();
            a.apply(NOW, |w| w.increment("c", id, "k", 1)).unwrap();
        }
        let mut b = replica(2);
        b.merge(a.state(), NOW);
        for replica in [&a, &b] {
            for (i, id) in ids.iter().enumerate() {
                let doc = replica.get("c", id).expect("written");
                assert_eq!(doc.get("n").as_deref(), Some(&Value::Int(i as i64)), "{id}");
                assert_eq!(doc.get("k").as_deref(), Some(&Value::Int(1)), "{id}");
            }
            let listed: Vec<&str> = replica.state().document_ids().map(|(_, id)| id).collect();
            let mut sorted = listed.clone();
            sorted.sort_unstable();
            assert_eq!(listed, sorted);
            assert_eq!(listed.len(), ids.len());
        }
    }

    #[test]
    fn a_panicking_transaction_is_undone() {
        let mut a = replica(1);
        a.write(NOW, |w| w.set("c", "a", "x", 1)).unwrap();
        let before = a.state().clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = a.write(NOW + 1, |w| {
                w.set("c", "a", "x", 2)?;
                w.set("c", "b", "x", 2)?;
                w.increment("c", "a", "y", 2)?;
                panic!("the application's closure panics");
            });
        }));
        assert!(result.is_err());
        assert_eq!(a.state(), &before);
        assert_eq!(a.state().document_count(), 1);
        assert_eq!(
            a.get("c", "a").unwrap().get("x").as_deref(),
            Some(&Value::Int(1))
        );
        // And the replica still works.
        a.write(NOW + 2, |w| w.set("c", "b", "x", 3)).unwrap();
        assert_eq!(
            a.get("c", "b").unwrap().get("x").as_deref(),
            Some(&Value::Int(3))
        );
    }

    #[test]
    fn a_counter_cell_stamped_ahead_of_the_clock_wins_yet_the_transaction_sees_its_own() {
        // The device's cell, stamped a day ahead, comes back to a fresh replica of the same
        // device (its clock does not absorb its own stamps in merges).
        let mut ahead = replica(1);
        ahead
            .write(NOW + 86_400_000, |w| w.increment("c", "a", "n", 10))
            .unwrap();
        let mut a = replica(1);
        a.merge(ahead.state(), NOW);
        let changes = a
            .write(NOW, |w| {
                w.increment("c", "a", "n", 1)?;
                assert_eq!(w.field("c", "a", "n"), Some(Value::Int(11)));
                w.increment("c", "a", "n", 1)?;
                assert_eq!(w.field("c", "a", "n"), Some(Value::Int(12)));
                Ok(())
            })
            .unwrap();
        // The newer-stamped cell still wins here, as it would in a merge of the changes.
        assert_eq!(
            a.get("c", "a").unwrap().get("n").as_deref(),
            Some(&Value::Int(10))
        );
        let mut merged = ahead.state().clone();
        merged.merge(&changes);
        assert_eq!(a.state(), &merged);
        let mut fresh = replica(2);
        fresh.merge(&changes, NOW);
        assert_eq!(
            fresh.get("c", "a").unwrap().get("n").as_deref(),
            Some(&Value::Int(12))
        );
    }
}
