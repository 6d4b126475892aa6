//! An in-memory replica for apps that bring their own transport: the core's [`Replica`]
//! (documents, transactions, merge, the canonical encoding) with no IndexedDB and no sync
//! engine. JavaScript reaches it as `tidemark/replica` (`wasm/js/replica.js`).
//!
//! Bytes in and out are the core's: [`State`] encodings for whole replicas and deltas, so
//! anything one replica encodes another can merge, in any order, any number of times. Version
//! vectors, which only say what to send, use a small encoding of their own (see
//! `encode_version_vector`).
//!
//! [`Replica`]: tidemark_core::Replica

use curve25519_dalek::EdwardsPoint;
use tidemark_core::{
    DEVICE_ID_BYTES, DeviceId, Hlc, Stamp, State, Value, VersionVector, WriteError, Writer,
};
use wasm_bindgen::prelude::*;

use crate::error::StoreError;
use crate::js;

/// `Result` with a JavaScript `Error` (name `"TidemarkError"`, a stable `code`) as the error.
type JsResult<T> = Result<T, JsValue>;

/// The first byte of an encoded version vector: its format version.
const VERSION_VECTOR_FORMAT: u8 = 1;
/// Bytes per entry of an encoded version vector: a device id and its clock (u64, LE).
const VERSION_VECTOR_ENTRY_BYTES: usize = DEVICE_ID_BYTES + 8;

/// A replica of a set of collections held in memory: write, read, encode, merge.
///
/// Writes are transactions ([`Replica::write`]): all of a transaction's writes take effect
/// together or, if one is refused, none does.
#[wasm_bindgen]
#[derive(Debug)]
pub struct Replica {
    inner: tidemark_core::Replica,
}

/// Kinds of writes; `replica.js` uses the same numbers.
const OP_SET: u8 = 0;
const OP_UPSERT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_RESTORE: u8 = 3;
const OP_INCREMENT: u8 = 4;

/// Numbers per write in the compact form ([`decode_compact`]).
const NUMBERS_PER_WRITE: usize = 6;
/// In place of a name's length: the previous write's name in the same place.
const NAME_SAME: f64 = -1.0;
/// In place of a field name's length: the write has no field.
const NAME_NONE: f64 = -2.0;
/// How the compact form sends a value; `replica.js` uses the same numbers.
const VALUE_NULL: u8 = 0;
const VALUE_FALSE: u8 = 1;
const VALUE_TRUE: u8 = 2;
/// An integer, the write's last number.
const VALUE_INT: u8 = 3;
/// A string, in the text; the write's last number is its length.
const VALUE_STRING: u8 = 4;
/// The next value of the transaction's JSON list.
const VALUE_JSON: u8 = 5;

/// One write of a transaction, decoded. Names borrow from what JavaScript sent.
#[derive(Debug)]
enum Write<'a> {
    Set(&'a str, &'a str, &'a str, Value),
    Upsert(&'a str, &'a str, serde_json::Map<String, serde_json::Value>),
    Delete(&'a str, &'a str),
    Restore(&'a str, &'a str),
    Increment(&'a str, &'a str, &'a str, i64),
}

impl<'a> Write<'a> {
    /// A write from its kind and parts; a kind that takes other parts (or an unknown kind)
    /// is refused, before anything is written.
    fn new(
        kind: u8,
        collection: &'a str,
        id: &'a str,
        field: Option<&'a str>,
        value: SentValue,
    ) -> Result<Write<'a>, StoreError> {
        Ok(match (kind, field, value) {
            (OP_SET, Some(field), value) => Write::Set(collection, id, field, value.into()),
            (OP_UPSERT, _, SentValue::Json(serde_json::Value::Object(fields))) => {
                Write::Upsert(collection, id, fields)
            }
            (OP_DELETE, ..) => Write::Delete(collection, id),
            (OP_RESTORE, ..) => Write::Restore(collection, id),
            (OP_INCREMENT, Some(field), SentValue::Int(by)) => {
                Write::Increment(collection, id, field, by)
            }
            _ => {
                return Err(StoreError::BadArgument(format!(
                    "a malformed write of kind {kind} in a transaction"
                )));
            }
        })
    }

    fn apply(self, w: &mut Writer<'_>) -> Result<(), WriteError> {
        match self {
            Write::Set(collection, id, field, value) => w.set(collection, id, field, value),
            // A document with no fields still exists: `restore` marks it.
            Write::Upsert(collection, id, fields) if fields.is_empty() => w.restore(collection, id),
            Write::Upsert(collection, id, fields) => w.upsert(
                collection,
                id,
                fields.into_iter().map(|(k, v)| (k, Value::from(v))),
            ),
            Write::Delete(collection, id) => w.delete(collection, id),
            Write::Restore(collection, id) => w.restore(collection, id),
            Write::Increment(collection, id, field, by) => w.increment(collection, id, field, by),
        }
    }
}

