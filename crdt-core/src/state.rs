//! The replicated value: collections → documents → fields, and its join.
//!
//! A [`State`] is a join-semilattice. [`State::merge`] is commutative, associative and
//! idempotent, so replicas that have merged the same states hold the same value, whatever the
//! order and however often each state arrived. Everything that travels — a transaction's
//! changes, a device's pack, a snapshot — is a `State`.
//!
//! A field holds a **register** (a value and the stamp of its write; the greater stamp wins)
//! and may hold **counter cells**, one per device that incremented it. A cell carries the stamp
//! of the register it counts from (its *epoch*), the stamp of its last change and the device's
//! running total; between two cells of one device the greater `(epoch, stamp, total)` wins.
//! A field reads as its register's value plus the totals of the cells whose epoch is the
//! register's stamp. So writing a number to a counter field resets it: increments concurrent
//! with that write count from the old epoch and stop counting, on every replica alike.

use std::borrow::Borrow;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};

use crate::clock::{Hlc, Stamp};
use crate::codec::Decoded;
use crate::device::DeviceId;
pub(crate) use crate::doc_id::DocId;
use crate::value::{DELETED_FIELD, ThinVec, Value};

/// Index of a device in a state's device table.
pub(crate) type DeviceIdx = u32;
/// Index of a field name in a state's name table.
pub(crate) type NameId = u32;

/// Interns values so entries can refer to them by a small index.
#[derive(Clone, Debug)]
pub(crate) struct Interner<T: Eq + Hash + Clone> {
    items: Vec<T>,
    /// Index of `items`, built once there are more than [`SCANNED_ITEMS`]: most states that
    /// travel (a transaction's changes, one update) hold a device or two and a few names, and
    /// for them a scan is faster than hashing, and building the map would cost more than both.
    /// Hashed with foldhash, seeded per process: a merge from a new device interns its id,
    /// and SipHash cost several times more than that lookup's other work.
    index: HashMap<T, u32, foldhash::fast::RandomState>,
    /// Names found lately (used by [`Interner::find_str`]).
    cache: LookupCache,
}

/// Tables of up to this many items are searched front to back, without a hash index.
const SCANNED_ITEMS: usize = 8;

impl<T: Eq + Hash + Clone> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            items: Vec::new(),
            index: HashMap::default(),
            cache: LookupCache::default(),
        }
    }
}

impl<T: Eq + Hash + Clone> Interner<T> {
    /// The index of `item`, if interned; `item` may be a borrowed form (`&str` for names).
    pub(crate) fn find<Q>(&self, item: &Q) -> Option<u32>
    where
        T: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if self.items.len() <= SCANNED_ITEMS {
            let position = self.items.iter().position(|i| i.borrow() == item)?;
            return Some(position as u32);
        }
        self.index.get(item).copied()
    }

    pub(crate) fn intern(&mut self, item: &T) -> u32 {
        match self.find(item) {
            Some(id) => id,
            None => self.push(item.clone()),
        }
    }

    /// Adds `item`, which is not interned yet.
    fn push(&mut self, item: T) -> u32 {
        let id = self.items.len() as u32;
        self.items.push(item);
        if self.items.len() > SCANNED_ITEMS {
            if self.index.is_empty() {
                // Past the scanned size: index every item so far.
                self.index.reserve(self.items.capacity());
                let indexed = self.items.iter().cloned().zip(0..);
                self.index.extend(indexed);
            } else {
                self.index.insert(self.items[id as usize].clone(), id);
            }
        }
        id
    }

    pub(crate) fn get(&self, id: u32) -> &T {
        &self.items[id as usize]
    }

    pub(crate) fn items(&self) -> &[T] {
        &self.items
    }

    /// Makes room for `additional` more items.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.items.reserve(additional);
        if self.items.len() + additional > SCANNED_ITEMS {
            self.index.reserve(additional);
        }
    }
}

impl Interner<Box<str>> {
    /// The index of the name `name`, if interned. Lookups by name happen on every read and
    /// write of a field, so recent answers are cached.
    pub(crate) fn find_str(&self, name: &str) -> Option<NameId> {
        let bytes = name.as_bytes();
        let head = load_le(bytes);
        let slot = LookupCache::slot(bytes, head);
        let cached = self.cache.get(slot);
        if let Some(item) = self.items.get(cached as usize) {
            let item = item.as_bytes();
            let equal = item.len() == bytes.len()
                && if bytes.len() <= 8 {
                    load_le(item) == head
                } else {
                    item == bytes
                };
            if equal {
                return Some(cached);
            }
        }
        let id = self.find(name)?;
        self.cache.set(slot, id);
        Some(id)
    }

    pub(crate) fn intern_str(&mut self, name: &str) -> NameId {
        match self.find_str(name) {
            Some(id) => id,
            None => self.push(Box::from(name)),
        }
    }
}

