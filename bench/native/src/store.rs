//! What every library under test provides: the few operations the workloads are made of.
//!
//! Each method is one thing an application does, written the way that library's docs
//! recommend. Where a library hands out handles to nested maps, its module caches them
//! per document (once resolved, reused for later sets) — the more generous choice for the
//! peers, since Tidemark looks names up on every set.

use crate::generator::Set;

/// The collection (Tidemark) or top-level map (peers) every workload writes to.
pub(crate) const COLLECTION: &str = "docs";
/// The key of W3, the one every replica sets.
pub(crate) const SINGLE_KEY: &str = "v";

/// Document names "d0", "d1", … and field names "f0", "f1", …, made before anything is timed
/// so the timed loops measure the store, not string formatting.
#[derive(Debug)]
pub(crate) struct Names {
    pub(crate) docs: Vec<String>,
    pub(crate) fields: Vec<String>,
}

impl Names {
    pub(crate) fn new(docs: u32, fields: u32) -> Names {
        Names {
            docs: (0..docs).map(|n| format!("d{n}")).collect(),
            fields: (0..fields).map(|k| format!("f{k}")).collect(),
        }
    }

    pub(crate) fn doc(&self, doc: u32) -> &str {
        &self.docs[doc as usize]
    }

    pub(crate) fn field(&self, field: u32) -> &str {
        &self.fields[field as usize]
    }
}

/// Whether a library gets the setup it needs to merge nested maps created concurrently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Care {
    /// The library's documented remedy (see [`Store::care`]).
    Given,
    /// Nested maps created lazily, independently on each replica: the naive use.
    Withheld,
}

/// One library, as the workloads drive it.
pub(crate) trait Store: Sized {
    /// The name in the tables.
    const NAME: &'static str;

    /// How a replica writing alone (W1, W4, W5) makes its nested maps, said in the output.
    const SOLO_SETUP: &'static str;

    /// Where W3's single key lives, said in the output.
    const SINGLE_KEY_AT: &'static str;

    /// What the library was given to merge nested maps created concurrently (W2), said in the
    /// output.
    fn care(care: Care) -> &'static str;

    /// An empty replica with identity number `replica` (an actor, client, peer or device id
    /// derived from it; distinct numbers give distinct identities).
    fn new(replica: u64, care: Care) -> Self;

    /// Two empty replicas about to write concurrently to the same documents (W2). Libraries
    /// whose care is a shared genesis start both from it; `docs` is how many documents it
    /// must create.
    fn pair(names: &Names, docs: u32, care: Care) -> (Self, Self) {
        let _ = (names, docs);
        (Self::new(1, care), Self::new(2, care))
    }

    /// One transaction applying `sets` in order.
    fn transact(&mut self, names: &Names, sets: &[Set]);

    /// The whole state in the library's standard storage encoding.
    fn encode(&self) -> Vec<u8>;

    /// A replica loaded from [`Store::encode`]'s bytes.
    fn load(bytes: &[u8]) -> Self;

    /// Calls `visit(doc, field, value)` for every integer field of documents `0..docs`,
    /// fields `0..fields`, looking each up by name, in key order.
    fn read_all(&self, names: &Names, docs: u32, fields: u32, visit: impl FnMut(u32, u32, i64));

    /// W2, step 1 on the replica to be brought up to date: what it tells the other about
    /// what it has (version vector, state vector, or sync message).
    fn summary(&mut self) -> Vec<u8>;

    /// W2, step 2 on the other replica: what the first lacks, given its summary.
    fn delta(&mut self, summary: &[u8]) -> Vec<u8>;

    /// W2, step 3 on the first replica: apply the delta.
    fn apply(&mut self, delta: &[u8]);

    /// W3: a fresh replica `replica` sets [`SINGLE_KEY`] to `value` once; returns the update
    /// it would send.
    fn single_key_update(replica: u64, value: i64) -> Vec<u8>;

    /// W3: applies one such update.
    fn apply_update(&mut self, update: &[u8]);

    /// W3: the value [`SINGLE_KEY`] reads as.
    fn single_key_value(&self) -> Option<i64>;

    /// Every `(doc, field, value)` visible, in key order.
    fn values(&self, names: &Names, docs: u32, fields: u32) -> Vec<(u32, u32, i64)> {
        let mut out = Vec::new();
        self.read_all(names, docs, fields, |d, f, v| out.push((d, f, v)));
        out
    }
}
