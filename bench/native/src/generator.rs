//! The one workload generator every library is fed from.
//!
//! Every operation list is made once, before any library runs, and the same slices are handed
//! to each library in turn: the libraries differ in how they do the work, never in what work
//! they do.

/// Every value written is an integer drawn uniformly from `0..VALUE_RANGE`.
pub(crate) const VALUE_RANGE: u64 = 1_000_000;

/// One set: field `field` of document `doc` takes `value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Set {
    pub(crate) doc: u32,
    pub(crate) field: u32,
    pub(crate) value: i64,
}

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014):
/// a 64-bit counter stepped by the golden-ratio increment, then mixed by two xor-shift-multiply
/// rounds. Tiny, fast, and the same sequence on every machine for a given seed.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    counter: u64,
}

impl SplitMix64 {
    const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { counter: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.counter = self.counter.wrapping_add(Self::GOLDEN_GAMMA);
        let mixed = (self.counter ^ (self.counter >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// Uniform in `0..bound` by Lemire's multiply-shift: the top 64 bits of a 128-bit product.
    /// The bias, under `bound / 2^64`, is far below anything these workloads could show.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    pub(crate) fn value(&mut self) -> i64 {
        self.below(VALUE_RANGE) as i64
    }

    /// 32 bytes, for key seeds and actor ids.
    pub(crate) fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        out
    }
}

/// `count` sets of uniformly random fields of uniformly random documents (W1, W2, W5).
pub(crate) fn random_sets(seed: u64, docs: u32, fields: u32, count: usize) -> Vec<Set> {
    let mut rng = SplitMix64::new(seed);
    (0..count)
        .map(|_| Set {
            doc: rng.below(u64::from(docs)) as u32,
            field: rng.below(u64::from(fields)) as u32,
            value: rng.value(),
        })
        .collect()
}

/// Every field of every document set once, document by document (W4).
pub(crate) fn fill_sets(seed: u64, docs: u32, fields: u32) -> Vec<Set> {
    let mut rng = SplitMix64::new(seed);
    (0..docs)
        .flat_map(|doc| (0..fields).map(move |field| (doc, field)))
        .map(|(doc, field)| Set {
            doc,
            field,
            value: rng.value(),
        })
        .collect()
}

/// The value each `(doc, field)` holds after `sets` are applied in order, indexed
/// `doc * fields + field`; `None` where nothing was written.
pub(crate) fn final_values(sets: &[Set], docs: u32, fields: u32) -> Vec<Option<i64>> {
    let mut out = vec![None; docs as usize * fields as usize];
    for s in sets {
        out[s.doc as usize * fields as usize + s.field as usize] = Some(s.value);
    }
    out
}

/// The `(doc, field, value)` triples of [`final_values`], in key order: what a correct replica
/// reads back.
pub(crate) fn expected_reads(sets: &[Set], docs: u32, fields: u32) -> Vec<(u32, u32, i64)> {
    final_values(sets, docs, fields)
        .into_iter()
        .enumerate()
        .filter_map(|(i, v)| {
            v.map(|v| {
                let i = i as u32;
                (i / fields, i % fields, v)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_published_sequence_for_seed_zero() {
        // The first outputs of SplitMix64 seeded with 0, as in the reference implementation.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn generated_sets_stay_in_shape() {
        let sets = random_sets(7, 10, 3, 1000);
        assert!(sets.iter().all(|s| s.doc < 10 && s.field < 3));
        assert!(
            sets.iter()
                .all(|s| (0..VALUE_RANGE as i64).contains(&s.value))
        );
        assert_eq!(sets, random_sets(7, 10, 3, 1000), "same seed, same sets");
        assert_eq!(fill_sets(1, 4, 2).len(), 8);
    }
}
