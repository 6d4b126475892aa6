//! Random histories for property tests: several devices writing registers, counters and
//! deletes to a few shared documents, syncing with each other now and then, with skewed clocks.

#![allow(dead_code, unreachable_pub)]

use proptest::prelude::*;
use tidemark_core::{DeviceKey, Replica, State, Value, Writer};

pub const DEVICES: usize = 3;
const COLLECTIONS: [&str; 2] = ["orders", "menu"];
const DOCS: [&str; 3] = ["a", "b", "c"];
const FIELDS: [&str; 3] = ["x", "y", "stock"];
const BASE_WALL: u64 = 1_750_000_000_000;

#[derive(Clone, Debug)]
pub enum Step {
    /// Device `device` runs a transaction of writes.
    Write { device: usize, writes: Vec<WriteOp> },
    /// Device `to` merges everything device `from` has.
    Sync { from: usize, to: usize },
    /// Device `device`'s wall clock moves (possibly backwards: clocks get corrected).
    Clock { device: usize, delta_ms: i64 },
}

#[derive(Clone, Debug)]
pub enum WriteOp {
    Set {
        coll: usize,
        doc: usize,
        field: usize,
        value: Value,
    },
    Increment {
        coll: usize,
        doc: usize,
        field: usize,
        by: i64,
    },
    Delete {
        coll: usize,
        doc: usize,
    },
    Restore {
        coll: usize,
        doc: usize,
    },
    RemoveField {
        coll: usize,
        doc: usize,
        field: usize,
    },
}

pub fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..1_000_000).prop_map(Value::Int),
        any::<i64>().prop_map(Value::Int),
        (-1e6f64..1e6).prop_map(Value::Float),
        "[a-zé]{0,6}".prop_map(Value::from),
        proptest::collection::vec(any::<u8>(), 0..5).prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            proptest::collection::btree_map("[a-c]{1,2}", inner, 0..3)
                .prop_map(|map| Value::Object(Box::new(map))),
        ]
    })
}

fn write_op() -> impl Strategy<Value = WriteOp> {
    let coll = 0..COLLECTIONS.len();
    let doc = 0..DOCS.len();
    let field = 0..FIELDS.len();
    prop_oneof![
        4 => (coll.clone(), doc.clone(), field.clone(), value())
            .prop_map(|(coll, doc, field, value)| WriteOp::Set { coll, doc, field, value }),
        3 => (coll.clone(), doc.clone(), field.clone(), -5i64..6)
            .prop_map(|(coll, doc, field, by)| WriteOp::Increment { coll, doc, field, by }),
        1 => (coll.clone(), doc.clone()).prop_map(|(coll, doc)| WriteOp::Delete { coll, doc }),
        1 => (coll.clone(), doc.clone()).prop_map(|(coll, doc)| WriteOp::Restore { coll, doc }),
        1 => (coll, doc, field).prop_map(|(coll, doc, field)| WriteOp::RemoveField { coll, doc, field }),
    ]
}

pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..DEVICES, proptest::collection::vec(write_op(), 1..4))
            .prop_map(|(device, writes)| Step::Write { device, writes }),
        2 => (0..DEVICES, 0..DEVICES).prop_map(|(from, to)| Step::Sync { from, to }),
        1 => (0..DEVICES, prop_oneof![-5_000i64..5_000, Just(400 * 24 * 3_600_000)])
            .prop_map(|(device, delta_ms)| Step::Clock { device, delta_ms }),
    ]
}

pub fn history() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(step(), 1..40)
}

/// A history in which no clock runs beyond the drift bound of another, so no write gets a
/// one-off stamp outside its device's order.
pub fn history_with_sane_clocks() -> impl Strategy<Value = Vec<Step>> {
    history().prop_map(|steps| {
        steps
            .into_iter()
            .filter(
                |s| !matches!(s, Step::Clock { delta_ms, .. } if delta_ms.unsigned_abs() > 60_000),
            )
            .collect()
    })
}

pub fn device_key(n: usize) -> DeviceKey {
    DeviceKey::from_seed([n as u8 + 1; 32])
}

fn apply(w: &mut Writer<'_>, op: &WriteOp) {
    // Refused writes (e.g. incrementing a string) change nothing; that is part of the model.
    let _ = match op {
        WriteOp::Set {
            coll,
            doc,
            field,
            value,
        } => w.set(
            COLLECTIONS[*coll],
            DOCS[*doc],
            FIELDS[*field],
            value.clone(),
        ),
        WriteOp::Increment {
            coll,
            doc,
            field,
            by,
        } => w.increment(COLLECTIONS[*coll], DOCS[*doc], FIELDS[*field], *by),
        WriteOp::Delete { coll, doc } => w.delete(COLLECTIONS[*coll], DOCS[*doc]),
        WriteOp::Restore { coll, doc } => w.restore(COLLECTIONS[*coll], DOCS[*doc]),
        WriteOp::RemoveField { coll, doc, field } => {
            w.remove_field(COLLECTIONS[*coll], DOCS[*doc], FIELDS[*field])
        }
    };
}

/// The result of playing a history: each device's replica and every transaction's changes,
/// in the order they were made.
pub struct Played {
    pub replicas: Vec<Replica>,
    pub changes: Vec<State>,
}

pub fn play(steps: &[Step]) -> Played {
    let mut replicas: Vec<Replica> = (0..DEVICES)
        .map(|n| Replica::new(device_key(n).device_id()))
        .collect();
    let mut walls: Vec<u64> = (0..DEVICES).map(|n| BASE_WALL + n as u64 * 977).collect();
    let mut changes = Vec::new();
    for step in steps {
        match step {
            Step::Write { device, writes } => {
                walls[*device] += 1;
                let result = replicas[*device].write(walls[*device], |w| {
                    for op in writes {
                        apply(w, op);
                    }
                    Ok(())
                });
                changes.push(result.expect("refused writes are skipped inside the transaction"));
            }
            Step::Sync { from, to } => {
                let remote = replicas[*from].state().clone();
                replicas[*to].merge(&remote, walls[*to]);
            }
            Step::Clock { device, delta_ms } => {
                walls[*device] = walls[*device].saturating_add_signed(*delta_ms);
            }
        }
    }
    Played { replicas, changes }
}

pub fn join(states: &[&State]) -> State {
    let mut out = State::new();
    for s in states {
        out.merge(s);
    }
    out
}
