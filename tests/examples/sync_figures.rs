//! Sync figures (issue 4), measured with native clients against the real server binary and
//! its embedded object store on loopback, printed as plain-text tables:
//!
//! 1. Cost: 20 devices each make 1,000 writes, syncing every 50, then sync until every
//!    replica is byte-identical. Requests and bytes per write, time to converge, and what the
//!    bucket holds at the end.
//! 2. Latency: a writer and a reader, both live on the server's announcements (`watch`); how
//!    long after the writer's app makes a write the reader's app sees it (p50, p99, max).
//!
//! ```text
//! cargo xtask sync-figures
//! ```
//!
//! which builds the release server and runs this with `TIDEMARK_SERVER_BIN` pointing at it.
//! Knobs (environment): `FIGURES_DEVICES` (20), `FIGURES_WRITES` (1000 per device),
//! `FIGURES_SYNC_EVERY` (50), `FIGURES_PROBES` (200). Every client runs with the defaults of
//! `SyncConfig`. Nothing here asserts on time: it measures and prints.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures_util::future::join_all;
use tidemark_cli::client::Traffic;
use tidemark_cli::{Client, ClientError, ClientOptions, WriteQueue};
use tidemark_core::sync::{SyncConfig, SyncEvent};
use tidemark_core::{Role, Value, Writer};
use tidemark_tests::random::SplitMix64;
use tidemark_tests::server::{ServerOptions, ServerProcess, server_binary};
use tokio::sync::{mpsc, oneshot};

const COLLECTIONS: [&str; 3] = ["orders", "menu", "stock"];
/// The latency workload's collection; each write there is one new document, `probe-<seq>`.
const PROBES: &str = "probes";
/// Probes written and awaited before measuring, so that the grants, the event streams and
/// the first reads are behind both devices.
const WARMUP_PROBES: u32 = 3;
/// Spacing of the latency workload's writes: a person tapping, or an app saving as they type.
const PROBE_SPACING_MILLIS: (u64, u64) = (20, 50);
const SEED: u64 = 0x7d3a_5eed_0004;
/// Far above anything expected on loopback; reaching it is reported as a failure.
const SYNC_LIMIT: Duration = Duration::from_secs(300);
/// Final sync passes before giving up on convergence (one is expected to suffice).
const MAX_PASSES: usize = 10;
/// How long to wait for the last probes to become visible.
const VISIBILITY_LIMIT: Duration = Duration::from_secs(30);

/// What to run, from the environment.
#[derive(Debug)]
struct Settings {
    devices: usize,
    writes: usize,
    sync_every: usize,
    probes: u32,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        fn number(name: &str, default: usize) -> Result<usize> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .with_context(|| format!("{name} must be a whole number, got {v:?}")),
                Err(_) => Ok(default),
            }
        }
        let settings = Settings {
            devices: number("FIGURES_DEVICES", 20)?,
            writes: number("FIGURES_WRITES", 1_000)?,
            sync_every: number("FIGURES_SYNC_EVERY", 50)?,
            probes: u32::try_from(number("FIGURES_PROBES", 200)?)
                .context("FIGURES_PROBES is too large")?,
        };
        ensure!(
            settings.devices >= 2 && settings.writes >= 1 && settings.sync_every >= 1,
            "need at least 2 devices, 1 write and a sync every 1 or more writes: {settings:?}"
        );
        ensure!(settings.probes >= 1, "need at least 1 probe");
        Ok(settings)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let settings = Settings::from_env()?;
    let defaults = SyncConfig::new("any");
    println!("Tidemark sync figures");
    println!();
    println!("  server          {}", server_binary().display());
    println!("  store           the server's embedded store, on loopback");
    println!(
        "  machine         {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  sync config     defaults: L0 budget {} KiB, x{} per level, push delay {} ms, \
         polling {}-{} s ({} min while live), full round every {}",
        defaults.level0_budget / 1024,
        defaults.level_growth,
        defaults.push_delay_millis,
        defaults.poll_min_millis / 1000,
        defaults.poll_max_millis / 1000,
        defaults.poll_live_millis / 60_000,
        defaults.full_round_every
    );
    println!("  seed            {SEED:#x}");
    println!();
    cost(&settings).await?;
    println!();
    latency(&settings).await
}