/// Up to eight bytes as a little-endian number, without a call to `memcpy`: the first eight
/// bytes of longer slices; for shorter ones, a number that tells apart slices of the same
/// length.
fn load_le(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    if n >= 8 {
        u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
    } else if n >= 4 {
        // Two overlapping halves; the overlap holds the same bytes in both.
        let low = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        let high = u32::from_le_bytes(bytes[n - 4..].try_into().expect("4 bytes"));
        u64::from(low) | u64::from(high) << ((n - 4) * 8)
    } else if n > 0 {
        u64::from(bytes[0]) | u64::from(bytes[n / 2]) << 8 | u64::from(bytes[n - 1]) << 16
    } else {
        0
    }
}

/// Slots of a [`LookupCache`].
const CACHE_SLOTS: usize = 64;

/// Names an interner found lately, by a cheap hash of their bytes. A hit is checked against
/// the table and spares the keyed hash (SipHash) of the index, which dominated reads and
/// writes by field name; a collision only costs a miss, so the cheap hash gives an attacker
/// nothing to aim at. Atomics (relaxed: each slot is only a hint) let shared readers fill it.
struct LookupCache([AtomicU32; CACHE_SLOTS]);

impl LookupCache {
    /// Where `name` is cached: a multiplicative hash of its length and its first and last
    /// eight bytes (`head` is [`load_le`] of it).
    fn slot(name: &[u8], head: u64) -> usize {
        let n = name.len();
        let tail = if n > 8 { load_le(&name[n - 8..]) } else { 0 };
        let mixed = (head ^ tail.rotate_left(29) ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed >> (64 - CACHE_SLOTS.trailing_zeros())) as usize
    }

    /// The index cached in `slot` (`u32::MAX` when empty).
    fn get(&self, slot: usize) -> u32 {
        // Slots hold the index plus one, so that an empty cache is all zeros: every state has
        // one, and small states (a single update) are made by the thousand.
        self.0[slot].load(AtomicOrdering::Relaxed).wrapping_sub(1)
    }

    fn set(&self, slot: usize, id: u32) {
        self.0[slot].store(id.wrapping_add(1), AtomicOrdering::Relaxed);
    }
}

impl Default for LookupCache {
    fn default() -> Self {
        LookupCache([const { AtomicU32::new(0) }; CACHE_SLOTS])
    }
}

/// A clone's table holds the same items at the same indices, so the hints stay good.
impl Clone for LookupCache {
    fn clone(&self) -> Self {
        LookupCache(std::array::from_fn(|slot| {
            AtomicU32::new(self.0[slot].load(AtomicOrdering::Relaxed))
        }))
    }
}

impl fmt::Debug for LookupCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LookupCache").finish_non_exhaustive()
    }
}

/// A stamp whose device is an index into one state's device table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct LocalStamp {
    pub(crate) hlc: Hlc,
    pub(crate) device: DeviceIdx,
}

/// The winning write of one field.
#[derive(Clone, Debug)]
pub(crate) struct Register {
    pub(crate) name: NameId,
    pub(crate) device: DeviceIdx,
    pub(crate) hlc: Hlc,
    pub(crate) value: Value,
}

impl Register {
    pub(crate) fn stamp(&self) -> LocalStamp {
        LocalStamp {
            hlc: self.hlc,
            device: self.device,
        }
    }
}

/// One device's contribution to a counter field.
#[derive(Clone, Debug)]
pub(crate) struct CounterCell {
    pub(crate) name: NameId,
    pub(crate) device: DeviceIdx,
    pub(crate) hlc: Hlc,
    /// Stamp of the register this cell counts from; `None` when the field had no register.
    pub(crate) epoch: Option<LocalStamp>,
    pub(crate) total: i64,
}

/// Approximate stored size of a register, used for the document size limit.
pub(crate) fn register_bytes(value: &Value) -> usize {
    register_bytes_for(value.encoded_len())
}

/// [`register_bytes`] of a value whose encoded size is `encoded_len`.
pub(crate) fn register_bytes_for(encoded_len: usize) -> usize {
    encoded_len + 16
}

/// The fields of one document. Registers are sorted by name id, counter cells by
/// `(name id, device)`.
///
/// Counter cells are in a [`ThinVec`], a single pointer, as most documents have none: a
/// document costs 40 bytes beside its registers, where a second `Vec` would make it 56.
#[derive(Clone, Debug, Default)]
pub(crate) struct Document {
    pub(crate) registers: Vec<Register>,
    pub(crate) counters: ThinVec<CounterCell>,
    /// Sum of [`register_bytes`] over the registers.
    pub(crate) bytes: usize,
}

/// Documents with up to this many registers are searched front to back: a random document's
/// registers are usually not in the cache, and a scan lets the processor fetch them all at
/// once, where a binary search waits for each probe before it knows the next.
const SCANNED_REGISTERS: usize = 16;

