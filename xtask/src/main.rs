//! Build and test orchestration for the Tidemark workspace: `cargo xtask <task>`.
//!
//! Every task is a plain sequence of commands, printed before it runs, so anything CI does can
//! be reproduced by hand. Tasks install what they need (the wasm32 target) when it is missing.
//!
//! - `demo`: the demo app of `web-demo/`, assembled into `target/web-demo/` with the npm
//!   package just built, served by a release build of the server with its embedded object
//!   store (extra arguments go to the server).
//! - `test`: formatting, clippy (native and wasm32), every test (the browser tests in headless
//!   Chromium, installed from Debian's packages when missing), docs with warnings denied.
//!   Installs the independent S3 server the server's tests run against (s3s-fs, from
//!   crates.io, into `target/tools/`) when it is missing.
//! - `bench`: the core benchmark, printing a table of figures.
//! - `npm`: the npm package `tidemark`: the release wasm, its bindings and the hand-written
//!   JavaScript and types of `wasm/js/`, packed into `target/npm/tidemark-<version>.tgz`.
//! - `load`: the server's load figures (grants per second, announce-to-SSE latency with 1,000
//!   subscribers, memory), against a release build of the real binary.
//! - `sync-figures`: the sync figures (requests and bytes per write, time to converge and
//!   what the bucket holds for 20 devices x 1,000 writes; write-to-visible latency between two
//!   live devices), native clients against a release build of the real server.
//! - `browser-figures`: the npm package's figures in headless Chromium (gzipped size of the
//!   wasm and its JavaScript, durable batched writes per second, cold start of a store of
//!   100,000 documents in a page and in the service worker), `tests/browser/figures.mjs`.
//! - `browser-bench`: the npm package against yjs, Automerge, Loro and TinyBase in headless
//!   Chromium (issue 7's workloads W1–W5 and bundle sizes), `bench/browser/run.mjs`; extra
//!   arguments (`--quick`, `--only W1,W3`) are passed on.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

mod demo;
mod wasm;

const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// Crates that must build for the browser.
const WASM_CRATES: &[&str] = &["tidemark-core", "tidemark-wasm"];
/// The independent S3-compatible server of the server's tests, pinned: newer releases need a
/// newer rustc than the workspace's.
const S3S_FS_VERSION: &str = "0.14.1";

fn main() -> ExitCode {
    let task = env::args().nth(1);
    let result = match task.as_deref() {
        Some("test") => test(),
        Some("bench") => bench(),
        Some("load") => load(),
        Some("demo") => demo::serve(&env::args().skip(2).collect::<Vec<_>>()),
        Some("npm") => wasm::npm_package().map(|_| ()),
        Some("sync-figures") => sync_figures(),
        Some("browser-figures") => wasm::browser_figures(),
        Some("browser-bench") => wasm::browser_bench(&env::args().skip(2).collect::<Vec<_>>()),
        _ => {
            eprintln!(
                "usage: cargo xtask <demo|test|bench|load|npm|sync-figures|browser-figures|browser-bench>"
            );
            eprintln!("  demo   build the npm package and the demo app, run the server serving it");
            eprintln!(
                "  test   fmt check, clippy (native + wasm32), all tests, docs (-D warnings)"
            );
            eprintln!("  bench  core benchmarks (release build), printing a table");
            eprintln!("  load   server load figures (release build), printing tables");
            eprintln!(
                "  npm    the npm package `tidemark` (release wasm), packed into target/npm/"
            );
            eprintln!(
                "  sync-figures  sync cost and latency with native clients (release build), \
                 printing tables"
            );
            eprintln!(
                "  browser-figures  npm package size, writes/s and cold start in headless \
                 Chromium, printing tables"
            );
            eprintln!(
                "  browser-bench [--quick] [--only W1,..]  npm package vs yjs, Automerge, Loro, \
                 TinyBase in headless Chromium, printing tables"
            );
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
    let s3s_fs = ensure_s3s_fs()?;
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
    // The npm package builds `tidemark-wasm` once per feature (`wasm::npm_package`): each
    // alone must build without warnings too.
    for feature in ["store", "replica"] {
        step(
            &format!("clippy ({WASM_TARGET}: tidemark-wasm, feature {feature} alone)"),
            cargo(&[
                "clippy",
                "--package",
                "tidemark-wasm",
                "--target",
                WASM_TARGET,
                "--no-default-features",
                "--features",
                feature,
                "--",
                "-D",
                "warnings",
            ]),
        )?;
    }
    let mut tests = cargo(&["test", "--workspace"]);
    tests.env("TIDEMARK_S3S_FS_BIN", &s3s_fs);
    // `cargo test --workspace` builds the server and `tidemark` binaries (their packages have
    // integration tests) with the workspace's features; the end-to-end suites run those very
    // binaries rather than building their own.
    tests.env(
        "TIDEMARK_SERVER_BIN",
        target_dir().join("debug/tidemark-server"),
    );
    tests.env("TIDEMARK_CLI_BIN", target_dir().join("debug/tidemark"));
    step("tests", tests)?;
    wasm::browser_tests()?;
    wasm::package_tests()?;
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

fn load() -> TaskResult {
    step(
        "release build of tidemark-server",
        cargo(&["build", "--release", "--package", "tidemark-server"]),
    )?;
    step(
        "server load figures",
        cargo(&[
            "run",
            "--release",
            "--package",
            "tidemark-server",
            "--example",
            "load",
        ]),
    )
}

fn sync_figures() -> TaskResult {
    step(
        "release build of tidemark-server",
        cargo(&["build", "--release", "--package", "tidemark-server"]),
    )?;
    let mut figures = cargo(&[
        "run",
        "--release",
        "--package",
        "tidemark-tests",
        "--example",
        "sync_figures",
    ]);
    // Otherwise the example would build the server itself, in debug.
    figures.env(
        "TIDEMARK_SERVER_BIN",
        target_dir().join("release/tidemark-server"),
    );
    step("sync figures", figures)
}

/// Where cargo builds: `CARGO_TARGET_DIR`, else the workspace's `target`.
fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Installs the s3s-fs binary into `target/tools/` unless it is there; its path.
fn ensure_s3s_fs() -> Result<PathBuf, String> {
    let root = workspace_root().join("target/tools/s3s-fs");
    let binary = root.join("bin/s3s-fs");
    if binary.is_file() {
        return Ok(binary);
    }
    // A debug build is enough for tests and builds in about a minute instead of six.
    let root_arg = root.to_string_lossy().into_owned();
    step(
        &format!("install s3s-fs {S3S_FS_VERSION} (independent S3 server for tests)"),
        cargo(&[
            "install",
            &format!("s3s-fs@{S3S_FS_VERSION}"),
            "--features",
            "binary",
            "--debug",
            "--locked",
            "--root",
            &root_arg,
        ]),
    )?;
    Ok(binary)
}

fn cargo(args: &[&str]) -> Command {
    let mut command = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args);
    command
}

/// Runs one cargo step, printing its command line and how long it took.
fn step(name: &str, command: Command) -> TaskResult {
    run(name, command)
}

/// Runs one step (any program), printing its command line and how long it took.
fn run(name: &str, mut command: Command) -> TaskResult {
    let program = command.get_program().to_string_lossy().into_owned();
    let program = Path::new(&program)
        .file_name()
        .map_or(program.clone(), |f| f.to_string_lossy().into_owned());
    let shown: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    println!("\n==> {name}: {program} {}", shown.join(" "));
    let started = Instant::now();
    let status = command
        .status()
        .map_err(|e| format!("{name}: could not start {program}: {e}"))?;
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
