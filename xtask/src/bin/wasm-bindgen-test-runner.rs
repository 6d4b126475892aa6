//! The wasm-bindgen browser test runner, built from the `wasm-bindgen-cli` library at the
//! exact version of `wasm-bindgen` in Cargo.lock. `cargo xtask test` points
//! `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER` at it, so `cargo test --target
//! wasm32-unknown-unknown` runs the tests in headless Chromium with no CLI to install.

use std::process::ExitCode;

fn main() -> ExitCode {
    match wasm_bindgen_cli::wasm_bindgen_test_runner::run_cli_with_args(std::env::args_os()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wasm-bindgen-test-runner: {error:#}");
            ExitCode::FAILURE
        }
    }
}