impl Document {
    /// The device and clock of every register and cell.
    pub(crate) fn stamps(&self) -> impl Iterator<Item = (DeviceIdx, Hlc)> {
        let registers = self.registers.iter().map(|r| (r.device, r.hlc));
        registers.chain(self.counters.iter().map(|c| (c.device, c.hlc)))
    }

    /// Where the register of field `name` is (`Ok`) or would go (`Err`).
    pub(crate) fn register_position(&self, name: NameId) -> Result<usize, usize> {
        let registers = &self.registers;
        // Names are interned in the order they are first written, so in documents of one
        // shape the register of name `n` is often the `n`th; a name past the last register
        // (such as `_deleted` in documents never deleted) goes at the end.
        if registers.get(name as usize).is_some_and(|r| r.name == name) {
            return Ok(name as usize);
        }
        match registers.last() {
            None => return Err(0),
            Some(last) if last.name < name => return Err(registers.len()),
            Some(_) => {}
        }
        if registers.len() <= SCANNED_REGISTERS {
            match registers.iter().position(|r| r.name >= name) {
                Some(i) if registers[i].name == name => Ok(i),
                Some(i) => Err(i),
                None => Err(registers.len()),
            }
        } else {
            registers.binary_search_by_key(&name, |r| r.name)
        }
    }

    pub(crate) fn register(&self, name: NameId) -> Option<&Register> {
        self.register_position(name)
            .ok()
            .map(|i| &self.registers[i])
    }

    pub(crate) fn cell(&self, name: NameId, device: DeviceIdx) -> Option<&CounterCell> {
        self.counters
            .binary_search_by_key(&(name, device), |c| (c.name, c.device))
            .ok()
            .map(|i| &self.counters[i])
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.registers.is_empty() && self.counters.is_empty()
    }

    /// Appends `register`, whose name sorts after every register held (as a decoder reads
    /// them), and counts its size.
    pub(crate) fn push_register(&mut self, register: Register) {
        debug_assert!(self.registers.last().is_none_or(|r| r.name < register.name));
        self.bytes += register_bytes(&register.value);
        self.registers.push(register);
    }

    /// Puts `register` in place of the register with the same name, if `wins` says so
    /// (always when there is none). Returns whether the document changed.
    pub(crate) fn offer_register(
        &mut self,
        register: Register,
        wins: impl FnOnce(&Register, &Register) -> bool,
    ) -> bool {
        match self.register_position(register.name) {
            Ok(i) => {
                let current = &mut self.registers[i];
                if !wins(&register, current) {
                    return false;
                }
                self.bytes =
                    self.bytes - register_bytes(&current.value) + register_bytes(&register.value);
                *current = register;
            }
            Err(i) => {
                self.bytes += register_bytes(&register.value);
                self.registers.insert(i, register);
            }
        }
        true
    }

    /// Puts `register` in place of the register with the same name, whatever it holds, and
    /// returns the register it replaced.
    pub(crate) fn replace_register(&mut self, register: Register) -> Option<Register> {
        self.bytes += register_bytes(&register.value);
        match self.register_position(register.name) {
            Ok(i) => {
                let old = std::mem::replace(&mut self.registers[i], register);
                self.bytes -= register_bytes(&old.value);
                Some(old)
            }
            Err(i) => {
                self.registers.insert(i, register);
                None
            }
        }
    }

    /// [`Document::replace_register`] where the caller has found the register's position
    /// (from [`Document::register_position`]) and knows the sizes of the new register and of
    /// the one it replaces (0 if none).
    pub(crate) fn replace_register_at(
        &mut self,
        position: Result<usize, usize>,
        register: Register,
        new_size: usize,
        old_size: usize,
    ) -> Option<Register> {
        debug_assert_eq!(position, self.register_position(register.name));
        debug_assert_eq!(new_size, register_bytes(&register.value));
        self.bytes = self.bytes - old_size + new_size;
        match position {
            Ok(i) => {
                let old = std::mem::replace(&mut self.registers[i], register);
                debug_assert_eq!(old_size, register_bytes(&old.value));
                Some(old)
            }
            Err(i) => {
                debug_assert_eq!(old_size, 0);
                self.registers.insert(i, register);
                None
            }
        }
    }

    /// Removes the register of field `name`, returning it.
    pub(crate) fn remove_register(&mut self, name: NameId) -> Option<Register> {
        let i = self.register_position(name).ok()?;
        let old = self.registers.remove(i);
        self.bytes -= register_bytes(&old.value);
        Some(old)
    }

    /// Puts `cell` in place of the same device's cell for the same field, whatever it holds,
    /// and returns the cell it replaced.
    pub(crate) fn replace_cell(&mut self, cell: CounterCell) -> Option<CounterCell> {
        match self
            .counters
            .binary_search_by_key(&(cell.name, cell.device), |c| (c.name, c.device))
        {
            Ok(i) => Some(std::mem::replace(&mut self.counters[i], cell)),
            Err(i) => {
                self.counters.insert(i, cell);
                None
            }
        }
    }

