//! The store's browser tests, run in a page (`page.rs`) and in a service worker
//! (`service_worker.rs`): real IndexedDB in headless Chromium.

/// The `#[wasm_bindgen_test]` wrappers of every test below, for a test binary that has chosen
/// where it runs (`wasm_bindgen_test_configure!`).
#[macro_export]
macro_rules! store_tests {
    ($($test:ident),* $(,)?) => {
        $(
            #[wasm_bindgen_test::wasm_bindgen_test]
            async fn $test() {
                common::$test().await;
            }
        )*
    };
}

use js_sys::{Array, Function, Promise, Reflect, Uint8Array};
use tidemark_wasm::Store;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// A store name unique to this test run, so runs never see each other's data.
pub(crate) fn fresh_name(test: &str) -> String {
    format!("{test}-{}", js_sys::Math::random().to_bits())
}

pub(crate) async fn settle(promise: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(promise).await
}

pub(crate) fn object(json: &str) -> JsValue {
    js_sys::JSON::parse(json).expect("test JSON parses")
}

pub(crate) fn field(value: &JsValue, name: &str) -> JsValue {
    Reflect::get(value, &name.into()).expect("an object")
}

pub(crate) fn code_of(error: &JsValue) -> String {
    field(error, "code").as_string().unwrap_or_default()
}

