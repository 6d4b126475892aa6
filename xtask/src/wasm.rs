//! The browser side: headless Chromium for tests, the wasm-bindgen test runner, and the npm
//! package.

use std::env;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::{TaskResult, WASM_TARGET, cargo, run, step, target_dir, workspace_root};

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

/// Builds the npm package and runs `tests/browser/` against it: the package as an app
/// installs it, in headless Chromium driven by playwright-core, syncing through the real
/// server binary.
pub(crate) fn package_tests() -> TaskResult {
    ensure_chromium()?;
    let dir = install_package(&workspace_root().join("tests/browser"), &npm_package()?)?;
    // The demo's end-to-end tests serve the app assembled with the package just built.
    let demo = crate::demo::assemble()?;
    let mut test = Command::new("npm");
    test.env("TIDEMARK_DEMO_DIR", &demo);
    // The sync tests run the server binary `cargo test --workspace` built.
    test.arg("test").current_dir(&dir).env(
        "TIDEMARK_SERVER_BIN",
        target_dir().join("debug/tidemark-server"),
    );
    run("npm package tests (headless Chromium)", test)
}

/// Builds the npm package and prints its figures in headless Chromium
/// (`tests/browser/figures.mjs`): download size, durable batched writes per second, and the
/// cold start of a store of 100,000 documents, in a page and in the service worker.
pub(crate) fn browser_figures() -> TaskResult {
    ensure_chromium()?;
    let dir = install_package(&workspace_root().join("tests/browser"), &npm_package()?)?;
    let mut figures = Command::new("npm");
    figures.args(["run", "figures"]).current_dir(&dir);
    run("npm package figures (headless Chromium)", figures)
}

/// Builds the npm package and runs `bench/browser/run.mjs`: the package against yjs,
/// Automerge, Loro and TinyBase in headless Chromium (issue 7's workloads and bundle sizes),
/// printing one table per workload. `args` (`--quick`, `--only W1,W3`) go to `run.mjs`.
pub(crate) fn browser_bench(args: &[String]) -> TaskResult {
    ensure_chromium()?;
    let tarball = npm_package()?;
    // The bench reuses the browser tests' harness, which needs their packages.
    let tests = workspace_root().join("tests/browser");
    if !tests.join("node_modules/playwright-core").exists() {
        install_package(&tests, &tarball)?;
    }
    let dir = install_package(&workspace_root().join("bench/browser"), &tarball)?;
    let mut bench = Command::new("node");
    bench.arg("run.mjs").args(args).current_dir(&dir);
    run("browser benchmarks (headless Chromium)", bench)
}

/// Installs the packages of the npm project in `dir` (`tests/browser/` or `bench/browser/`),
/// and the package from `tarball` (the one just built, wherever the target folder is);
/// returns `dir`.
fn install_package(dir: &Path, tarball: &Path) -> Result<PathBuf, String> {
    let dir = dir.to_path_buf();
    let mut install = Command::new("npm");
    install
        .args(["install", "--no-audit", "--no-fund", "--no-package-lock"])
        .current_dir(&dir);
    run("install the npm packages", install)?;
    // Removed first: npm would keep an installed copy of the same version (no lockfile pins
    // its checksum). `--no-save`: the tarball's path depends on the machine.
    let installed = dir.join("node_modules").join(PACKAGE);
    if installed.exists() {
        fs::remove_dir_all(&installed)
            .map_err(|e| format!("cannot remove {}: {e}", installed.display()))?;
    }
    let mut package = Command::new("npm");
    package
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--no-package-lock",
            "--no-save",
        ])
        .arg(tarball)
        .current_dir(&dir);
    run("install the package just built", package)?;
    Ok(dir)
}

/// The npm package's name.
const PACKAGE: &str = "tidemark";
/// The package's two wasm modules, each built from `tidemark-wasm` with one feature: the
/// store (`openStore`, `tidemark/sw`) and the in-memory replica (`tidemark/replica`), so that
/// an app using only the replica downloads none of the store's, sync's or IndexedDB's code.
const MODULES: &[WasmModule] = &[
    WasmModule {
        feature: "store",
        bindings: "tidemark_wasm",
    },
    WasmModule {
        feature: "replica",
        bindings: "tidemark_replica",
    },
];

/// One wasm module of the package: the crate feature it is built with and the name of its
/// bindings (`<bindings>.js` and `<bindings>_bg.wasm`).
struct WasmModule {
    feature: &'static str,
    bindings: &'static str,
}

/// The hand-written JavaScript and types, copied beside the bindings.
const JS_FILES: &[&str] = &[
    "package.json",
    "index.js",
    "index.d.ts",
    "sw.js",
    "sw.d.ts",
    "store.js",
    "protocol.js",
    "attachments.js",
    "replica.js",
    "replica.d.ts",
];

