//! The binary encoding of a [`State`]: compact, versioned and canonical.
//!
//! ```text
//! state      = version:u8 devices names collections
//! devices    = count (device-id:32)*            strictly ascending bytes
//! names      = count (string)*                  strictly ascending: field names, interned
//! collections= count (string docs)*             strictly ascending names
//! docs       = count (doc)*
//! doc        = shared:varint suffix:string      id = previous id[..shared] + suffix, ascending
//!              registers:count cells:count register* cell*
//! register   = name-gap:varint stamp value      name index = previous + 1 + gap
//! cell       = name:varint device:varint epoch hlc-delta total:zigzag
//! epoch      = 0 | (device+1):varint hlc-delta  the stamp of the register the cell counts from
//! stamp      = hlc-delta device:varint
//! hlc-delta  = zigzag(hlc − previous hlc)       one chain through the whole state
//! value      = tag:u8 payload                   0 null, 1 false, 2 true, 3 int (zigzag),
//!              4 float (8 bytes LE), 5 string, 6 bytes, 7 array (count value*),
//!              8 object (count (string value)*, keys strictly ascending)
//! ```
//!
//! Canonical means one state has exactly one encoding: tables hold only entries that are used,
//! everything is sorted, varints are minimal. The decoder checks all of it and refuses
//! anything else, so `decode(bytes)` succeeds only for bytes that `encode` would produce.
//!
//! Field names starting with `_` are reserved for Tidemark. Local writes cannot make new ones,
//! but the decoder accepts any: a newer version may add reserved fields, and older readers
//! merge them faithfully (so they converge) without showing them in the JSON view.
//!
//! Decoding never panics and never allocates more than the input could describe: every count
//! is checked against the bytes left before anything is reserved, and nesting is bounded by
//! [`MAX_VALUE_DEPTH`].

use std::collections::BTreeMap;

use crate::clock::Hlc;
use crate::device::{DEVICE_ID_BYTES, DeviceId};
use crate::error::DecodeError;
use crate::state::{
    Collection, CounterCell, DeviceIdx, Document, LocalStamp, NameId, Register, State,
    register_bytes,
};
use crate::value::{
    MAX_DOCUMENT_ID_BYTES, MAX_FIELD_NAME_BYTES, MAX_VALUE_BYTES, MAX_VALUE_DEPTH, Value, unzigzag,
    validate_collection_name, zigzag,
};

/// The state encoding version this build writes and the newest it reads.
pub const STATE_FORMAT_VERSION: u8 = 1;

const TAG_NULL: u8 = 0;
const TAG_FALSE: u8 = 1;
const TAG_TRUE: u8 = 2;
const TAG_INT: u8 = 3;
const TAG_FLOAT: u8 = 4;
const TAG_STRING: u8 = 5;
const TAG_BYTES: u8 = 6;
const TAG_ARRAY: u8 = 7;
const TAG_OBJECT: u8 = 8;

impl State {
    /// The canonical encoding of this state: equal states give equal bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_state(self)
    }

    /// Decodes bytes made by [`State::encode`]. Any other input gives a [`DecodeError`].
    pub fn decode(bytes: &[u8]) -> Result<State, DecodeError> {
        decode_state(bytes)
    }
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
#[derive(Debug)]
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

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                offset: self.pos,
                needed: n - self.remaining(),
            });
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A minimal LEB128 varint of at most 64 bits.
    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
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
// Encoding.

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
}

/// Sorts the used items and returns, per interned index, its rank among them.
fn rank<T: Ord + Clone>(items: &[T], used: &[bool]) -> (Vec<u32>, Vec<T>) {
    let mut order: Vec<u32> = (0..items.len() as u32)
        .filter(|&i| used[i as usize])
        .collect();
    order.sort_by(|&a, &b| items[a as usize].cmp(&items[b as usize]));
    let mut ranks = vec![UNUSED; items.len()];
    for (rank, &idx) in order.iter().enumerate() {
        ranks[idx as usize] = rank as u32;
    }
    let sorted = order.iter().map(|&i| items[i as usize].clone()).collect();
    (ranks, sorted)
}