pub(crate) async fn writes_are_durable_across_reopen() {
    let name = fresh_name("durable");
    let store = Store::open(name.clone()).await.unwrap();
    let device = store.device();
    let id = settle(store.upsert(
        "orders".into(),
        object(r#"{"id":"o1","table":4,"items":["tea"]}"#),
    ))
    .await
    .unwrap();
    assert_eq!(id.as_string().as_deref(), Some("o1"));
    let made = settle(store.upsert("orders".into(), object(r#"{"table":5}"#)))
        .await
        .unwrap();
    let made = made.as_string().expect("a generated id");
    assert_eq!(made.len(), 32);
    settle(store.increment("stock".into(), "tea".into(), "left".into(), -3.0))
        .await
        .unwrap();
    settle(store.delete("orders".into(), made.clone()))
        .await
        .unwrap();
    store.close().await.unwrap();

    let store = Store::open(name).await.unwrap();
    assert_eq!(store.device(), device, "the device key is kept");
    let doc = store.get("orders", "o1");
    assert_eq!(field(&doc, "table").as_f64(), Some(4.0));
    assert_eq!(field(&doc, "id").as_string().as_deref(), Some("o1"));
    assert!(
        store.get("orders", &made).is_undefined(),
        "deleted stays deleted"
    );
    assert_eq!(
        field(&store.get("stock", "tea"), "left").as_f64(),
        Some(-3.0)
    );
    assert_eq!(
        store.pending_writes(),
        4,
        "unsynced writes stay in the outbox"
    );
    settle(store.restore("orders".into(), made.clone()))
        .await
        .unwrap();
    assert_eq!(
        field(&store.get("orders", &made), "table").as_f64(),
        Some(5.0)
    );
}

pub(crate) async fn writes_in_one_turn_share_one_transaction_and_compaction_keeps_everything() {
    let name = fresh_name("batched");
    let store = Store::open(name.clone()).await.unwrap();
    // 2,000 writes in one turn: one journal record. Then enough separate turns to pass the
    // journal's limit, so a checkpoint replaces it.
    let writes: Array = (0..2_000)
        .map(|n| {
            store.upsert(
                "docs".into(),
                object(&format!(r#"{{"id":"d{n}","n":{n}}}"#)),
            )
        })
        .collect();
    settle(Promise::all(&writes)).await.unwrap();
    assert_eq!(field(&store.usage(), "journalRecords").as_f64(), Some(1.0));
    for n in 0..600 {
        settle(store.update(
            "docs".into(),
            format!("d{n}"),
            object(r#"{"touched":true}"#),
        ))
        .await
        .unwrap();
    }
    let usage = store.usage();
    let records = field(&usage, "journalRecords").as_f64().unwrap();
    assert!(records < 600.0, "compacted: {records} journal records");
    store.close().await.unwrap();

    let store = Store::open(name).await.unwrap();
    let all = store
        .find("docs", object(r#"{"where":{"touched":true}}"#))
        .unwrap();
    assert_eq!(all.length(), 600);
    let everything = store.find("docs", JsValue::UNDEFINED).unwrap();
    assert_eq!(everything.length(), 2_000);
}

pub(crate) async fn queries_and_live_queries() {
    let store = Store::open(fresh_name("queries")).await.unwrap();
    for (id, table, open) in [("a", 3, true), ("b", 1, true), ("c", 2, false)] {
        let doc = format!(r#"{{"id":"{id}","table":{table},"open":{open}}}"#);
        settle(store.upsert("orders".into(), object(&doc)))
            .await
            .unwrap();
    }
    let found = store
        .find(
            "orders",
            object(r#"{"where":{"open":true},"orderBy":["table"]}"#),
        )
        .unwrap();
    let ids: Vec<String> = found
        .iter()
        .map(|d| field(&d, "id").as_string().unwrap())
        .collect();
    assert_eq!(ids, ["b", "a"]);
    let by_id = store
        .find("orders", object(r#"{"where":{"id":"c"}}"#))
        .unwrap();
    assert_eq!(by_id.length(), 1);

    // The callback collects every result it is called with.
    let seen = Array::new();
    let record = Function::new_with_args(
        "seen, results",
        "seen.push(results.map(d => d.id).join(','))",
    )
    .bind1(&JsValue::NULL, &seen)
    .unchecked_into::<Function>();
    let handle = store
        .observe(
            "orders",
            object(r#"{"where":{"open":true},"orderBy":["-table"]}"#),
            record,
        )
        .unwrap();
    settle(store.update("orders".into(), "c".into(), object(r#"{"open":true}"#)))
        .await
        .unwrap();
    settle(store.delete("orders".into(), "a".into()))
        .await
        .unwrap();
    // A change outside the result does not call back.
    settle(store.upsert("orders".into(), object(r#"{"id":"z","open":false}"#)))
        .await
        .unwrap();
    store.unobserve(handle);
    settle(store.update("orders".into(), "b".into(), object(r#"{"open":false}"#)))
        .await
        .unwrap();
    let calls: Vec<String> = seen.iter().map(|s| s.as_string().unwrap()).collect();
    assert_eq!(calls, ["a,b", "a,c,b", "c,b"]);
}

pub(crate) async fn bad_input_is_refused_with_a_code_and_changes_nothing() {
    let store = Store::open(fresh_name("refusals")).await.unwrap();
    settle(store.upsert("orders".into(), object(r#"{"id":"o1","n":1}"#)))
        .await
        .unwrap();
    let cases = [
        (
            store.update("orders".into(), "missing".into(), object(r#"{"n":2}"#)),
            "write.not_found",
        ),
        (
            store.upsert("Bad Name!".into(), object(r#"{"n":2}"#)),
            "write.invalid_collection",
        ),
        (
            store.upsert("orders".into(), object(r#"{"id":7}"#)),
            "store.bad_argument",
        ),
        (
            store.upsert("orders".into(), object("[1,2]")),
            "write.not_an_object",
        ),
        (
            store.increment("orders".into(), "o1".into(), "n".into(), 0.5),
            "store.bad_argument",
        ),
    ];
    for (promise, code) in cases {
        let error = settle(promise).await.unwrap_err();
        assert_eq!(code_of(&error), code);
        assert_eq!(
            field(&error, "name").as_string().as_deref(),
            Some("TidemarkError")
        );
    }
    let error = store.find("orders", object(r#"{"limit":-1}"#)).unwrap_err();
    assert_eq!(code_of(&error), "query.invalid");
    assert_eq!(field(&store.get("orders", "o1"), "n").as_f64(), Some(1.0));
    assert_eq!(
        store.find("orders", JsValue::UNDEFINED).unwrap().length(),
        1
    );
}

pub(crate) async fn evicted_documents_are_forgotten_here_only() {
    let name = fresh_name("evict");
    let store = Store::open(name.clone()).await.unwrap();
    for id in ["a", "b", "c"] {
        settle(store.upsert("orders".into(), object(&format!(r#"{{"id":"{id}"}}"#))))
            .await
            .unwrap();
    }
    let dropped = settle(store.evict("orders".into(), Some(vec!["a".into(), "b".into()])))
        .await
        .unwrap();
    assert_eq!(dropped.as_f64(), Some(2.0));
    store.close().await.unwrap();
    let store = Store::open(name).await.unwrap();
    assert!(store.get("orders", "a").is_undefined());
    assert!(!store.get("orders", "c").is_undefined());
}

/// A damaged record makes `open` fail with `store.corrupt`, and leaves the record as it was.
pub(crate) async fn a_corrupt_journal_record_is_refused_and_kept() {
    let name = fresh_name("corrupt");
    let store = Store::open(name.clone()).await.unwrap();
    settle(store.upsert("orders".into(), object(r#"{"id":"o1"}"#)))
        .await
        .unwrap();
    store.close().await.unwrap();

    let garbage = Uint8Array::from(&b"not a state"[..]);
    raw_put(&name, "journal", &JsValue::from(1_000_f64), &garbage).await;
    let error = Store::open(name.clone()).await.unwrap_err();
    assert_eq!(code_of(&error), "store.corrupt");
    let kept = raw_get(&name, "journal", &JsValue::from(1_000_f64)).await;
    assert_eq!(
        kept.dyn_into::<Uint8Array>().unwrap().to_vec(),
        b"not a state"
    );
}

#[wasm_bindgen(inline_js = r#"
function open(name) {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open('tidemark:' + name);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}
export async function raw_put(name, store, key, value) {
  const db = await open(name);
  await new Promise((resolve, reject) => {
    const tx = db.transaction(store, 'readwrite');
    tx.objectStore(store).put(value, key);
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
  });
  db.close();
}
export async function raw_get(name, store, key) {
  const db = await open(name);
  const value = await new Promise((resolve, reject) => {
    const request = db.transaction(store).objectStore(store).get(key);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  db.close();
  return value;
}
"#)]
extern "C" {
    async fn raw_put(name: &str, store: &str, key: &JsValue, value: &JsValue);
    async fn raw_get(name: &str, store: &str, key: &JsValue) -> JsValue;
}
