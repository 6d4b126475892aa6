//! The browser side: headless Chromium for tests, the wasm-bindgen test runner, and the npm
//! package.

use std::path::Path;
use std::process::Command;

use crate::{TaskResult, WASM_TARGET, cargo, run, step, target_dir};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Installs Debian's Chromium and its driver when either is missing.
pub(crate) fn ensure_chromium() -> TaskResult {
    if Path::new(CHROMIUM).is_file() && Path::new(CHROMEDRIVER).is_file() {
        return Ok(());
    }
    run("apt-get update", apt(&["update", "-qq"]))?;
    let packages = [
        "install",
        "-y",
        "--no-install-recommends",
        "chromium",
        "chromium-driver",
    ];
    if run("install chromium and chromium-driver", apt(&packages)).is_err() {
        // Seen once on these machines: dpkg stops on a dependency; `-f` repairs it.
        run("repair the chromium install", apt(&["install", "-y", "-f"]))?;
        run("install chromium and chromium-driver", apt(&packages))?;
    }
    Ok(())
}

fn apt(args: &[&str]) -> Command {
    let mut command = Command::new("apt-get");
    command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    command
}

/// Runs the wasm crate's tests in headless Chromium, in a page and in a service worker.
pub(crate) fn browser_tests() -> TaskResult {
    ensure_chromium()?;
    step(
        "build the wasm-bindgen test runner",
        cargo(&[
            "build",
            "--package",
            "xtask",
            "--bin",
            "wasm-bindgen-test-runner",
        ]),
    )?;
    let runner = target_dir().join("debug/wasm-bindgen-test-runner");
    let mut tests = cargo(&[
        "test",
        "--package",
        "tidemark-wasm",
        "--target",
        WASM_TARGET,
    ]);
    tests
        .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER", runner)
        .env("CHROMEDRIVER", CHROMEDRIVER);
    step(
        "browser tests (headless Chromium: page and service worker)",
        tests,
    )
}
