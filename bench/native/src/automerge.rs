//! automerge: a root map "docs" holding one nested map per document.
//!
//! Care: automerge gives every `put_object` a fresh object id, so two replicas that each
//! create "docs" (or "docs"."d7") make two objects, and the key shows only one of them after a
//! merge. The documented remedy is a shared genesis: one replica creates the structure, the
//! others start from a copy of it. W2 with care starts both replicas from a genesis holding
//! "docs" and every "d{n}"; the genesis is made and copied before anything is timed or counted.
//!
//! W2's exchange is automerge's own sync protocol: the receiver's first sync message (heads and
//! a Bloom filter of its changes), then the sender's reply carrying the changes it lacks.

use ::automerge::sync::{Message, State as SyncState, SyncDoc};
use ::automerge::transaction::Transactable;
use ::automerge::{ActorId, Automerge, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};

use crate::generator::{Set, SplitMix64};
use crate::store::{COLLECTION, Care, Names, SINGLE_KEY, Store};

/// An automerge document, with the object ids of "docs" and of the nested maps seen so far.
#[derive(Debug)]
pub(crate) struct AutomergeDoc {
    doc: Automerge,
    docs: Option<ObjId>,
    maps: Vec<Option<ObjId>>,
    sync: SyncState,
}

fn actor(replica: u64) -> ActorId {
    ActorId::from(&SplitMix64::new(0x616d ^ replica).bytes32()[..16])
}

fn int(value: &Value<'_>) -> Option<i64> {
    match value {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Int(v) => Some(*v),
            _ => None,
        },
        Value::Object(_) => None,
    }
}

/// The map at `key` of `parent`, if it holds one.
fn map_at(doc: &impl ReadDoc, parent: &ObjId, key: &str) -> Option<ObjId> {
    match doc.get(parent, key).expect("a map lookup") {
        Some((Value::Object(ObjType::Map), id)) => Some(id),
        _ => None,
    }
}

impl AutomergeDoc {
    fn from_doc(doc: Automerge) -> AutomergeDoc {
        AutomergeDoc {
            doc,
            docs: None,
            maps: Vec::new(),
            sync: SyncState::new(),
        }
    }
}

impl Store for AutomergeDoc {
    const NAME: &'static str = "automerge";
    const SOLO_SETUP: &'static str = "`put_object` of \"docs\" and each \"d{n}\" on first use";
    const SINGLE_KEY_AT: &'static str = "key \"v\" of the root map";

    fn care(care: Care) -> &'static str {
        match care {
            Care::Given => {
                "shared genesis (\"docs\" and every \"d{n}\" created once, copied to both)"
            }
            Care::Withheld => "none: each replica creates \"docs\" and \"d{n}\" itself",
        }
    }

    fn new(replica: u64, _: Care) -> AutomergeDoc {
        AutomergeDoc::from_doc(Automerge::new().with_actor(actor(replica)))
    }

    fn pair(names: &Names, docs: u32, care: Care) -> (AutomergeDoc, AutomergeDoc) {
        if care == Care::Withheld {
            return (Self::new(1, care), Self::new(2, care));
        }
        let mut genesis = Automerge::new().with_actor(actor(0));
        let mut tx = genesis.transaction();
        let root = tx.put_object(ROOT, COLLECTION, ObjType::Map).expect("put");
        for d in 0..docs {
            tx.put_object(&root, names.doc(d), ObjType::Map)
                .expect("put");
        }
        tx.commit();
        let bytes = genesis.save();
        let copy = |replica| {
            let doc = Automerge::load(&bytes)
                .expect("load")
                .with_actor(actor(replica));
            AutomergeDoc::from_doc(doc)
        };
        (copy(1), copy(2))
    }

    fn transact(&mut self, names: &Names, sets: &[Set]) {
        let AutomergeDoc {
            doc, docs, maps, ..
        } = self;
        let mut tx = doc.transaction();
        let docs = docs.get_or_insert_with(|| {
            map_at(&tx, &ROOT, COLLECTION)
                .unwrap_or_else(|| tx.put_object(ROOT, COLLECTION, ObjType::Map).expect("put"))
        });
        for s in sets {
            let d = s.doc as usize;
            if maps.len() <= d {
                maps.resize(d + 1, None);
            }
            let map = maps[d].get_or_insert_with(|| {
                map_at(&tx, docs, names.doc(s.doc)).unwrap_or_else(|| {
                    tx.put_object(&*docs, names.doc(s.doc), ObjType::Map)
                        .expect("put")
                })
            });
            tx.put(&*map, names.field(s.field), s.value).expect("put");
        }
        tx.commit();
    }

    fn encode(&self) -> Vec<u8> {
        self.doc.save()
    }

    fn load(bytes: &[u8]) -> AutomergeDoc {
        AutomergeDoc::from_doc(Automerge::load(bytes).expect("load"))
    }

    fn read_all(
        &self,
        names: &Names,
        docs: u32,
        fields: u32,
        mut visit: impl FnMut(u32, u32, i64),
    ) {
        let Some(root) = map_at(&self.doc, &ROOT, COLLECTION) else {
            return;
        };
        for d in 0..docs {
            let Some(map) = map_at(&self.doc, &root, names.doc(d)) else {
                continue;
            };
            for f in 0..fields {
                if let Some((value, _)) = self.doc.get(&map, names.field(f)).expect("get")
                    && let Some(v) = int(&value)
                {
                    visit(d, f, v);
                }
            }
        }
    }

    fn summary(&mut self) -> Vec<u8> {
        self.sync = SyncState::new();
        self.doc
            .generate_sync_message(&mut self.sync)
            .map(Message::encode)
            .unwrap_or_default()
    }

    fn delta(&mut self, summary: &[u8]) -> Vec<u8> {
        let mut state = SyncState::new();
        let message = Message::decode(summary).expect("a sync message decodes");
        self.doc
            .receive_sync_message(&mut state, message)
            .expect("receive");
        self.doc
            .generate_sync_message(&mut state)
            .map(Message::encode)
            .unwrap_or_default()
    }

    fn apply(&mut self, delta: &[u8]) {
        if delta.is_empty() {
            return;
        }
        let message = Message::decode(delta).expect("a sync message decodes");
        self.doc
            .receive_sync_message(&mut self.sync, message)
            .expect("receive");
    }

    fn single_key_update(replica: u64, value: i64) -> Vec<u8> {
        let mut doc = Automerge::new().with_actor(actor(replica));
        let mut tx = doc.transaction();
        tx.put(ROOT, SINGLE_KEY, value).expect("put");
        tx.commit();
        doc.get_last_local_change()
            .expect("one change")
            .raw_bytes()
            .to_vec()
    }

    fn apply_update(&mut self, update: &[u8]) {
        self.doc.load_incremental(update).expect("apply a change");
    }

    fn single_key_value(&self) -> Option<i64> {
        let (value, _) = self.doc.get(ROOT, SINGLE_KEY).expect("get")?;
        int(&value)
    }
}
