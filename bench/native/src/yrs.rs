//! yrs (Rust port of Yjs): a root map "docs" holding one nested map per document.
//!
//! Care: a nested map inserted at a key is a new object; two replicas that each insert "d7"
//! make two, and the map key shows one of them after a merge. Yjs has no mergeable nested map,
//! so the remedy is the same as automerge's: a shared genesis holding every "d{n}", applied to
//! both replicas before anything is timed or counted.
//!
//! W2's exchange is the Yjs one: the receiver's state vector, then the sender's diff (v1
//! encoding, yrs' default, as is the v1 snapshot used for W4 and W5).

use ::yrs::updates::decoder::Decode;
use ::yrs::updates::encoder::Encode;
use ::yrs::{Any, Doc, Map, MapPrelim, MapRef, Out, ReadTxn, StateVector, Transact, Update};

use crate::generator::Set;
use crate::store::{COLLECTION, Care, Names, SINGLE_KEY, Store};

/// A yrs document, its root map and the nested maps seen so far.
#[derive(Debug)]
pub(crate) struct YrsDoc {
    doc: Doc,
    docs: MapRef,
    maps: Vec<Option<MapRef>>,
}

fn client_id(replica: u64) -> u64 {
    // Yjs client ids are 53-bit (JavaScript numbers); stay well inside.
    replica + 1
}

fn int(value: &Out) -> Option<i64> {
    match value {
        Out::Any(Any::Number(n)) => n.as_i64(),
        _ => None,
    }
}

impl YrsDoc {
    fn from_doc(doc: Doc) -> YrsDoc {
        let docs = doc.get_or_insert_map(COLLECTION);
        YrsDoc {
            doc,
            docs,
            maps: Vec::new(),
        }
    }

    fn apply_v1(&mut self, update: &[u8]) {
        let update = Update::decode_v1(update).expect("an update decodes");
        self.doc
            .transact_mut()
            .apply_update(update)
            .expect("an update applies");
    }
}

impl Store for YrsDoc {
    const NAME: &'static str = "yrs";
    const SOLO_SETUP: &'static str = "`MapPrelim` inserted at each \"d{n}\" on first use";
    const SINGLE_KEY_AT: &'static str = "key \"v\" of root map \"docs\"";

    fn care(care: Care) -> &'static str {
        match care {
            Care::Given => "shared genesis (every \"d{n}\" created once, applied to both)",
            Care::Withheld => "none: each replica inserts \"d{n}\" itself",
        }
    }

    fn new(replica: u64, _: Care) -> YrsDoc {
        YrsDoc::from_doc(Doc::with_client_id(client_id(replica)))
    }

    fn pair(names: &Names, docs: u32, care: Care) -> (YrsDoc, YrsDoc) {
        let (mut a, mut b) = (Self::new(1, care), Self::new(2, care));
        if care == Care::Given {
            let genesis = Doc::with_client_id(client_id(1 << 40));
            let root = genesis.get_or_insert_map(COLLECTION);
            let bytes = {
                let mut txn = genesis.transact_mut();
                for d in 0..docs {
                    root.insert(&mut txn, names.doc(d), MapPrelim::default());
                }
                txn.encode_state_as_update_v1(&StateVector::default())
            };
            a.apply_v1(&bytes);
            b.apply_v1(&bytes);
        }
        (a, b)
    }

    fn transact(&mut self, names: &Names, sets: &[Set]) {
        let YrsDoc { doc, docs, maps } = self;
        let mut txn = doc.transact_mut();
        for s in sets {
            let d = s.doc as usize;
            if maps.len() <= d {
                maps.resize(d + 1, None);
            }
            let map = maps[d].get_or_insert_with(|| match docs.get(&txn, names.doc(s.doc)) {
                Some(Out::YMap(map)) => map,
                _ => docs.insert(&mut txn, names.doc(s.doc), MapPrelim::default()),
            });
            map.insert(&mut txn, names.field(s.field), s.value);
        }
        // Dropping the transaction commits it.
    }

    fn encode(&self) -> Vec<u8> {
        self.doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    fn load(bytes: &[u8]) -> YrsDoc {
        let mut loaded = YrsDoc::new(u64::MAX >> 12, Care::Given);
        loaded.apply_v1(bytes);
        loaded
    }

    fn read_all(
        &self,
        names: &Names,
        docs: u32,
        fields: u32,
        mut visit: impl FnMut(u32, u32, i64),
    ) {
        let txn = self.doc.transact();
        for d in 0..docs {
            let Some(Out::YMap(map)) = self.docs.get(&txn, names.doc(d)) else {
                continue;
            };
            for f in 0..fields {
                if let Some(v) = map.get(&txn, names.field(f)).as_ref().and_then(int) {
                    visit(d, f, v);
                }
            }
        }
    }

    fn summary(&mut self) -> Vec<u8> {
        self.doc.transact().state_vector().encode_v1()
    }

    fn delta(&mut self, summary: &[u8]) -> Vec<u8> {
        let sv = StateVector::decode_v1(summary).expect("a state vector decodes");
        self.doc.transact().encode_diff_v1(&sv)
    }

    fn apply(&mut self, delta: &[u8]) {
        self.apply_v1(delta);
    }

    fn single_key_update(replica: u64, value: i64) -> Vec<u8> {
        let writer = YrsDoc::new(replica, Care::Given);
        let mut txn = writer.doc.transact_mut();
        writer.docs.insert(&mut txn, SINGLE_KEY, value);
        txn.encode_update_v1()
    }

    fn apply_update(&mut self, update: &[u8]) {
        self.apply_v1(update);
    }

    fn single_key_value(&self) -> Option<i64> {
        let txn = self.doc.transact();
        self.docs.get(&txn, SINGLE_KEY).as_ref().and_then(int)
    }
}
