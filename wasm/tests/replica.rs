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

/// One write in the JSON form.
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

/// The compact form's markers and value kinds, as `replica.js` sends them.
const SAME: f64 = -1.0;
const NONE: f64 = -2.0;
const NULL: f64 = 0.0;
const TRUE: f64 = 2.0;
const INT: f64 = 3.0;
const STRING: f64 = 4.0;
const JSON: f64 = 5.0;

#[wasm_bindgen_test]
fn the_compact_form_writes_what_the_json_form_writes() {
    let mut compact = Replica::new(None).unwrap();
    // Lengths count UTF-16 units, as JavaScript's do: "x😀" is 3, "日本" 2, "é" 1.
    #[rustfmt::skip]
    let numbers = [
        0.0, 4.0, 2.0, 2.0, INT, 7.0,            // set docs d1 f1 7
        0.0, SAME, SAME, 2.0, STRING, 3.0,       // set docs d1 f2 "x😀"
        1.0, SAME, 2.0, NONE, JSON, 0.0,         // upsert docs d2 {"a":[1,2]}
        0.0, SAME, 2.0, 1.0, TRUE, 0.0,          // set docs 日本 é true
        4.0, SAME, 2.0, 1.0, INT, -3.0,          // increment docs d2 n -3
        0.0, SAME, 2.0, 1.0, INT, 1.0,           // set docs d3 g 1
        0.0, SAME, SAME, SAME, NULL, 0.0,        // set docs d3 g null
        0.0, SAME, 2.0, SAME, JSON, 0.0,         // set docs d4 g 2^60
        2.0, SAME, 2.0, NONE, NULL, 0.0,         // delete docs d1
        0.0, 5.0, 1.0, 1.0, JSON, 0.0,           // set other a b 0.5
    ];
    let text = "docsd1f1f2x😀d2日本éd2nd3gd4d1otherab";
    let json = r#"[[{"a":[1,2]},1152921504606846976,0.5]]"#;
    compact
        .write_compact(text, &numbers, Some(json.into()))
        .unwrap();

    let mut json_form = Replica::new(None).unwrap();
    json_form
        .write(
            r#"[[0,"docs","d1","f1",7],[0,"docs","d1","f2","x😀"],[1,"docs","d2",null,{"a":[1,2]}],
                [0,"docs","日本","é",true],[4,"docs","d2","n",-3],[0,"docs","d3","g",1],
                [0,"docs","d3","g",null],[0,"docs","d4","g",1152921504606846976],
                [2,"docs","d1",null,null],[0,"other","a","b",0.5]]"#,
        )
        .unwrap();
    assert_eq!(compact.to_json_text(), json_form.to_json_text());
    assert!(compact.get("docs", "d1").is_undefined(), "deleted");
    assert_eq!(field(&compact.get("docs", "d2"), "n").as_f64(), Some(-3.0));
    assert_eq!(
        field(&compact.get("docs", "日本"), "é").as_bool(),
        Some(true)
    );
    assert_eq!(field(&compact.get("other", "a"), "b").as_f64(), Some(0.5));
}

#[wasm_bindgen_test]
fn a_malformed_compact_transaction_is_refused_before_anything_is_written() {
    let mut replica = Replica::new(None).unwrap();
    let ok = [0.0, 4.0, 2.0, 1.0, INT, 1.0];
    let cases: &[(&str, &[f64], Option<&str>)] = &[
        // Text shorter than the lengths, text left over, a pair of surrogates cut in half.
        ("docsd1", &ok, None),
        ("docsd1fx", &ok, None),
        ("docs😀f", &[0.0, 4.0, 1.0, 1.0, INT, 1.0], None),
        // A repeat with nothing before it; no collection; no document id.
        ("d1f", &[0.0, SAME, 2.0, 1.0, INT, 1.0], None),
        ("d1f", &[0.0, NONE, 2.0, 1.0, INT, 1.0], None),
        ("docsf", &[0.0, 4.0, NONE, 1.0, INT, 1.0], None),
        // Unknown kinds of writes and values; a set without a field; numbers that are not
        // integers, or too large; numbers left over.
        ("docsd1f", &[9.0, 4.0, 2.0, 1.0, INT, 1.0], None),
        ("docsd1f", &[0.5, 4.0, 2.0, 1.0, INT, 1.0], None),
        ("docsd1f", &[0.0, 4.0, 2.0, 1.0, 9.0, 1.0], None),
        ("docsd1", &[0.0, 4.0, 2.0, NONE, INT, 1.0], None),
        ("docsd1f", &[0.0, 4.5, 2.0, 1.0, INT, 1.0], None),
        ("docsd1f", &[0.0, 4.0, 2.0, 1.0, INT, 0.5], None),
        ("docsd1f", &[0.0, 4.0, 2.0, 1.0, INT, 1e300], None),
        ("docsd1f", &[0.0, 4.0, 2.0, 1.0, INT, 1.0, 0.0], None),
        // An upsert of something else than an object; an increment by something else than an
        // integer.
        ("docsd1", &[1.0, 4.0, 2.0, NONE, JSON, 0.0], Some("[[[1]]]")),
        ("docsd1f", &[4.0, 4.0, 2.0, 1.0, JSON, 0.0], Some("[[1.5]]")),
        // JSON values: missing, left over, not a list in a list, not JSON.
        ("docsd1f", &[0.0, 4.0, 2.0, 1.0, JSON, 0.0], None),
        ("docsd1f", &ok, Some("[[1]]")),
        ("docsd1f", &[0.0, 4.0, 2.0, 1.0, JSON, 0.0], Some("[1]")),
        ("docsd1f", &[0.0, 4.0, 2.0, 1.0, JSON, 0.0], Some("[[1")),
    ];
    for &(text, numbers, json) in cases {
        let error = replica
            .write_compact(text, numbers, json.map(str::to_string))
            .unwrap_err();
        assert_eq!(
            code_of(&error),
            "store.bad_argument",
            "{text:?} {numbers:?} {json:?}"
        );
    }
    assert_eq!(replica.to_json_text(), "{}");

    // Refused by the core: nothing of the transaction stays either.
    let error = replica
        .write_compact(
            "docsd1ok_reserved",
            &[0.0, 4.0, 2.0, 2.0, INT, 1.0, 0.0, SAME, SAME, 9.0, INT, 2.0],
            None,
        )
        .unwrap_err();
    assert_eq!(code_of(&error), "write.invalid_field");
    assert_eq!(replica.to_json_text(), "{}");
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
