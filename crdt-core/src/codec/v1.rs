//! State format 1, the row layout: read so that earlier stores and packs stay readable; no
//! longer written.
//!
//! ```text
//! body       = collections
//! collections= count (string docs)*             strictly ascending names
//! docs       = count (doc)*
//! doc        = shared:varint suffix:string      id = previous id[..shared] + suffix, ascending
//!              registers:count cells:count register* cell*
//! register   = name-gap:varint stamp value      name index = previous + 1 + gap
//! stamp      = hlc-delta device:varint
//! ```
//!
//! One clock chain runs through every register and cell of the state.

use super::{
    Decoded, HlcChain, MIN_CELL_BYTES, Reader, Tables, common_prefix, decode_value, read_cells,
};
use crate::error::DecodeError;
use crate::state::{DocId, Document, Register};
use crate::value::{
    MAX_COLLECTION_NAME_BYTES, MAX_DOCUMENT_ID_BYTES, ThinVec, validate_collection_name,
};

/// The fewest bytes a register takes: name gap, clock, device and tag.
const MIN_REGISTER_BYTES: usize = 4;

/// Reads a format 1 body; `r` is just past the version byte.
///
/// Kept out of line: only states stored before format 2 take this path. Inlined, it added
/// 3.3 KB to [`Decoded::read`], which every merge runs, and V8 optimizes a hot wasm function
/// whole, cold parts included (see `v2::decode`).
#[cold]
#[inline(never)]
pub(super) fn decode(mut r: Reader<'_>) -> Result<Decoded<'_>, DecodeError> {
    let mut tables = Tables::read(&mut r)?;
    let mut chain = HlcChain::default();

    let collection_count = r.count(3)?;
    let mut collections: Vec<(&str, usize)> = Vec::with_capacity(collection_count);
    let mut documents: Vec<(DocId, Document)> = Vec::new();
    for _ in 0..collection_count {
        let name = r.str(MAX_COLLECTION_NAME_BYTES)?;
        if validate_collection_name(name).is_err() {
            return Err(r.malformed("invalid collection name"));
        }
        if collections.last().is_some_and(|&(p, _)| p >= name) {
            return Err(r.non_canonical("collections out of order"));
        }
        let doc_count = r.count(4)?;
        if doc_count == 0 {
            return Err(r.non_canonical("empty collection"));
        }
        collections.push((name, doc_count));
        let mut previous_id: Vec<u8> = Vec::new();
        for i in 0..doc_count {
            let shared = r.varint()?;
            if shared > previous_id.len() as u64 {
                return Err(r.malformed("document id prefix longer than the previous id"));
            }
            let suffix = r.bytes(MAX_DOCUMENT_ID_BYTES)?;
            let mut id = previous_id[..shared as usize].to_vec();
            id.extend_from_slice(suffix);
            if id.is_empty() || id.len() > MAX_DOCUMENT_ID_BYTES {
                return Err(r.malformed("invalid document id length"));
            }
            if i > 0 && (id <= previous_id || common_prefix(&previous_id, &id) != shared as usize) {
                return Err(r.non_canonical("document ids out of order or prefix not maximal"));
            }
            if i == 0 && shared != 0 {
                return Err(r.non_canonical("first document id shares a prefix"));
            }
            let id_str =
                std::str::from_utf8(&id).map_err(|_| r.malformed("document id is not UTF-8"))?;
            let doc = document(&mut r, &mut tables, &mut chain)?;
            documents.push((DocId::from(id_str), doc));
            previous_id = id;
        }
    }
    r.finish()?;
    tables.finish(r.position(), collections, documents)
}

fn document(
    r: &mut Reader<'_>,
    tables: &mut Tables<'_>,
    chain: &mut HlcChain,
) -> Result<Document, DecodeError> {
    let register_count = r.count(MIN_REGISTER_BYTES)?;
    let cell_count = r.count(MIN_CELL_BYTES)?;
    if register_count == 0 && cell_count == 0 {
        return Err(r.non_canonical("empty document"));
    }
    let mut doc = Document {
        registers: Vec::with_capacity(register_count),
        counters: ThinVec::new(),
        bytes: 0,
    };
    let mut previous: i64 = -1;
    for _ in 0..register_count {
        let gap = r.varint()?;
        let idx = (previous as u64).wrapping_add(1).checked_add(gap);
        let name = match idx {
            Some(idx) => tables.name(r, idx)?,
            None => return Err(r.malformed("field name index out of range")),
        };
        previous = i64::from(name);
        let hlc = chain.read(r)?;
        let device_idx = r.varint()?;
        let device = tables.device(r, device_idx)?;
        let value = decode_value(r, 0)?;
        doc.push_register(Register {
            name,
            device,
            hlc,
            value,
        });
    }
    doc.counters = read_cells(r, cell_count, tables, chain)?;
    Ok(doc)
}

/// The format 1 encoder, kept for tests only: it proves the reader above still reads what
/// earlier builds wrote.
#[cfg(test)]
pub(super) fn encode(state: &crate::state::State) -> Vec<u8> {
    use super::{
        CanonicalTables, encode_value, listed_collections, put_bytes, put_cells, put_varint,
    };

    let tables = CanonicalTables::of(state);
    let mut out = vec![1];
    tables.put(&mut out);
    let mut chain = HlcChain::default();
    let collections = listed_collections(state);
    put_varint(&mut out, collections.len() as u64);
    for (name, collection) in collections {
        put_bytes(&mut out, name.as_bytes());
        put_varint(&mut out, collection.docs.len() as u64);
        let mut previous: &[u8] = &[];
        for (id, doc) in &collection.docs {
            let id = id.as_bytes();
            let shared = common_prefix(previous, id);
            put_varint(&mut out, shared as u64);
            put_bytes(&mut out, &id[shared..]);
            put_varint(&mut out, doc.registers.len() as u64);
            put_varint(&mut out, doc.counters.len() as u64);
            let mut registers: Vec<(u32, &Register)> = doc
                .registers
                .iter()
                .map(|r| (tables.name(r.name), r))
                .collect();
            registers.sort_unstable_by_key(|&(name, _)| name);
            let mut previous_name: i64 = -1;
            for (name, register) in registers {
                put_varint(&mut out, (i64::from(name) - previous_name - 1) as u64);
                previous_name = i64::from(name);
                chain.put(&mut out, register.hlc);
                put_varint(&mut out, u64::from(tables.device(register.device)));
                encode_value(&mut out, &register.value);
            }
            put_cells(&mut out, &doc.counters, &tables, &mut chain);
            previous = id;
        }
    }
    out
}
