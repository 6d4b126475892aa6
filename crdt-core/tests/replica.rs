//! Behaviour of a replica as an application sees it.

use serde_json::json;
use tidemark_core::{
    DeviceKey, Hlc, MAX_DOCUMENT_BYTES, MAX_VALUE_BYTES, Replica, State, Value, WriteError,
};

const NOW: u64 = 1_750_000_000_000;
const YEAR_MS: u64 = 365 * 24 * 3_600_000;

fn replica(seed: u8) -> Replica {
    Replica::new(DeviceKey::from_seed([seed; 32]).device_id())
}

fn sync(a: &mut Replica, b: &mut Replica) {
    let (sa, sb) = (a.state().clone(), b.state().clone());
    a.merge(&sb, NOW);
    b.merge(&sa, NOW);
}

fn json_of(r: &Replica, collection: &str, id: &str) -> Option<serde_json::Value> {
    r.get(collection, id).map(|d| d.to_json())
}

#[test]
fn concurrent_writes_to_one_field_resolve_to_the_later_stamp_everywhere() {
    let (mut a, mut b) = (replica(1), replica(2));
    a.write(NOW, |w| w.set("menu", "soup", "price", 5)).unwrap();
    b.write(NOW + 10, |w| w.set("menu", "soup", "price", 6))
        .unwrap();
    sync(&mut a, &mut b);
    assert_eq!(json_of(&a, "menu", "soup"), Some(json!({"price": 6})));
    assert_eq!(a.state().encode(), b.state().encode());
}

#[test]
fn concurrent_writes_to_different_fields_both_survive() {
    let (mut a, mut b) = (replica(1), replica(2));
    a.write(NOW, |w| w.set("menu", "soup", "price", 5)).unwrap();
    b.write(NOW, |w| w.set("menu", "soup", "name", "Miso"))
        .unwrap();
    sync(&mut a, &mut b);
    assert_eq!(
        json_of(&b, "menu", "soup"),
        Some(json!({"price": 5, "name": "Miso"}))
    );
}

#[test]
fn delete_hides_a_document_and_restore_brings_its_fields_back() {
    let (mut a, mut b) = (replica(1), replica(2));
    a.write(NOW, |w| {
        w.upsert_json("orders", "o1", &json!({"table": 4, "dish": "ramen"}))
    })
    .unwrap();
    sync(&mut a, &mut b);
    b.write(NOW + 1, |w| w.delete("orders", "o1")).unwrap();
    sync(&mut a, &mut b);
    assert!(a.get("orders", "o1").is_none());
    assert!(a.get_any("orders", "o1").unwrap().is_deleted());
    assert_eq!(a.documents("orders").count(), 0);

    a.write(NOW + 2, |w| w.restore("orders", "o1")).unwrap();
    sync(&mut a, &mut b);
    assert_eq!(
        json_of(&b, "orders", "o1"),
        Some(json!({"table": 4, "dish": "ramen"}))
    );
}

#[test]
fn upsert_restores_a_deleted_document_but_update_refuses_it() {
    let mut a = replica(1);
    a.write(NOW, |w| w.upsert("orders", "o1", [("table", 1)]))
        .unwrap();
    a.write(NOW, |w| w.delete("orders", "o1")).unwrap();
    let err = a
        .write(NOW, |w| w.update("orders", "o1", [("table", 2)]))
        .unwrap_err();
    assert_eq!(err.code(), "write.not_found");
    a.write(NOW, |w| w.upsert("orders", "o1", [("table", 3)]))
        .unwrap();
    assert_eq!(json_of(&a, "orders", "o1"), Some(json!({"table": 3})));
}

#[test]
fn removing_a_field_writes_null_and_replace_removes_the_rest() {
    let mut a = replica(1);
    a.write(NOW, |w| {
        w.upsert(
            "menu",
            "soup",
            [("price", Value::from(5)), ("note", "hot".into())],
        )
    })
    .unwrap();
    a.write(NOW, |w| w.remove_field("menu", "soup", "note"))
        .unwrap();
    assert_eq!(json_of(&a, "menu", "soup"), Some(json!({"price": 5})));
    assert_eq!(
        a.get("menu", "soup").unwrap().get("note").as_deref(),
        Some(&Value::Null)
    );

    a.write(NOW, |w| w.replace("menu", "soup", [("name", "Miso")]))
        .unwrap();
    assert_eq!(json_of(&a, "menu", "soup"), Some(json!({"name": "Miso"})));
}