    /// Removes one device's cell of field `name`, returning it.
    pub(crate) fn remove_cell(&mut self, name: NameId, device: DeviceIdx) -> Option<CounterCell> {
        let i = self
            .counters
            .binary_search_by_key(&(name, device), |c| (c.name, c.device))
            .ok()?;
        Some(self.counters.remove(i))
    }

    /// Puts `cell` in place of the same device's cell for the same field, if `wins` says so.
    pub(crate) fn offer_cell(
        &mut self,
        cell: CounterCell,
        wins: impl FnOnce(&CounterCell, &CounterCell) -> bool,
    ) -> bool {
        match self
            .counters
            .binary_search_by_key(&(cell.name, cell.device), |c| (c.name, c.device))
        {
            Ok(i) => {
                if !wins(&cell, &self.counters[i]) {
                    return false;
                }
                self.counters[i] = cell;
            }
            Err(i) => self.counters.insert(i, cell),
        }
        true
    }
}

/// The documents of one collection, by id.
#[derive(Clone, Debug, Default)]
pub(crate) struct Collection {
    pub(crate) docs: BTreeMap<DocId, Document>,
}

impl Collection {
    /// The document `id` and its key. Short ids are looked up by a [`DocId`] built on the stack
    /// (integer comparisons); longer ones by their text, as a `DocId` of them would allocate.
    pub(crate) fn get_key_value(&self, id: &str) -> Option<(&DocId, &Document)> {
        match DocId::inline(id) {
            Some(key) => self.docs.get_key_value(&key),
            None => self.docs.get_key_value(id),
        }
    }

    /// The document `id`, looked up as [`Collection::get_key_value`] does.
    pub(crate) fn get(&self, id: &str) -> Option<&Document> {
        self.get_key_value(id).map(|(_, doc)| doc)
    }

    /// The document `id`, looked up as [`Collection::get_key_value`] does.
    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut Document> {
        match DocId::inline(id) {
            Some(key) => self.docs.get_mut(&key),
            None => self.docs.get_mut(id),
        }
    }

    /// The document `id`, created empty if missing (the id is copied only then).
    pub(crate) fn document_mut(&mut self, id: &DocId) -> &mut Document {
        if !self.docs.contains_key(id) {
            self.docs.insert(id.clone(), Document::default());
        }
        self.docs.get_mut(id).expect("inserted above")
    }
}

/// A replicated value: collections → documents → fields.
///
/// Merging is a join: [`State::merge`] is commutative, associative and idempotent. A field holds
/// a last-writer-wins register and may hold counter cells, one per incrementing device, that
/// count from the register they follow; writing a number to a counter field resets it the same
/// way on every replica. Everything that travels (a transaction's changes, a pack's body, a
/// snapshot) is a `State`; [`State::encode`] gives its canonical bytes.
#[derive(Clone, Default)]
pub struct State {
    pub(crate) devices: Interner<DeviceId>,
    pub(crate) names: Interner<Box<str>>,
    pub(crate) collections: BTreeMap<Box<str>, Collection>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("collections", &self.collections.len())
            .field("documents", &self.document_count())
            .field("registers", &self.register_count())
            .finish_non_exhaustive()
    }
}

/// Where another state's device and name indices land in this one, by their index there.
struct Remap {
    devices: Vec<DeviceIdx>,
    names: Vec<NameId>,
}

/// Two states are equal when they hold the same value: their canonical encodings match.
impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        crate::codec::encode_state(self) == crate::codec::encode_state(other)
    }
}

impl Eq for State {}

impl State {
    /// An empty state.
    pub fn new() -> State {
        State::default()
    }

    /// Whether the state holds no entries at all.
    pub fn is_empty(&self) -> bool {
        self.collections.values().all(|c| c.docs.is_empty())
    }

    /// Number of documents, deleted ones included.
    pub fn document_count(&self) -> usize {
        self.collections.values().map(|c| c.docs.len()).sum()
    }

    /// Number of registers (fields written at least once), over all documents.
    pub fn register_count(&self) -> usize {
        self.documents().map(|(_, _, d)| d.registers.len()).sum()
    }

    /// Names of the collections present.
    pub fn collection_names(&self) -> impl Iterator<Item = &str> {
        self.collections.keys().map(|k| &**k)
    }

    /// The (collection, id) of every document with an entry here: for a transaction's
    /// changes, the documents it touched.
    pub fn document_ids(&self) -> impl Iterator<Item = (&str, &str)> {
        self.documents().map(|(collection, id, _)| (collection, id))
    }

    pub(crate) fn documents(&self) -> impl Iterator<Item = (&str, &str, &Document)> {
        self.collections
            .iter()
            .flat_map(|(c, coll)| coll.docs.iter().map(move |(id, doc)| (&**c, &**id, doc)))
    }

