//! The demo app (`web-demo/`): assembled into `target/web-demo/` with the npm package just
//! built under `pkg/` and the QR code module under `vendor/`, and served by the real server.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{TaskResult, cargo, run, target_dir, wasm, workspace_root};

/// The demo's own files and folders, copied as they are.
const APP_FILES: &[&str] = &[
    "index.html",
    "style.css",
    "app.js",
    "sw.js",
    "manifest.webmanifest",
    "icon.svg",
    "views",
];

/// `cargo xtask demo [server flags]`: builds what is needed and runs the server (release
/// build, embedded object store) with the demo as its app. Flags go to `tidemark-server`.
pub(crate) fn serve(server_args: &[String]) -> TaskResult {
    wasm::npm_package()?;
    let app = assemble()?;
    let app_arg = app.to_string_lossy().into_owned();
    let mut server = cargo(&[
        "run",
        "--release",
        "--package",
        "tidemark-server",
        "--",
        "--app-dir",
        &app_arg,
    ]);
    server.args(server_args);
    run("tidemark-server with the demo app", server)
}

/// Installs the demo's npm dependencies and assembles the app, with the npm package built
/// last (`wasm::npm_package`), into `target/web-demo/`; returns that folder.
pub(crate) fn assemble() -> Result<PathBuf, String> {
    let source = workspace_root().join("web-demo");
    let mut install = Command::new("npm");
    install
        .args(["install", "--no-audit", "--no-fund", "--no-package-lock"])
        .current_dir(&source);
    run("install the demo's npm packages", install)?;

    let out = target_dir().join("web-demo");
    if out.exists() {
        fs::remove_dir_all(&out).map_err(|e| format!("cannot clear {}: {e}", out.display()))?;
    }
    for name in APP_FILES {
        copy(&source.join(name), &out.join(name))?;
    }
    // `/tidemark/` is the embedded store's bucket on the server's origin: the package goes
    // under `/pkg/`.
    copy(&target_dir().join("npm/tidemark"), &out.join("pkg"))?;
    copy(
        &source.join("node_modules/uqr/dist/index.mjs"),
        &out.join("vendor/uqr.mjs"),
    )?;
    println!("==> demo app: {}", out.display());
    Ok(out)
}

/// Copies a file, or a folder with everything in it.
fn copy(from: &Path, to: &Path) -> TaskResult {
    let failed =
        |e: std::io::Error| format!("cannot copy {} to {}: {e}", from.display(), to.display());
    if from.is_dir() {
        fs::create_dir_all(to).map_err(failed)?;
        for entry in fs::read_dir(from).map_err(failed)? {
            let entry = entry.map_err(failed)?;
            copy(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(failed)?;
        }
        fs::copy(from, to).map(drop).map_err(failed)
    }
}
