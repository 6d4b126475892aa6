//! Throughput and size figures for tidemark-core, printed as a markdown table.
//!
//! Run with `cargo bench -p tidemark-core --bench core`. Every workload comes from a fixed-seed
//! generator, so two runs do the same work and differ only in timing. Timed sections run a few
//! times and report the fastest run, the one least disturbed by the rest of the machine; each
//! row's label says how many runs it took. Nothing here asserts on time: the figures are for
//! people to compare, and the asserts only check that the work done is the work described.

use std::fmt::Display;
use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use tidemark_core::{DeviceKey, OpenOptions, Pack, PackHeader, Replica, SpaceKey, State};

/// The collection every workload writes to.
const COLLECTION: &str = "docs";
/// Fields per document, named `f0`, `f1`, …
const FIELDS: usize = 10;
/// Every value written is an integer in `0..VALUE_RANGE`.
const VALUE_RANGE: u64 = 1_000_000;
/// Wall clock of the first transaction, in milliseconds: a present-day time, so that clock
/// readings (and their encoded deltas) look like the ones real devices produce.
const START_WALL_MS: u64 = 1_700_000_000_000;

/// Workload 1: random sets over a working set of documents.
const RANDOM_SETS: usize = 1_000_000;
const RANDOM_DOCS: usize = 10_000;
const SETS_PER_TRANSACTION: usize = 100;

/// Workloads 2 to 5: one replica per device, filled document by document.
const BULK_DOCS: usize = 100_000;
const DOCS_PER_BULK_TRANSACTION: usize = 100;
/// Wall clock after filling a bulk replica (one millisecond per transaction).
const BULK_END_WALL_MS: u64 = START_WALL_MS + (BULK_DOCS / DOCS_PER_BULK_TRANSACTION) as u64;

/// How many times each timed section runs; the fastest run is the one reported. Every section
/// takes under two seconds a run, so three runs keep the whole bench well under a minute.
const RUNS: u32 = 3;

fn main() {
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    println!("tidemark-core benchmarks, optimized build; available parallelism (nproc): {cores}");
    println!();
    let mut table = Table::start();

    random_local_writes(&mut table);

    let key_a = DeviceKey::from_seed([0xa; 32]);
    let key_b = DeviceKey::from_seed([0xb; 32]);
    let a = bulk_replica(&mut table, &key_a, 0xa);
    let b = bulk_replica(&mut table, &key_b, 0xb);
    // Taken before merging: afterwards the replica keeps only the registers `a` won.
    let a_own = a.own_state();
    assert_eq!(a_own.register_count(), BULK_DOCS * FIELDS);

    merge_replicas(&mut table, a, b);
    pack_sizes_and_times(&mut table, &key_a, &a_own);
    codec_times(&mut table, &a_own);
}

/// Workload 1: one replica makes `RANDOM_SETS` sets of random fields of random documents,
/// `SETS_PER_TRANSACTION` per transaction, one millisecond apart.
fn random_local_writes(table: &mut Table) {
    let doc_ids = numbered("d", RANDOM_DOCS);
    let fields = numbered("f", FIELDS);
    let device = DeviceKey::from_seed([1; 32]).device_id();
    let best = best_of(
        RUNS,
        || Replica::new(device),
        |mut replica| {
            let mut rng = SplitMix64(1);
            // One transaction per millisecond of wall clock.
            let transactions = RANDOM_SETS / SETS_PER_TRANSACTION;
            for wall in (START_WALL_MS..).take(transactions) {
                replica
                    .write(wall, |w| {
                        for _ in 0..SETS_PER_TRANSACTION {
                            let doc = rng.pick(&doc_ids);
                            let field = rng.pick(&fields);
                            w.set(COLLECTION, doc, field, rng.value())?;
                        }
                        Ok(())
                    })
                    .expect("valid writes succeed");
            }
            replica
        },
    );
    table.row(
        format!(
            "local writes: {RANDOM_SETS} random sets over {RANDOM_DOCS} docs × {FIELDS} fields, \
             {SETS_PER_TRANSACTION} per transaction (best of {RUNS})"
        ),
        per_second(RANDOM_SETS, best),
        "sets/s",
    );
}

/// A replica of `key`'s device holding `BULK_DOCS` documents "d0", "d1", … of `FIELDS`
/// random integers each. Filling it is timed once and reported too: it is a second write
/// pattern (whole documents, large transactions) that comes for free.
fn bulk_replica(table: &mut Table, key: &DeviceKey, seed: u64) -> Replica {
    let fields = numbered("f", FIELDS);
    let mut replica = Replica::new(key.device_id());
    let mut rng = SplitMix64(seed);
    let mut wall = START_WALL_MS;
    let start = Instant::now();
    for first in (0..BULK_DOCS).step_by(DOCS_PER_BULK_TRANSACTION) {
        replica
            .write(wall, |w| {
                for n in first..first + DOCS_PER_BULK_TRANSACTION {
                    let doc = format!("d{n}");
                    for field in &fields {
                        w.set(COLLECTION, &doc, field, rng.value())?;
                    }
                }
                Ok(())
            })
            .expect("valid writes succeed");
        wall += 1;
    }
    let elapsed = start.elapsed();
    assert_eq!(wall, BULK_END_WALL_MS);
    table.row(
        format!(
            "local writes: {BULK_DOCS} docs × {FIELDS} fields, {DOCS_PER_BULK_TRANSACTION} docs \
             per transaction, device {:?} (1 run)",
            key.device_id()
        ),
        per_second(BULK_DOCS * FIELDS, elapsed),
        "sets/s",
    );
    replica
}

