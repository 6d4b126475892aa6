//! State format 2, the column layout.
//!
//! ```text
//! body        = collections documents registers cells
//! collections = count (name:string documents:count)*   strictly ascending names, ≥ 1 document
//! documents   = column(shared) column(suffix-length) suffixes column(registers) column(cells)
//!               one entry per document: collection by collection, ids ascending in each;
//!               id = previous id in the collection[..shared] + suffix, the prefix maximal
//! registers   = column(name-gap) column(device) column(first-millis) column(first-counter)
//!               column(millis) column(counter) column(tag) column(int) payloads
//!               one entry per register: document by document, names ascending in each;
//!               name index = previous + 1 + gap (the first: gap = index);
//!               `first-…` hold the clock of each document's first register, `millis` and
//!               `counter` the clocks of the others; `int` holds one entry per register
//!               tagged int, `payloads` the payload of every other register whose tag has one
//!               (float, string, bytes, array, object)
//! cells       = cell*                                  document by document
//! ```
//!
//! A register's clock is written against a *reference*: the register before it in the same
//! document, or for a document's first register, the first register of the previous document
//! that has one. `millis` is the difference of the wall-clock parts; `counter` is the difference
//! of the logical counters when `millis` is 0, and the counter itself otherwise.
//!
//! Why these columns: fields written in one transaction sit together in a document and get
//! consecutive clocks, so their clock deltas are constant and a block of them packs to two
//! bytes. The jumps from one document to the next are larger and vary more; they get columns of
//! their own so that they do not widen the blocks of the small in-document deltas;
//! field-name gaps and tags repeat from document to document. What is left is the values
//! themselves, which pack to the bits their spread needs — 20 bits for integers below a million.

use super::columns::{Column, put_column};
use super::{
    CanonicalTables, Decoded, HlcChain, MAX_TAG, Reader, TAG_INT, Tables, common_prefix,
    decode_payload, encode_payload, listed_collections, put_bytes, put_cells, put_varint,
    read_cells, value_tag,
};
use crate::clock::{HLC_MILLIS_BITS, Hlc};
use crate::error::DecodeError;
use crate::state::{DocId, Document, Register, State};
use crate::value::{
    MAX_COLLECTION_NAME_BYTES, MAX_DOCUMENT_ID_BYTES, ThinVec, Value, validate_collection_name,
};

/// The format 2 encoding of `state`, version byte included.
pub(super) fn encode(state: &State) -> Vec<u8> {
    let tables = CanonicalTables::of(state);
    let mut out = Vec::with_capacity(64 + state.register_count() * 4);
    out.push(2);
    tables.put(&mut out);

    let collections = listed_collections(state);
    put_varint(&mut out, collections.len() as u64);
    for (name, collection) in &collections {
        put_bytes(&mut out, name.as_bytes());
        put_varint(&mut out, collection.docs.len() as u64);
    }

    let mut docs = DocumentColumns::default();
    let mut registers = RegisterColumns::with_capacity(state.register_count());
    let mut cells = Vec::new();
    let mut cell_chain = HlcChain::default();
    let mut sorted: Vec<(u32, &Register)> = Vec::new();
    for (_, collection) in &collections {
        let mut previous_id: &[u8] = &[];
        for (id, doc) in &collection.docs {
            let id = id.as_bytes();
            docs.push(previous_id, id, doc);
            previous_id = id;

            sorted.clear();
            sorted.extend(doc.registers.iter().map(|r| (tables.name(r.name), r)));
            sorted.sort_unstable_by_key(|&(name, _)| name);
            registers.push_document(&sorted, &tables);
            put_cells(&mut cells, &doc.counters, &tables, &mut cell_chain);
        }
    }
    docs.put(&mut out);
    registers.put(&mut out);
    out.extend_from_slice(&cells);
    out
}

#[derive(Default)]
struct DocumentColumns {
    shared: Vec<i64>,
    suffix_lengths: Vec<i64>,
    suffixes: Vec<u8>,
    registers: Vec<i64>,
    cells: Vec<i64>,
}

impl DocumentColumns {
    fn push(&mut self, previous_id: &[u8], id: &[u8], doc: &Document) {
        let shared = common_prefix(previous_id, id);
        self.shared.push(shared as i64);
        self.suffix_lengths.push((id.len() - shared) as i64);
        self.suffixes.extend_from_slice(&id[shared..]);
        self.registers.push(doc.registers.len() as i64);
        self.cells.push(doc.counters.len() as i64);
    }

    fn put(&self, out: &mut Vec<u8>) {
        put_column(out, &self.shared);
        put_column(out, &self.suffix_lengths);
        out.extend_from_slice(&self.suffixes);
        put_column(out, &self.registers);
        put_column(out, &self.cells);
    }
}