    pub(crate) fn document(&self, collection: &str, id: &str) -> Option<&Document> {
        self.collections.get(collection)?.get(id)
    }

    pub(crate) fn device(&self, idx: DeviceIdx) -> DeviceId {
        *self.devices.get(idx)
    }

    pub(crate) fn stamp(&self, local: LocalStamp) -> Stamp {
        Stamp::new(local.hlc, self.device(local.device))
    }

    /// The collection `name`, created empty if missing.
    pub(crate) fn collection_mut(&mut self, name: &str) -> &mut Collection {
        if !self.collections.contains_key(name) {
            self.collections.insert(name.into(), Collection::default());
        }
        self.collections.get_mut(name).expect("inserted above")
    }

    /// Orders two stamps of this state: by clock, then by device id bytes.
    pub(crate) fn cmp_stamps(
        devices: &Interner<DeviceId>,
        a: LocalStamp,
        b: LocalStamp,
    ) -> Ordering {
        a.hlc.cmp(&b.hlc).then_with(|| {
            if a.device == b.device {
                Ordering::Equal
            } else {
                devices.get(a.device).cmp(devices.get(b.device))
            }
        })
    }

    fn cmp_epochs(
        devices: &Interner<DeviceId>,
        a: Option<LocalStamp>,
        b: Option<LocalStamp>,
    ) -> Ordering {
        match (a, b) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(a), Some(b)) => State::cmp_stamps(devices, a, b),
        }
    }

    /// Whether `challenger` beats `current` as the register of a field.
    pub(crate) fn register_wins(
        devices: &Interner<DeviceId>,
        challenger: &Register,
        current: &Register,
    ) -> bool {
        match State::cmp_stamps(devices, challenger.stamp(), current.stamp()) {
            Ordering::Greater => true,
            Ordering::Less => false,
            // One stamp, two values: only a faulty or malicious device does that. Any fixed
            // rule converges; the canonical value order is one.
            Ordering::Equal => {
                canonical_cmp(&challenger.value, &current.value) == Ordering::Greater
            }
        }
    }

    /// Whether `challenger` beats `current` as one device's cell of a counter field.
    pub(crate) fn cell_wins(
        devices: &Interner<DeviceId>,
        challenger: &CounterCell,
        current: &CounterCell,
    ) -> bool {
        State::cmp_epochs(devices, challenger.epoch, current.epoch)
            .then(challenger.hlc.cmp(&current.hlc))
            .then(challenger.total.cmp(&current.total))
            == Ordering::Greater
    }

    /// Joins `other` into this state. Returns the number of documents that changed.
    pub fn merge(&mut self, other: &State) -> usize {
        let mut changed = 0;
        self.merge_filtered(other, |_, _| true, |_, _| changed += 1);
        changed
    }

    /// Joins the documents of `other` that `admit` accepts, calling `on_change` for each
    /// document that changed.
    pub(crate) fn merge_filtered(
        &mut self,
        other: &State,
        mut admit: impl FnMut(&str, &str) -> bool,
        mut on_change: impl FnMut(&str, &str),
    ) {
        let remap = self.remap(
            other.devices.items().iter().copied(),
            other.names.items().iter().map(|n| &**n),
        );
        for (collection_name, theirs) in &other.collections {
            if theirs.docs.is_empty() {
                continue;
            }
            let documents = theirs.docs.iter().map(|(id, doc)| {
                (
                    id,
                    doc.registers.iter().cloned(),
                    doc.counters.iter().cloned(),
                )
            });
            self.join_collection(
                collection_name,
                documents,
                &remap,
                &mut admit,
                &mut on_change,
            );
        }
    }

    /// [`State::merge_filtered`] from an encoding's parts, moving their values in: nothing of
    /// `other` is built into maps first.
    pub(crate) fn merge_decoded(
        &mut self,
        other: Decoded<'_>,
        mut admit: impl FnMut(&str, &str) -> bool,
        mut on_change: impl FnMut(&str, &str),
    ) {
        let remap = self.remap(
            other.devices.iter().map(|d| DeviceId::from_bytes(*d)),
            other.names.iter().copied(),
        );
        let mut documents = other.documents.into_iter();
        for (collection_name, count) in other.collections {
            let documents = documents.by_ref().take(count).map(|(id, doc)| {
                let Document {
                    registers,
                    counters,
                    ..
                } = doc;
                (id, registers.into_iter(), counters.into_iter())
            });
            self.join_collection(
                collection_name,
                documents,
                &remap,
                &mut admit,
                &mut on_change,
            );
        }
    }

    /// Interns another state's tables (in their index order) and says where each entry landed.
    fn remap<'n>(
        &mut self,
        devices: impl Iterator<Item = DeviceId>,
        names: impl Iterator<Item = &'n str>,
    ) -> Remap {
        Remap {
            devices: devices.map(|d| self.devices.intern(&d)).collect(),
            names: names.map(|n| self.names.intern_str(n)).collect(),
        }
    }

    /// Joins one collection's documents, given as `(id, registers, cells)` with device and name
    /// indices of the state they come from (`remap` turns them into ours).
    fn join_collection<I: Borrow<DocId>>(
        &mut self,
        collection_name: &str,
        documents: impl Iterator<
            Item = (
                I,
                impl Iterator<Item = Register>,
                impl Iterator<Item = CounterCell>,
            ),
        >,
        remap: &Remap,
        admit: &mut impl FnMut(&str, &str) -> bool,
        on_change: &mut impl FnMut(&str, &str),
    ) {
        self.collection_mut(collection_name);
        let State {
            devices,
            collections,
            ..
        } = self;
        let ours = collections.get_mut(collection_name).expect("created above");
        for (id, registers, cells) in documents {
            let id = id.borrow();
            if !admit(collection_name, id) {
                continue;
            }
            let doc = ours.document_mut(id);
            let mut doc_changed = false;
            for mut register in registers {
                register.device = remap.devices[register.device as usize];
                register.name = remap.names[register.name as usize];
                doc_changed |= doc
                    .offer_register(register, |new, old| State::register_wins(devices, new, old));
            }
            for mut cell in cells {
                cell.device = remap.devices[cell.device as usize];
                cell.name = remap.names[cell.name as usize];
                if let Some(epoch) = &mut cell.epoch {
                    epoch.device = remap.devices[epoch.device as usize];
                }
                doc_changed |= doc.offer_cell(cell, |new, old| State::cell_wins(devices, new, old));
            }
            if doc_changed {
                on_change(collection_name, id);
            }
        }
        if ours.docs.is_empty() {
            collections.remove(collection_name);
        }
    }

    /// A new state with the entries of this one that `keep_register` and `keep_cell` accept.
    pub(crate) fn filtered(
        &self,
        keep_register: impl Fn(&Register) -> bool,
        keep_cell: impl Fn(&CounterCell) -> bool,
    ) -> State {
        let mut out = State {
            devices: self.devices.clone(),
            names: self.names.clone(),
            collections: BTreeMap::new(),
        };
        for (collection_name, coll) in &self.collections {
            let mut docs = BTreeMap::new();
            for (id, doc) in &coll.docs {
                let mut kept = Document::default();
                for r in doc.registers.iter().filter(|r| keep_register(r)) {
                    kept.bytes += register_bytes(&r.value);
                    kept.registers.push(r.clone());
                }
                for c in doc.counters.iter().filter(|c| keep_cell(c)) {
                    kept.counters.push(c.clone());
                }
                if !kept.is_empty() {
                    docs.insert(id.clone(), kept);
                }
            }
            if !docs.is_empty() {
                out.collections
                    .insert(collection_name.clone(), Collection { docs });
            }
        }
        out
    }

    /// The entries written by `device` that still win in this state.
    pub fn authored_by(&self, device: &DeviceId) -> State {
        match self.devices.find(device) {
            Some(idx) => self.filtered(|r| r.device == idx, |c| c.device == idx),
            None => State::new(),
        }
    }

    /// The part of this state in one collection.
    pub fn collection(&self, name: &str) -> State {
        let mut out = State {
            devices: self.devices.clone(),
            names: self.names.clone(),
            collections: BTreeMap::new(),
        };
        if let Some(coll) = self.collections.get(name) {
            out.collections.insert(name.into(), coll.clone());
        }
        out
    }

    /// The greatest clock per device among the entries this state holds: a summary of what it
    /// has absorbed. Entries that were overwritten no longer count, so the vector can be lower
    /// than everything ever merged; a peer then sends a little more than needed, never less.
    pub fn version_vector(&self) -> VersionVector {
        let mut vv = VersionVector::default();
        for (device, hlc) in self.greatest_clocks() {
            vv.observe(Stamp::new(hlc, *device));
        }
        vv
    }

    /// Each device's greatest clock here, for devices with entries: the version vector's
    /// entries, without building its map.
    pub(crate) fn greatest_clocks(&self) -> impl Iterator<Item = (&DeviceId, Hlc)> {
        let mut greatest = vec![Hlc::ZERO; self.devices.items().len()];
        for (_, _, doc) in self.documents() {
            let registers = doc.registers.iter().map(|r| (r.device, r.hlc));
            let cells = doc.counters.iter().map(|c| (c.device, c.hlc));
            for (device, hlc) in registers.chain(cells) {
                let slot = &mut greatest[device as usize];
                *slot = (*slot).max(hlc);
            }
        }
        self.devices
            .items()
            .iter()
            .zip(greatest)
            .filter(|&(_, hlc)| hlc > Hlc::ZERO)
    }

    /// The entries newer than `vv`: those whose clock is greater than `vv`'s entry for their
    /// device. Merging the result into a state that has absorbed `vv` (each device's writes in
    /// stamp order, as packs and transactions deliver them) brings it up to date with this one.
    ///
    /// One exception: a write that overwrote a value stamped beyond the clock's drift bound
    /// carries a one-off stamp ahead of its device's other writes (see [`HybridClock`]). A vector
    /// that includes it covers that device's later, normally stamped writes too early; exchange
    /// whole packs (which do not rely on version vectors) with such a device.
    ///
    /// [`HybridClock`]: crate::HybridClock
    pub fn changes_since(&self, vv: &VersionVector) -> State {
        let floors: Vec<Hlc> = self.devices.items().iter().map(|d| vv.get(d)).collect();
        self.filtered(
            |r| r.hlc > floors[r.device as usize],
            |c| c.hlc > floors[c.device as usize],
        )
    }

    /// The current value of field `name` of `doc`, counters applied; `None` if never written.
    pub(crate) fn field_value<'a>(
        &self,
        doc: &'a Document,
        name: NameId,
    ) -> Option<Cow<'a, Value>> {
        let register = doc.register(name);
        if doc.counters.is_empty() {
            return register.map(|r| Cow::Borrowed(&r.value));
        }
        let epoch = register.map(Register::stamp);
        let mut counted = false;
        let mut sum: i128 = 0;
        let start = doc.counters.partition_point(|c| c.name < name);
        for cell in doc.counters[start..].iter().take_while(|c| c.name == name) {
            if cell.epoch == epoch {
                counted = true;
                sum += i128::from(cell.total);
            }
        }
        if !counted {
            return register.map(|r| Cow::Borrowed(&r.value));
        }
        Some(Cow::Owned(counter_value(register.map(|r| &r.value), sum)))
    }

    /// Whether `doc` is soft-deleted: its `_deleted` register holds `true`.
    pub(crate) fn is_deleted(&self, doc: &Document) -> bool {
        self.names
            .find_str(DELETED_FIELD)
            .and_then(|name| doc.register(name))
            .is_some_and(|r| r.value == Value::Bool(true))
    }

    /// The greatest stamp among a document's entries: its last change.
    pub(crate) fn last_change(&self, doc: &Document) -> Option<Stamp> {
        let registers = doc.registers.iter().map(Register::stamp);
        let cells = doc.counters.iter().map(|c| LocalStamp {
            hlc: c.hlc,
            device: c.device,
        });
        registers
            .chain(cells)
            .max_by(|a, b| State::cmp_stamps(&self.devices, *a, *b))
            .map(|s| self.stamp(s))
    }

    /// A document as a JSON object: every field with a non-null value, reserved fields left out.
    pub(crate) fn document_json(&self, doc: &Document) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        let names = doc
            .registers
            .iter()
            .map(|r| r.name)
            .chain(doc.counters.iter().map(|c| c.name));
        for name in names {
            let key = self.names.get(name);
            if key.starts_with('_') || object.contains_key(&**key) {
                continue;
            }
            if let Some(value) = self.field_value(doc, name)
                && !value.is_null()
            {
                object.insert(key.to_string(), value.to_json());
            }
        }
        serde_json::Value::Object(object)
    }
}

