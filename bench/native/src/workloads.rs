//! Workloads W1–W5 of issue 7, each run on every library with the same operations.
//!
//! Timed sections run `runs` times on fresh inputs and report the fastest run, the one least
//! disturbed by the rest of the machine; only the operation itself is inside the clock
//! (making inputs and dropping outputs are not). W2 and the writes of W5 mutate replicas that
//! are expensive to rebuild, so they run once.

use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::alloc::live_bytes;
use crate::automerge::AutomergeDoc;
use crate::generator::{self, Set, SplitMix64};
use crate::loro::LoroStore;
use crate::report::{Better, Cell, Checks, Column, Role, Row, Table, column};
use crate::store::{Care, Names, Store};
use crate::tidemark::{self, Tidemark};
use crate::yrs::YrsDoc;

/// Every transaction holds this many sets, for every library.
pub(crate) const SETS_PER_TRANSACTION: usize = 100;
/// Fields per document in W1, W2 and W4.
pub(crate) const FIELDS: u32 = 10;

/// The sizes of the workloads: the issue's, or a hundredth of them for a smoke run.
#[derive(Clone, Debug)]
pub(crate) struct Scale {
    pub(crate) quick: bool,
    pub(crate) runs: u32,
    pub(crate) w1_docs: u32,
    pub(crate) w1_sets: usize,
    pub(crate) w2_docs: u32,
    pub(crate) w2_sets: usize,
    pub(crate) w3_replicas: u64,
    pub(crate) w4_docs: u32,
    pub(crate) w5_fields: u32,
    pub(crate) w5_sets: usize,
}

impl Scale {
    pub(crate) fn full() -> Scale {
        Scale {
            quick: false,
            runs: 3,
            w1_docs: 10_000,
            w1_sets: 1_000_000,
            w2_docs: 10_000,
            w2_sets: 100_000,
            w3_replicas: 1_540,
            w4_docs: 100_000,
            w5_fields: 1_000,
            w5_sets: 1_000_000,
        }
    }

    pub(crate) fn quick() -> Scale {
        Scale {
            quick: true,
            runs: 1,
            w1_docs: 100,
            w1_sets: 10_000,
            w2_docs: 100,
            w2_sets: 1_000,
            w3_replicas: 16,
            w4_docs: 1_000,
            w5_fields: 10,
            w5_sets: 10_000,
        }
    }

    /// Names for the largest workload.
    pub(crate) fn names(&self) -> Names {
        let docs = self.w1_docs.max(self.w2_docs).max(self.w4_docs);
        Names::new(docs, FIELDS.max(self.w5_fields))
    }
}

/// Runs `routine` `runs` times, each on a fresh input from `setup`; returns the fastest time
/// and the last run's output (dropped only after the clock stopped).
fn best_of<I, O>(
    runs: u32,
    mut setup: impl FnMut() -> I,
    mut routine: impl FnMut(I) -> O,
) -> (Duration, O) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs.max(1) {
        let input = black_box(setup());
        let start = Instant::now();
        let output = black_box(routine(input));
        best = best.min(start.elapsed());
        last = Some(output);
    }
    (best, last.expect("at least one run"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn write_all<S: Store>(store: &mut S, names: &Names, sets: &[Set]) {
    for transaction in sets.chunks(SETS_PER_TRANSACTION) {
        store.transact(names, transaction);
    }
}

fn yes_no(ok: bool) -> Cell {
    Cell::Text(if ok { "yes" } else { "**NO**" }.to_string())
}

fn row<S: Store>(role: Role, setup: &str, cells: Vec<Cell>) -> Row {
    let library = match role {
        Role::PeerWithoutCare => format!("{} (without care)", S::NAME),
        _ => S::NAME.to_string(),
    };
    Row {
        library,
        role,
        setup: setup.to_string(),
        cells,
    }
}

/// The setup column of the workloads where one replica writes alone.
const SOLO: &str = "nested maps";

fn peer_role(care: Care) -> Role {
    match care {
        Care::Given => Role::Peer,
        Care::Withheld => Role::PeerWithoutCare,
    }
}

// ---------------------------------------------------------------------------------------------
// W1: local writes.

const W1_COLUMNS: [Column; 2] = [
    column("sets/s", Better::HigherFaster, 0),
    column("reads back what was written", Better::None, 0),
];

pub(crate) fn w1(scale: &Scale, names: &Names, checks: &mut Checks) -> Table {
    let sets = generator::random_sets(0x5731, scale.w1_docs, FIELDS, scale.w1_sets);
    let expected = generator::expected_reads(&sets, scale.w1_docs, FIELDS);
    let mut table = Table::new(
        format!(
            "W1 local writes: {} docs × {FIELDS} fields, {} random sets, {SETS_PER_TRANSACTION} \
             per transaction (best of {})",
            scale.w1_docs, scale.w1_sets, scale.runs
        ),
        SOLO,
        &W1_COLUMNS,
    );
    let w = W1 {
        scale,
        names,
        sets: &sets,
        expected: &expected,
    };
    table.push(w.row::<Tidemark>(Role::Ours, checks));
    table.push(w.row::<AutomergeDoc>(Role::Peer, checks));
    table.push(w.row::<YrsDoc>(Role::Peer, checks));
    table.push(w.row::<LoroStore>(Role::Peer, checks));
    table
}

struct W1<'a> {
    scale: &'a Scale,
    names: &'a Names,
    sets: &'a [Set],
    expected: &'a [(u32, u32, i64)],
}

impl W1<'_> {
    fn row<S: Store>(&self, role: Role, checks: &mut Checks) -> Row {
        let (time, store) = best_of(
            self.scale.runs,
            || S::new(1, Care::Given),
            |mut store| {
                write_all(&mut store, self.names, self.sets);
                store
            },
        );
        let read = store.values(self.names, self.scale.w1_docs, FIELDS);
        let ok = checks.check(read == self.expected, || {
            format!("W1: {} reads back other values than written", S::NAME)
        });
        let rate = self.sets.len() as f64 / time.as_secs_f64();
        row::<S>(role, S::SOLO_SETUP, vec![Cell::Num(rate), yes_no(ok)])
    }
}

