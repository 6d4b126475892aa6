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
use tidemark_core::{DEVICE_ID_BYTES, DeviceId, Hlc, Stamp, State, Value, VersionVector};
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

/// One write of a transaction, as `replica.js` sends it: `[kind, collection, id, field,
/// value]`, with `null` where a kind takes no field or value.
#[derive(Debug)]
struct Op(u8, String, String, Option<String>, serde_json::Value);

impl Op {
    /// The writes of a transaction from their JSON text. Taken apart by hand rather than
    /// with `#[derive(Deserialize)]`: the derived code, and the error messages it formats
    /// (floats included), were a large share of this module's wasm.
    fn parse_all(text: &str) -> Result<Vec<Op>, StoreError> {
        let bad = |what: &str| {
            StoreError::BadArgument(format!("a transaction is a list of writes: {what}"))
        };
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
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
                Ok(Op(kind, collection, id, field, value))
            })
            .collect()
    }
}

/// Kinds of [`Op`]; `replica.js` uses the same numbers.
const OP_SET: u8 = 0;
const OP_UPSERT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_RESTORE: u8 = 3;
const OP_INCREMENT: u8 = 4;

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

    /// Runs one transaction: `ops` is the JSON text of `[kind, collection, id, field, value]`
    /// arrays (`replica.js` builds it). Nothing is applied if any write is refused.
    ///
    /// One JSON text per transaction, rather than one call per write, because crossing into
    /// wasm costs about as much as a write itself; `JSON.parse` on this side is cheap.
    pub fn write(&mut self, ops: &str) -> JsResult<()> {
        let ops = Op::parse_all(ops)?;
        // Shapes are checked before anything is written, so the transaction below fails
        // only for what the core refuses (names, sizes, missing documents).
        for Op(kind, _, _, field, value) in &ops {
            let shape_ok = match *kind {
                OP_SET => field.is_some(),
                OP_UPSERT => value.is_object(),
                OP_DELETE | OP_RESTORE => true,
                OP_INCREMENT => field.is_some() && value.is_i64(),
                _ => false,
            };
            if !shape_ok {
                return Err(StoreError::BadArgument(format!(
                    "a malformed write of kind {kind} in a transaction"
                ))
                .into());
            }
        }
        self.inner
            .write(js::now_millis(), |w| {
                for Op(kind, collection, id, field, value) in ops {
                    let field = field.unwrap_or_default();
                    match (kind, value) {
                        (OP_SET, value) => w.set(&collection, &id, &field, Value::from(value))?,
                        (OP_UPSERT, serde_json::Value::Object(fields)) if fields.is_empty() => {
                            // A document with no fields still exists: `restore` marks it.
                            w.restore(&collection, &id)?;
                        }
                        (OP_UPSERT, serde_json::Value::Object(fields)) => w.upsert(
                            &collection,
                            &id,
                            fields.into_iter().map(|(k, v)| (k, Value::from(v))),
                        )?,
                        (OP_DELETE, _) => w.delete(&collection, &id)?,
                        (OP_RESTORE, _) => w.restore(&collection, &id)?,
                        (_, by) => {
                            // Only increments are left: the shapes were checked above.
                            let by = by.as_i64().unwrap_or_default();
                            w.increment(&collection, &id, &field, by)?;
                        }
                    }
                }
                Ok(())
            })
            .map_err(StoreError::from)?;
        Ok(())
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
        let remote = State::decode(bytes).map_err(StoreError::from)?;
        let changed = self.inner.merge(&remote, js::now_millis());
        Ok(changed.len() as u32)
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