#[test]
fn concurrent_increments_from_every_device_add_up() {
    let (mut a, mut b, mut c) = (replica(1), replica(2), replica(3));
    for _ in 0..5 {
        a.write(NOW, |w| w.increment("stock", "burger", "count", -1))
            .unwrap();
    }
    b.write(NOW, |w| w.increment("stock", "burger", "count", 10))
        .unwrap();
    c.write(NOW, |w| w.increment("stock", "burger", "count", -2))
        .unwrap();
    sync(&mut a, &mut b);
    sync(&mut b, &mut c);
    sync(&mut a, &mut c);
    for r in [&a, &b, &c] {
        assert_eq!(json_of(r, "stock", "burger"), Some(json!({"count": 3})));
    }
    // Inside a transaction, other devices' cells and this one's new total add up too.
    a.write(NOW, |w| {
        w.increment("stock", "burger", "count", -1)?;
        assert_eq!(w.field("stock", "burger", "count"), Some(Value::Int(2)));
        Ok(())
    })
    .unwrap();
    assert_eq!(json_of(&a, "stock", "burger"), Some(json!({"count": 2})));
}

#[test]
fn setting_a_counter_resets_it_and_concurrent_increments_of_the_old_value_stop_counting() {
    let (mut a, mut b) = (replica(1), replica(2));
    a.write(NOW, |w| w.increment("stock", "fries", "count", 4))
        .unwrap();
    sync(&mut a, &mut b);
    // Manager sets the stock to 20 while a counter sells one against the old count.
    a.write(NOW + 5, |w| w.set("stock", "fries", "count", 20))
        .unwrap();
    b.write(NOW + 1, |w| w.increment("stock", "fries", "count", -1))
        .unwrap();
    sync(&mut a, &mut b);
    assert_eq!(json_of(&a, "stock", "fries"), Some(json!({"count": 20})));
    // Sales after seeing the new value count from it, on both devices.
    b.write(NOW + 6, |w| w.increment("stock", "fries", "count", -3))
        .unwrap();
    a.write(NOW + 6, |w| w.increment("stock", "fries", "count", -1))
        .unwrap();
    sync(&mut a, &mut b);
    assert_eq!(json_of(&a, "stock", "fries"), Some(json!({"count": 16})));
    assert_eq!(a.state().encode(), b.state().encode());
}

#[test]
fn incrementing_a_non_number_is_refused() {
    let mut a = replica(1);
    a.write(NOW, |w| w.set("menu", "soup", "name", "Miso"))
        .unwrap();
    let err = a
        .write(NOW, |w| w.increment("menu", "soup", "name", 1))
        .unwrap_err();
    assert_eq!(
        err,
        WriteError::NotNumeric {
            field: "name".into()
        }
    );
}

#[test]
fn a_failed_transaction_changes_nothing() {
    let mut a = replica(1);
    a.write(NOW, |w| w.set("menu", "soup", "price", 5)).unwrap();
    let before = a.state().encode();
    let err = a
        .write(NOW, |w| {
            w.set("menu", "soup", "price", 6)?;
            w.set("menu", "tea", "price", 2)?;
            w.set("menu", "soup", "_secret", 1)
        })
        .unwrap_err();
    assert_eq!(err.code(), "write.invalid_field");
    assert_eq!(a.state().encode(), before);
}

