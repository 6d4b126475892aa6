//! The `tidemark` command's answers that need no server: a folder without a device, and join
//! links it cannot use. (With a server: `tests/tests/cli.rs`, which runs the binary these tests
//! make cargo build.)

use std::path::Path;
use std::process::{Command, Output};

fn tidemark(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("TIDEMARK_DIR")
        .env_remove("TIDEMARK_SPACE_KEY")
        .output()
        .expect("run tidemark")
}

/// Asserts that the command failed, saying `expected` on stderr, and printed nothing.
fn assert_refused(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(expected), "{stderr:?} lacks {expected:?}");
    assert!(output.stdout.is_empty(), "{:?}", output.stdout);
}

#[test]
fn a_folder_without_a_device_says_to_join_first() {
    let dir = tempfile::tempdir().unwrap();
    for command in [&["status"][..], &["get", "orders", "o1"], &["sync"]] {
        let output = tidemark(dir.path(), command);
        assert_refused(&output, "run `tidemark join` first");
    }
}

#[test]
fn join_refuses_links_it_cannot_use_before_contacting_anyone() {
    let dir = tempfile::tempdir().unwrap();
    assert_refused(&tidemark(dir.path(), &["join", "tmi_abc123"]), "--server");
    assert_refused(
        &tidemark(dir.path(), &["join", "http://127.0.0.1:9/#join="]),
        "no invite code",
    );
    // Nothing was created: the folder can still be joined.
    assert!(!dir.path().join("profile.json").exists());
}
