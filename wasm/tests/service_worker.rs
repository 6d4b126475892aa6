//! The store in a service worker, on real IndexedDB in headless Chromium (see `common`).
#![cfg(target_arch = "wasm32")]

mod common;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_service_worker);

store_tests!(
    writes_are_durable_across_reopen,
    writes_in_one_turn_share_one_transaction_and_compaction_keeps_everything,
    queries_and_live_queries,
    bad_input_is_refused_with_a_code_and_changes_nothing,
    evicted_documents_are_forgotten_here_only,
    a_corrupt_journal_record_is_refused_and_kept,
);