struct Encoder<'s> {
    out: Vec<u8>,
    tables: CanonicalTables,
    previous_hlc: u64,
    state: &'s State,
}

impl Encoder<'_> {
    fn hlc(&mut self, hlc: Hlc) {
        let delta = hlc.as_u64().wrapping_sub(self.previous_hlc) as i64;
        put_varint(&mut self.out, zigzag(delta));
        self.previous_hlc = hlc.as_u64();
    }

    fn device(&mut self, idx: DeviceIdx) {
        put_varint(
            &mut self.out,
            u64::from(self.tables.device_rank[idx as usize]),
        );
    }

    fn document(&mut self, doc: &Document, scratch: &mut Vec<(u32, usize)>) {
        put_varint(&mut self.out, doc.registers.len() as u64);
        put_varint(&mut self.out, doc.counters.len() as u64);

        scratch.clear();
        scratch.extend(
            doc.registers
                .iter()
                .enumerate()
                .map(|(i, r)| (self.tables.name_rank[r.name as usize], i)),
        );
        scratch.sort_unstable();
        let mut previous: i64 = -1;
        for &(name, i) in scratch.iter() {
            let register = &doc.registers[i];
            put_varint(&mut self.out, (i64::from(name) - previous - 1) as u64);
            previous = i64::from(name);
            self.hlc(register.hlc);
            self.device(register.device);
            encode_value(&mut self.out, &register.value);
        }

        let mut cells: Vec<(u32, u32, &CounterCell)> = doc
            .counters
            .iter()
            .map(|c| {
                (
                    self.tables.name_rank[c.name as usize],
                    self.tables.device_rank[c.device as usize],
                    c,
                )
            })
            .collect();
        cells.sort_unstable_by_key(|&(name, device, _)| (name, device));
        for (name, device, cell) in cells {
            put_varint(&mut self.out, u64::from(name));
            put_varint(&mut self.out, u64::from(device));
            match cell.epoch {
                None => put_varint(&mut self.out, 0),
                Some(epoch) => {
                    put_varint(
                        &mut self.out,
                        u64::from(self.tables.device_rank[epoch.device as usize]) + 1,
                    );
                    self.hlc(epoch.hlc);
                }
            }
            self.hlc(cell.hlc);
            put_varint(&mut self.out, zigzag(cell.total));
        }
    }
}

