//! Ours: `tidemark-core`. A collection "docs" of documents "d{n}" with fields "f{k}"; every
//! set goes through `Replica::write` by name, as an application's would.

use tidemark_core::{
    DeviceId, DeviceKey, Hlc, OpenOptions, Pack, PackHeader, Replica, Stamp, State, Value,
    VersionVector,
};

use crate::generator::{Set, SplitMix64};
use crate::store::{COLLECTION, Care, Names, SINGLE_KEY, Store};

/// Wall clock of the first transaction, in milliseconds: a present-day time, so stamps and
/// their encoded deltas look like real devices' ones. Each transaction is one millisecond later.
const START_WALL_MS: u64 = 1_750_000_000_000;
/// The document W3 writes to.
const SINGLE_DOC: &str = "d0";

/// A Tidemark replica and its device's wall clock.
#[derive(Debug)]
pub(crate) struct Tidemark {
    replica: Replica,
    wall_ms: u64,
}

/// Replica `n`'s signing key. Deriving an Ed25519 key costs about as much as a signature, so
/// W3 makes its keys before anything is timed.
fn device_key(replica: u64) -> DeviceKey {
    DeviceKey::from_seed(SplitMix64::new(0x7464_6d6b ^ replica).bytes32())
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(v) => Some(*v),
        _ => None,
    }
}

impl Tidemark {
    fn with_device(device: DeviceId) -> Tidemark {
        Tidemark {
            replica: Replica::new(device),
            wall_ms: START_WALL_MS,
        }
    }

    fn merge(&mut self, state: &State) {
        self.replica.merge(state, self.wall_ms);
    }
}

impl Store for Tidemark {
    const NAME: &'static str = "tidemark";
    const SOLO_SETUP: &'static str = "documents are keys of the collection; nothing to create";
    const SINGLE_KEY_AT: &'static str = "field \"v\" of document \"d0\" in collection \"docs\"";

    fn care(_: Care) -> &'static str {
        "none needed (documents are keys, fields merge one by one)"
    }

    fn new(replica: u64, _: Care) -> Tidemark {
        Tidemark::with_device(device_key(replica).device_id())
    }

    fn transact(&mut self, names: &Names, sets: &[Set]) {
        // `apply`, not `write`: like the browser's in-memory `Replica`, this replica's writes
        // travel in `encode` and `changes_since`, so it does not build each transaction's
        // changes (a store, which journals them, does).
        self.replica
            .apply(self.wall_ms, |w| {
                for s in sets {
                    w.set(COLLECTION, names.doc(s.doc), names.field(s.field), s.value)?;
                }
                Ok(())
            })
            .expect("valid writes succeed");
        self.wall_ms += 1;
    }

    fn encode(&self) -> Vec<u8> {
        self.replica.state().encode()
    }

    fn load(bytes: &[u8]) -> Tidemark {
        let state = State::decode(bytes).expect("our own encoding decodes");
        Tidemark {
            replica: Replica::from_state(device_key(u64::MAX).device_id(), state),
            wall_ms: START_WALL_MS,
        }
    }

    fn read_all(
        &self,
        names: &Names,
        docs: u32,
        fields: u32,
        mut visit: impl FnMut(u32, u32, i64),
    ) {
        for d in 0..docs {
            let Some(doc) = self.replica.get(COLLECTION, names.doc(d)) else {
                continue;
            };
            for f in 0..fields {
                if let Some(v) = doc.get(names.field(f)).as_deref().and_then(int) {
                    visit(d, f, v);
                }
            }
        }
    }

    /// The version vector: per device, its 32-byte id and its clock as a varint. (Core has
    /// no wire form of its own for a bare vector; pack headers carry it the same way.)
    fn summary(&mut self) -> Vec<u8> {
        let vv = self.replica.version_vector();
        let mut out = Vec::new();
        put_varint(&mut out, vv.len() as u64);
        for (device, hlc) in vv.iter() {
            out.extend_from_slice(device.as_bytes());
            put_varint(&mut out, hlc.as_u64());
        }
        out
    }

    fn delta(&mut self, summary: &[u8]) -> Vec<u8> {
        let vv = read_version_vector(summary);
        self.replica.changes_since(&vv).encode()
    }

    fn apply(&mut self, delta: &[u8]) {
        self.replica
            .merge_encoded(delta, self.wall_ms)
            .expect("a delta decodes");
    }

    fn single_key_update(replica: u64, value: i64) -> Vec<u8> {
        let mut writer = Tidemark::new(replica, Care::Given);
        writer.wall_ms += replica;
        single_key_write(&mut writer, value).encode()
    }

    fn apply_update(&mut self, update: &[u8]) {
        self.replica
            .merge_encoded(update, self.wall_ms)
            .expect("an update decodes");
    }

    fn single_key_value(&self) -> Option<i64> {
        let doc = self.replica.get(COLLECTION, SINGLE_DOC)?;
        doc.get(SINGLE_KEY).as_deref().and_then(int)
    }
}

/// Sets W3's key on `writer` and returns the transaction's changes.
fn single_key_write(writer: &mut Tidemark, value: i64) -> State {
    writer
        .replica
        .write(writer.wall_ms, |w| {
            w.set(COLLECTION, SINGLE_DOC, SINGLE_KEY, value)
        })
        .expect("a valid write succeeds")
}

/// W3 as signed packs: replica `replica` sets the key once and seals its change as a level-0
/// pack signed by its device key, what it would upload.
pub(crate) fn single_key_pack(replica: u64, value: i64) -> Vec<u8> {
    let key = device_key(replica);
    let mut writer = Tidemark::with_device(key.device_id());
    writer.wall_ms += replica;
    let changes = single_key_write(&mut writer, value);
    let header = PackHeader {
        space: "bench".to_string(),
        author: key.device_id(),
        collection: COLLECTION.to_string(),
        level: 0,
        generation: 1,
        version_vector: changes.version_vector(),
        encrypted: false,
    };
    Pack::seal(&header, &changes, &key, None).expect("a device's own change seals")
}

/// Applies signed packs to `receiver` one by one, after checking all their signatures in one
/// batch (`Pack::open_batch`), or each on its own (`Pack::open`) when `batch` is false.
pub(crate) fn apply_packs(receiver: &mut Tidemark, packs: &[Vec<u8>], batch: bool) {
    let options = OpenOptions {
        collection: Some(COLLECTION),
        ..OpenOptions::default()
    };
    if batch {
        let refs: Vec<&[u8]> = packs.iter().map(Vec::as_slice).collect();
        for pack in Pack::open_batch(&refs, &options) {
            receiver.merge(&pack.expect("an honest pack opens").state);
        }
    } else {
        for bytes in packs {
            let pack = Pack::open(bytes, &options).expect("an honest pack opens");
            receiver.merge(&pack.state);
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn read_varint(bytes: &mut &[u8]) -> u64 {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().expect("varint within the summary");
        *bytes = rest;
        n |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            break;
        }
    }
    n
}

fn read_version_vector(mut bytes: &[u8]) -> VersionVector {
    let mut vv = VersionVector::new();
    for _ in 0..read_varint(&mut bytes) {
        let (id, rest) = bytes.split_at(32);
        bytes = rest;
        let device = DeviceId::from_bytes(id.try_into().expect("32 bytes"));
        let hlc = Hlc::from_u64(read_varint(&mut bytes));
        vv.observe(Stamp::new(hlc, device));
    }
    vv
}
