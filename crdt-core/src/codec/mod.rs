//! The binary encoding of a [`State`]: compact, versioned and canonical.
//!
//! Two formats share one frame: a version byte, then the sorted tables of the devices and field
//! names the state uses, then the collections.
//!
//! ```text
//! state      = version:u8 devices names body
//! devices    = count (device-id:32)*            strictly ascending bytes
//! names      = count (string)*                  strictly ascending: field names, interned
//! value      = tag:u8 payload                   0 null, 1 false, 2 true, 3 int (zigzag),
//!              4 float (8 bytes LE), 5 string, 6 bytes, 7 array (count value*),
//!              8 object (count (string value)*, keys strictly ascending)
//! cell       = name:varint device:varint epoch hlc-delta total:zigzag
//! epoch      = 0 | (device+1):varint hlc-delta  the stamp of the register the cell counts from
//! hlc-delta  = zigzag(hlc − previous hlc)       one chain through the cells (format 1: through
//!                                               the registers too)
//! ```
//!
//! - **Format 2** (`v2`, written since issue 7) lays registers out in columns: all field-name
//!   gaps, then all devices, all clock deltas, all value tags, all integers, each bit-packed
//!   against its block's least value (`columns`). A million integer registers take about
//!   three bytes each, close to what the values alone carry.
//! - **Format 1** (`v1`) is the earlier row layout. It is still read, so stores and packs
//!   written before format 2 stay readable; nothing writes it any more.
//!
//! Canonical means one state has exactly one encoding: tables hold only entries that are used,
//! everything is sorted, varints are minimal, column blocks are packed as tightly as their
//! values allow. The decoder checks all of it and refuses anything else, so `decode(bytes)`
//! succeeds only for bytes that `encode` would produce (in that version).
//!
//! Field names starting with `_` are reserved for Tidemark. Local writes cannot make new ones,
//! but the decoder accepts any: a newer version may add reserved fields, and older readers
//! merge them faithfully (so they converge) without showing them in the JSON view.
//!
//! Decoding never panics and never allocates more than the input could describe: every count
//! is checked against the bytes left before anything is reserved, and nesting is bounded by
//! [`MAX_VALUE_DEPTH`]. A column block describes at most 128 values in two bytes and every
//! register has an entry in five columns, so a format 2 state holds at most about 13 registers
//! per byte of input.

mod columns;
mod v1;
mod v2;

use std::collections::BTreeMap;

use crate::clock::Hlc;
use crate::device::{DEVICE_ID_BYTES, DeviceId};
use crate::error::DecodeError;
use crate::state::{
    Collection, CounterCell, DeviceIdx, DocId, Document, LocalStamp, NameId, State,
};
use crate::value::{
    MAX_FIELD_NAME_BYTES, MAX_VALUE_BYTES, MAX_VALUE_DEPTH, ThinVec, Value, unzigzag, zigzag,
};

/// The state encoding version this build writes and the newest it reads.
pub const STATE_FORMAT_VERSION: u8 = 2;

const TAG_NULL: u8 = 0;
const TAG_FALSE: u8 = 1;
const TAG_TRUE: u8 = 2;
const TAG_INT: u8 = 3;
const TAG_FLOAT: u8 = 4;
const TAG_STRING: u8 = 5;
const TAG_BYTES: u8 = 6;
const TAG_ARRAY: u8 = 7;
const TAG_OBJECT: u8 = 8;
/// The greatest tag this version knows.
const MAX_TAG: u8 = TAG_OBJECT;

impl State {
    /// The canonical encoding of this state: equal states give equal bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_state(self)
    }

    /// Decodes bytes made by [`State::encode`] (this version or an earlier one). Any other
    /// input gives a [`DecodeError`].
    pub fn decode(bytes: &[u8]) -> Result<State, DecodeError> {
        decode_state(bytes)
    }
}

pub(crate) fn encode_state(state: &State) -> Vec<u8> {
    v2::encode(state)
}

fn decode_state(bytes: &[u8]) -> Result<State, DecodeError> {
    Decoded::read(bytes).map(Decoded::into_state)
}

