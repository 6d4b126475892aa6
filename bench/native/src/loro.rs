//! loro: a root map "docs" holding one nested map per document.
//!
//! Care: `LoroMap::ensure_mergeable_map` (loro ≥ 1.13) gives the child at a key a container id
//! derived from (parent, key, kind), so replicas that create "d7" independently get the same
//! map and their fields merge. Without care, the child is made with
//! `get_or_create_container`, whose id comes from the creating operation: concurrent creations
//! fork and the map key shows one of them.
//!
//! W2's exchange is loro's: the receiver's oplog version vector, then the sender's updates
//! since it. W4 and W5 use full snapshots (`ExportMode::Snapshot`, history included), the
//! form that can go on syncing.

use ::loro::{Container, ExportMode, LoroDoc, LoroMap, LoroValue, ValueOrContainer, VersionVector};

use crate::generator::Set;
use crate::store::{COLLECTION, Care, Names, SINGLE_KEY, Store};

/// A loro document, its root map and the nested maps seen so far.
#[derive(Debug)]
pub(crate) struct LoroStore {
    doc: LoroDoc,
    docs: LoroMap,
    maps: Vec<Option<LoroMap>>,
    care: Care,
}

fn int(value: &ValueOrContainer) -> Option<i64> {
    match value {
        ValueOrContainer::Value(LoroValue::I64(v)) => Some(*v),
        _ => None,
    }
}

impl LoroStore {
    fn from_doc(doc: LoroDoc, care: Care) -> LoroStore {
        let docs = doc.get_map(COLLECTION);
        LoroStore {
            doc,
            docs,
            maps: Vec::new(),
            care,
        }
    }

    /// The nested map of document `name`, created if absent, the way `care` says.
    fn child(docs: &LoroMap, name: &str, care: Care) -> LoroMap {
        match care {
            Care::Given => docs.ensure_mergeable_map(name).expect("a map at the key"),
            #[allow(deprecated)] // the non-mergeable path is the point of the `Withheld` rows
            Care::Withheld => docs
                .get_or_create_container(name, LoroMap::new())
                .expect("a map at the key"),
        }
    }
}

impl Store for LoroStore {
    const NAME: &'static str = "loro";
    const SOLO_SETUP: &'static str = "`ensure_mergeable_map` for each \"d{n}\" on first use";
    const SINGLE_KEY_AT: &'static str = "key \"v\" of root map \"docs\"";

    fn care(care: Care) -> &'static str {
        match care {
            Care::Given => "`ensure_mergeable_map` for every \"d{n}\"",
            Care::Withheld => "none: `get_or_create_container` for \"d{n}\"",
        }
    }

    fn new(replica: u64, care: Care) -> LoroStore {
        let doc = LoroDoc::new();
        doc.set_peer_id(replica + 1).expect("a valid peer id");
        LoroStore::from_doc(doc, care)
    }

    fn transact(&mut self, names: &Names, sets: &[Set]) {
        let LoroStore {
            docs, maps, care, ..
        } = self;
        for s in sets {
            let d = s.doc as usize;
            if maps.len() <= d {
                maps.resize(d + 1, None);
            }
            let map = maps[d].get_or_insert_with(|| Self::child(docs, names.doc(s.doc), *care));
            map.insert(names.field(s.field), s.value).expect("insert");
        }
        // Loro gathers operations in an implicit transaction until `commit`.
        self.doc.commit();
    }

    fn encode(&self) -> Vec<u8> {
        self.doc.export(ExportMode::Snapshot).expect("export")
    }

    fn load(bytes: &[u8]) -> LoroStore {
        LoroStore::from_doc(LoroDoc::from_snapshot(bytes).expect("load"), Care::Given)
    }

    fn read_all(
        &self,
        names: &Names,
        docs: u32,
        fields: u32,
        mut visit: impl FnMut(u32, u32, i64),
    ) {
        for d in 0..docs {
            let Some(ValueOrContainer::Container(Container::Map(map))) =
                self.docs.get(names.doc(d))
            else {
                continue;
            };
            for f in 0..fields {
                if let Some(v) = map.get(names.field(f)).as_ref().and_then(int) {
                    visit(d, f, v);
                }
            }
        }
    }

    fn summary(&mut self) -> Vec<u8> {
        self.doc.oplog_vv().encode()
    }

    fn delta(&mut self, summary: &[u8]) -> Vec<u8> {
        let vv = VersionVector::decode(summary).expect("a version vector decodes");
        self.doc.export(ExportMode::updates(&vv)).expect("export")
    }

    fn apply(&mut self, delta: &[u8]) {
        self.doc.import(delta).expect("import");
    }

    fn single_key_update(replica: u64, value: i64) -> Vec<u8> {
        let writer = LoroStore::new(replica, Care::Given);
        writer.docs.insert(SINGLE_KEY, value).expect("insert");
        writer.doc.commit();
        writer
            .doc
            .export(ExportMode::all_updates())
            .expect("export")
    }

    fn apply_update(&mut self, update: &[u8]) {
        self.doc.import(update).expect("import");
    }

    fn single_key_value(&self) -> Option<i64> {
        self.docs.get(SINGLE_KEY).as_ref().and_then(int)
    }
}