struct RegisterColumns {
    name_gaps: Vec<i64>,
    devices: Vec<i64>,
    first_millis: Vec<i64>,
    first_counters: Vec<i64>,
    millis: Vec<i64>,
    counters: Vec<i64>,
    tags: Vec<i64>,
    ints: Vec<i64>,
    payloads: Vec<u8>,
    /// The clock of the first register of the last document that had one.
    anchor: Hlc,
}

impl RegisterColumns {
    fn with_capacity(n: usize) -> RegisterColumns {
        RegisterColumns {
            name_gaps: Vec::with_capacity(n),
            devices: Vec::with_capacity(n),
            first_millis: Vec::new(),
            first_counters: Vec::new(),
            millis: Vec::with_capacity(n),
            counters: Vec::with_capacity(n),
            tags: Vec::with_capacity(n),
            ints: Vec::with_capacity(n),
            payloads: Vec::new(),
            anchor: Hlc::ZERO,
        }
    }

    /// Appends one document's registers, given sorted by name rank.
    fn push_document(&mut self, sorted: &[(u32, &Register)], tables: &CanonicalTables) {
        let mut previous_name: i64 = -1;
        let mut reference = self.anchor;
        if let Some((_, first)) = sorted.first() {
            self.anchor = first.hlc;
        }
        for (k, &(name, register)) in sorted.iter().enumerate() {
            self.name_gaps.push(i64::from(name) - previous_name - 1);
            previous_name = i64::from(name);
            self.devices.push(i64::from(tables.device(register.device)));
            let (millis, counter) = clock_delta(reference, register.hlc);
            if k == 0 {
                self.first_millis.push(millis);
                self.first_counters.push(counter);
            } else {
                self.millis.push(millis);
                self.counters.push(counter);
            }
            reference = register.hlc;
            self.tags.push(i64::from(value_tag(&register.value)));
            match &register.value {
                Value::Int(i) => self.ints.push(*i),
                other => encode_payload(&mut self.payloads, other),
            }
        }
    }

    fn put(&self, out: &mut Vec<u8>) {
        put_column(out, &self.name_gaps);
        put_column(out, &self.devices);
        put_column(out, &self.first_millis);
        put_column(out, &self.first_counters);
        put_column(out, &self.millis);
        put_column(out, &self.counters);
        put_column(out, &self.tags);
        put_column(out, &self.ints);
        out.extend_from_slice(&self.payloads);
    }
}

/// `hlc` against `reference`: the wall-clock difference, and the counter difference when the
/// wall clocks are equal or the counter itself when they are not.
fn clock_delta(reference: Hlc, hlc: Hlc) -> (i64, i64) {
    // Both wall clocks are below 2^48, so the difference fits.
    let millis = hlc.millis() as i64 - reference.millis() as i64;
    let counter = if millis == 0 {
        i64::from(hlc.counter()) - i64::from(reference.counter())
    } else {
        i64::from(hlc.counter())
    };
    (millis, counter)
}

/// The inverse of [`clock_delta`], refusing clocks out of range.
fn apply_clock_delta(
    r: &Reader<'_>,
    reference: Hlc,
    millis: i64,
    counter: i64,
) -> Result<Hlc, DecodeError> {
    let out_of_range = || r.malformed("clock out of range");
    let wall = (reference.millis() as i64)
        .checked_add(millis)
        .filter(|w| (0..1 << HLC_MILLIS_BITS).contains(w))
        .ok_or_else(out_of_range)?;
    let counter = if millis == 0 {
        i64::from(reference.counter())
            .checked_add(counter)
            .ok_or_else(out_of_range)?
    } else {
        counter
    };
    let counter = u16::try_from(counter).map_err(|_| out_of_range())?;
    Hlc::new(wall as u64, counter).ok_or_else(out_of_range)
}