// ---------------------------------------------------------------------------------------------
// Primitive writer and reader, shared with the pack format.

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A cursor over untrusted bytes. Every read is bounds-checked.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn malformed(&self, reason: &'static str) -> DecodeError {
        DecodeError::Malformed {
            offset: self.pos,
            reason,
        }
    }

    pub(crate) fn non_canonical(&self, reason: &'static str) -> DecodeError {
        DecodeError::NonCanonical {
            offset: self.pos,
            reason,
        }
    }

    // `take`, `u8` and `varint` are forced inline, their errors built out of line: the browser
    // build optimizes for size (opt-level "z"), which left each a call of its own, and in V8
    // those calls were about a tenth of a small merge. Inlined, 1,540 one-write merges in
    // Node's V8 went from 3.4–3.5 ms to 3.0 ms (best warm pass), for 156 bytes more gzipped.
    #[inline(always)]
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        match self.bytes.get(self.pos..).and_then(|rest| rest.get(..n)) {
            Some(slice) => {
                self.pos += n;
                Ok(slice)
            }
            None => Err(self.truncated(n)),
        }
    }

    #[inline(always)]
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        match self.bytes.get(self.pos) {
            Some(&byte) => {
                self.pos += 1;
                Ok(byte)
            }
            None => Err(self.truncated(1)),
        }
    }

    #[cold]
    fn truncated(&self, n: usize) -> DecodeError {
        DecodeError::Truncated {
            offset: self.pos,
            needed: n - self.remaining(),
        }
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A minimal LEB128 varint of at most 64 bits.
    #[inline(always)]
    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        // Most varints of a state are one byte (counts, lengths, small column bases): they
        // take this short path; longer ones take the loop, which stays out of line.
        match self.bytes.get(self.pos) {
            Some(&byte) if byte < 0x80 => {
                self.pos += 1;
                Ok(u64::from(byte))
            }
            _ => self.long_varint(),
        }
    }

    fn long_varint(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            if shift == 63 && byte > 1 {
                self.pos = start;
                return Err(self.malformed("varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if byte == 0 && shift > 0 {
                    self.pos = start;
                    return Err(self.non_canonical("varint is not minimal"));
                }
                return Ok(value);
            }
        }
        self.pos = start;
        Err(self.malformed("varint longer than 10 bytes"))
    }

    /// A count of items that each take at least `min_item_bytes`, checked against the input
    /// left so that no allocation can exceed what the input describes.
    pub(crate) fn count(&mut self, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        if n > (self.remaining() / min_item_bytes.max(1)) as u64 {
            return Err(self.malformed("count exceeds the bytes left"));
        }
        Ok(n as usize)
    }

    pub(crate) fn bytes(&mut self, max_len: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.varint()?;
        if len > max_len as u64 {
            return Err(self.malformed("length exceeds the limit"));
        }
        self.take(len as usize)
    }

    pub(crate) fn str(&mut self, max_len: usize) -> Result<&'a str, DecodeError> {
        let at = self.pos;
        let bytes = self.bytes(max_len)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::Malformed {
            offset: at,
            reason: "string is not UTF-8",
        })
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes { extra }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tables, shared by both formats.

/// Maps a state's interned indices to their ranks in the sorted tables of the encoding.
struct CanonicalTables {
    device_rank: Vec<u32>,
    name_rank: Vec<u32>,
    devices: Vec<DeviceId>,
    names: Vec<Box<str>>,
}

const UNUSED: u32 = u32::MAX;

impl CanonicalTables {
    fn of(state: &State) -> CanonicalTables {
        let mut device_used = vec![false; state.devices.items().len()];
        let mut name_used = vec![false; state.names.items().len()];
        for (_, _, doc) in state.documents() {
            for r in &doc.registers {
                device_used[r.device as usize] = true;
                name_used[r.name as usize] = true;
            }
            for c in &doc.counters {
                device_used[c.device as usize] = true;
                name_used[c.name as usize] = true;
                if let Some(epoch) = c.epoch {
                    device_used[epoch.device as usize] = true;
                }
            }
        }
        let (device_rank, devices) = rank(state.devices.items(), &device_used);
        let (name_rank, names) = rank(state.names.items(), &name_used);
        CanonicalTables {
            device_rank,
            name_rank,
            devices,
            names,
        }
    }

