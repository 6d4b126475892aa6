//! Load measurement for `tidemark-server`: starts the real release binary on a loopback port
//! and prints three markdown tables:
//!
//! 1. grants per second for a 10-device space, at 1, 8 and 32 concurrent connections;
//! 2. announce-to-SSE latency with 1,000 connected event-stream subscribers;
//! 3. the server's memory (`VmRSS`, `VmHWM`) before and while those subscribers are connected.
//!
//! ```text
//! cargo build --release -p tidemark-server
//! cargo run --release -p tidemark-server --example load
//! ```
//!
//! The server binary is `$TIDEMARK_SERVER_BIN`, by default `<workspace>/target/release/tidemark-server`.
//! Knobs (environment): `LOAD_WARMUP_SECS` (2), `LOAD_SECS` (10), `LOAD_CONCURRENCY` (`1,8,32`),
//! `LOAD_SUBSCRIBERS` (1000), `LOAD_ANNOUNCEMENTS` (200), `LOAD_SPACING_MS` (20),
//! `LOAD_CLIENT_THREADS` (1: the load generator stays on about one core).
//!
//! Part 1 runs on one server; parts 2 and 3 on a second, fresh one, so the memory baseline is
//! not inflated by what the allocator kept from the grant load. Everything binds 127.0.0.1 and
//! the servers are killed when the program ends, panics included.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};
use tidemark_core::{DeviceKey, registration_message};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};

const ADMIN_SECRET: &str = "load-test-admin-secret-0123";
const SPACE: &str = "default";
const COLLECTIONS: [&str; 3] = ["orders", "menu", "stock"];
const DEVICES: u8 = 10;
/// Subscribers connecting at the same time (the rest wait for their `hello`).
const CONNECT_PARALLELISM: usize = 100;

fn main() -> Result<()> {
    let settings = Settings::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.client_threads)
        .enable_all()
        .build()?;
    runtime.block_on(run(settings))
}

/// What to measure, from the environment.
struct Settings {
    bin: PathBuf,
    warmup: Duration,
    duration: Duration,
    concurrency: Vec<usize>,
    subscribers: usize,
    announcements: usize,
    spacing: Duration,
    client_threads: usize,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        fn number(name: &str, default: u64) -> Result<u64> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .with_context(|| format!("{name} must be a whole number, got {v:?}")),
                Err(_) => Ok(default),
            }
        }
        let bin = std::env::var_os("TIDEMARK_SERVER_BIN").map_or_else(
            || {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("..")
                    .join("target/release/tidemark-server")
            },
            PathBuf::from,
        );
        if !bin.is_file() {
            bail!(
                "no server binary at {}: run `cargo build --release -p tidemark-server` first \
                 (or point TIDEMARK_SERVER_BIN at the binary)",
                bin.display()
            );
        }
        let concurrency = std::env::var("LOAD_CONCURRENCY")
            .unwrap_or_else(|_| "1,8,32".into())
            .split(',')
            .map(|c| c.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .context("LOAD_CONCURRENCY must be a comma-separated list of numbers")?;
        Ok(Settings {
            bin,
            warmup: Duration::from_secs(number("LOAD_WARMUP_SECS", 2)?),
            duration: Duration::from_secs(number("LOAD_SECS", 10)?.max(1)),
            concurrency,
            subscribers: usize::try_from(number("LOAD_SUBSCRIBERS", 1000)?)?,
            announcements: usize::try_from(number("LOAD_ANNOUNCEMENTS", 200)?)?,
            spacing: Duration::from_millis(number("LOAD_SPACING_MS", 20)?),
            client_threads: usize::try_from(number("LOAD_CLIENT_THREADS", 1)?)?.max(1),
        })
    }
}

