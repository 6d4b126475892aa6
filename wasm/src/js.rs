//! Small bridges to JavaScript: values in and out, randomness, the clock, queries.

#[cfg(feature = "store")]
use js_sys::Promise;
use js_sys::{Function, Reflect};
#[cfg(feature = "store")]
use serde::Serialize;
use tidemark_core::DocumentRef;
#[cfg(feature = "store")]
use tidemark_core::ID_FIELD;
use wasm_bindgen::prelude::*;

use crate::error::StoreError;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = crypto, thread_local_v2)]
    static CRYPTO: JsValue;

    #[wasm_bindgen(js_namespace = Date, js_name = now)]
    fn date_now() -> f64;

    #[cfg(feature = "store")]
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout_raw(callback: &Function, millis: f64) -> JsValue;
}

/// Calls `callback` after `millis` (global `setTimeout`: pages and every worker kind).
#[cfg(feature = "store")]
pub(crate) fn set_timeout(callback: &Function, millis: u64) {
    set_timeout_raw(callback, millis as f64);
}

/// The property JavaScript documents carry their id in.
pub(crate) const JS_ID: &str = "id";

/// Milliseconds since the Unix epoch, from the browser's clock.
pub(crate) fn now_millis() -> u64 {
    date_now() as u64
}

/// Fills `bytes` from `crypto.getRandomValues`, present in pages and every worker kind.
pub(crate) fn random_bytes(bytes: &mut [u8]) -> Result<(), StoreError> {
    let crypto = CRYPTO.with(JsValue::clone);
    let fill: Function = Reflect::get(&crypto, &"getRandomValues".into())
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| StoreError::Storage("crypto.getRandomValues is unavailable".into()))?;
    let array = js_sys::Uint8Array::new_with_length(bytes.len() as u32);
    fill.call1(&crypto, &array)
        .map_err(|e| StoreError::Storage(format!("crypto.getRandomValues failed: {e:?}")))?;
    array.copy_to(bytes);
    Ok(())
}

/// A random document id: 16 bytes as 32 lowercase hex digits.
#[cfg(feature = "store")]
pub(crate) fn random_id() -> Result<String, StoreError> {
    let mut bytes = [0u8; 16];
    random_bytes(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A JavaScript value as JSON.
#[cfg(feature = "store")]
pub(crate) fn to_json(value: &JsValue, what: &str) -> Result<serde_json::Value, StoreError> {
    serde_wasm_bindgen::from_value(value.clone())
        .map_err(|e| StoreError::BadArgument(format!("{what} is not plain JSON data: {e}")))
}

/// JSON as a plain JavaScript value (objects, not `Map`s).
#[cfg(feature = "store")]
pub(crate) fn from_json(value: &serde_json::Value) -> JsValue {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .expect("JSON always converts to a JavaScript value")
}

/// A document as the plain object apps see: `{ id, ...fields }`.
pub(crate) fn document_json(doc: &DocumentRef<'_>) -> serde_json::Value {
    let mut json = doc.to_json();
    if let serde_json::Value::Object(map) = &mut json {
        map.insert(JS_ID.into(), doc.id().into());
        // Only queries with `includeDeleted` (and `export`) see deleted documents.
        if doc.is_deleted() {
            map.insert(tidemark_core::DELETED_FIELD.into(), true.into());
        }
    }
    json
}

/// A query from JavaScript: `{ where, orderBy, limit, offset, includeDeleted }` on
/// `collection`, where `id` names the document id (the core's `_id`).
#[cfg(feature = "store")]
pub(crate) fn query_json(
    collection: &str,
    query: &JsValue,
) -> Result<serde_json::Value, StoreError> {
    let mut json = if query.is_undefined() || query.is_null() {
        serde_json::json!({})
    } else {
        to_json(query, "the query")?
    };
    let serde_json::Value::Object(map) = &mut json else {
        return Err(StoreError::BadArgument("a query is an object".into()));
    };
    map.insert("collection".into(), collection.into());
    if let Some(serde_json::Value::Object(conditions)) = map.get_mut("where")
        && let Some(condition) = conditions.remove(JS_ID)
    {
        conditions.insert(ID_FIELD.into(), condition);
    }
    if let Some(order) = map.get_mut("orderBy") {
        let entries = match order {
            serde_json::Value::Array(entries) => entries.iter_mut().collect::<Vec<_>>(),
            single => vec![single],
        };
        for entry in entries {
            match entry {
                serde_json::Value::String(field) if field == JS_ID => *field = ID_FIELD.into(),
                serde_json::Value::String(field) if field == "-id" => *field = "-_id".into(),
                serde_json::Value::Object(spec)
                    if spec.get("field").and_then(|f| f.as_str()) == Some(JS_ID) =>
                {
                    spec.insert("field".into(), ID_FIELD.into());
                }
                _ => {}
            }
        }
    }
    Ok(json)
}

/// A promise and the functions that settle it.
#[cfg(feature = "store")]
pub(crate) struct Pending {
    pub(crate) promise: Promise,
    pub(crate) resolve: Function,
    pub(crate) reject: Function,
}

#[cfg(feature = "store")]
impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending")
    }
}

#[cfg(feature = "store")]
impl Pending {
    pub(crate) fn new() -> Pending {
        let mut settle = None;
        let promise = Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
        let (resolve, reject) = settle.expect("the Promise executor runs synchronously");
        Pending {
            promise,
            resolve,
            reject,
        }
    }
}