    fn device(&self, idx: DeviceIdx) -> u32 {
        self.device_rank[idx as usize]
    }

    fn name(&self, idx: NameId) -> u32 {
        self.name_rank[idx as usize]
    }

    fn put(&self, out: &mut Vec<u8>) {
        put_varint(out, self.devices.len() as u64);
        for device in &self.devices {
            out.extend_from_slice(device.as_bytes());
        }
        put_varint(out, self.names.len() as u64);
        for name in &self.names {
            put_bytes(out, name.as_bytes());
        }
    }
}

/// Sorts the used items and returns, per interned index, its rank among them.
fn rank<T: Ord + Clone>(items: &[T], used: &[bool]) -> (Vec<u32>, Vec<T>) {
    let mut order: Vec<u32> = (0..items.len() as u32)
        .filter(|&i| used[i as usize])
        .collect();
    sort_indices(&mut order, &|a, b| {
        items[a as usize].cmp(&items[b as usize])
    });
    let mut ranks = vec![UNUSED; items.len()];
    for (rank, &idx) in order.iter().enumerate() {
        ranks[idx as usize] = rank as u32;
    }
    let sorted = order.iter().map(|&i| items[i as usize].clone()).collect();
    (ranks, sorted)
}

/// Sorts indices by `cmp`. Not generic, so that the sort is compiled once for every table
/// rather than once per item type: a sort is about 3 KB of wasm. The items of a table are
/// distinct (interned), so an unstable sort gives the one order.
fn sort_indices(order: &mut [u32], cmp: &dyn Fn(u32, u32) -> std::cmp::Ordering) {
    order.sort_unstable_by(|&a, &b| cmp(a, b));
}

/// A state as its encoding lists it, checked in full but not yet put into a [`State`]'s maps:
/// the tables, borrowed from the input, and the documents in encoding order. Device and name
/// indices in the documents are ranks in these tables.
///
/// [`State::decode`] builds a state from it; a replica merges it directly
/// ([`State::merge_decoded`]), so that a small update costs no maps and interners to build and
/// drop again.
pub(crate) struct Decoded<'a> {
    /// Device ids, strictly ascending, each used.
    pub(crate) devices: &'a [[u8; DEVICE_ID_BYTES]],
    /// Field names, strictly ascending, each used.
    pub(crate) names: Vec<&'a str>,
    /// Collection names, strictly ascending, with how many of `documents` each holds.
    pub(crate) collections: Vec<(&'a str, usize)>,
    /// Every document, collection by collection, ids ascending within each.
    pub(crate) documents: Vec<(DocId, Document)>,
}

impl<'a> Decoded<'a> {
    /// Decodes bytes made by [`State::encode`] (this version or an earlier one).
    pub(crate) fn read(bytes: &'a [u8]) -> Result<Decoded<'a>, DecodeError> {
        let mut r = Reader::new(bytes);
        match r.u8()? {
            1 => v1::decode(r),
            2 => v2::decode(r),
            0 => Err(DecodeError::Malformed {
                offset: 0,
                reason: "unknown format version",
            }),
            found => Err(DecodeError::UnsupportedVersion {
                found,
                supported: STATE_FORMAT_VERSION,
            }),
        }
    }

    /// The table rank of `device`, if this state has entries by it.
    pub(crate) fn device_rank(&self, device: &DeviceId) -> Option<DeviceIdx> {
        self.devices
            .binary_search(device.as_bytes())
            .ok()
            .map(|rank| rank as DeviceIdx)
    }

    /// The state these parts describe. Interned indices equal the table ranks: the tables are
    /// sorted and free of duplicates, and a fresh state interns them in order.
    fn into_state(self) -> State {
        let mut state = State::new();
        for device in self.devices {
            state.devices.intern(&DeviceId::from_bytes(*device));
        }
        for name in &self.names {
            state.names.intern_str(name);
        }
        let mut documents = self.documents.into_iter();
        for (name, count) in self.collections {
            // Ids are ascending, so the map is built in one pass.
            let docs: BTreeMap<DocId, Document> = documents.by_ref().take(count).collect();
            state
                .collections
                .insert(Box::from(name), Collection { docs });
        }
        state
    }
}

/// The tables as read, and which entries the body has used so far (all must be, or the
/// tables are not canonical).
struct Tables<'a> {
    devices: &'a [[u8; DEVICE_ID_BYTES]],
    names: Vec<&'a str>,
    /// One flag per device, then one per name: a single allocation.
    used: Vec<bool>,
}

