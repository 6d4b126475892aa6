//! Build and test orchestration for the Tidemark workspace: `cargo xtask <task>`.
//!
//! Every task is a plain sequence of commands, printed before it runs, so anything CI does can
//! be reproduced by hand. Tasks install what they need (the wasm32 target) when it is missing.
//!
//! - `test`: formatting, clippy (native and wasm32), every test, docs with warnings denied.
//! - `bench`: the core benchmark, printing a table of figures.

use std::env;
use std::process::{Command, ExitCode};
use std::time::Instant;

const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// Crates that must build for the browser.
const WASM_CRATES: &[&str] = &["tidemark-core"];

fn main() -> ExitCode {
    let task = env::args().nth(1);
    let result = match task.as_deref() {
        Some("test") => test(),
        Some("bench") => bench(),
        _ => {
            eprintln!("usage: cargo xtask <test|bench>");
            eprintln!(
                "  test   fmt check, clippy (native + wasm32), all tests, docs (-D warnings)"
            );
            eprintln!("  bench  core benchmarks (release build), printing a table");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

type TaskResult = Result<(), String>;

fn test() -> TaskResult {
    let started = Instant::now();
    ensure_wasm_target()?;
    step("format", cargo(&["fmt", "--all", "--", "--check"]))?;
    step(
        "clippy (native)",
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    for krate in WASM_CRATES {
        step(
            &format!("clippy ({WASM_TARGET}: {krate})"),
            cargo(&[
                "clippy",
                "--package",
                krate,
                "--target",
                WASM_TARGET,
                "--",
                "-D",
                "warnings",
            ]),
        )?;
    }
    step("tests", cargo(&["test", "--workspace"]))?;
    let mut doc = cargo(&["doc", "--workspace", "--no-deps"]);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    step("docs", doc)?;
    println!(
        "\nxtask test: all steps passed in {:.0?}",
        started.elapsed()
    );
    Ok(())
}

fn bench() -> TaskResult {
    step(
        "core benchmarks",
        cargo(&["bench", "--package", "tidemark-core", "--bench", "core"]),
    )
}

fn cargo(args: &[&str]) -> Command {
    let mut command = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args);
    command
}

/// Runs one step, printing its command line and how long it took.
fn step(name: &str, mut command: Command) -> TaskResult {
    let shown: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    println!("\n==> {name}: cargo {}", shown.join(" "));
    let started = Instant::now();
    let status = command
        .status()
        .map_err(|e| format!("{name}: could not start cargo: {e}"))?;
    if !status.success() {
        return Err(format!("{name} failed ({status})"));
    }
    println!("==> {name}: ok in {:.1?}", started.elapsed());
    Ok(())
}

/// Adds the wasm32 target through rustup when the active toolchain lacks it.
fn ensure_wasm_target() -> TaskResult {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup is needed to add the {WASM_TARGET} target: {e}"))?;
    let listed = String::from_utf8_lossy(&installed.stdout);
    if listed.lines().any(|line| line.trim() == WASM_TARGET) {
        return Ok(());
    }
    let mut add = Command::new("rustup");
    add.args(["target", "add", WASM_TARGET]);
    step(&format!("install the {WASM_TARGET} target"), add)
}