/// Reads a format 2 body; `r` is just past the version byte.
///
/// The body is read by a few functions kept out of line rather than one large one. Every merge
/// runs them, and V8 optimizes a hot wasm function whole, on threads that share the CPU with
/// the page. Inlined into one 10.7 KB function (format 1's reader with it), the decoder took
/// V8 7–11 ms to optimize, and a first run of 1,540 small merges that caught that job took
/// about twice as long as one that did not. In pieces (the largest is this one, 2.7 KB with
/// what it inlines), each takes V8 about a millisecond. Natively the split costs nothing
/// measurable.
pub(super) fn decode(mut r: Reader<'_>) -> Result<Decoded<'_>, DecodeError> {
    let mut tables = Tables::read(&mut r)?;
    let collections = read_collections(&mut r)?;
    let document_count = collections.iter().map(|&(_, count)| count).sum();
    let mut doc_columns = DocumentReader::open(&mut r, document_count, tables.name_count())?;
    let mut registers = RegisterReader::open(
        &mut r,
        doc_columns.register_total,
        doc_columns.documents_with_registers,
    )?;
    let mut documents: Vec<(DocId, Document)> = Vec::with_capacity(document_count);
    for &(_, count) in &collections {
        let first = documents.len();
        for _ in 0..count {
            let previous_id = match documents[first..].last() {
                Some((previous, _)) => previous.as_bytes(),
                None => &[],
            };
            let id = doc_columns.next_id(&r, previous_id)?;
            let count = doc_columns.register_counts.take()? as usize;
            let doc = registers.document(&mut r, count, &mut tables)?;
            documents.push((id, doc));
        }
    }
    registers.finish(&r)?;

    // The cells follow every payload, so they are read on a second pass over the documents.
    let mut cell_chain = HlcChain::default();
    for (_, doc) in &mut documents {
        let count = doc_columns.cell_counts.take()? as usize;
        if count > 0 {
            doc.counters = read_cells(&mut r, count, &mut tables, &mut cell_chain)?;
        }
    }
    r.finish()?;
    tables.finish(r.position(), collections, documents)
}

/// The collections, and how many documents each holds. Every document has at least one byte
/// of id suffix further on, which bounds the total.
#[inline(never)]
fn read_collections<'a>(r: &mut Reader<'a>) -> Result<Vec<(&'a str, usize)>, DecodeError> {
    let collection_count = r.count(3)?;
    let mut collections: Vec<(&str, usize)> = Vec::with_capacity(collection_count);
    let mut document_count: usize = 0;
    for _ in 0..collection_count {
        let name = r.str(MAX_COLLECTION_NAME_BYTES)?;
        if validate_collection_name(name).is_err() {
            return Err(r.malformed("invalid collection name"));
        }
        if collections.last().is_some_and(|&(p, _)| p >= name) {
            return Err(r.non_canonical("collections out of order"));
        }
        let docs = r.count(1)?;
        if docs == 0 {
            return Err(r.non_canonical("empty collection"));
        }
        document_count += docs;
        if document_count > r.remaining() {
            return Err(r.malformed("count exceeds the bytes left"));
        }
        collections.push((name, docs));
    }
    Ok(collections)
}

/// The per-document columns being read: id prefixes and suffixes, register and cell counts.
struct DocumentReader<'a> {
    shared: Column<'a>,
    suffix_lengths: Column<'a>,
    suffixes: Reader<'a>,
    register_counts: Column<'a>,
    cell_counts: Column<'a>,
    /// Registers in all documents.
    register_total: usize,
    /// Documents with at least one register.
    documents_with_registers: usize,
    /// The id being put together (the previous id's prefix, then its suffix) before it is
    /// checked and copied into its `DocId`: one buffer for all, not an allocation per document.
    id: Vec<u8>,
}

impl<'a> DocumentReader<'a> {
    /// Opens the columns of `count` documents. Each is read twice: once here to check it and
    /// sum it, once as the documents are built (a clone of a column reads it again, without
    /// holding it in memory).
    #[inline(never)]
    fn open(
        r: &mut Reader<'a>,
        count: usize,
        name_count: usize,
    ) -> Result<DocumentReader<'a>, DecodeError> {
        let shared = Column::open(r, count)?;
        let suffix_lengths = Column::open(r, count)?;
        let mut suffix_total: usize = 0;
        let mut scan = suffix_lengths.clone();
        for _ in 0..count {
            let len = scan.take()?;
            if !(1..=MAX_DOCUMENT_ID_BYTES as i64).contains(&len) {
                return Err(r.malformed("invalid document id suffix length"));
            }
            suffix_total += len as usize;
        }
        let suffixes = r.clone();
        r.take(suffix_total)?;
        let register_counts = Column::open(r, count)?;
        let cell_counts = Column::open(r, count)?;
        let mut register_total: usize = 0;
        let mut documents_with_registers: usize = 0;
        let (mut registers_scan, mut cells_scan) = (register_counts.clone(), cell_counts.clone());
        for _ in 0..count {
            let (registers, cells) = (registers_scan.take()?, cells_scan.take()?);
            if !(0..=name_count as i64).contains(&registers) || cells < 0 {
                return Err(r.malformed("document entry count out of range"));
            }
            if registers == 0 && cells == 0 {
                return Err(r.non_canonical("empty document"));
            }
            register_total += registers as usize;
            documents_with_registers += usize::from(registers > 0);
        }
        Ok(DocumentReader {
            shared,
            suffix_lengths,
            suffixes,
            register_counts,
            cell_counts,
            register_total,
            documents_with_registers,
            id: Vec::new(),
        })
    }

    /// The next document's id, which must sort after `previous_id` (the collection's previous
    /// document, empty for its first) and share with it exactly the prefix written.
    fn next_id(&mut self, r: &Reader<'_>, previous_id: &[u8]) -> Result<DocId, DecodeError> {
        let shared = usize::try_from(self.shared.take()?)
            .ok()
            .filter(|&s| s <= previous_id.len())
            .ok_or_else(|| r.malformed("document id prefix longer than the previous id"))?;
        let suffix = self.suffixes.take(self.suffix_lengths.take()? as usize)?;
        let id = &mut self.id;
        id.clear();
        id.extend_from_slice(&previous_id[..shared]);
        id.extend_from_slice(suffix);
        if id.len() > MAX_DOCUMENT_ID_BYTES {
            return Err(r.malformed("invalid document id length"));
        }
        if !previous_id.is_empty()
            && (id.as_slice() <= previous_id || common_prefix(previous_id, id) != shared)
        {
            return Err(r.non_canonical("document ids out of order or prefix not maximal"));
        }
        std::str::from_utf8(id)
            .map(DocId::from)
            .map_err(|_| r.malformed("document id is not UTF-8"))
    }
}