impl<'a> Tables<'a> {
    /// Reads both tables.
    fn read(r: &mut Reader<'a>) -> Result<Tables<'a>, DecodeError> {
        let device_count = r.count(DEVICE_ID_BYTES)?;
        let (devices, _) = r.take(device_count * DEVICE_ID_BYTES)?.as_chunks();
        if devices.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(r.non_canonical("device table out of order"));
        }

        let name_count = r.count(2)?;
        let mut names: Vec<&str> = Vec::with_capacity(name_count);
        for _ in 0..name_count {
            let name = r.str(MAX_FIELD_NAME_BYTES)?;
            if name.is_empty() {
                return Err(r.malformed("empty field name"));
            }
            if names.last().is_some_and(|&p| p >= name) {
                return Err(r.non_canonical("field names out of order"));
            }
            names.push(name);
        }
        Ok(Tables {
            devices,
            names,
            used: vec![false; device_count + name_count],
        })
    }

    fn name_count(&self) -> usize {
        self.names.len()
    }

    fn device(&mut self, r: &Reader<'_>, idx: u64) -> Result<DeviceIdx, DecodeError> {
        match self.used[..self.devices.len()].get_mut(idx as usize) {
            Some(used) if idx <= u64::from(u32::MAX) => {
                *used = true;
                Ok(idx as DeviceIdx)
            }
            _ => Err(r.malformed("device index out of range")),
        }
    }

    fn name(&mut self, r: &Reader<'_>, idx: u64) -> Result<NameId, DecodeError> {
        match self.used[self.devices.len()..].get_mut(idx as usize) {
            Some(used) if idx <= u64::from(u32::MAX) => {
                *used = true;
                Ok(idx as NameId)
            }
            _ => Err(r.malformed("field name index out of range")),
        }
    }