#[test]
fn a_transaction_reads_its_own_writes() {
    let mut a = replica(1);
    a.write(NOW, |w| {
        w.increment("stock", "tea", "count", 2)?;
        w.increment("stock", "tea", "count", 3)?;
        assert_eq!(w.field("stock", "tea", "count"), Some(Value::Int(5)));
        assert!(w.exists("stock", "tea"));
        w.delete("stock", "tea")?;
        assert!(!w.exists("stock", "tea"));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        a.get_any("stock", "tea").unwrap().get("count").as_deref(),
        Some(&Value::Int(5))
    );
}

type Transaction = Box<dyn FnOnce(&mut tidemark_core::Writer<'_>) -> Result<(), WriteError>>;

#[test]
fn bad_names_and_values_are_refused_with_stable_codes() {
    let mut a = replica(1);
    let cases: Vec<(&str, Transaction)> = vec![
        (
            "write.invalid_collection",
            Box::new(|w| w.set("a/b", "x", "f", 1)),
        ),
        (
            "write.invalid_document_id",
            Box::new(|w| w.set("c", "", "f", 1)),
        ),
        ("write.invalid_field", Box::new(|w| w.set("c", "x", "", 1))),
        (
            "write.invalid_field",
            Box::new(|w| w.set("c", "x", &"f".repeat(300), 1)),
        ),
        (
            "write.non_finite_float",
            Box::new(|w| w.set("c", "x", "f", f64::INFINITY)),
        ),
        (
            "write.value_too_large",
            Box::new(|w| w.set("c", "x", "f", "x".repeat(MAX_VALUE_BYTES))),
        ),
        (
            "write.not_an_object",
            Box::new(|w| w.upsert_json("c", "x", &json!([1]))),
        ),
    ];
    for (code, write) in cases {
        assert_eq!(a.write(NOW, write).unwrap_err().code(), code);
    }
    assert!(a.state().is_empty());
}

#[test]
fn documents_are_limited_in_size_but_may_always_shrink() {
    let mut a = replica(1);
    let chunk = "x".repeat(MAX_VALUE_BYTES - 100);
    let fields = MAX_DOCUMENT_BYTES / MAX_VALUE_BYTES;
    a.write(NOW, |w| {
        for i in 0..fields - 1 {
            w.set("files", "big", &format!("part{i}"), chunk.as_str())?;
        }
        Ok(())
    })
    .unwrap();
    let err = a
        .write(NOW, |w| {
            w.set("files", "big", "one-more", chunk.as_str())?;
            w.set("files", "big", "and-another", chunk.as_str())
        })
        .unwrap_err();
    assert_eq!(err.code(), "write.document_too_large");
    a.write(NOW, |w| w.set("files", "big", "part0", "small"))
        .unwrap();
}

#[test]
fn eviction_forgets_locally_and_ignores_later_merges() {
    let (mut a, mut b) = (replica(1), replica(2));
    b.write(NOW, |w| {
        w.set("archive", "old", "x", 1)?;
        w.set("orders", "o1", "x", 1)?;
        w.set("orders", "o2", "x", 2)
    })
    .unwrap();
    a.merge(b.state(), NOW);
    assert_eq!(a.evict_collection("archive"), 1);
    assert_eq!(a.evict_documents("orders", ["o1"]), 1);
    a.merge(b.state(), NOW);
    assert!(a.get("archive", "old").is_none() && a.get("orders", "o1").is_none());
    assert!(a.get("orders", "o2").is_some());
    assert_eq!(
        a.write(NOW, |w| w.set("orders", "o1", "x", 5))
            .unwrap_err()
            .code(),
        "write.evicted"
    );

    // Eviction is local: b still has everything.
    assert!(b.get("archive", "old").is_some());

    a.readmit_documents("orders", ["o1"]);
    a.readmit_collection("archive");
    a.merge(b.state(), NOW);
    assert!(a.get("orders", "o1").is_some() && a.get("archive", "old").is_some());
}

#[test]
fn a_stamp_from_the_far_future_converges_without_dragging_clocks_or_swallowing_edits() {
    let (mut a, mut b) = (replica(1), replica(2));
    // Device c's clock says it is ten years from now.
    let mut c = replica(3);
    c.write(NOW + 10 * YEAR_MS, |w| w.set("menu", "soup", "price", 99))
        .unwrap();
    a.merge(c.state(), NOW);
    b.merge(c.state(), NOW);

    // Every replica agrees on the future value: merge never consults local clocks.
    assert_eq!(json_of(&a, "menu", "soup"), Some(json!({"price": 99})));
    // But a's clock did not jump ten years: its next write elsewhere is stamped now.
    a.write(NOW, |w| w.set("menu", "tea", "price", 2)).unwrap();
    let tea = a.get("menu", "tea").unwrap().field_stamp("price").unwrap();
    assert!(tea.hlc.millis() < NOW + 1_000);

    // A user who overwrites the poisoned field still wins, on every replica.
    b.write(NOW + 1, |w| w.set("menu", "soup", "price", 7))
        .unwrap();
    sync(&mut a, &mut b);
    let mut c2 = c.clone();
    c2.merge(b.state(), NOW + 10 * YEAR_MS);
    for r in [&a, &b, &c2] {
        assert_eq!(json_of(r, "menu", "soup"), Some(json!({"price": 7})));
    }
    assert_eq!(a.state().encode(), b.state().encode());
}

#[test]
fn a_stamp_at_the_end_of_time_makes_overwrites_fail_cleanly() {
    // A hand-made encoding (format 1, the row layout, which is simplest to write by hand): one
    // register menu/soup/price = 5 stamped at Hlc::MAX by device [7; 32], as a corrupt or
    // malicious device could produce.
    let mut bytes = vec![1, 1];
    bytes.extend_from_slice(&[7; 32]);
    bytes.extend_from_slice(&[1, 5]);
    bytes.extend_from_slice(b"price");
    bytes.extend_from_slice(&[1, 4]);
    bytes.extend_from_slice(b"menu");
    bytes.extend_from_slice(&[1, 0, 4]);
    bytes.extend_from_slice(b"soup");
    // 1 register, 0 cells; name gap 0; hlc delta zigzag(-1) = 1 (0 − 1 wraps to u64::MAX);
    // device 0; int tag 3, zigzag(5) = 10.
    bytes.extend_from_slice(&[1, 0, 0, 1, 0, 3, 10]);
    let evil = State::decode(&bytes).unwrap();
    assert_eq!(
        State::decode(&evil.encode()).unwrap(),
        evil,
        "format 2 holds it too"
    );

    let mut a = replica(1);
    a.merge(&evil, NOW);
    let stamp = a.get("menu", "soup").unwrap().field_stamp("price").unwrap();
    assert_eq!(stamp.hlc, Hlc::MAX);
    let before = a.state().encode();
    let err = a
        .write(NOW, |w| w.set("menu", "soup", "price", 6))
        .unwrap_err();
    assert_eq!(err.code(), "write.clock_exhausted");
    assert_eq!(a.state().encode(), before, "nothing changed");
    // Other fields are unaffected: the clock itself did not jump.
    a.write(NOW, |w| w.set("menu", "soup", "name", "Miso"))
        .unwrap();
}

#[test]
fn own_state_holds_only_this_devices_winning_writes() {
    let (mut a, mut b) = (replica(1), replica(2));
    a.write(NOW, |w| {
        w.upsert("menu", "soup", [("price", 5), ("spicy", 1)])
    })
    .unwrap();
    b.write(NOW + 10, |w| w.set("menu", "soup", "price", 6))
        .unwrap();
    sync(&mut a, &mut b);
    let own = a.own_state();
    let view = Replica::from_state(a.device(), own);
    assert_eq!(json_of(&view, "menu", "soup"), Some(json!({"spicy": 1})));
}

#[test]
fn replica_reloaded_from_its_encoding_continues_its_clock() {
    let mut a = replica(1);
    a.write(NOW + 1_000, |w| w.set("menu", "soup", "price", 5))
        .unwrap();
    let stamp = a.get("menu", "soup").unwrap().field_stamp("price").unwrap();
    let state = State::decode(&a.state().encode()).unwrap();
    let mut reloaded = Replica::from_state(a.device(), state);
    // Even with a wall clock behind, the next write is stamped after the earlier one.
    reloaded
        .write(NOW, |w| w.set("menu", "tea", "price", 1))
        .unwrap();
    let next = reloaded
        .get("menu", "tea")
        .unwrap()
        .field_stamp("price")
        .unwrap();
    assert!(next > stamp);
}

#[test]
fn merge_reports_exactly_the_documents_that_changed() {
    let (mut a, mut b) = (replica(1), replica(2));
    let changes = b
        .write(NOW, |w| {
            w.set("orders", "o1", "x", 1)?;
            w.set("menu", "soup", "x", 1)
        })
        .unwrap();
    let changed = a.merge(&changes, NOW);
    let mut got: Vec<_> = changed.iter().collect();
    got.sort();
    assert_eq!(got, [("menu", "soup"), ("orders", "o1")]);
    assert!(
        a.merge(&changes, NOW).is_empty(),
        "a duplicate changes nothing"
    );
    let last = a.get("orders", "o1").unwrap().last_change().unwrap();
    assert_eq!(
        last.device,
        b.device(),
        "documents tell who changed them last"
    );
}

#[test]
fn preloading_the_same_data_on_two_devices_converges_and_edits_win() {
    let a_key = DeviceKey::from_seed([1; 32]);
    let b_key = DeviceKey::from_seed([2; 32]);
    let mut a = Replica::new(a_key.device_id());
    let mut b = Replica::new(b_key.device_id());
    let preload = |r: &mut Replica| {
        r.write(NOW, |w| {
            w.preload("menu", "espresso", "price", 250)?;
            w.preload("menu", "espresso", "name", "Espresso")?;
            Ok(())
        })
        .unwrap()
    };
    let from_a = preload(&mut a);
    let from_b = preload(&mut b);
    assert_eq!(from_a.register_count(), 2);
    let stamp_a = a
        .get("menu", "espresso")
        .unwrap()
        .field_stamp("price")
        .unwrap();
    let stamp_b = b
        .get("menu", "espresso")
        .unwrap()
        .field_stamp("price")
        .unwrap();
    assert_eq!(
        stamp_a.hlc, stamp_b.hlc,
        "the stamp's time comes from the content"
    );
    assert!(
        stamp_a.hlc.millis() < 86_400_000 * 13,
        "below every real write"
    );

    a.merge(&from_b, NOW);
    b.merge(&from_a, NOW);
    assert_eq!(a.state(), b.state());

    // Once synced, preloading the same data again writes nothing: no flood of duplicates.
    let again = preload(&mut a);
    assert!(again.is_empty());

    // Any edit supersedes preloaded data, and a later preload never overwrites it.
    let edit = b
        .write(NOW, |w| w.set("menu", "espresso", "price", 270))
        .unwrap();
    a.merge(&edit, NOW);
    let reload = preload(&mut a);
    assert!(reload.is_empty());
    let price = a.get("menu", "espresso").unwrap().get("price").unwrap();
    assert_eq!(*price, Value::from(270));
}
