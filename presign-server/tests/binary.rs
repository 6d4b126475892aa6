//! The real `tidemark-server` binary with no configuration but a data folder: it prints where to
//! go and an admin invite that works, serves its embedded store, keeps its keys across a
//! restart, and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Running {
    child: Child,
    output: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &std::path::Path, port: u16) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark-server"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .env_remove("TIDEMARK_ADMIN_SECRET")
        .env_remove("TIDEMARK_S3_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Owned from here on: a panic below still kills and reaps the child.
    let mut running = Running {
        child,
        output: Vec::new(),
    };
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let done = line.trim_start().starts_with("Objects:");
        running.output.push(line);
        if done {
            return running;
        }
    }
    panic!(
        "server did not print its start report: {:?}",
        running.output
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn zero_config_server_prints_a_working_admin_invite_and_restarts_with_its_keys() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let running = start(data.path(), port);
    let report = running.output.join("\n");
    assert!(
        report.contains(&format!("Open:        {base}/")),
        "{report}"
    );
    assert!(report.contains("embedded store"), "{report}");
    let invite = report
        .split("#join=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("an admin invite in the report")
        .to_owned();

    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "registry and embedded store answer");
    let session: serde_json::Value = http
        .post(format!("{base}/v1/session"))
        .json(&serde_json::json!({ "invite": invite }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["space"], "default");
    assert_eq!(session["role"], "admin");
    let info: serde_json::Value = http
        .get(format!("{base}/v1/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // SIGTERM: graceful shutdown, exit status 0.
    let mut running = running;
    let pid = running.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");

    // Same data folder: same server key, the session still works.
    let _restarted = start(data.path(), port);
    let http = reqwest::Client::new(); // the old pool's connections died with the old process
    let again: serde_json::Value = http
        .get(format!("{base}/v1/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["serverPublicKey"], info["serverPublicKey"]);
    let spaces = http
        .get(format!("{base}/v1/spaces"))
        .bearer_auth(session["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(spaces.status(), 200);
}