/// A write's value as it arrived: an integer, a value made without JSON, or JSON.
#[derive(Debug)]
enum SentValue {
    Int(i64),
    Plain(Value),
    Json(serde_json::Value),
}

impl From<SentValue> for Value {
    fn from(value: SentValue) -> Value {
        match value {
            SentValue::Int(i) => Value::Int(i),
            SentValue::Plain(value) => value,
            SentValue::Json(json) => Value::from(json),
        }
    }
}

/// A write in the JSON form: `[kind, collection, id, field, value]`.
type JsonWrite = (u8, String, String, Option<String>, SentValue);

/// The writes of a transaction from their JSON text: a list of `[kind, collection, id,
/// field, value]` lists, with `null` where a kind takes no field or value. `replica.js` sends
/// this form only for arguments the compact form does not carry (see [`decode_compact`]).
///
/// Taken apart by hand rather than with `#[derive(Deserialize)]`: the derived code, and the
/// error messages it formats (floats included), were a large share of this module's wasm.
fn parse_json_writes(text: &str) -> Result<Vec<JsonWrite>, StoreError> {
    let bad =
        |what: &str| StoreError::BadArgument(format!("a transaction is a list of writes: {what}"));
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
    let serde_json::Value::Array(ops) = json else {
        return Err(bad("not a list"));
    };
    ops.into_iter()
        .map(|op| {
            let serde_json::Value::Array(parts) = op else {
                return Err(bad("a write is not a list"));
            };
            let Ok([kind, collection, id, field, value]) = <[_; 5]>::try_from(parts) else {
                return Err(bad("a write is not a list of 5 items"));
            };
            let kind = kind
                .as_u64()
                .and_then(|k| u8::try_from(k).ok())
                .ok_or_else(|| bad("a write's kind is not a small integer"))?;
            let (serde_json::Value::String(collection), serde_json::Value::String(id)) =
                (collection, id)
            else {
                return Err(bad("a collection or a document id is not a string"));
            };
            let field = match field {
                serde_json::Value::Null => None,
                serde_json::Value::String(field) => Some(field),
                _ => return Err(bad("a field name is not a string")),
            };
            let value = match value.as_i64() {
                Some(i) => SentValue::Int(i),
                None => SentValue::Json(value),
            };
            Ok((kind, collection, id, field, value))
        })
        .collect()
}