    /// Once the body is read, every table entry must have been used.
    fn finish(
        self,
        end: usize,
        collections: Vec<(&'a str, usize)>,
        documents: Vec<(DocId, Document)>,
    ) -> Result<Decoded<'a>, DecodeError> {
        if self.used.contains(&false) {
            return Err(DecodeError::NonCanonical {
                offset: end,
                reason: "table holds an unused entry",
            });
        }
        Ok(Decoded {
            devices: self.devices,
            names: self.names,
            collections,
            documents,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Counter cells, row by row in both formats (they are rare).

/// A chain of zigzag clock deltas: each clock is written as its difference from the last one.
#[derive(Default)]
struct HlcChain {
    previous: u64,
}

impl HlcChain {
    fn put(&mut self, out: &mut Vec<u8>, hlc: Hlc) {
        let delta = hlc.as_u64().wrapping_sub(self.previous) as i64;
        put_varint(out, zigzag(delta));
        self.previous = hlc.as_u64();
    }

    fn read(&mut self, r: &mut Reader<'_>) -> Result<Hlc, DecodeError> {
        let delta = unzigzag(r.varint()?);
        self.previous = self.previous.wrapping_add(delta as u64);
        Ok(Hlc::from_u64(self.previous))
    }
}

/// The fewest bytes a cell takes: name, device, epoch, clock and total.
const MIN_CELL_BYTES: usize = 5;

/// Writes a document's cells, sorted by (name rank, device rank).
fn put_cells(
    out: &mut Vec<u8>,
    cells: &[CounterCell],
    tables: &CanonicalTables,
    chain: &mut HlcChain,
) {
    let mut sorted: Vec<(u32, u32, &CounterCell)> = cells
        .iter()
        .map(|c| (tables.name(c.name), tables.device(c.device), c))
        .collect();
    sorted.sort_unstable_by_key(|&(name, device, _)| (name, device));
    for (name, device, cell) in sorted {
        put_varint(out, u64::from(name));
        put_varint(out, u64::from(device));
        match cell.epoch {
            None => put_varint(out, 0),
            Some(epoch) => {
                put_varint(out, u64::from(tables.device(epoch.device)) + 1);
                chain.put(out, epoch.hlc);
            }
        }
        chain.put(out, cell.hlc);
        put_varint(out, zigzag(cell.total));
    }
}

/// Reads `count` cells of one document, refusing them out of order.
fn read_cells(
    r: &mut Reader<'_>,
    count: usize,
    tables: &mut Tables<'_>,
    chain: &mut HlcChain,
) -> Result<ThinVec<CounterCell>, DecodeError> {
    if count > r.remaining() / MIN_CELL_BYTES {
        return Err(r.malformed("count exceeds the bytes left"));
    }
    let mut cells = ThinVec::with_capacity(count);
    let mut previous_key: Option<(u32, u32)> = None;
    for _ in 0..count {
        let name_idx = r.varint()?;
        let name = tables.name(r, name_idx)?;
        let device_idx = r.varint()?;
        let device = tables.device(r, device_idx)?;
        if previous_key.is_some_and(|p| p >= (name, device)) {
            return Err(r.non_canonical("counter cells out of order"));
        }
        previous_key = Some((name, device));
        let epoch = match r.varint()? {
            0 => None,
            d => {
                let device = tables.device(r, d - 1)?;
                Some(LocalStamp {
                    device,
                    hlc: chain.read(r)?,
                })
            }
        };
        let hlc = chain.read(r)?;
        let total = unzigzag(r.varint()?);
        cells.push(CounterCell {
            name,
            device,
            hlc,
            epoch,
            total,
        });
    }
    Ok(cells)
}

// ---------------------------------------------------------------------------------------------
// Values, shared with replica size accounting.

/// The collections an encoding lists, in name order: those with documents (an empty one
/// carries nothing, and the canonical form leaves it out).
fn listed_collections(state: &State) -> Vec<(&str, &Collection)> {
    state
        .collections
        .iter()
        .filter(|(_, c)| !c.docs.is_empty())
        .map(|(name, c)| (&**name, c))
        .collect()
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The tag a value is written with.
fn value_tag(value: &Value) -> u8 {
    match value {
        Value::Null => TAG_NULL,
        Value::Bool(false) => TAG_FALSE,
        Value::Bool(true) => TAG_TRUE,
        Value::Int(_) => TAG_INT,
        Value::Float(_) => TAG_FLOAT,
        Value::Str(_) => TAG_STRING,
        Value::Bytes(_) => TAG_BYTES,
        Value::Array(_) => TAG_ARRAY,
        Value::Object(_) => TAG_OBJECT,
    }
}

pub(crate) fn encode_value(out: &mut Vec<u8>, value: &Value) {
    out.push(value_tag(value));
    encode_payload(out, value);
}

/// What follows a value's tag.
fn encode_payload(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null | Value::Bool(_) => {}
        Value::Int(i) => put_varint(out, zigzag(*i)),
        Value::Float(f) => out.extend_from_slice(&f.to_le_bytes()),
        Value::Str(s) => put_bytes(out, s.as_bytes()),
        Value::Bytes(b) => put_bytes(out, b),
        Value::Array(items) => {
            put_varint(out, items.len() as u64);
            for item in items.iter() {
                encode_value(out, item);
            }
        }
        Value::Object(map) => {
            put_varint(out, map.len() as u64);
            for (key, item) in map.iter() {
                put_bytes(out, key.as_bytes());
                encode_value(out, item);
            }
        }
    }
}

pub(crate) fn decode_value(r: &mut Reader<'_>, depth: usize) -> Result<Value, DecodeError> {
    let tag = r.u8()?;
    decode_payload(r, tag, depth)
}

/// The value with tag `tag`, reading its payload from `r`.
fn decode_payload(r: &mut Reader<'_>, tag: u8, depth: usize) -> Result<Value, DecodeError> {
    if depth > MAX_VALUE_DEPTH {
        return Err(r.malformed("value nests too deeply"));
    }
    Ok(match tag {
        TAG_NULL => Value::Null,
        TAG_FALSE => Value::Bool(false),
        TAG_TRUE => Value::Bool(true),
        TAG_INT => Value::Int(unzigzag(r.varint()?)),
        TAG_FLOAT => {
            let f = f64::from_le_bytes(r.array()?);
            if !f.is_finite() {
                return Err(r.malformed("float is not finite"));
            }
            Value::Float(f)
        }
        TAG_STRING => Value::Str(r.str(MAX_VALUE_BYTES)?.into()),
        TAG_BYTES => Value::Bytes(r.bytes(MAX_VALUE_BYTES)?.into()),
        TAG_ARRAY => {
            let n = r.count(1)?;
            let mut items = ThinVec::with_capacity(n);
            for _ in 0..n {
                items.push(decode_value(r, depth + 1)?);
            }
            Value::Array(items)
        }
        TAG_OBJECT => {
            let n = r.count(2)?;
            let mut map = BTreeMap::new();
            let mut previous: Option<&str> = None;
            for _ in 0..n {
                let key = r.str(MAX_FIELD_NAME_BYTES)?;
                if previous.is_some_and(|p| p >= key) {
                    return Err(r.non_canonical("object keys out of order"));
                }
                previous = Some(key);
                map.insert(key.to_string(), decode_value(r, depth + 1)?);
            }
            Value::Object(Box::new(map))
        }
        _ => return Err(r.malformed("unknown value tag")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceKey, Replica};

    const WALL: u64 = 1_750_000_000_000;

    #[test]
    fn varints_round_trip_and_refuse_what_put_varint_never_writes() {
        let edges = [0, 0x7f, 0x80, 0x3fff, 0x4000, u64::from(u32::MAX), u64::MAX];
        for v in edges {
            let mut bytes = Vec::new();
            put_varint(&mut bytes, v);
            bytes.push(0x55);
            let mut r = Reader::new(&bytes);
            assert_eq!(r.varint(), Ok(v));
            assert_eq!(r.remaining(), 1, "{v} read exactly its own bytes");
        }
        let refused = |bytes: &[u8]| Reader::new(bytes).varint().unwrap_err().code();
        assert_eq!(refused(&[]), "decode.truncated");
        assert_eq!(refused(&[0x80]), "decode.truncated");
        assert_eq!(refused(&[0x81, 0x00]), "decode.non_canonical");
        let mut too_wide = vec![0xff; 9];
        too_wide.push(0x02);
        assert_eq!(refused(&too_wide), "decode.malformed");
    }

    /// Two devices' writes of every value kind, counters, a delete, in two collections.
    fn every_kind() -> State {
        let mut a = Replica::new(DeviceKey::from_seed([1; 32]).device_id());
        let mut b = Replica::new(DeviceKey::from_seed([2; 32]).device_id());
        a.write(WALL, |w| {
            w.set("menu", "soup", "price", Value::Int(-450))?;
            w.set("menu", "soup", "name", Value::Str("Soup".into()))?;
            w.set("menu", "soup", "weight", Value::Float(0.5))?;
            w.set("menu", "soup", "vegan", Value::Bool(true))?;
            w.set("menu", "soup", "photo", Value::Bytes(vec![0, 1, 2].into()))?;
            w.set(
                "menu",
                "soup2",
                "tags",
                Value::Array(vec![Value::Int(1), Value::Null].into()),
            )?;
            w.increment("menu", "soup", "stock", 5)
        })
        .unwrap();
        b.write(WALL + 7, |w| {
            w.increment("menu", "soup", "stock", -2)?;
            w.set("orders", "o1", "note", Value::Null)?;
            w.delete("orders", "o2")
        })
        .unwrap();
        a.merge(&b.own_state(), WALL + 8);
        a.state().clone()
    }

    #[test]
    fn format_1_is_still_read() {
        let state = every_kind();
        let old = v1::encode(&state);
        assert_eq!(old[0], 1);
        let read = State::decode(&old).unwrap();
        assert_eq!(read, state);
        assert_eq!(read.encode(), state.encode());
        assert_eq!(state.encode()[0], STATE_FORMAT_VERSION);
    }

    #[test]
    fn format_2_round_trips_every_kind() {
        let state = every_kind();
        let bytes = state.encode();
        let read = State::decode(&bytes).unwrap();
        assert_eq!(read, state);
        assert_eq!(read.encode(), bytes);
    }

    #[test]
    fn integer_registers_take_about_the_bytes_of_their_values() {
        // 1,000 documents × 10 fields of integers below 2^20, ten fields per transaction as an
        // app writes a record: the values carry 2.5 bytes of information per register.
        let mut replica = Replica::new(DeviceKey::from_seed([3; 32]).device_id());
        let mut value: i64 = 12345;
        for d in 0..1000 {
            replica
                .write(WALL + d, |w| {
                    for f in 0..10 {
                        value = (value * 1_103_515_245 + 12345) % (1 << 20);
                        w.set(
                            "docs",
                            &format!("d{d}"),
                            &format!("f{f}"),
                            Value::Int(value),
                        )?;
                    }
                    Ok(())
                })
                .unwrap();
        }
        let bytes = replica.state().encode();
        let per_register = bytes.len() as f64 / 10_000.0;
        assert!(per_register < 3.0, "{per_register:.2} bytes per register");
        // Format 1 took more than twice as much.
        assert!(v1::encode(replica.state()).len() > 2 * bytes.len());
    }

    /// A replica with writes of its own that a merged state both overwrites and leaves.
    fn busy_replica() -> Replica {
        let mut replica = Replica::new(DeviceKey::from_seed([4; 32]).device_id());
        replica
            .write(WALL + 3, |w| {
                w.set("menu", "soup", "price", Value::Int(1))?;
                w.set("menu", "bread", "price", Value::Int(2))?;
                w.increment("menu", "soup", "stock", 1)
            })
            .unwrap();
        replica
    }

    #[test]
    fn merging_an_encoding_is_merging_its_state() {
        let state = every_kind();
        for bytes in [state.encode(), v1::encode(&state)] {
            let mut from_state = busy_replica();
            let listed = from_state.merge(&state, WALL + 9);
            let mut from_bytes = busy_replica();
            let count = from_bytes.merge_encoded(&bytes, WALL + 9).unwrap();
            assert_eq!(count, listed.len(), "format {}", bytes[0]);
            assert_eq!(from_bytes.state(), from_state.state());
            assert_eq!(from_bytes.clock().last(), from_state.clock().last());
            // Merging again changes nothing.
            assert_eq!(from_bytes.merge_encoded(&bytes, WALL + 10).unwrap(), 0);
        }
    }

    #[test]
    fn bad_bytes_merge_nothing() {
        let bytes = every_kind().encode();
        let untouched = busy_replica();
        let mut corrupted = bytes.clone();
        corrupted[1] ^= 0x40; // The device count: every later read is misaligned.
        let mut inputs: Vec<&[u8]> = (0..bytes.len()).map(|len| &bytes[..len]).collect();
        inputs.push(&corrupted);
        for input in inputs {
            let mut replica = busy_replica();
            let refused = replica.merge_encoded(input, WALL + 9).unwrap_err();
            assert_eq!(
                refused.code(),
                State::decode(input).unwrap_err().code(),
                "{} bytes",
                input.len()
            );
            assert_eq!(replica.state(), untouched.state());
            assert_eq!(replica.clock().last(), untouched.clock().last());
        }
    }

    #[test]
    fn every_truncation_is_refused() {
        let state = every_kind();
        let bytes = state.encode();
        // Every truncation is refused with an error, never a panic.
        for len in 0..bytes.len() {
            assert!(
                State::decode(&bytes[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
    }
}
