//! The engine's durable state as bytes.
//!
//! ```text
//! checkpoint = magic "TDMS" version:u8 space:string device:32 server-key:(0 | 1 key:32)
//!              clock:varint offset:zigzag-varint state:bytes eviction:bytes(JSON)
//!              grant:bytes(JSON, empty when none) collection-count:varint collection*
//! collection = name:string outbox-count:varint (state:bytes)*
//!              (generation:varint etag state:bytes){LEVEL_COUNT}
//!              remote-count:varint (device:32 (generation:varint etag){LEVEL_COUNT})*
//! etag       = 0 | 1 etag:string
//! ```
//!
//! One blob, replaced whole: a driver stores it atomically (a file rename, one IndexedDB
//! transaction), so the merged state and the ETags that say it was merged never disagree.

use std::collections::BTreeMap;

use crate::certificate::ServerPublicKey;
use crate::clock::Hlc;
use crate::codec::{Reader, put_bytes, put_varint};
use crate::device::{DEVICE_ID_BYTES, DeviceId};
use crate::error::DecodeError;
use crate::pack::LEVEL_COUNT;
use crate::replica::Eviction;
use crate::state::State;
use crate::sync::engine::{CollectionSync, RemoteLevel, SyncEngine};
use crate::sync::levels::OwnLevel;

const MAGIC: [u8; 4] = *b"TDMS";
const VERSION: u8 = 1;
/// Fields are bounded only by the bytes present (the reader checks lengths against them).
const MAX_FIELD_BYTES: usize = usize::MAX;
const MAX_NAME_BYTES: usize = 4_096;

/// A decoded checkpoint.
pub(crate) struct Saved {
    pub(crate) space: String,
    pub(crate) device: DeviceId,
    pub(crate) server_key: Option<ServerPublicKey>,
    pub(crate) clock: Hlc,
    pub(crate) offset_millis: i64,
    pub(crate) state: State,
    pub(crate) eviction: Eviction,
    pub(crate) grant: Option<Vec<u8>>,
    pub(crate) collections: BTreeMap<String, SavedCollection>,
}

/// The durable part of one collection's sync.
pub(crate) struct SavedCollection {
    pub(crate) outbox: Vec<State>,
    pub(crate) levels: Vec<OwnLevel>,
    pub(crate) remotes: BTreeMap<DeviceId, Vec<RemoteLevel>>,
}

pub(crate) fn encode(engine: &SyncEngine) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    put_bytes(&mut out, engine.space().as_bytes());
    out.extend_from_slice(engine.device().as_bytes());
    match &engine.server_key {
        Some(key) => {
            out.push(1);
            out.extend_from_slice(key.as_bytes());
        }
        None => out.push(0),
    }
    let clock = engine.replica.clock();
    put_varint(&mut out, clock.last().as_u64());
    put_varint(&mut out, zigzag(clock.offset_millis()));
    put_bytes(&mut out, &engine.replica.state().encode());
    let eviction = serde_json::to_vec(engine.replica.eviction()).expect("eviction serializes");
    put_bytes(&mut out, &eviction);
    put_bytes(
        &mut out,
        engine.grant.as_ref().map_or(&[][..], |g| &g.raw[..]),
    );
    put_varint(&mut out, engine.collections.len() as u64);
    for (name, collection) in &engine.collections {
        encode_collection(&mut out, name, collection);
    }
    out
}

fn encode_collection(out: &mut Vec<u8>, name: &str, collection: &CollectionSync) {
    put_bytes(out, name.as_bytes());
    put_varint(out, collection.outbox.len() as u64);
    for batch in &collection.outbox {
        put_bytes(out, &batch.encode());
    }
    for level in &collection.levels {
        put_varint(out, level.generation);
        put_etag(out, level.etag.as_deref());
        put_bytes(out, &level.state.encode());
    }
    put_varint(out, collection.remotes.len() as u64);
    for (device, levels) in &collection.remotes {
        out.extend_from_slice(device.as_bytes());
        for level in levels {
            put_varint(out, level.generation);
            put_etag(out, level.etag.as_deref());
        }
    }
}

fn put_etag(out: &mut Vec<u8>, etag: Option<&str>) {
    match etag {
        Some(etag) => {
            out.push(1);
            put_bytes(out, etag.as_bytes());
        }
        None => out.push(0),
    }
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Saved, DecodeError> {
    let mut r = Reader::new(bytes);
    if r.array::<4>()? != MAGIC {
        return Err(r.malformed("not a tidemark sync checkpoint"));
    }
    if r.u8()? != VERSION {
        return Err(r.malformed("unknown checkpoint version"));
    }
    let space = r.str(MAX_NAME_BYTES)?.to_string();
    let device = DeviceId::from_bytes(r.array::<DEVICE_ID_BYTES>()?);
    let server_key = match r.u8()? {
        0 => None,
        1 => Some(ServerPublicKey::from_bytes(r.array::<32>()?)),
        _ => return Err(r.malformed("bad server key flag")),
    };
    let clock = Hlc::from_u64(r.varint()?);
    let offset_millis = unzigzag(r.varint()?);
    let state = State::decode(r.bytes(MAX_FIELD_BYTES)?)?;
    let eviction = serde_json::from_slice(r.bytes(MAX_FIELD_BYTES)?)
        .map_err(|_| r.malformed("bad eviction list"))?;
    let grant = r.bytes(MAX_FIELD_BYTES)?;
    let grant = (!grant.is_empty()).then(|| grant.to_vec());
    let count = r.count(1)?;
    let mut collections = BTreeMap::new();
    for _ in 0..count {
        let name = r.str(MAX_NAME_BYTES)?.to_string();
        let outbox_count = r.count(1)?;
        let outbox = (0..outbox_count)
            .map(|_| State::decode(r.bytes(MAX_FIELD_BYTES)?))
            .collect::<Result<Vec<_>, _>>()?;
        let mut levels = Vec::with_capacity(usize::from(LEVEL_COUNT));
        for _ in 0..LEVEL_COUNT {
            let generation = r.varint()?;
            let etag = etag(&mut r)?;
            let state = State::decode(r.bytes(MAX_FIELD_BYTES)?)?;
            levels.push(OwnLevel {
                state,
                generation,
                etag,
            });
        }
        let remote_count = r.count(DEVICE_ID_BYTES)?;
        let mut remotes = BTreeMap::new();
        for _ in 0..remote_count {
            let device = DeviceId::from_bytes(r.array::<DEVICE_ID_BYTES>()?);
            let mut levels = Vec::with_capacity(usize::from(LEVEL_COUNT));
            for _ in 0..LEVEL_COUNT {
                let generation = r.varint()?;
                let etag = etag(&mut r)?;
                levels.push(RemoteLevel::merged(etag, generation));
            }
            remotes.insert(device, levels);
        }
        collections.insert(
            name,
            SavedCollection {
                outbox,
                levels,
                remotes,
            },
        );
    }
    r.finish()?;
    Ok(Saved {
        space,
        device,
        server_key,
        clock,
        offset_millis,
        state,
        eviction,
        grant,
        collections,
    })
}

fn etag(r: &mut Reader<'_>) -> Result<Option<String>, DecodeError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.str(MAX_NAME_BYTES)?.to_string())),
        _ => Err(r.malformed("bad etag flag")),
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}