/// A counter field's value: its register's number (0 if none or not a number) plus the counted
/// cells' totals.
pub(crate) fn counter_value(base: Option<&Value>, counted_total: i128) -> Value {
    match base {
        Some(Value::Float(base)) => Value::Float(base + counted_total as f64),
        Some(Value::Int(base)) => Value::Int(clamp_i64(i128::from(*base) + counted_total)),
        _ => Value::Int(clamp_i64(counted_total)),
    }
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// A strict total order on values that tells every pair of distinct values apart (unlike
/// [`Value::total_cmp`], where `1` equals `1.0`): the codec's type order, then contents.
pub(crate) fn canonical_cmp(a: &Value, b: &Value) -> Ordering {
    fn tag(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) => 2,
            Value::Float(_) => 3,
            Value::Str(_) => 4,
            Value::Bytes(_) => 5,
            Value::Array(_) => 6,
            Value::Object(_) => 7,
        }
    }
    tag(a).cmp(&tag(b)).then_with(|| match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Float(x), Value::Float(y)) => x.to_bits().cmp(&y.to_bits()),
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .zip(y.iter())
            .map(|(p, q)| canonical_cmp(p, q))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        (Value::Object(x), Value::Object(y)) => x
            .iter()
            .zip(y.iter())
            .map(|((kp, p), (kq, q))| kp.cmp(kq).then_with(|| canonical_cmp(p, q)))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        _ => Ordering::Equal,
    })
}