async fn run(settings: Settings) -> Result<()> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;

    println!("## tidemark-server load measurement\n");
    println!(
        "- date: {}",
        command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    );
    println!("- nproc: {}", command_output("nproc", &[]));
    if let Some(cpu) = cpu_model() {
        println!("- cpu: {cpu}");
    }
    println!("- server: `{}`", settings.bin.display());
    println!(
        "- load generator: this process, one tokio runtime with {} worker thread(s), on the same machine",
        settings.client_threads
    );
    let fds = open_files_limit();
    if let Some(limit) = fds {
        println!("- open-files limit (soft): {limit}");
    }
    if fds.is_some_and(|l| l < 2 * settings.subscribers as u64 + 256) {
        println!(
            "\n> note: the open-files limit is too low for {} subscribers plus the server's sockets; \
             raise it with `ulimit -n 8192` before running.",
            settings.subscribers
        );
    }
    println!();

    // Part 1.
    {
        let mut server = Server::start(&settings.bin)?;
        server.wait_healthy(&client).await?;
        let api = Api {
            client: client.clone(),
            base: server.base.clone(),
        };
        let members = setup_space(&api).await?;
        let (urls, bytes) = count_grant_urls(&api, &members[0]).await?;
        let mut rows = Vec::new();
        for &connections in &settings.concurrency {
            rows.push(grant_load(&api, &members, connections, &settings).await?);
        }
        println!(
            "### 1. Grants, {DEVICES}-device space, {} collections per grant\n",
            COLLECTIONS.len()
        );
        println!(
            "{} s measured after {} s warm-up per row; one presigned-URL grant = {urls} URLs, {bytes} bytes of JSON.\n",
            settings.duration.as_secs(),
            settings.warmup.as_secs()
        );
        println!("| connections | grants/s | p50 ms | p99 ms | grants measured | errors |");
        println!("|---:|---:|---:|---:|---:|---:|");
        for row in rows {
            println!(
                "| {} | {:.0} | {} | {} | {} | {} |",
                row.connections,
                row.per_second,
                ms(row.p50),
                ms(row.p99),
                row.count,
                row.errors
            );
        }
        println!();
    }

    // Parts 2 and 3, on a fresh server.
    let mut server = Server::start(&settings.bin)?;
    server.wait_healthy(&client).await?;
    let api = Api {
        client: client.clone(),
        base: server.base.clone(),
    };
    let members = setup_space(&api).await?;
    let (sse, memory) = fan_out(&api, &server, &members, &settings).await?;

    println!(
        "### 2. Announce → SSE `pack` event, {} subscribers\n",
        settings.subscribers
    );
    println!(
        "{} announcements {} ms apart from one writer device; latency = announce request sent → \
         matching `pack` event parsed by a subscriber (all subscribers share one member's token).\n",
        settings.announcements,
        settings.spacing.as_millis()
    );
    println!(
        "| subscribers | deliveries (expected) | p50 ms | p99 ms | max ms | last-subscriber p50 ms | last-subscriber p99 ms | announce request p50 ms | errors |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} |",
        settings.subscribers,
        sse.deliveries,
        settings.subscribers * settings.announcements,
        ms(sse.p50),
        ms(sse.p99),
        ms(sse.max),
        ms(sse.last_p50),
        ms(sse.last_p99),
        ms(sse.announce_p50),
        sse.errors
    );
    println!();

    println!(
        "### 3. Server memory, {} SSE subscribers\n",
        settings.subscribers
    );
    println!("| moment | VmRSS MiB | VmHWM MiB |");
    println!("|---|---:|---:|");
    for (moment, m) in &memory {
        println!("| {moment} | {} | {} |", mib(m.rss_kib), mib(m.hwm_kib));
    }
    let before = memory[0].1;
    let connected = memory[1].1;
    let delta = connected.rss_kib.saturating_sub(before.rss_kib);
    println!(
        "\nVmRSS difference connected − before: {} MiB, {:.1} KiB per subscriber.",
        mib(delta),
        delta as f64 / settings.subscribers.max(1) as f64
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The server process.

/// The running server; killed when dropped, also when the program panics.
struct Server {
    child: Child,
    base: String,
    address: String,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(bin: &Path) -> Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("tidemark-load-")
            .tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let address = format!("127.0.0.1:{port}");
        let stdout = File::create(dir.path().join("server.out"))?;
        let stderr = File::create(dir.path().join("server.err"))?;
        let mut command = Command::new(bin);
        // Only the flags below configure it, not whatever the caller's shell holds.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TIDEMARK_") {
                command.env_remove(name);
            }
        }
        command.env_remove("RUST_LOG");
        let child = command
            .arg("--listen")
            .arg(&address)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--admin-secret", ADMIN_SECRET])
            .args(["--auth-rate-per-minute", "100000"])
            .arg("--app-dir")
            .arg(dir.path().join("none"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Server {
            child,
            base: format!("http://{address}"),
            address,
            dir,
        })
    }

    async fn wait_healthy(&mut self, client: &reqwest::Client) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the server exited ({status}) before answering:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(response) = client.get(format!("{}/healthz", self.base)).send().await
                && response.status() == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the server did not answer /healthz within 30 s:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        for name in ["server.out", "server.err"] {
            let log = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            text.push_str(&format!("--- {name} (last lines)\n"));
            for line in &lines[lines.len().saturating_sub(20)..] {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    fn memory(&self) -> Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .context("cannot read the server's /proc/<pid>/status")?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .ok_or_else(|| anyhow!("no {name} in /proc/<pid>/status"))
        };
        Ok(Memory {
            rss_kib: field("VmRSS:")?,
            hwm_kib: field("VmHWM:")?,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy)]
struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
}