/// Workload 1: many devices writing and syncing at once, then syncing to convergence.
async fn cost(settings: &Settings) -> Result<()> {
    let server = ServerProcess::start(ServerOptions::default()).await;
    let mut devices = Vec::with_capacity(settings.devices);
    for _ in 0..settings.devices {
        let mut device = server
            .device(Role::Writer, None, ClientOptions::default())
            .await;
        // An app knows its collections from the start: a device reads them before it has
        // written to them.
        for collection in COLLECTIONS {
            device.subscribe(collection)?;
        }
        devices.push(device);
    }

    let started = Instant::now();
    // All devices at once, as separate machines would run: each writes, and syncs every
    // `sync_every` writes and after its last one. They take turns on one task, so the clients
    // use about one core and leave the other to the server.
    let last_writes = join_all(devices.iter_mut().enumerate().map(|(index, device)| {
        write_and_sync(device, index, settings.writes, settings.sync_every)
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<Instant>, ClientError>>()?;
    let last_write = last_writes.into_iter().max().expect("at least one device");
    let writing_done = Instant::now();
    let while_writing = TrafficTotals::of(&devices);

    let mut passes = 0;
    while !identical(&devices) {
        ensure!(
            passes < MAX_PASSES,
            "replicas still differ after {MAX_PASSES} sync passes"
        );
        passes += 1;
        for result in join_all(devices.iter_mut().map(|d| d.sync(SYNC_LIMIT))).await {
            result?;
        }
    }
    let converged = Instant::now();
    let total = TrafficTotals::of(&devices);
    let converging = total.minus(&while_writing);
    let writes = (settings.devices * settings.writes) as f64;

    println!(
        "Workload 1: {} devices x {} writes, a sync every {} writes and after the last",
        settings.devices, settings.writes, settings.sync_every
    );
    println!(
        "  all devices at once; collections {}; one document per write transaction",
        COLLECTIONS.join(", ")
    );
    println!(
        "  requests and bytes: to object storage only (grants and announcements go to the \
         server API)"
    );
    println!();
    let mut table = Table::new(["", "writing", "converging", "total", "per write"]);
    let mut row = |label: &str, of: fn(&TrafficTotals) -> u64| {
        table.row([
            label.to_string(),
            grouped(of(&while_writing)),
            grouped(of(&converging)),
            grouped(of(&total)),
            format!("{:.2}", of(&total) as f64 / writes),
        ]);
    };
    row("requests", |t| t.requests);
    row("  PUTs", |t| t.puts);
    row("  GETs", |t| t.requests - t.puts);
    row("    answered 304", |t| t.not_modified);
    row("    answered 404", |t| t.not_found);
    row("bytes sent (PUT bodies)", |t| t.bytes_sent);
    // Every answer's body counts, the error documents of 404s too: the store sends them.
    row("bytes received (GET bodies)", |t| t.bytes_received);
    table.row([
        "wall time".to_string(),
        seconds(writing_done - started),
        seconds(converged - writing_done),
        seconds(converged - started),
        String::new(),
    ]);
    table.print();
    println!();

    let (objects, store_files) = bucket(&server);
    let state = devices[0].engine().replica().state();
    print_facts(&[
        (
            "writes",
            format!(
                "{} ({} devices x {})",
                grouped(writes as u64),
                settings.devices,
                settings.writes
            ),
        ),
        (
            "time to converge",
            format!(
                "{} from the last write to {} identical replicas ({passes} sync pass{} of \
                 every device)",
                seconds(converged - last_write),
                settings.devices,
                if passes == 1 { "" } else { "es" }
            ),
        ),
        ("total run time", seconds(converged - started)),
        (
            "bucket at the end",
            format!(
                "{} objects, {} bytes ({})",
                objects.count,
                grouped(objects.bytes),
                objects.by_level()
            ),
        ),
        (
            "",
            format!(
                "plus the embedded store's own metadata beside them: {} files, {} bytes",
                store_files.count,
                grouped(store_files.bytes)
            ),
        ),
        (
            "replica at the end",
            format!(
                "{} documents, {} bytes encoded",
                grouped(state.document_count() as u64),
                grouped(state.encode().len() as u64)
            ),
        ),
    ]);
    Ok(())
}

/// One device's share of workload 1; when it made its last write.
async fn write_and_sync(
    device: &mut Client,
    index: usize,
    writes: usize,
    sync_every: usize,
) -> Result<Instant, ClientError> {
    let mut random = SplitMix64(SEED.wrapping_add(index as u64));
    let mut last_write = Instant::now();
    for made in 1..=writes {
        let write = Workload::pick(&mut random);
        device.write(|w| write.apply(w))?;
        last_write = Instant::now();
        if made % sync_every == 0 || made == writes {
            device.sync(SYNC_LIMIT).await?;
        }
    }
    Ok(last_write)
}

/// Whether every replica's state encodes to the same bytes.
fn identical(devices: &[Client]) -> bool {
    let first = devices[0].engine().replica().state().encode();
    devices[1..]
        .iter()
        .all(|d| d.engine().replica().state().encode() == first)
}

/// One write transaction of workload 1: what a small shop's devices write all day.
enum Workload {
    /// Takes or changes an order (a table, a dish, how many, sometimes a note).
    Order {
        id: String,
        table: u32,
        dish: &'static str,
        quantity: u32,
        note: Option<String>,
    },
    /// An order is done with.
    CloseOrder { id: String },
    /// Stock counted up or down.
    Stock { id: String, by: i64 },
    /// A dish's name and price change.
    Menu {
        id: String,
        dish: &'static str,
        cents: u32,
    },
}

const DISHES: [&str; 8] = [
    "margherita",
    "marinara",
    "quattro formaggi",
    "diavola",
    "risotto ai funghi",
    "tiramisu",
    "panna cotta",
    "espresso",
];

impl Workload {
    fn pick(random: &mut SplitMix64) -> Workload {
        let dish = DISHES[random.below(DISHES.len() as u64) as usize];
        match random.below(100) {
            0..55 => Workload::Order {
                id: format!("order-{}", random.below(400)),
                table: 1 + random.below(30) as u32,
                dish,
                quantity: 1 + random.below(4) as u32,
                note: (random.below(4) == 0)
                    .then(|| "no onions, extra basil, ".repeat(1 + random.below(3) as usize)),
            },
            55..60 => Workload::CloseOrder {
                id: format!("order-{}", random.below(400)),
            },
            60..85 => Workload::Stock {
                id: format!("item-{}", random.below(60)),
                by: random.below(7) as i64 - 3,
            },
            _ => Workload::Menu {
                id: format!("dish-{}", random.below(40)),
                dish,
                cents: 400 + 50 * random.below(30) as u32,
            },
        }
    }

    fn apply(&self, w: &mut Writer<'_>) -> Result<(), tidemark_core::WriteError> {
        match self {
            Workload::Order {
                id,
                table,
                dish,
                quantity,
                note,
            } => {
                w.upsert(
                    "orders",
                    id,
                    [
                        ("table", Value::from(*table)),
                        ("dish", Value::from(*dish)),
                        ("quantity", Value::from(*quantity)),
                    ],
                )?;
                match note {
                    Some(note) => w.set("orders", id, "note", Value::from(note.as_str())),
                    None => Ok(()),
                }
            }
            Workload::CloseOrder { id } => w.delete("orders", id),
            Workload::Stock { id, by } => w.increment("stock", id, "count", *by),
            Workload::Menu { id, dish, cents } => w.upsert(
                "menu",
                id,
                [("name", Value::from(*dish)), ("cents", Value::from(*cents))],
            ),
        }
    }
}

/// Workload 2: write-to-visible latency between two live devices.
async fn latency(settings: &Settings) -> Result<()> {
    let server = ServerProcess::start(ServerOptions::default()).await;
    let mut writer = server
        .device(Role::Writer, None, ClientOptions::default())
        .await;
    let mut reader = server
        .device(Role::Writer, None, ClientOptions::default())
        .await;
    writer.subscribe(PROBES)?;
    reader.subscribe(PROBES)?;

    // The writer is a device in watch mode whose app writes through a queue, as a real app
    // keeps its device live while its user edits: each write is pushed after the engine's
    // push delay, and its announcement is what the reader reacts to. (Calling `sync` after
    // each write instead would add a grant fetch and a polling round per write that no live
    // app makes.)
    let (queue, inbox) = WriteQueue::new();
    let (stop_writer, writer_stops) = oneshot::channel::<()>();
    let writer_task = tokio::spawn(async move {
        let stop = async {
            let _ = writer_stops.await;
        };
        writer
            .watch_with_writes(stop, inbox, |_, _| {})
            .await
            .map(|()| writer)
    });
    let (seen, mut visible) = mpsc::unbounded_channel::<(u32, Instant)>();
    let (stop_reader, reader_stops) = oneshot::channel::<()>();
    let reader_task = tokio::spawn(async move {
        let stop = async {
            let _ = reader_stops.await;
        };
        // The moment the reader's app hears of a change is the moment it could show it.
        let on_event = move |_: &_, event: &SyncEvent| {
            if let SyncEvent::Changed(changed) = event {
                let now = Instant::now();
                for seq in changed.in_collection(PROBES).filter_map(probe_seq) {
                    let _ = seen.send((seq, now));
                }
            }
        };
        reader.watch(stop, on_event).await.map(|()| reader)
    });

    let mut visible_at: HashMap<u32, Instant> = HashMap::new();
    for seq in 0..WARMUP_PROBES {
        write_probe(&queue, seq).await?;
    }
    await_visible(&mut visible, &mut visible_at, 0..WARMUP_PROBES).await;
    ensure!(
        (0..WARMUP_PROBES).all(|seq| visible_at.contains_key(&seq)),
        "the warm-up probes never reached the reader"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let measured = WARMUP_PROBES..WARMUP_PROBES + settings.probes;
    let mut random = SplitMix64(SEED);
    let mut written_at: BTreeMap<u32, Instant> = BTreeMap::new();
    let (spacing_min, spacing_max) = PROBE_SPACING_MILLIS;
    for seq in measured.clone() {
        let pause = spacing_min + random.below(spacing_max - spacing_min + 1);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        written_at.insert(seq, Instant::now());
        write_probe(&queue, seq).await?;
    }
    await_visible(&mut visible, &mut visible_at, measured.clone()).await;

    let _ = stop_writer.send(());
    let _ = stop_reader.send(());
    let writer = writer_task.await??;
    let reader = reader_task.await??;

    let mut latencies: Vec<Duration> = written_at
        .iter()
        .filter_map(|(seq, written)| Some(*visible_at.get(seq)? - *written))
        .collect();
    latencies.sort();
    let missing = written_at.len() - latencies.len();

    println!(
        "Workload 2: write-to-visible latency, {} writes {}-{} ms apart",
        settings.probes, spacing_min, spacing_max
    );
    println!(
        "  a writer and a reader, both in watch mode on the server's announcements (SSE), \
         loopback;"
    );
    println!(
        "  from the writer's app making a write to the reader's app hearing of it \
         (SyncEvent::Changed)"
    );
    println!();
    if latencies.is_empty() {
        bail!("no write became visible within {VISIBILITY_LIMIT:?}");
    }
    let mut table = Table::new(["", "min", "p50", "p90", "p99", "max", "mean"]);
    let mean = latencies.iter().sum::<Duration>() / latencies.len() as u32;
    table.row([
        "latency, ms".to_string(),
        millis(latencies[0]),
        millis(percentile(&latencies, 50)),
        millis(percentile(&latencies, 90)),
        millis(percentile(&latencies, 99)),
        millis(latencies[latencies.len() - 1]),
        millis(mean),
    ]);
    table.print();
    println!();
    let mut facts = vec![(
        "visible",
        format!(
            "{} of {} writes ({missing} not within {VISIBILITY_LIMIT:?} of the last)",
            latencies.len(),
            settings.probes
        ),
    )];
    // Warm-up included: the counters run from each device's start.
    let probes_written = f64::from(WARMUP_PROBES + settings.probes);
    for (name, device) in [("writer", &writer), ("reader", &reader)] {
        let traffic = TrafficTotals::of(std::slice::from_ref(device));
        facts.push((
            name,
            format!(
                "{} requests ({} PUTs, {:.2} per write), {} bytes sent, {} bytes received",
                grouped(traffic.requests),
                grouped(traffic.puts),
                traffic.puts as f64 / probes_written,
                grouped(traffic.bytes_sent),
                grouped(traffic.bytes_received)
            ),
        ));
    }
    print_facts(&facts);
    Ok(())
}

async fn write_probe(queue: &WriteQueue, seq: u32) -> Result<(), ClientError> {
    queue
        .write(move |w| w.set(PROBES, &format!("probe-{seq:06}"), "seq", Value::from(seq)))
        .await
        .map(drop)
}

fn probe_seq(id: &str) -> Option<u32> {
    id.strip_prefix("probe-")?.parse().ok()
}

/// Collects visibility reports until every probe in `wanted` was seen, or
/// [`VISIBILITY_LIMIT`] passes without news.
async fn await_visible(
    visible: &mut mpsc::UnboundedReceiver<(u32, Instant)>,
    visible_at: &mut HashMap<u32, Instant>,
    wanted: std::ops::Range<u32>,
) {
    while !wanted.clone().all(|seq| visible_at.contains_key(&seq)) {
        match tokio::time::timeout(VISIBILITY_LIMIT, visible.recv()).await {
            Ok(Some((seq, at))) => {
                visible_at.entry(seq).or_insert(at);
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// The traffic counters of some devices, added up.
#[derive(Clone, Copy, Debug)]
struct TrafficTotals {
    requests: u64,
    puts: u64,
    not_modified: u64,
    not_found: u64,
    bytes_sent: u64,
    bytes_received: u64,
}

impl TrafficTotals {
    fn of(devices: &[Client]) -> TrafficTotals {
        let sum = |counter: fn(&Traffic) -> &std::sync::atomic::AtomicU64| {
            devices
                .iter()
                .map(|d| counter(d.traffic()).load(Ordering::Relaxed))
                .sum()
        };
        TrafficTotals {
            requests: sum(|t| &t.requests),
            puts: sum(|t| &t.puts),
            not_modified: sum(|t| &t.not_modified),
            not_found: sum(|t| &t.not_found),
            bytes_sent: sum(|t| &t.bytes_sent),
            bytes_received: sum(|t| &t.bytes_received),
        }
    }

    fn minus(&self, earlier: &TrafficTotals) -> TrafficTotals {
        TrafficTotals {
            requests: self.requests - earlier.requests,
            puts: self.puts - earlier.puts,
            not_modified: self.not_modified - earlier.not_modified,
            not_found: self.not_found - earlier.not_found,
            bytes_sent: self.bytes_sent - earlier.bytes_sent,
            bytes_received: self.bytes_received - earlier.bytes_received,
        }
    }
}

/// Files counted, and their bytes.
#[derive(Debug, Default)]
struct Files {
    count: usize,
    bytes: u64,
    /// Level packs (`L0`…) by level.
    levels: BTreeMap<String, usize>,
}

impl Files {
    fn add(&mut self, name: &str, bytes: usize) {
        self.count += 1;
        self.bytes += bytes as u64;
        if name.starts_with('L') {
            *self.levels.entry(name.to_string()).or_default() += 1;
        }
    }

    fn by_level(&self) -> String {
        let levels: Vec<String> = self
            .levels
            .iter()
            .map(|(level, count)| format!("{level} {count}"))
            .collect();
        levels.join(", ")
    }
}

/// The embedded store's files, split into the bucket's objects and the store's own metadata
/// (s3s-fs keeps a hidden `.bucket-….metadata.json` beside each object).
fn bucket(server: &ServerProcess) -> (Files, Files) {
    let (mut objects, mut store_files) = (Files::default(), Files::default());
    for (path, bytes) in server.stored_objects() {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with('.') {
            store_files.add(name, bytes.len());
        } else {
            objects.add(name, bytes.len());
        }
    }
    (objects, store_files)
}

/// A plain-text table: the first column left-aligned, the others right-aligned.
struct Table<const N: usize> {
    rows: Vec<[String; N]>,
}

impl<const N: usize> Table<N> {
    fn new(header: [&str; N]) -> Table<N> {
        Table {
            rows: vec![header.map(str::to_string)],
        }
    }

    fn row(&mut self, cells: [String; N]) {
        self.rows.push(cells);
    }

    fn print(&self) {
        let widths: Vec<usize> = (0..N)
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = format!("  {:<width$}", row[0], width = widths[0]);
            for (cell, width) in row.iter().zip(&widths).skip(1) {
                line.push_str(&format!("  {cell:>width$}"));
            }
            println!("{}", line.trim_end());
        }
    }
}

/// Labelled lines, the values aligned.
fn print_facts(facts: &[(&str, String)]) {
    let width = facts
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0);
    for (label, value) in facts {
        println!("  {label:<width$}  {value}");
    }
}

fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn millis(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}