/// Workload 2: `a` merges everything `b` wrote (the same document ids, other values), then
/// both directions are checked to converge.
fn merge_replicas(table: &mut Table, a: Replica, b: Replica) {
    let a_own = a.own_state();
    let b_own = b.own_state();
    let best = best_of(
        RUNS,
        || a.clone(),
        |mut a| {
            let changed = a.merge(&b_own, BULK_END_WALL_MS);
            (a, changed)
        },
    );
    table.row(
        format!(
            "merge: a {BULK_DOCS}-doc replica merges another's {BULK_DOCS} docs × {FIELDS} \
             fields (best of {RUNS})"
        ),
        millis(best),
        "ms",
    );

    let (mut a, mut b) = (a, b);
    a.merge(&b_own, BULK_END_WALL_MS);
    b.merge(&a_own, BULK_END_WALL_MS);
    assert_eq!(
        a.state().encode(),
        b.state().encode(),
        "replicas that merged each other must hold the same state"
    );
    assert_eq!(a.state().register_count(), BULK_DOCS * FIELDS);
}

/// Workloads 3 and 4: size, seal and open time of a pack holding `body`, plaintext and
/// encrypted.
fn pack_sizes_and_times(table: &mut Table, author: &DeviceKey, body: &State) {
    let registers = body.register_count();
    let header = PackHeader {
        space: "bench".to_string(),
        author: author.device_id(),
        collection: COLLECTION.to_string(),
        level: 0,
        generation: 1,
        version_vector: body.version_vector(),
        encrypted: false,
    };
    let space_key = SpaceKey::from_bytes([7; 32]);
    for (kind, key) in [("plaintext", None), ("encrypted", Some(&space_key))] {
        let pack = Pack::seal(&header, body, author, key).expect("the body is the author's own");
        let what = format!("{kind} pack of {registers} registers");
        table.row(format!("size: {what}"), pack.len(), "bytes");
        table.row(
            format!("size: {what}"),
            format!("{:.2}", pack.len() as f64 / registers as f64),
            "bytes/register",
        );

        let seal = best_of(RUNS, || (), |()| Pack::seal(&header, body, author, key));
        table.row(format!("seal: {what} (best of {RUNS})"), millis(seal), "ms");

        let options = OpenOptions {
            space_key: key,
            ..OpenOptions::default()
        };
        let open = best_of(RUNS, || (), |()| Pack::open(&pack, &options));
        table.row(format!("open: {what} (best of {RUNS})"), millis(open), "ms");

        let opened = Pack::open(&pack, &options).expect("a sealed pack opens");
        assert!(
            opened.state == *body,
            "a pack gives back the state it was sealed with"
        );
    }
}

/// Workloads 4 and 5: the state codec alone, without signature or encryption.
fn codec_times(table: &mut Table, state: &State) {
    let registers = state.register_count();
    let encoding = state.encode();
    table.row(
        format!("size: state encoding of {registers} registers"),
        format!("{:.2}", encoding.len() as f64 / registers as f64),
        "bytes/register",
    );
    let encode = best_of(RUNS, || (), |()| state.encode());
    table.row(
        format!("State::encode of {registers} registers (best of {RUNS})"),
        millis(encode),
        "ms",
    );
    let decode = best_of(RUNS, || (), |()| State::decode(&encoding));
    table.row(
        format!("State::decode of {registers} registers (best of {RUNS})"),
        millis(decode),
        "ms",
    );
}

/// The markdown table, printed row by row as the figures come in so that a long run shows
/// its progress.
struct Table;

impl Table {
    fn start() -> Table {
        println!("| workload | figure | unit |");
        println!("| --- | ---: | --- |");
        Table
    }

    fn row(&mut self, workload: impl Display, figure: impl Display, unit: &str) {
        println!("| {workload} | {figure} | {unit} |");
    }
}

/// Runs `routine` `runs` times, each on a fresh input from `setup`, and returns the fastest
/// run. Only `routine` is timed: its output is dropped after the clock stops, so freeing a
/// large result does not count.
fn best_of<I, O>(
    runs: u32,
    mut setup: impl FnMut() -> I,
    mut routine: impl FnMut(I) -> O,
) -> Duration {
    (0..runs)
        .map(|_| {
            let input = black_box(setup());
            let start = Instant::now();
            let output = black_box(routine(input));
            let elapsed = start.elapsed();
            drop(output);
            elapsed
        })
        .min()
        .expect("at least one run")
}

fn per_second(count: usize, elapsed: Duration) -> String {
    format!("{:.0}", count as f64 / elapsed.as_secs_f64())
}

fn millis(elapsed: Duration) -> String {
    format!("{:.1}", elapsed.as_secs_f64() * 1e3)
}

/// `count` names `prefix0`, `prefix1`, … made up front, so the timed loops measure the store
/// rather than string formatting.
fn numbered(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix}{n}")).collect()
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a tiny generator whose output is good enough to
/// pick keys and values, and the same on every machine for a given seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`: the high half of the 128-bit product with `n`. Its bias, at most
    /// `n / 2^64`, is far below anything a benchmark could notice.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A field value: an integer in `0..VALUE_RANGE`.
    fn value(&mut self) -> i64 {
        self.below(VALUE_RANGE) as i64
    }
}
