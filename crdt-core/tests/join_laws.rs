//! The merge of states is a join: commutative, associative, idempotent; and delivery order and
//! duplicates never change the outcome.

mod common;

use common::{DEVICES, history, history_with_sane_clocks, join, play};
use proptest::prelude::*;
use tidemark_core::{Replica, State};

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn merge_is_commutative(steps in history()) {
        let played = play(&steps);
        let (a, b) = (played.replicas[0].state(), played.replicas[1].state());
        prop_assert_eq!(join(&[a, b]).encode(), join(&[b, a]).encode());
    }

    #[test]
    fn merge_is_associative(steps in history()) {
        let played = play(&steps);
        let [a, b, c] = [0, 1, 2].map(|i| played.replicas[i].state());
        let left = join(&[&join(&[a, b]), c]);
        let right = join(&[a, &join(&[b, c])]);
        prop_assert_eq!(left.encode(), right.encode());
    }

    #[test]
    fn merge_is_idempotent(steps in history()) {
        let played = play(&steps);
        for replica in &played.replicas {
            let mut twice = replica.state().clone();
            let changed = twice.merge(replica.state());
            prop_assert_eq!(changed, 0, "merging a state into itself changes no document");
            prop_assert_eq!(twice.encode(), replica.state().encode());
        }
    }

    #[test]
    fn replicas_receiving_the_same_changes_in_any_order_end_byte_identical(
        steps in history(),
        orders in proptest::collection::vec(proptest::collection::vec(any::<proptest::sample::Index>(), 0..60), 4),
    ) {
        let played = play(&steps);
        let everything: Vec<&State> = played.changes.iter().collect();
        let expected = join(&everything).encode();
        for (n, picks) in orders.iter().enumerate() {
            // Each receiver gets every change once in shuffled order, plus random duplicates.
            let mut delivery: Vec<usize> = (0..played.changes.len()).collect();
            for (i, pick) in picks.iter().enumerate() {
                if delivery.is_empty() { break; }
                let j = pick.index(delivery.len());
                if i % 3 == 0 { let dup = delivery[j]; delivery.push(dup); } else { let k = i % delivery.len(); delivery.swap(k, j); }
            }
            let mut receiver = Replica::new(common::device_key(DEVICES + n).device_id());
            for i in delivery {
                receiver.merge(&played.changes[i], 1_750_000_000_000);
            }
            prop_assert_eq!(receiver.state().encode(), expected.clone());
        }
    }

    #[test]
    fn devices_that_exchange_everything_converge(steps in history()) {
        let played = play(&steps);
        let mut replicas = played.replicas;
        let all: Vec<State> = replicas.iter().map(|r| r.state().clone()).collect();
        for replica in &mut replicas {
            for state in &all {
                replica.merge(state, 1_750_000_000_000);
            }
        }
        let first = replicas[0].state().encode();
        for replica in &replicas[1..] {
            prop_assert_eq!(replica.state().encode(), first.clone());
        }
        // What the transactions produced is exactly what the replicas hold together.
        let everything: Vec<&State> = played.changes.iter().collect();
        prop_assert_eq!(join(&everything).encode(), first);
    }

    #[test]
    fn own_states_of_all_devices_join_to_the_whole(steps in history()) {
        let played = play(&steps);
        let whole: Vec<&State> = played.replicas.iter().map(|r| r.state()).collect();
        let whole = join(&whole);
        let own: Vec<State> = played.replicas.iter().map(|r| r.own_state()).collect();
        let own: Vec<&State> = own.iter().collect();
        prop_assert_eq!(join(&own).encode(), whole.encode(), "packs carry only own writes, and that suffices");
    }

    #[test]
    fn changes_since_a_version_vector_bring_a_peer_up_to_date(steps in history_with_sane_clocks(), cut in any::<proptest::sample::Index>()) {
        let played = play(&steps);
        // The peer has received a prefix of the transactions, in order.
        let n = cut.index(played.changes.len() + 1);
        let mut peer = State::new();
        for c in &played.changes[..n] { peer.merge(c); }
        let everything: Vec<&State> = played.changes.iter().collect();
        let full = join(&everything);
        let delta = full.changes_since(&peer.version_vector());
        prop_assert!(delta.register_count() <= full.register_count());
        peer.merge(&delta);
        prop_assert_eq!(peer.encode(), full.encode());
    }
}
