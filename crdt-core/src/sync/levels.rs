//! A device's own level packs for one collection, and how a push rewrites them.
//!
//! A push rewrites `L0` as `L0 ∪ outbox`. When that is over `L0`'s budget, the levels fold: the
//! content moves up to the first level `k` whose budget holds `L0 ∪ … ∪ Lk ∪ outbox` (the top
//! level holds whatever remains), `Lk` is written first, then `Lk-1 … L0` are rewritten empty,
//! highest first. So:
//!
//! - content is removed from a level only after the level above holds it in the bucket — a
//!   crash between the writes leaves entries in two levels, which merge absorbs;
//! - every push ends with a write of `L0`, so a reader whose conditional GET of `L0` answers 304
//!   knows the device pushed nothing since (see the engine's polling).

use crate::error::PackError;
use crate::pack::{LEVEL_COUNT, Pack, PackHeader};
use crate::state::State;
use crate::sync::SyncConfig;
use crate::{DeviceKey, SpaceKey};

/// What this device last wrote to one of its levels, as far as it knows.
#[derive(Clone, Debug, Default)]
pub(crate) struct OwnLevel {
    /// The level's content: this device's entries.
    pub(crate) state: State,
    /// How many times the level was written; the next write uses `generation + 1`.
    pub(crate) generation: u64,
    /// The store's ETag of the last write, so re-reading it costs a 304.
    pub(crate) etag: Option<String>,
}

/// One PUT of a push: a sealed pack for one level.
#[derive(Clone, Debug)]
pub(crate) struct PlannedWrite {
    pub(crate) level: u8,
    pub(crate) generation: u64,
    pub(crate) state: State,
    pub(crate) bytes: Vec<u8>,
}

/// The budget of `level`, in encoded bytes: `L0`'s budget times `growth^level`.
pub(crate) fn budget(config: &SyncConfig, level: u8) -> usize {
    let growth = config.level_growth.max(2);
    (0..level).fold(config.level0_budget, |b, _| b.saturating_mul(growth))
}

/// Plans the writes that carry `outbox` into the levels, highest level first, `L0` last.
pub(crate) fn plan_push(
    config: &SyncConfig,
    collection: &str,
    levels: &[OwnLevel],
    outbox: &State,
    key: &DeviceKey,
    space_key: Option<&SpaceKey>,
) -> Result<Vec<PlannedWrite>, PackError> {
    let mut merged = levels[0].state.clone();
    merged.merge(outbox);
    let mut target = 0u8;
    while target + 1 < LEVEL_COUNT && merged.encode().len() > budget(config, target) {
        target += 1;
        merged.merge(&levels[usize::from(target)].state);
    }

    let seal = |level: u8, state: State| -> Result<PlannedWrite, PackError> {
        let generation = levels[usize::from(level)].generation + 1;
        let header = PackHeader {
            space: config.space.clone(),
            author: key.device_id(),
            collection: collection.to_string(),
            level,
            generation,
            version_vector: state.version_vector(),
            encrypted: space_key.is_some(),
        };
        let bytes = Pack::seal(&header, &state, key, space_key)?;
        Ok(PlannedWrite {
            level,
            generation,
            state,
            bytes,
        })
    };

    let mut writes = vec![seal(target, merged)?];
    for level in (0..target).rev() {
        writes.push(seal(level, State::new())?);
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceKey, Replica, Value};

    fn config(budget: usize) -> SyncConfig {
        SyncConfig {
            level0_budget: budget,
            ..SyncConfig::new("space")
        }
    }

    fn writes(key: &DeviceKey, n: usize, from: usize) -> State {
        let mut replica = Replica::new(key.device_id());
        replica
            .write(1_000, |w| {
                for i in from..from + n {
                    w.set(
                        "notes",
                        &format!("doc-{i:05}"),
                        "text",
                        Value::from("x".repeat(40)),
                    )?;
                }
                Ok(())
            })
            .unwrap()
    }

    #[test]
    fn small_pushes_rewrite_only_level_zero_and_big_ones_fold_upward_highest_first() {
        let key = DeviceKey::from_seed([1; 32]);
        let config = config(4_096);
        let mut levels = vec![OwnLevel::default(); usize::from(LEVEL_COUNT)];

        let plan = plan_push(&config, "notes", &levels, &writes(&key, 5, 0), &key, None).unwrap();
        assert_eq!(plan.iter().map(|w| w.level).collect::<Vec<_>>(), [0]);
        assert_eq!(plan[0].generation, 1);
        levels[0] = OwnLevel {
            state: plan[0].state.clone(),
            generation: 1,
            etag: None,
        };

        // Far over L0's budget, under L1's (8×): fold into L1, then empty L0.
        let plan = plan_push(&config, "notes", &levels, &writes(&key, 100, 5), &key, None).unwrap();
        assert_eq!(plan.iter().map(|w| w.level).collect::<Vec<_>>(), [1, 0]);
        assert_eq!(
            plan[0].state.document_count(),
            105,
            "L1 holds L0 and the outbox"
        );
        assert!(plan[1].state.is_empty(), "L0 is rewritten empty, last");
        assert_eq!((plan[0].generation, plan[1].generation), (1, 2));
        for write in &plan {
            let pack = Pack::open(&write.bytes, &Default::default()).unwrap();
            assert_eq!(pack.header.level, write.level);
            assert_eq!(pack.header.generation, write.generation);
        }

        // Over L1's budget too: everything goes to L2.
        let plan = plan_push(&config, "notes", &levels, &writes(&key, 900, 5), &key, None).unwrap();
        assert_eq!(plan.iter().map(|w| w.level).collect::<Vec<_>>(), [2, 1, 0]);
    }

    #[test]
    fn budgets_grow_by_the_configured_factor() {
        let config = config(1_000);
        assert_eq!(budget(&config, 0), 1_000);
        assert_eq!(budget(&config, 2), 64_000);
    }
}