/// The greatest clock seen from each device.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VersionVector(BTreeMap<DeviceId, Hlc>);

impl VersionVector {
    /// An empty vector: has seen nothing.
    pub fn new() -> VersionVector {
        VersionVector::default()
    }

    /// The greatest clock seen from `device` ([`Hlc::ZERO`] if none).
    pub fn get(&self, device: &DeviceId) -> Hlc {
        self.0.get(device).copied().unwrap_or(Hlc::ZERO)
    }

    /// Records that `stamp` has been seen.
    pub fn observe(&mut self, stamp: Stamp) {
        let entry = self.0.entry(stamp.device).or_insert(Hlc::ZERO);
        *entry = (*entry).max(stamp.hlc);
    }

    /// Whether `stamp` is covered by this vector.
    pub fn includes(&self, stamp: Stamp) -> bool {
        stamp.hlc <= self.get(&stamp.device)
    }

    /// Pointwise maximum with `other`.
    pub fn merge(&mut self, other: &VersionVector) {
        for (device, hlc) in &other.0 {
            self.observe(Stamp::new(*hlc, *device));
        }
    }

    /// The devices and clocks, ordered by device.
    pub fn iter(&self) -> impl Iterator<Item = (&DeviceId, &Hlc)> {
        self.0.iter()
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no device is present.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl serde::Serialize for Hlc {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.as_u64())
    }
}