/// A value tag read from the tag column, refused if this version does not know it.
fn tag(r: &Reader<'_>, raw: i64) -> Result<u8, DecodeError> {
    u8::try_from(raw)
        .ok()
        .filter(|&t| t <= MAX_TAG)
        .ok_or_else(|| r.malformed("unknown value tag"))
}

/// The register columns being read, one cursor each, and the clock reference chain.
struct RegisterReader<'a> {
    name_gaps: Column<'a>,
    devices: Column<'a>,
    first_millis: Column<'a>,
    first_counters: Column<'a>,
    millis: Column<'a>,
    counters: Column<'a>,
    tags: Column<'a>,
    ints: Column<'a>,
    anchor: Hlc,
}

impl<'a> RegisterReader<'a> {
    /// Opens the columns of `count` registers in `documents` documents.
    #[inline(never)]
    fn open(
        r: &mut Reader<'a>,
        count: usize,
        documents: usize,
    ) -> Result<RegisterReader<'a>, DecodeError> {
        let name_gaps = Column::open(r, count)?;
        let devices = Column::open(r, count)?;
        let first_millis = Column::open(r, documents)?;
        let first_counters = Column::open(r, documents)?;
        let millis = Column::open(r, count - documents)?;
        let counters = Column::open(r, count - documents)?;
        // The int column's length is the number of int tags: the tags are read twice.
        let tags = Column::open(r, count)?;
        let mut scan = tags.clone();
        let mut int_count = 0;
        for _ in 0..count {
            int_count += usize::from(tag(r, scan.take()?)? == TAG_INT);
        }
        let ints = Column::open(r, int_count)?;
        Ok(RegisterReader {
            name_gaps,
            devices,
            first_millis,
            first_counters,
            millis,
            counters,
            tags,
            ints,
            anchor: Hlc::ZERO,
        })
    }

    /// A document of `count` registers; payloads are read from `r`.
    #[inline(never)]
    fn document(
        &mut self,
        r: &mut Reader<'_>,
        count: usize,
        tables: &mut Tables<'_>,
    ) -> Result<Document, DecodeError> {
        let mut doc = Document {
            registers: Vec::with_capacity(count),
            counters: ThinVec::new(),
            bytes: 0,
        };
        let mut previous_name: i64 = -1;
        let mut reference = self.anchor;
        for k in 0..count {
            let gap = self.name_gaps.take()?;
            let index = u64::try_from(gap)
                .ok()
                .and_then(|gap| (previous_name as u64).wrapping_add(1).checked_add(gap))
                .ok_or_else(|| r.malformed("field name index out of range"))?;
            let name = tables.name(r, index)?;
            previous_name = i64::from(name);
            let device = tables.device(r, self.devices.take()? as u64)?;
            let hlc = if k == 0 {
                let (millis, counter) = (self.first_millis.take()?, self.first_counters.take()?);
                self.anchor = apply_clock_delta(r, reference, millis, counter)?;
                self.anchor
            } else {
                let (millis, counter) = (self.millis.take()?, self.counters.take()?);
                apply_clock_delta(r, reference, millis, counter)?
            };
            reference = hlc;
            let value = match tag(r, self.tags.take()?)? {
                TAG_INT => Value::Int(self.ints.take()?),
                other => decode_payload(r, other, 0)?,
            };
            doc.push_register(Register {
                name,
                device,
                hlc,
                value,
            });
        }
        Ok(doc)
    }

    /// Every column must have been read to its end (the counts guarantee it; this keeps the
    /// guarantee checked).
    fn finish(&self, r: &Reader<'_>) -> Result<(), DecodeError> {
        if self.tags.remaining() != 0 {
            return Err(r.malformed("register columns longer than the documents"));
        }
        Ok(())
    }
}