// ---------------------------------------------------------------------------------------------
// W2: merge of two replicas that wrote concurrently.

const W2_COLUMNS: [Column; 5] = [
    column("time ms", Better::LowerFaster, 1),
    column("bytes exchanged", Better::LowerSmaller, 0),
    column("converged", Better::None, 0),
    column("written keys visible", Better::None, 0),
    column("visible", Better::None, 0),
];

pub(crate) fn w2(scale: &Scale, names: &Names, checks: &mut Checks) -> Table {
    let docs = scale.w2_docs;
    let sets_a = generator::random_sets(0x5732_000a, docs, FIELDS, scale.w2_sets);
    let sets_b = generator::random_sets(0x5732_000b, docs, FIELDS, scale.w2_sets);
    let mut written: Vec<(u32, u32)> = sets_a
        .iter()
        .chain(&sets_b)
        .map(|s| (s.doc, s.field))
        .collect();
    written.sort_unstable();
    written.dedup();
    let mut table = Table::new(
        format!(
            "W2 merge: two replicas each make {} random sets ({SETS_PER_TRANSACTION} per \
             transaction) over the same {docs} docs × {FIELDS} fields from empty; then one is \
             brought up to date with the other (1 run)",
            scale.w2_sets
        ),
        "care for concurrent nested maps",
        &W2_COLUMNS,
    );
    let w = W2 {
        names,
        docs,
        sets_a: &sets_a,
        sets_b: &sets_b,
        written: written.len(),
    };
    table.push(w.row::<Tidemark>(Role::Ours, Care::Given, checks));
    for care in [Care::Given, Care::Withheld] {
        table.push(w.row::<AutomergeDoc>(peer_role(care), care, checks));
        table.push(w.row::<YrsDoc>(peer_role(care), care, checks));
        table.push(w.row::<LoroStore>(peer_role(care), care, checks));
    }
    table.notes.push(format!(
        "Time and bytes cover one direction: the receiver's summary (tidemark: version vector; \
         automerge: sync message with heads and Bloom filter; yrs: state vector; loro: version \
         vector), the sender's delta, and applying it. {} distinct (doc, field) keys were \
         written by either side; \"visible\" counts those that hold a value after both \
         directions. \"converged\": both replicas read the same values afterwards.",
        written.len()
    ));
    table
}

struct W2<'a> {
    names: &'a Names,
    docs: u32,
    sets_a: &'a [Set],
    sets_b: &'a [Set],
    written: usize,
}