/// Builds the npm package into `target/npm/tidemark/` and packs it as
/// `target/npm/tidemark-<version>.tgz` (what the demo and the browser tests install);
/// returns the tarball's path.
pub(crate) fn npm_package() -> Result<PathBuf, String> {
    ensure_npm()?;
    let out = target_dir().join("npm").join(PACKAGE);
    if out.exists() {
        fs::remove_dir_all(&out).map_err(|e| format!("cannot clear {}: {e}", out.display()))?;
    }
    for module in MODULES {
        build_module(module, &out)?;
    }
    let js = workspace_root().join("wasm/js");
    for file in JS_FILES {
        fs::copy(js.join(file), out.join(file))
            .map_err(|e| format!("cannot copy wasm/js/{file}: {e}"))?;
    }
    let mut pack = Command::new("npm");
    pack.args(["pack", "--silent", "--pack-destination", ".."])
        .current_dir(&out);
    run("npm pack", pack)?;
    let version = package_version(&js.join("package.json"))?;
    let tarball = target_dir().join(format!("npm/{PACKAGE}-{version}.tgz"));
    print_sizes(&out)?;
    println!("npm package: {}", tarball.display());
    Ok(tarball)
}

/// Flags for the package's wasm builds: `sha2`'s compact code instead of its unrolled rounds,
/// about 5 KB less gzipped for hashing about a third slower, which a browser never notices
/// (SHA-512 runs over a pack once per signature; SHA-256 only stamps preloaded data).
/// Cargo ignores them if `RUSTFLAGS` is set.
const WASM_RUSTFLAGS: &str = r#"--cfg sha2_backend_soft="compact""#;

/// Builds one wasm module (release, its feature alone) and its bindings into `out`.
fn build_module(module: &WasmModule, out: &Path) -> TaskResult {
    let mut build = cargo(&[
        "build",
        "--package",
        "tidemark-wasm",
        "--target",
        WASM_TARGET,
        "--profile",
        "wasm-release",
        "--no-default-features",
        "--features",
        module.feature,
    ]);
    build.env(
        "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS",
        WASM_RUSTFLAGS,
    );
    step(
        &format!("release build of tidemark-wasm ({})", module.feature),
        build,
    )?;
    // Both builds write the same file: its bindings are made before the next build.
    let wasm = target_dir().join(format!("{WASM_TARGET}/wasm-release/tidemark_wasm.wasm"));
    let started = Instant::now();
    let out_arg = out.to_string_lossy().into_owned();
    let wasm_arg = wasm.to_string_lossy().into_owned();
    println!(
        "\n==> bindings: wasm-bindgen --target web --out-dir {out_arg} --out-name {} {wasm_arg}",
        module.bindings
    );
    let mut bindgen_args = vec![
        "wasm-bindgen",
        "--target",
        "web",
        "--out-dir",
        &out_arg,
        "--out-name",
        module.bindings,
        "--remove-producers-section",
    ];
    // Function names are for debugging, not for shipping; `TIDEMARK_WASM_NAMES=1` keeps them
    // so that browser profiles name the Rust functions.
    if env::var_os("TIDEMARK_WASM_NAMES").is_none() {
        bindgen_args.push("--remove-name-section");
    }
    bindgen_args.push(&wasm_arg);
    wasm_bindgen_cli::wasm_bindgen::run_cli_with_args(bindgen_args)
        .map_err(|e| format!("wasm-bindgen: {e:#}"))?;
    println!("==> bindings: ok in {:.1?}", started.elapsed());
    // The generated types describe the raw bindings; the package ships its own.
    for generated in [
        format!("{}.d.ts", module.bindings),
        format!("{}_bg.wasm.d.ts", module.bindings),
    ] {
        let _ = fs::remove_file(out.join(generated));
    }
    Ok(())
}

/// Fails with a clear message when Node.js and npm are missing (the browser tests and the
/// demo need them; Debian's `nodejs` and `npm` packages are enough).
fn ensure_npm() -> TaskResult {
    let found = Command::new("npm").arg("--version").output();
    if found.is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    run("apt-get update", apt(&["update", "-qq"]))?;
    run(
        "install nodejs and npm",
        apt(&["install", "-y", "--no-install-recommends", "nodejs", "npm"]),
    )
}

fn package_version(manifest: &Path) -> Result<String, String> {
    let text = fs::read_to_string(manifest)
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", manifest.display()))?;
    json["version"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{} has no version", manifest.display()))
}

/// Prints the shipped files' sizes, raw and gzipped (what a browser downloads).
fn print_sizes(dir: &Path) -> TaskResult {
    println!("\n{:<24} {:>10} {:>10}", "file", "bytes", "gzipped");
    let mut total = (0, 0);
    let bindings = MODULES
        .iter()
        .flat_map(|m| {
            [
                format!("{}_bg.wasm", m.bindings),
                format!("{}.js", m.bindings),
            ]
        })
        .collect::<Vec<_>>();
    for file in bindings.iter().map(String::as_str).chain([
        "index.js",
        "store.js",
        "protocol.js",
        "attachments.js",
        "sw.js",
        "replica.js",
    ]) {
        let bytes = fs::read(dir.join(file)).map_err(|e| format!("cannot read {file}: {e}"))?;
        let mut gz = GzEncoder::new(Vec::new(), Compression::best());
        gz.write_all(&bytes).map_err(|e| e.to_string())?;
        let gzipped = gz.finish().map_err(|e| e.to_string())?.len();
        println!("{file:<24} {:>10} {:>10}", bytes.len(), gzipped);
        total = (total.0 + bytes.len(), total.1 + gzipped);
    }
    println!("{:<24} {:>10} {:>10}", "total", total.0, total.1);
    Ok(())
}
