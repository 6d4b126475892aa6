//! The `tidemark` command as a person runs it, against the real server binary: joining with an
//! invite link, then watching while another device writes.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tidemark_cli::ClientOptions;
use tidemark_core::{Role, Value};
use tidemark_tests::server::{SPACE, ServerOptions, ServerProcess, cli_binary};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

/// Generous for loopback: the change arrives with an announcement, or at the latest with the
/// second polling round (1 s, then 2 s after a quiet one).
const PATIENCE: Duration = Duration::from_secs(10);

fn tidemark(binary: &Path, dir: &Path) -> Command {
    let mut command = Command::new(binary);
    command.arg("--dir").arg(dir).env_remove("TIDEMARK_DIR");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_a_document_another_device_changed_as_a_json_line() {
    let binary = cli_binary();
    let server = ServerProcess::start(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let code = server
        .admin()
        .await
        .invite(SPACE, Role::Writer)
        .await
        .unwrap();
    let joined = tidemark(&binary, dir.path())
        .args(["join", &format!("{}/#join={code}", server.url)])
        .args(["--name", "watcher"])
        .output()
        .await
        .unwrap();
    assert!(
        joined.status.success(),
        "join failed: {}",
        String::from_utf8_lossy(&joined.stderr)
    );

    let mut watch = tidemark(&binary, dir.path())
        .args(["watch", "--collection", "orders"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Whatever happens below, the watcher does not outlive the test.
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut printed = BufReader::new(watch.stdout.take().unwrap()).lines();
    // Held open to the end: a watcher whose stderr is closed fails on its next message.
    let mut messages = BufReader::new(watch.stderr.take().unwrap()).lines();
    let greeting = timeout(PATIENCE, messages.next_line())
        .await
        .expect("watch starts")
        .unwrap()
        .expect("watch says what it watches");
    assert!(greeting.starts_with("watching space"), "{greeting}");

    let mut other = server
        .device(Role::Writer, None, ClientOptions::default())
        .await;
    other
        .write(|w| {
            w.upsert(
                "orders",
                "o1",
                [("table", Value::from(7)), ("dish", Value::from("risotto"))],
            )
        })
        .unwrap();
    other.sync(PATIENCE).await.unwrap();

    let line = timeout(PATIENCE, async {
        loop {
            let line = printed
                .next_line()
                .await
                .unwrap()
                .expect("watch ended without printing the change");
            let json: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            if json["_id"] == "o1" {
                return json;
            }
        }
    })
    .await
    .expect("watch printed the change in time");
    assert_eq!(line["collection"], "orders");
    assert_eq!(line["deleted"], false);
    assert_eq!(line["doc"]["dish"], "risotto", "{line}");
    assert_eq!(line["doc"]["table"], 7, "{line}");

    watch.kill().await.unwrap();
}