impl W2<'_> {
    fn row<S: Store>(&self, role: Role, care: Care, checks: &mut Checks) -> Row {
        let (mut a, mut b) = S::pair(self.names, self.docs, care);
        write_all(&mut a, self.names, self.sets_a);
        write_all(&mut b, self.names, self.sets_b);

        // Bring `b` up to date with `a`: the figures of the row.
        let start = Instant::now();
        let summary = b.summary();
        let delta = a.delta(&summary);
        b.apply(&delta);
        let time = start.elapsed();
        let bytes = summary.len() + delta.len();

        // The other direction, so both hold everything, then compare.
        let summary = a.summary();
        let delta = b.delta(&summary);
        a.apply(&delta);
        let read_a = a.values(self.names, self.docs, FIELDS);
        let read_b = b.values(self.names, self.docs, FIELDS);
        let label = match role {
            Role::PeerWithoutCare => format!("{} without care", S::NAME),
            _ => S::NAME.to_string(),
        };
        let converged = checks.check(read_a == read_b, || {
            format!("W2: {label} replicas read different values after merging both ways")
        });
        let visible = read_a.len();
        if role == Role::Ours {
            checks.check(visible == self.written, || {
                format!(
                    "W2: tidemark shows {visible} of the {} written keys after merging",
                    self.written
                )
            });
        }
        row::<S>(
            role,
            S::care(care),
            vec![
                Cell::Num(ms(time)),
                Cell::Num(bytes as f64),
                yes_no(converged),
                Cell::Text(format!("{visible} of {}", self.written)),
                Cell::Text(format!(
                    "{:.1} %",
                    100.0 * visible as f64 / self.written as f64
                )),
            ],
        )
    }
}

// ---------------------------------------------------------------------------------------------
// W3: many writers, one key.

const W3_COLUMNS: [Column; 4] = [
    column("time ms", Better::LowerFaster, 2),
    column("bytes/update", Better::LowerSmaller, 1),
    column("final size bytes", Better::LowerSmaller, 0),
    column("converged", Better::None, 0),
];

pub(crate) fn w3(scale: &Scale, checks: &mut Checks) -> Table {
    let n = scale.w3_replicas;
    let mut rng = SplitMix64::new(0x5733);
    let values: Vec<i64> = (0..n).map(|_| rng.value()).collect();
    let mut table = Table::new(
        format!(
            "W3 many writers, one key: {n} replicas each set key \"v\" once; all updates applied \
             one by one to a fresh replica (best of {})",
            scale.runs
        ),
        "the key",
        &W3_COLUMNS,
    );
    table.push(w3_row::<Tidemark>(scale, &values, Role::Ours, checks));
    table.push(w3_packs(scale, &values, true, checks));
    table.push(w3_packs(scale, &values, false, checks));
    table.push(w3_row::<AutomergeDoc>(scale, &values, Role::Peer, checks));
    table.push(w3_row::<YrsDoc>(scale, &values, Role::Peer, checks));
    table.push(w3_row::<LoroStore>(scale, &values, Role::Peer, checks));
    table.notes.push(
        "The peers set a key of their top-level map, as in the public crdt-benchmarks' B3.1; \
         ours also names a collection and a document. Signed packs: each change sealed as a level-0 pack \
         (Ed25519, plaintext), verified with `Pack::open_batch` (one batch for all) or \
         `Pack::open` (one by one); time covers verifying, decoding and merging. \"converged\": \
         applying the updates in reverse order gives the same value."
            .to_string(),
    );
    table
}

/// The receiver's identity in W3: distinct from every writer's.
fn w3_receiver(n: u64) -> u64 {
    n + 1_000_000
}

fn w3_row<S: Store>(scale: &Scale, values: &[i64], role: Role, checks: &mut Checks) -> Row {
    let n = values.len() as u64;
    let updates: Vec<Vec<u8>> = (0..n)
        .map(|i| S::single_key_update(i, values[i as usize]))
        .collect();
    let (time, forward) = best_of(
        scale.runs,
        || S::new(w3_receiver(n), Care::Given),
        |mut receiver| {
            for update in &updates {
                receiver.apply_update(update);
            }
            receiver
        },
    );
    let mut backward = S::new(w3_receiver(n) + 1, Care::Given);
    for update in updates.iter().rev() {
        backward.apply_update(update);
    }
    let value = forward.single_key_value();
    let converged = checks.check(
        value.is_some_and(|v| values.contains(&v)) && value == backward.single_key_value(),
        || {
            format!(
                "W3: {} gives different values for different orders",
                S::NAME
            )
        },
    );
    let bytes: usize = updates.iter().map(Vec::len).sum();
    row::<S>(
        role,
        S::SINGLE_KEY_AT,
        vec![
            Cell::Num(ms(time)),
            Cell::Num(bytes as f64 / n as f64),
            Cell::Num(forward.encode().len() as f64),
            yes_no(converged),
        ],
    )
}