impl<'de> serde::Deserialize<'de> for Hlc {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u64::deserialize(deserializer).map(Hlc::from_u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_positions_agree_with_a_binary_search() {
        let register = |name| Register {
            name,
            device: 0,
            hlc: Hlc::ZERO,
            value: Value::Null,
        };
        for names in [
            vec![],
            vec![0],
            vec![3],
            vec![0, 1, 2],
            vec![1, 2, 3],
            vec![0, 2, 5, 7],
            (0..40).collect(),
            (0..40).filter(|n| n % 3 != 0).collect(),
            (5..30).collect(),
        ] {
            let doc = Document {
                registers: names.iter().map(|&n| register(n)).collect(),
                ..Document::default()
            };
            for name in 0..45 {
                assert_eq!(
                    doc.register_position(name),
                    names.binary_search(&name),
                    "{name} in {names:?}"
                );
            }
        }
    }

    #[test]
    fn load_le_tells_apart_slices_of_one_length() {
        let words: Vec<&[u8]> = vec![
            b"",
            b"a",
            b"b",
            b"ab",
            b"ba",
            b"aa",
            b"abc",
            b"acb",
            b"abcd",
            b"abce",
            b"bbcd",
            b"abcde",
            b"abcdf",
            b"bbcde",
            b"abdde",
            b"abcdef",
            b"abcdefg",
            b"abcdefh",
            b"abcdefgh",
            b"\0",
            b"\0\0",
            b"\0\0\0",
        ];
        for a in &words {
            for b in &words {
                if a.len() == b.len() {
                    assert_eq!(load_le(a) == load_le(b), a == b, "{a:?} {b:?}");
                }
            }
        }
    }

    #[test]
    fn names_are_found_through_the_cache_and_around_it() {
        let mut names: Interner<Box<str>> = Interner::default();
        let all: Vec<String> = (0..500)
            .map(|i| format!("{}{i}", "n".repeat(i % 20)))
            .collect();
        for (i, name) in all.iter().enumerate() {
            assert_eq!(names.intern_str(name), i as u32);
        }
        for _ in 0..2 {
            for (i, name) in all.iter().enumerate() {
                assert_eq!(names.find_str(name), Some(i as u32));
                assert_eq!(names.clone().find_str(name), Some(i as u32));
            }
        }
        for missing in ["", "n", "nn0", "x", "nnnnnnnnnnnnnnnnnnnnnnnn"] {
            assert_eq!(names.find_str(missing), None, "{missing:?}");
        }
    }

    #[test]
    fn small_tables_scan_and_larger_ones_hash_alike() {
        let mut names: Interner<Box<str>> = Interner::default();
        let all: Vec<Box<str>> = (0..3 * SCANNED_ITEMS)
            .map(|i| format!("f{i}").into())
            .collect();
        for (i, name) in all.iter().enumerate() {
            assert_eq!(names.find(&**name), None);
            assert_eq!(names.intern(name), i as u32);
            assert_eq!(names.intern(name), i as u32, "interned once");
            for (j, earlier) in all[..=i].iter().enumerate() {
                assert_eq!(names.find(&**earlier), Some(j as u32), "{} items", i + 1);
            }
        }
    }

    #[test]
    fn in_memory_entries_stay_small() {
        // Memory per register is a tracked target (issue 7): a value is a tag and at most a
        // thin pointer, and a register adds interned name and device indices and the clock.
        // A document adds 40 bytes and its id's 32 to its registers.
        assert_eq!(size_of::<Value>(), 16);
        assert_eq!(size_of::<Register>(), 32);
        assert_eq!(size_of::<Document>(), 40);
        assert_eq!(size_of::<DocId>(), 32);
    }
}