/// The writes of a transaction in the compact form `replica.js` sends: no JSON for names,
/// integers, strings, booleans or null, and names repeated from the previous write sent once.
///
/// - `numbers`: six per write: its kind; the lengths of its collection, document id and field
///   in `text` (or [`NAME_SAME`], [`NAME_NONE`]); how its value is sent (`VALUE_*`); and the
///   value's number (an integer, or a string's length in `text`; otherwise 0).
/// - `text`: the names and string values, one after another in the order of `numbers`.
///   Lengths count UTF-16 units, as JavaScript's `length` does.
/// - `json`: the other values, in order, as the JSON text of a list inside a list (nested as
///   deep as in the JSON form, so that the same values pass serde_json's depth limit).
fn decode_compact<'a>(
    text: &'a str,
    numbers: &[f64],
    json: Option<&str>,
) -> Result<Vec<Write<'a>>, StoreError> {
    let bad = |what: &str| StoreError::BadArgument(format!("a malformed transaction: {what}"));
    let mut json_values = match json {
        None => Vec::new(),
        Some(json) => {
            let json: serde_json::Value = serde_json::from_str(json)
                .map_err(|e| bad(&format!("values are JSON data: {e}")))?;
            let serde_json::Value::Array(outer) = json else {
                return Err(bad("the JSON values are not a list"));
            };
            let Ok([serde_json::Value::Array(values)]) = <[_; 1]>::try_from(outer) else {
                return Err(bad("the JSON values are not a list inside a list"));
            };
            values
        }
    }
    .into_iter();
    if !numbers.len().is_multiple_of(NUMBERS_PER_WRITE) {
        return Err(bad("numbers left over"));
    }
    let mut text = Text::new(text);
    let mut previous: [Option<&str>; 3] = [None; 3];
    let mut writes = Vec::with_capacity(numbers.len() / NUMBERS_PER_WRITE);
    for write in numbers.chunks_exact(NUMBERS_PER_WRITE) {
        let &[kind, collection, id, field, how, number] = write else {
            unreachable!("chunks of NUMBERS_PER_WRITE");
        };
        let mut name = |slot: usize, length: f64| -> Result<Option<&'a str>, StoreError> {
            if length == NAME_NONE {
                return Ok(None);
            }
            let name = if length == NAME_SAME {
                previous[slot].ok_or_else(|| bad("no previous name to repeat"))?
            } else {
                text.take(length).ok_or_else(|| bad("a name's length"))?
            };
            previous[slot] = Some(name);
            Ok(Some(name))
        };
        let collection = name(0, collection)?.ok_or_else(|| bad("no collection"))?;
        let id = name(1, id)?.ok_or_else(|| bad("no document id"))?;
        let field = name(2, field)?;
        let value = match small(how).ok_or_else(|| bad("a value's kind"))? {
            VALUE_NULL => SentValue::Plain(Value::Null),
            VALUE_FALSE => SentValue::Plain(Value::Bool(false)),
            VALUE_TRUE => SentValue::Plain(Value::Bool(true)),
            // JavaScript sends only safe integers this way; `as` would saturate others.
            VALUE_INT if number.fract() == 0.0 && number.abs() <= MAX_SAFE_INTEGER => {
                SentValue::Int(number as i64)
            }
            VALUE_STRING => SentValue::Plain(Value::from(
                text.take(number).ok_or_else(|| bad("a string's length"))?,
            )),
            VALUE_JSON => SentValue::Json(
                json_values
                    .next()
                    .ok_or_else(|| bad("too few JSON values"))?,
            ),
            _ => return Err(bad("a value's kind")),
        };
        let kind = small(kind).ok_or_else(|| bad("a write's kind"))?;
        writes.push(Write::new(kind, collection, id, field, value)?);
    }
    if !text.rest.is_empty() || json_values.next().is_some() {
        return Err(bad("text or values left over"));
    }
    Ok(writes)
}

/// 2^53 - 1: the largest integer JavaScript's numbers hold exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// `n` if it is an integer from 0 to `u32::MAX`.
fn index(n: f64) -> Option<usize> {
    // `as` saturates (and takes NaN to 0): only an integer in range converts back to itself.
    let i = n as u32;
    (f64::from(i) == n).then_some(i as usize)
}

/// `n` if it is an integer from 0 to 255.
fn small(n: f64) -> Option<u8> {
    index(n).and_then(|n| u8::try_from(n).ok())
}

/// The compact form's text, taken from the front a name or string at a time.
struct Text<'a> {
    rest: &'a str,
    /// Whether the text is ASCII, where a UTF-16 unit is a byte (almost always: names are).
    ascii: bool,
}

impl<'a> Text<'a> {
    fn new(text: &'a str) -> Text<'a> {
        Text {
            rest: text,
            ascii: text.is_ascii(),
        }
    }

    /// The next `units` UTF-16 units of the text.
    fn take(&mut self, units: f64) -> Option<&'a str> {
        let units = index(units)?;
        let bytes = if self.ascii {
            units
        } else {
            utf8_length(self.rest, units)?
        };
        let (taken, rest) = self.rest.split_at_checked(bytes)?;
        self.rest = rest;
        Some(taken)
    }
}

/// The length in bytes of the first `units` UTF-16 units of `text`, unless that cuts a
/// character (or the text is shorter).
fn utf8_length(text: &str, units: usize) -> Option<usize> {
    let mut left = units;
    for (at, c) in text.char_indices() {
        if left == 0 {
            return Some(at);
        }
        left = left.checked_sub(c.len_utf16())?;
    }
    (left == 0).then_some(text.len())
}