fn w3_packs(scale: &Scale, values: &[i64], batch: bool, checks: &mut Checks) -> Row {
    let n = values.len() as u64;
    let packs: Vec<Vec<u8>> = (0..n)
        .map(|i| tidemark::single_key_pack(i, values[i as usize]))
        .collect();
    let (time, forward) = best_of(
        scale.runs,
        || Tidemark::new(w3_receiver(n), Care::Given),
        |mut receiver| {
            tidemark::apply_packs(&mut receiver, &packs, batch);
            receiver
        },
    );
    let reversed: Vec<Vec<u8>> = packs.iter().rev().cloned().collect();
    let mut backward = Tidemark::new(w3_receiver(n) + 1, Care::Given);
    tidemark::apply_packs(&mut backward, &reversed, batch);
    let value = forward.single_key_value();
    let converged = checks.check(
        value.is_some_and(|v| values.contains(&v)) && value == backward.single_key_value(),
        || "W3: tidemark signed packs give different values for different orders".to_string(),
    );
    let bytes: usize = packs.iter().map(Vec::len).sum();
    let how = if batch {
        "batch-verified"
    } else {
        "verified one by one"
    };
    Row {
        library: format!("tidemark, signed packs ({how})"),
        role: Role::OursVariant,
        setup: Tidemark::SINGLE_KEY_AT.to_string(),
        cells: vec![
            Cell::Num(ms(time)),
            Cell::Num(bytes as f64 / n as f64),
            Cell::Num(forward.encode().len() as f64),
            yes_no(converged),
        ],
    }
}

// ---------------------------------------------------------------------------------------------
// W4: big state.

const W4_COLUMNS: [Column; 7] = [
    column("bytes/register", Better::LowerSmaller, 2),
    column("encode ms", Better::LowerFaster, 1),
    column("load ms", Better::LowerFaster, 1),
    column("load+read ms", Better::LowerFaster, 1),
    column("memory B/register after load", Better::LowerSmaller, 1),
    column("memory B/register after load+read", Better::LowerSmaller, 1),
    column("reads back what was written", Better::None, 0),
];

pub(crate) fn w4(scale: &Scale, names: &Names, checks: &mut Checks) -> Table {
    let docs = scale.w4_docs;
    let sets = generator::fill_sets(0x5734, docs, FIELDS);
    let expected_sum: i64 = sets.iter().map(|s| s.value).sum();
    let mut table = Table::new(
        format!(
            "W4 big state: {docs} docs × {FIELDS} fields set once ({} registers, \
             {SETS_PER_TRANSACTION} sets per transaction) (best of {})",
            sets.len(),
            scale.runs
        ),
        SOLO,
        &W4_COLUMNS,
    );
    let w = W4 {
        scale,
        names,
        sets: &sets,
        expected_sum,
    };
    table.push(w.row::<Tidemark>(Role::Ours, checks));
    table.push(w.row::<AutomergeDoc>(Role::Peer, checks));
    table.push(w.row::<YrsDoc>(Role::Peer, checks));
    table.push(w.row::<LoroStore>(Role::Peer, checks));
    table.notes.push(
        "Encodings: tidemark `State::encode`; automerge `save` (compressed document); yrs v1 \
         update of the whole state; loro `ExportMode::Snapshot`. Load: tidemark \
         `State::decode` + `Replica::from_state`; automerge `load`; yrs `apply_update` to an \
         empty doc; loro `from_snapshot`. Read: every value looked up by document and field \
         name, one nested-map lookup per document. Memory: live heap bytes (as requested from \
         the allocator) held by the loaded replica, divided by the registers; a library that \
         decodes lazily holds less after load than after reading."
            .to_string(),
    );
    table
}

struct W4<'a> {
    scale: &'a Scale,
    names: &'a Names,
    sets: &'a [Set],
    expected_sum: i64,
}

