//! The in-memory replica (`tidemark/replica`) in headless Chromium.
#![cfg(target_arch = "wasm32")]

use js_sys::Reflect;
use tidemark_wasm::replica::Replica;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::wasm_bindgen_test;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

fn field(value: &JsValue, name: &str) -> JsValue {
    Reflect::get(value, &name.into()).expect("an object")
}

fn code_of(error: &JsValue) -> String {
    field(error, "code").as_string().unwrap_or_default()
}

/// One write as `replica.js` sends it.
fn set(replica: &mut Replica, collection: &str, id: &str, name: &str, value: &str) {
    let ops = format!(r#"[[0,"{collection}","{id}","{name}",{value}]]"#);
    replica.write(&ops).expect("the write is accepted");
}

#[wasm_bindgen_test]
fn encode_then_load_gives_the_same_documents() {
    let mut replica = Replica::new(None).unwrap();
    replica
        .write(
            r#"[[0,"docs","d1","f1",7],[0,"docs","d1","f2","x"],[1,"docs","d2",null,{"a":[1,2]}]]"#,
        )
        .unwrap();
    let bytes = replica.encode();

    let loaded = Replica::load(&bytes, None).unwrap();
    assert_eq!(loaded.to_json_text(), replica.to_json_text());
    assert_eq!(loaded.encode(), bytes, "the encoding is canonical");
    assert_eq!(field(&loaded.get("docs", "d1"), "f1").as_f64(), Some(7.0));
    assert_eq!(
        field(&loaded.get("docs", "d1"), "id")
            .as_string()
            .as_deref(),
        Some("d1")
    );
    assert!(loaded.get("docs", "missing").is_undefined());
}

#[wasm_bindgen_test]
fn concurrent_edits_merge_to_the_same_documents_both_ways() {
    let mut a = Replica::new(None).unwrap();
    let mut b = Replica::new(None).unwrap();
    // The same new document made on both sides: every field of both stays visible.
    set(&mut a, "docs", "d1", "fa", "1");
    set(&mut b, "docs", "d1", "fb", "2");
    set(&mut b, "docs", "d2", "f", "3");

    let to_a = b.encode_since(&a.version_vector()).unwrap();
    let to_b = a.encode_since(&b.version_vector()).unwrap();
    assert!(a.merge(&to_a).unwrap() > 0);
    assert!(b.merge(&to_b).unwrap() > 0);

    assert_eq!(a.encode(), b.encode(), "both converge");
    let doc = a.get("docs", "d1");
    assert_eq!(field(&doc, "fa").as_f64(), Some(1.0));
    assert_eq!(field(&doc, "fb").as_f64(), Some(2.0));
    assert_eq!(
        b.encode_since(&a.version_vector()).unwrap().len(),
        a.encode_since(&a.version_vector()).unwrap().len(),
        "nothing is left to send once converged"
    );
    assert_eq!(a.merge(&to_a).unwrap(), 0, "merging twice changes nothing");
}

#[wasm_bindgen_test]
fn corrupt_bytes_are_refused_with_a_code_and_change_nothing() {
    let mut replica = Replica::new(None).unwrap();
    set(&mut replica, "docs", "d1", "f", "1");
    let before = replica.encode();

    let mut damaged = before.clone();
    damaged.truncate(damaged.len() - 3);
    let error = replica.merge(&damaged).unwrap_err();
    assert_eq!(code_of(&error), "decode.truncated");
    assert_eq!(
        field(&error, "name").as_string().as_deref(),
        Some("TidemarkError")
    );
    assert!(error.is_instance_of::<js_sys::Error>());

    let error = Replica::load(&[0xff, 1, 2], None).unwrap_err();
    assert!(
        code_of(&error).starts_with("decode."),
        "{:?}",
        code_of(&error)
    );
    let error = replica.encode_since(&[9, 9]).unwrap_err();
    assert_eq!(code_of(&error), "store.bad_argument");
    assert_eq!(replica.encode(), before);
}

#[wasm_bindgen_test]
fn a_refused_write_leaves_the_whole_transaction_out() {
    let mut replica = Replica::new(None).unwrap();
    let error = replica
        .write(r#"[[0,"docs","d1","ok",1],[0,"docs","d1","_reserved",2]]"#)
        .unwrap_err();
    assert_eq!(code_of(&error), "write.invalid_field");
    assert!(replica.get("docs", "d1").is_undefined());
    let error = replica.write(r#"[[9,"docs","d1",null,null]]"#).unwrap_err();
    assert_eq!(code_of(&error), "store.bad_argument");
    // Malformed transactions, as only a caller other than `replica.js` could send them.
    for ops in [
        "not json",
        r#"{"0":1}"#,
        r#"[[0,"docs","d1","f"]]"#,
        r#"[[0,"docs","d1","f",1,2]]"#,
        r#"[[1.5,"docs","d1",null,{}]]"#,
        r#"[[256,"docs","d1",null,{}]]"#,
        r#"[[0,7,"d1","f",1]]"#,
        r#"[[0,"docs","d1",7,1]]"#,
        r#"[[0,"docs","d1","f",1],5]"#,
    ] {
        let error = replica.write(ops).unwrap_err();
        assert_eq!(code_of(&error), "store.bad_argument", "{ops}");
    }
    assert!(replica.get("docs", "d1").is_undefined());
}

#[wasm_bindgen_test]
fn a_given_device_id_is_kept_and_a_bad_one_refused() {
    let device = "ab".repeat(32);
    let replica = Replica::new(Some(device.clone())).unwrap();
    assert_eq!(replica.device(), device);
    let error = Replica::new(Some("xyz".into())).unwrap_err();
    assert_eq!(code_of(&error), "store.bad_argument");
}

#[wasm_bindgen_test]
fn a_fresh_device_id_is_a_public_key_of_its_own() {
    let first = Replica::new(None).unwrap().device();
    let second = Replica::new(None).unwrap().device();
    assert_ne!(first, second);
    for device in [first, second] {
        let id: tidemark_core::DeviceId = device.parse().expect("64 hex digits");
        // Like an Ed25519 public key: a point of the prime-order subgroup, not of small order.
        let point = curve25519_dalek::edwards::CompressedEdwardsY(*id.as_bytes())
            .decompress()
            .expect("a point of the curve");
        assert!(point.is_torsion_free() && !point.is_small_order());
    }
}