pub(crate) fn encode_state(state: &State) -> Vec<u8> {
    let tables = CanonicalTables::of(state);
    let mut enc = Encoder {
        out: Vec::with_capacity(64 + state.register_count() * 8),
        tables,
        previous_hlc: 0,
        state,
    };
    enc.out.push(STATE_FORMAT_VERSION);
    put_varint(&mut enc.out, enc.tables.devices.len() as u64);
    for device in &enc.tables.devices {
        enc.out.extend_from_slice(device.as_bytes());
    }
    put_varint(&mut enc.out, enc.tables.names.len() as u64);
    for name in &enc.tables.names {
        put_bytes(&mut enc.out, name.as_bytes());
    }
    let collections: Vec<_> = enc
        .state
        .collections
        .iter()
        .filter(|(_, c)| !c.docs.is_empty())
        .collect();
    put_varint(&mut enc.out, collections.len() as u64);
    let mut scratch = Vec::new();
    for (name, collection) in collections {
        put_bytes(&mut enc.out, name.as_bytes());
        put_varint(&mut enc.out, collection.docs.len() as u64);
        let mut previous: &[u8] = &[];
        for (id, doc) in &collection.docs {
            let id = id.as_bytes();
            let shared = common_prefix(previous, id);
            put_varint(&mut enc.out, shared as u64);
            put_bytes(&mut enc.out, &id[shared..]);
            enc.document(doc, &mut scratch);
            previous = id;
        }
    }
    enc.out
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

pub(crate) fn encode_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(TAG_NULL),
        Value::Bool(false) => out.push(TAG_FALSE),
        Value::Bool(true) => out.push(TAG_TRUE),
        Value::Int(i) => {
            out.push(TAG_INT);
            put_varint(out, zigzag(*i));
        }
        Value::Float(f) => {
            out.push(TAG_FLOAT);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::Str(s) => {
            out.push(TAG_STRING);
            put_bytes(out, s.as_bytes());
        }
        Value::Bytes(b) => {
            out.push(TAG_BYTES);
            put_bytes(out, b);
        }
        Value::Array(items) => {
            out.push(TAG_ARRAY);
            put_varint(out, items.len() as u64);
            for item in items.iter() {
                encode_value(out, item);
            }
        }
        Value::Object(map) => {
            out.push(TAG_OBJECT);
            put_varint(out, map.len() as u64);
            for (key, item) in map.iter() {
                put_bytes(out, key.as_bytes());
                encode_value(out, item);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding.

struct Decoder<'a> {
    r: Reader<'a>,
    previous_hlc: u64,
    device_count: u32,
    name_count: u32,
    device_used: Vec<bool>,
    name_used: Vec<bool>,
}

impl Decoder<'_> {
    fn hlc(&mut self) -> Result<Hlc, DecodeError> {
        let delta = unzigzag(self.r.varint()?);
        self.previous_hlc = self.previous_hlc.wrapping_add(delta as u64);
        Ok(Hlc::from_u64(self.previous_hlc))
    }

    fn device(&mut self) -> Result<DeviceIdx, DecodeError> {
        let idx = self.r.varint()?;
        if idx >= u64::from(self.device_count) {
            return Err(self.r.malformed("device index out of range"));
        }
        self.device_used[idx as usize] = true;
        Ok(idx as DeviceIdx)
    }

    fn name(&mut self, idx: u64) -> Result<NameId, DecodeError> {
        if idx >= u64::from(self.name_count) {
            return Err(self.r.malformed("field name index out of range"));
        }
        self.name_used[idx as usize] = true;
        Ok(idx as NameId)
    }

    fn document(&mut self) -> Result<Document, DecodeError> {
        // A register takes at least 4 bytes (gap, hlc, device, tag), a cell at least 5.
        let register_count = self.r.count(4)?;
        let cell_count = self.r.count(5)?;
        if register_count == 0 && cell_count == 0 {
            return Err(self.r.non_canonical("empty document"));
        }
        let mut doc = Document {
            registers: Vec::with_capacity(register_count),
            counters: Vec::with_capacity(cell_count),
            bytes: 0,
        };
        let mut previous: i64 = -1;
        for _ in 0..register_count {
            let gap = self.r.varint()?;
            let idx = (previous as u64).wrapping_add(1).checked_add(gap);
            let name = match idx {
                Some(idx) => self.name(idx)?,
                None => return Err(self.r.malformed("field name index out of range")),
            };
            previous = i64::from(name);
            let hlc = self.hlc()?;
            let device = self.device()?;
            let value = decode_value(&mut self.r, 0)?;
            doc.bytes += register_bytes(&value);
            doc.registers.push(Register {
                name,
                device,
                hlc,
                value,
            });
        }
        let mut previous_key: Option<(u32, u32)> = None;
        for _ in 0..cell_count {
            let name_idx = self.r.varint()?;
            let name = self.name(name_idx)?;
            let device = self.device()?;
            if previous_key.is_some_and(|p| p >= (name, device)) {
                return Err(self.r.non_canonical("counter cells out of order"));
            }
            previous_key = Some((name, device));
            let epoch = match self.r.varint()? {
                0 => None,
                d => {
                    let device = d - 1;
                    if device >= u64::from(self.device_count) {
                        return Err(self.r.malformed("epoch device index out of range"));
                    }
                    self.device_used[device as usize] = true;
                    Some(LocalStamp {
                        device: device as DeviceIdx,
                        hlc: self.hlc()?,
                    })
                }
            };
            let hlc = self.hlc()?;
            let total = unzigzag(self.r.varint()?);
            doc.counters.push(CounterCell {
                name,
                device,
                hlc,
                epoch,
                total,
            });
        }
        Ok(doc)
    }
}

fn decode_state(bytes: &[u8]) -> Result<State, DecodeError> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if version != STATE_FORMAT_VERSION {
        if version > STATE_FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: version,
                supported: STATE_FORMAT_VERSION,
            });
        }
        return Err(DecodeError::Malformed {
            offset: 0,
            reason: "unknown format version",
        });
    }
    let mut state = State::new();

    let device_count = r.count(DEVICE_ID_BYTES)?;
    let mut previous_device: Option<DeviceId> = None;
    for _ in 0..device_count {
        let device = DeviceId::from_bytes(r.array()?);
        if previous_device.is_some_and(|p| p >= device) {
            return Err(r.non_canonical("device table out of order"));
        }
        previous_device = Some(device);
        state.devices.intern(&device);
    }

    let name_count = r.count(2)?;
    let mut previous_name: Option<&str> = None;
    for _ in 0..name_count {
        let name = r.str(MAX_FIELD_NAME_BYTES)?;
        if name.is_empty() {
            return Err(r.malformed("empty field name"));
        }
        if previous_name.is_some_and(|p| p >= name) {
            return Err(r.non_canonical("field names out of order"));
        }
        previous_name = Some(name);
        state.names.intern_str(name);
    }

    let mut d = Decoder {
        r,
        previous_hlc: 0,
        device_count: device_count as u32,
        name_count: name_count as u32,
        device_used: vec![false; device_count],
        name_used: vec![false; name_count],
    };

    let collection_count = d.r.count(3)?;
    let mut previous_collection: Option<&str> = None;
    for _ in 0..collection_count {
        let name = d.r.str(crate::value::MAX_COLLECTION_NAME_BYTES)?;
        if validate_collection_name(name).is_err() {
            return Err(d.r.malformed("invalid collection name"));
        }
        if previous_collection.is_some_and(|p| p >= name) {
            return Err(d.r.non_canonical("collections out of order"));
        }
        previous_collection = Some(name);
        let doc_count = d.r.count(4)?;
        if doc_count == 0 {
            return Err(d.r.non_canonical("empty collection"));
        }
        let mut docs = BTreeMap::new();
        let mut previous_id: Vec<u8> = Vec::new();
        for i in 0..doc_count {
            let shared = d.r.varint()?;
            if shared > previous_id.len() as u64 {
                return Err(d
                    .r
                    .malformed("document id prefix longer than the previous id"));
            }
            let suffix = d.r.bytes(MAX_DOCUMENT_ID_BYTES)?;
            let mut id = previous_id[..shared as usize].to_vec();
            id.extend_from_slice(suffix);
            if id.is_empty() || id.len() > MAX_DOCUMENT_ID_BYTES {
                return Err(d.r.malformed("invalid document id length"));
            }
            if i > 0 && (id <= previous_id || common_prefix(&previous_id, &id) != shared as usize) {
                return Err(d
                    .r
                    .non_canonical("document ids out of order or prefix not maximal"));
            }
            if i == 0 && shared != 0 {
                return Err(d.r.non_canonical("first document id shares a prefix"));
            }
            let id_str =
                std::str::from_utf8(&id).map_err(|_| d.r.malformed("document id is not UTF-8"))?;
            let doc = d.document()?;
            docs.insert(Box::from(id_str), doc);
            previous_id = id;
        }
        state
            .collections
            .insert(Box::from(name), Collection { docs });
    }
    d.r.finish()?;
    if d.device_used.contains(&false) || d.name_used.contains(&false) {
        return Err(DecodeError::NonCanonical {
            offset: bytes.len(),
            reason: "table holds an unused entry",
        });
    }
    Ok(state)
}

pub(crate) fn decode_value(r: &mut Reader<'_>, depth: usize) -> Result<Value, DecodeError> {
    if depth > MAX_VALUE_DEPTH {
        return Err(r.malformed("value nests too deeply"));
    }
    Ok(match r.u8()? {
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
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(decode_value(r, depth + 1)?);
            }
            Value::Array(items.into_boxed_slice())
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