impl W4<'_> {
    fn row<S: Store>(&self, role: Role, checks: &mut Checks) -> Row {
        let docs = self.scale.w4_docs;
        let registers = self.sets.len() as f64;
        // The writer is dropped before loading, so it does not crowd the measurements.
        let (encode, bytes) = {
            let mut writer = S::new(1, Care::Given);
            write_all(&mut writer, self.names, self.sets);
            best_of(self.scale.runs, || (), |()| writer.encode())
        };
        let (load, _) = best_of(self.scale.runs, || (), |()| S::load(&bytes));
        let sum_all = |store: &S| {
            let (mut count, mut sum) = (0usize, 0i64);
            store.read_all(self.names, docs, FIELDS, |_, _, v| {
                count += 1;
                sum += v;
            });
            (count, sum)
        };
        let (load_read, (_, read)) = best_of(
            self.scale.runs,
            || (),
            |()| {
                let store = S::load(&bytes);
                let read = sum_all(&store);
                (store, read)
            },
        );
        let ok = checks.check(read == (self.sets.len(), self.expected_sum), || {
            format!("W4: {} reads back other values than written", S::NAME)
        });

        let before = live_bytes();
        let store = S::load(&bytes);
        let after_load = live_bytes() - before;
        black_box(sum_all(&store));
        let after_read = live_bytes() - before;
        drop(store);

        row::<S>(
            role,
            S::SOLO_SETUP,
            vec![
                Cell::Num(bytes.len() as f64 / registers),
                Cell::Num(ms(encode)),
                Cell::Num(ms(load)),
                Cell::Num(ms(load_read)),
                Cell::Num(after_load as f64 / registers),
                Cell::Num(after_read as f64 / registers),
                yes_no(ok),
            ],
        )
    }
}

// ---------------------------------------------------------------------------------------------
// W5: overwrite-heavy.

const W5_COLUMNS: [Column; 6] = [
    column("final size bytes", Better::LowerSmaller, 0),
    column("same values written once, bytes", Better::LowerSmaller, 0),
    column("final / written once", Better::None, 2),
    column("load ms", Better::LowerFaster, 1),
    column("write sets/s (1 run)", Better::HigherFaster, 0),
    column("reads back what was written", Better::None, 0),
];

pub(crate) fn w5(scale: &Scale, names: &Names, checks: &mut Checks) -> Table {
    let fields = scale.w5_fields;
    let sets = generator::random_sets(0x5735, 1, fields, scale.w5_sets);
    let expected = generator::expected_reads(&sets, 1, fields);
    // The live values alone, each written once: what a history-free encoding would hold.
    let once: Vec<Set> = expected
        .iter()
        .map(|&(doc, field, value)| Set { doc, field, value })
        .collect();
    let mut table = Table::new(
        format!(
            "W5 overwrite-heavy: one doc, {fields} fields, {} random sets, \
             {SETS_PER_TRANSACTION} per transaction (load: best of {})",
            scale.w5_sets, scale.runs
        ),
        SOLO,
        &W5_COLUMNS,
    );
    let w = W5 {
        scale,
        names,
        sets: &sets,
        once: &once,
        expected: &expected,
    };
    table.push(w.row::<Tidemark>(Role::Ours, checks));
    table.push(w.row::<AutomergeDoc>(Role::Peer, checks));
    table.push(w.row::<YrsDoc>(Role::Peer, checks));
    table.push(w.row::<LoroStore>(Role::Peer, checks));
    table.notes.push(
        "\"same values written once\": the final values of the fields written by a fresh \
         replica in transactions of 100 and encoded the same way; \"final / written once\" \
         near 1 means the size follows the live fields, not the history."
            .to_string(),
    );
    table
}

struct W5<'a> {
    scale: &'a Scale,
    names: &'a Names,
    sets: &'a [Set],
    once: &'a [Set],
    expected: &'a [(u32, u32, i64)],
}

impl W5<'_> {
    fn row<S: Store>(&self, role: Role, checks: &mut Checks) -> Row {
        let fields = self.scale.w5_fields;
        let mut writer = S::new(1, Care::Given);
        let start = Instant::now();
        write_all(&mut writer, self.names, self.sets);
        let write = start.elapsed();
        let bytes = writer.encode();
        drop(writer);

        let mut fresh = S::new(2, Care::Given);
        write_all(&mut fresh, self.names, self.once);
        let once_bytes = fresh.encode().len();
        drop(fresh);

        let (load, loaded) = best_of(self.scale.runs, || (), |()| S::load(&bytes));
        let ok = checks.check(
            loaded.values(self.names, 1, fields) == self.expected,
            || format!("W5: {} reads back other values than written", S::NAME),
        );
        row::<S>(
            role,
            S::SOLO_SETUP,
            vec![
                Cell::Num(bytes.len() as f64),
                Cell::Num(once_bytes as f64),
                Cell::Num(bytes.len() as f64 / once_bytes as f64),
                Cell::Num(ms(load)),
                Cell::Num(self.sets.len() as f64 / write.as_secs_f64()),
                yes_no(ok),
            ],
        )
    }
}