// ---------------------------------------------------------------------------------------------
// The API.

struct Api {
    client: reqwest::Client,
    base: String,
}

/// One member of the space with one registered device.
struct Member {
    token: String,
    device: String,
}

impl Api {
    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
        expect: u16,
    ) -> Result<Value> {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        ensure!(
            status == expect,
            "POST {path}: expected {expect}, got {status}: {text}"
        );
        Ok(serde_json::from_str(&text)?)
    }
}

fn text_field(value: &Value, name: &str) -> Result<String> {
    value[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no {name:?} in {value}"))
}

/// `DEVICES` writer members of the default space, each with one device (seeds 1..=DEVICES).
async fn setup_space(api: &Api) -> Result<Vec<Member>> {
    let admin = api
        .post(
            "/v1/session",
            None,
            json!({ "adminSecret": ADMIN_SECRET }),
            201,
        )
        .await?;
    let admin = text_field(&admin, "token")?;
    let mut members = Vec::new();
    for seed in 1..=DEVICES {
        let invite = api
            .post(
                &format!("/v1/spaces/{SPACE}/invites"),
                Some(&admin),
                json!({ "role": "writer", "maxUses": 1 }),
                201,
            )
            .await?;
        let session = api
            .post(
                "/v1/session",
                None,
                json!({ "invite": text_field(&invite, "code")? }),
                201,
            )
            .await?;
        let token = text_field(&session, "token")?;
        let challenge = api
            .post(
                &format!("/v1/spaces/{SPACE}/devices/challenge"),
                Some(&token),
                json!({}),
                201,
            )
            .await?;
        let challenge = text_field(&challenge, "challenge")?;
        let key = DeviceKey::from_seed([seed; 32]);
        let signature = key.sign(&registration_message(SPACE, &hex::decode(&challenge)?));
        let device = key.device_id().to_string();
        api.post(
            &format!("/v1/spaces/{SPACE}/devices"),
            Some(&token),
            json!({
                "device": device,
                "challenge": challenge,
                "signature": hex::encode(signature),
                "name": format!("load device {seed}"),
                "sdkVersion": "load/1",
            }),
            201,
        )
        .await?;
        members.push(Member { token, device });
    }
    Ok(members)
}

fn grant_body(member: &Member) -> Value {
    json!({ "device": member.device, "collections": COLLECTIONS })
}

/// URLs in one grant (`put` plus `get`), and its size in bytes.
async fn count_grant_urls(api: &Api, member: &Member) -> Result<(usize, usize)> {
    let grant = api
        .post(
            &format!("/v1/spaces/{SPACE}/grants"),
            Some(&member.token),
            grant_body(member),
            200,
        )
        .await?;
    let bytes = grant.to_string().len();
    let lists = |v: &Value| -> usize { v.as_array().map_or(0, Vec::len) };
    let put: usize = grant["put"]
        .as_object()
        .map_or(0, |o| o.values().map(lists).sum());
    let get: usize = grant["get"].as_object().map_or(0, |o| {
        o.values()
            .filter_map(Value::as_object)
            .flat_map(|devices| devices.values())
            .map(lists)
            .sum()
    });
    ensure!(put + get > 0, "the grant holds no URLs: {grant}");
    Ok((put + get, bytes))
}

// ---------------------------------------------------------------------------------------------
// Part 1: grants.

struct GrantRow {
    connections: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    count: usize,
    errors: usize,
}

async fn grant_load(
    api: &Api,
    members: &[Member],
    connections: usize,
    settings: &Settings,
) -> Result<GrantRow> {
    let url = format!("{}/v1/spaces/{SPACE}/grants", api.base);
    // Pre-built requests, round-robin over the members' (token, device) pairs.
    let requests: Arc<Vec<(String, bytes::Bytes)>> = Arc::new(
        members
            .iter()
            .map(|m| {
                (
                    format!("Bearer {}", m.token),
                    bytes::Bytes::from(grant_body(m).to_string()),
                )
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let measure_from = start + settings.warmup;
    let end = measure_from + settings.duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let client = api.client.clone();
        let url = url.clone();
        let requests = Arc::clone(&requests);
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let (auth, body) = &requests[next.fetch_add(1, Ordering::Relaxed) % requests.len()];
                let result = client
                    .post(&url)
                    .header(reqwest::header::AUTHORIZATION, auth)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let ok = match result {
                    Ok(response) => {
                        let status = response.status();
                        response.bytes().await.is_ok() && status == reqwest::StatusCode::OK
                    }
                    Err(_) => false,
                };
                let done = Instant::now();
                if done >= measure_from && done <= end {
                    if ok {
                        latencies.push(done - sent);
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await?;
        latencies.extend(l);
        errors += e;
    }
    latencies.sort_unstable();
    Ok(GrantRow {
        connections,
        per_second: latencies.len() as f64 / settings.duration.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        count: latencies.len(),
        errors,
    })
}

// ---------------------------------------------------------------------------------------------
// Parts 2 and 3: announcements to SSE subscribers, and memory.

struct SseResult {
    deliveries: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// Per announcement, the time until its last subscriber had it.
    last_p50: Duration,
    last_p99: Duration,
    announce_p50: Duration,
    errors: usize,
}

async fn fan_out(
    api: &Api,
    server: &Server,
    members: &[Member],
    settings: &Settings,
) -> Result<(SseResult, Vec<(String, Memory)>)> {
    let writer = &members[0];
    let reader_token = members[1 % members.len()].token.clone();
    let mut memory = Vec::new();
    tokio::time::sleep(Duration::from_millis(500)).await;
    memory.push(("before subscribers connect".to_owned(), server.memory()?));

    let connecting = Arc::new(Semaphore::new(CONNECT_PARALLELISM));
    let greeted = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut subscribers = Vec::new();
    for _ in 0..settings.subscribers {
        let address = server.address.clone();
        let token = reader_token.clone();
        let connecting = Arc::clone(&connecting);
        let greeted = Arc::clone(&greeted);
        let stop = stop_rx.clone();
        let expected = settings.announcements;
        subscribers.push(tokio::spawn(async move {
            subscribe(&address, &token, expected, &connecting, &greeted, stop).await
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while greeted.load(Ordering::Relaxed) < settings.subscribers {
        // A subscriber that ended before everyone's `hello` failed: report why.
        if let Some(i) = subscribers.iter().position(|t| t.is_finished()) {
            let received = subscribers.swap_remove(i).await??;
            bail!("a subscriber ended early, after {} events", received.len());
        }
        ensure!(
            Instant::now() < deadline,
            "only {} of {} subscribers got their hello within 120 s",
            greeted.load(Ordering::Relaxed),
            settings.subscribers
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    memory.push((
        format!("{} subscribers connected, idle", settings.subscribers),
        server.memory()?,
    ));

    let url = format!("{}/v1/spaces/{SPACE}/announce", api.base);
    let auth = format!("Bearer {}", writer.token);
    let mut sent_at = Vec::with_capacity(settings.announcements);
    let mut announce_latencies = Vec::with_capacity(settings.announcements);
    let mut ticker = tokio::time::interval(settings.spacing.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for seq in 0..settings.announcements {
        ticker.tick().await;
        let body = json!({
            "device": writer.device,
            "collection": "orders",
            "level": 0,
            "etag": seq.to_string(),
        })
        .to_string();
        let sent = Instant::now();
        sent_at.push(sent);
        let response = api
            .client
            .post(&url)
            .header(reqwest::header::AUTHORIZATION, &auth)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(
            status.as_u16() == 202,
            "announce {seq}: got {status}: {text}"
        );
        announce_latencies.push(sent.elapsed());
    }

    // Every subscriber ends once it has every announcement; stragglers get 10 s more.
    let wait_until = Instant::now() + Duration::from_secs(10);
    while subscribers.iter().any(|t| !t.is_finished()) && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    memory.push((
        "after the announcements, still connected".to_owned(),
        server.memory()?,
    ));
    let _ = stop_tx.send(true);

    let mut latencies = Vec::with_capacity(settings.subscribers * settings.announcements);
    let mut last = vec![Duration::ZERO; settings.announcements];
    let mut errors = 0;
    for task in subscribers {
        match task.await? {
            Ok(received) => {
                for (seq, at) in received {
                    let Some(sent) = sent_at.get(seq) else {
                        errors += 1;
                        continue;
                    };
                    let latency = at.saturating_duration_since(*sent);
                    last[seq] = last[seq].max(latency);
                    latencies.push(latency);
                }
            }
            Err(e) => {
                errors += 1;
                eprintln!("subscriber failed: {e:#}");
            }
        }
    }
    latencies.sort_unstable();
    last.sort_unstable();
    announce_latencies.sort_unstable();
    Ok((
        SseResult {
            deliveries: latencies.len(),
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            max: latencies.last().copied().unwrap_or_default(),
            last_p50: percentile(&last, 0.50),
            last_p99: percentile(&last, 0.99),
            announce_p50: percentile(&announce_latencies, 0.50),
            errors,
        },
        memory,
    ))
}

/// One subscriber: connects, waits for `hello`, then collects `(etag, arrival)` of `pack`
/// events until it has `expected` of them or is told to stop.
async fn subscribe(
    address: &str,
    token: &str,
    expected: usize,
    connecting: &Semaphore,
    greeted: &AtomicUsize,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<(usize, Instant)>> {
    let permit = connecting.acquire().await?;
    let mut stream =
        EventStream::open(address, &format!("/v1/spaces/{SPACE}/events"), token).await?;
    let first = stream
        .next_event()
        .await?
        .ok_or_else(|| anyhow!("the event stream ended before hello"))?;
    ensure!(
        first.kind == "hello",
        "first event is {:?}, not hello",
        first.kind
    );
    greeted.fetch_add(1, Ordering::Relaxed);
    drop(permit);

    let mut received = Vec::with_capacity(expected);
    while received.len() < expected {
        tokio::select! {
            event = stream.next_event() => {
                let Some(event) = event? else { break };
                let at = Instant::now();
                if event.kind == "pack" {
                    let data: Value = serde_json::from_str(&event.data)
                        .with_context(|| format!("pack data is not JSON: {}", event.data))?;
                    let seq = data["etag"]
                        .as_str()
                        .and_then(|e| e.parse().ok())
                        .ok_or_else(|| anyhow!("pack event without a numeric etag: {data}"))?;
                    received.push((seq, at));
                } else if event.kind == "reset" {
                    bail!("the server sent reset: the subscriber lagged");
                }
            }
            _ = stop.changed() => break,
        }
    }
    Ok(received)
}

/// One server-sent event.
struct SseEvent {
    kind: String,
    data: String,
}

/// A hand-written HTTP/1.1 client for one event stream (chunked or not).
struct EventStream {
    reader: BufReader<TcpStream>,
    chunked: bool,
    /// Decoded body bytes not yet split into lines.
    pending: Vec<u8>,
    ended: bool,
}

impl EventStream {
    async fn open(address: &str, path: &str, token: &str) -> Result<EventStream> {
        let mut socket = TcpStream::connect(address)
            .await
            .with_context(|| format!("cannot connect to {address}"))?;
        socket.set_nodelay(true)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
             Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        );
        socket.write_all(request.as_bytes()).await?;
        let mut reader = BufReader::new(socket);
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        let status = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut chunked = false;
        let mut event_stream = false;
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                bail!("the connection closed in the response headers");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim().to_ascii_lowercase();
                match name.trim().to_ascii_lowercase().as_str() {
                    "transfer-encoding" => chunked = value.contains("chunked"),
                    "content-type" => event_stream = value.starts_with("text/event-stream"),
                    _ => {}
                }
            }
        }
        ensure!(status == "200", "GET {path}: status {status}");
        ensure!(event_stream, "GET {path}: not text/event-stream");
        Ok(EventStream {
            reader,
            chunked,
            pending: Vec::new(),
            ended: false,
        })
    }

    /// The next decoded body line (without its line end), `None` at the end of the stream.
    async fn next_line(&mut self) -> Result<Option<String>> {
        loop {
            if let Some(at) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=at).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(String::from_utf8(line)?));
            }
            if self.ended {
                return Ok(None);
            }
            if self.chunked {
                let mut size = String::new();
                if self.reader.read_line(&mut size).await? == 0 {
                    self.ended = true;
                    continue;
                }
                let size = size.trim();
                let size = size.split(';').next().unwrap_or_default();
                let size = usize::from_str_radix(size, 16)
                    .with_context(|| format!("bad chunk size {size:?}"))?;
                if size == 0 {
                    self.ended = true;
                    continue;
                }
                let start = self.pending.len();
                self.pending.resize(start + size, 0);
                self.reader.read_exact(&mut self.pending[start..]).await?;
                let mut crlf = [0u8; 2];
                self.reader.read_exact(&mut crlf).await?;
            } else {
                let mut buffer = [0u8; 4096];
                let n = self.reader.read(&mut buffer).await?;
                if n == 0 {
                    self.ended = true;
                }
                self.pending.extend_from_slice(&buffer[..n]);
            }
        }
    }

    /// The next event (comments and keep-alives skipped), `None` at the end of the stream.
    async fn next_event(&mut self) -> Result<Option<SseEvent>> {
        let mut kind = String::new();
        let mut data: Option<String> = None;
        while let Some(line) = self.next_line().await? {
            if line.is_empty() {
                if data.is_some() || !kind.is_empty() {
                    return Ok(Some(SseEvent {
                        kind: if kind.is_empty() {
                            "message".into()
                        } else {
                            kind
                        },
                        data: data.unwrap_or_default(),
                    }));
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => kind = value.to_owned(),
                "data" => match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_owned()),
                },
                _ => {}
            }
        }
        Ok(None)
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn cpu_model() -> Option<String> {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
}

/// The soft limit of open files, from `/proc/self/limits`.
fn open_files_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}
