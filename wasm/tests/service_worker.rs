//! The store in a service worker, on real IndexedDB in headless Chromium (see `common`).
#![cfg(target_arch = "wasm32")]

mod common;

use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_service_worker);

#[wasm_bindgen_test]
async fn writes_are_durable_across_reopen() {
    common::writes_are_durable_across_reopen().await;
}

#[wasm_bindgen_test]
async fn writes_in_one_turn_share_one_transaction_and_compaction_keeps_everything() {
    common::writes_in_one_turn_share_one_transaction_and_compaction_keeps_everything().await;
}

#[wasm_bindgen_test]
async fn queries_and_live_queries() {
    common::queries_and_live_queries().await;
}

#[wasm_bindgen_test]
async fn bad_input_is_refused_with_a_code_and_changes_nothing() {
    common::bad_input_is_refused_with_a_code_and_changes_nothing().await;
}

#[wasm_bindgen_test]
async fn evicted_documents_are_forgotten_here_only() {
    common::evicted_documents_are_forgotten_here_only().await;
}

#[wasm_bindgen_test]
async fn a_corrupt_journal_record_is_refused_and_kept() {
    common::a_corrupt_journal_record_is_refused_and_kept().await;
}