#[wasm_bindgen]
impl Replica {
    /// An empty replica. `device` is a device id (64 hex digits) to write as; without one a
    /// fresh random id is made. Two replicas must never write with the same id.
    #[wasm_bindgen(constructor)]
    pub fn new(device: Option<String>) -> JsResult<Replica> {
        Ok(Replica {
            inner: tidemark_core::Replica::new(device_id(device)?),
        })
    }

    /// A replica holding what [`Replica::encode`] produced, writing as `device` (default: a
    /// fresh random id). Fails with a `decode.*` code for any other bytes.
    pub fn load(bytes: &[u8], device: Option<String>) -> JsResult<Replica> {
        let state = State::decode(bytes).map_err(StoreError::from)?;
        Ok(Replica {
            inner: tidemark_core::Replica::from_state(device_id(device)?, state),
        })
    }

    /// This replica's device id (64 hex digits).
    #[wasm_bindgen(getter)]
    pub fn device(&self) -> String {
        self.inner.device().to_string()
    }

    /// Runs one transaction sent in the compact form `replica.js` builds (described at
    /// `decode_compact`). Nothing is applied if any write is refused.
    ///
    /// One call per transaction, rather than one per write, because crossing into wasm costs
    /// about as much as a write itself; and no JSON for names and plain values, because
    /// parsing it cost more than the boundary.
    #[wasm_bindgen(js_name = writeCompact)]
    pub fn write_compact(
        &mut self,
        text: &str,
        numbers: &[f64],
        json: Option<String>,
    ) -> JsResult<()> {
        let writes = decode_compact(text, numbers, json.as_deref())?;
        self.apply(writes)
    }

    /// Runs one transaction given as the JSON text of `[kind, collection, id, field, value]`
    /// lists: the form `replica.js` falls back to for arguments the compact form of
    /// [`Replica::write_compact`] does not carry. Nothing is applied if any write is refused.
    pub fn write(&mut self, ops: &str) -> JsResult<()> {
        let mut ops = parse_json_writes(ops)?;
        // Shapes are checked before anything is written, so the transaction fails only for
        // what the core refuses (names, sizes, missing documents).
        let writes = ops
            .iter_mut()
            .map(|(kind, collection, id, field, value)| {
                let value = std::mem::replace(value, SentValue::Plain(Value::Null));
                Write::new(*kind, collection, id, field.as_deref(), value)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.apply(writes)
    }

    /// The live document `id` of `collection` as a plain object `{ id, ...fields }`, or
    /// `undefined`.
    ///
    /// Through JSON text and `JSON.parse`, like [`Replica::to_json_text`]: integers beyond
    /// 2^53 become the nearest number, as `toJSON()` gives them, and this module needs no
    /// second way of building JavaScript values.
    pub fn get(&self, collection: &str, id: &str) -> JsValue {
        match self.inner.get(collection, id) {
            Some(doc) => {
                let mut text = Vec::new();
                write_json(&mut text, &js::document_json(&doc));
                let text = String::from_utf8(text).expect("serde_json writes UTF-8");
                js_sys::JSON::parse(&text).expect("JSON.parse reads what serde_json writes")
            }
            None => JsValue::UNDEFINED,
        }
    }

    /// Every live document as JSON text: `{ collection: { id: { field: value } } }`.
    /// `replica.js` parses it: one string across the boundary is far cheaper than building
    /// a million JavaScript properties one call at a time. Written document by document, so
    /// no JSON tree of the whole replica is ever held.
    #[wasm_bindgen(js_name = toJsonText)]
    pub fn to_json_text(&self) -> String {
        let mut out = Vec::new();
        out.push(b'{');
        for (i, collection) in self.inner.collection_names().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json(&mut out, collection);
            out.extend_from_slice(b":{");
            for (j, doc) in self.inner.documents(collection).enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                write_json(&mut out, doc.id());
                out.push(b':');
                write_json(&mut out, &doc.to_json());
            }
            out.push(b'}');
        }
        out.push(b'}');
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    /// The whole replica in the canonical encoding (what [`Replica::load`] and
    /// [`Replica::merge`] read).
    pub fn encode(&self) -> Vec<u8> {
        self.inner.state().encode()
    }

    /// What this replica has seen, to send to a peer that answers with
    /// [`Replica::encode_since`].
    #[wasm_bindgen(js_name = versionVector)]
    pub fn version_vector(&self) -> Vec<u8> {
        encode_version_vector(&self.inner.version_vector())
    }

    /// The entries newer than a peer's version vector (from [`Replica::version_vector`]):
    /// merging them brings that peer up to date with this replica.
    #[wasm_bindgen(js_name = encodeSince)]
    pub fn encode_since(&self, version_vector: &[u8]) -> JsResult<Vec<u8>> {
        let vv = decode_version_vector(version_vector)?;
        Ok(self.inner.changes_since(&vv).encode())
    }

    /// Merges bytes from [`Replica::encode`] or [`Replica::encode_since`] of any replica.
    /// Returns the number of documents that changed. Fails with a `decode.*` code, changing
    /// nothing, for any other bytes.
    pub fn merge(&mut self, bytes: &[u8]) -> JsResult<u32> {
        let changed = self
            .inner
            .merge_encoded(bytes, js::now_millis())
            .map_err(StoreError::from)?;
        Ok(changed as u32)
    }
}

impl Replica {
    /// Applies `writes` as one transaction: all of them, or none if one is refused. An
    /// in-memory replica's writes travel in `encode` and `encodeSince`, so the transaction's
    /// own changes are not built.
    fn apply(&mut self, writes: Vec<Write<'_>>) -> JsResult<()> {
        self.inner
            .apply(js::now_millis(), |w| {
                writes.into_iter().try_for_each(|write| write.apply(w))
            })
            .map_err(StoreError::from)?;
        Ok(())
    }
}

/// Appends `value` as JSON.
fn write_json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    serde_json::to_writer(out, value).expect("strings and JSON values always serialize");
}

/// The given device id, or a fresh random one.
fn device_id(device: Option<String>) -> Result<DeviceId, StoreError> {
    match device {
        Some(hex) => hex
            .parse()
            .map_err(|e| StoreError::BadArgument(format!("{e}"))),
        None => {
            // A public key like every other device's: the base point times a clamped random
            // scalar, as Ed25519 makes a public key from the first half of its hashed seed. An
            // in-memory replica signs nothing, so there is no seed to hash and keep: leaving
            // out `DeviceKey` leaves SHA-512 out of this module's wasm.
            let mut scalar = [0u8; 32];
            js::random_bytes(&mut scalar)?;
            let point = EdwardsPoint::mul_base_clamped(scalar);
            Ok(DeviceId::from_bytes(point.compress().to_bytes()))
        }
    }
}

/// `format:u8 (device-id:32 hlc:u64le)*`, devices ascending. Fixed width: vectors hold one
/// entry per device that ever wrote, and are sent once per exchange.
fn encode_version_vector(vv: &VersionVector) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + vv.len() * VERSION_VECTOR_ENTRY_BYTES);
    out.push(VERSION_VECTOR_FORMAT);
    for (device, hlc) in vv.iter() {
        out.extend_from_slice(device.as_bytes());
        out.extend_from_slice(&hlc.as_u64().to_le_bytes());
    }
    out
}

fn decode_version_vector(bytes: &[u8]) -> Result<VersionVector, StoreError> {
    let bad = |what: &str| StoreError::BadArgument(format!("not a version vector: {what}"));
    let (&format, entries) = bytes.split_first().ok_or_else(|| bad("empty"))?;
    if format != VERSION_VECTOR_FORMAT {
        return Err(bad("unknown format; upgrade tidemark"));
    }
    if entries.len() % VERSION_VECTOR_ENTRY_BYTES != 0 {
        return Err(bad("cut short"));
    }
    let mut vv = VersionVector::new();
    for entry in entries.chunks_exact(VERSION_VECTOR_ENTRY_BYTES) {
        let (device, hlc) = entry.split_at(DEVICE_ID_BYTES);
        let device = DeviceId::from_bytes(device.try_into().expect("split at the id's length"));
        let hlc = Hlc::from_u64(u64::from_le_bytes(hlc.try_into().expect("8 bytes remain")));
        vv.observe(Stamp::new(hlc, device));
    }
    Ok(vv)
}
