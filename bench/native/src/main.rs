//! Tidemark against automerge, yrs and loro, natively: workloads W1–W5 of issue 7, one
//! markdown table each, every peer's figure beside its ratio to ours, measured in the same run
//! on the same operations; then the issue's native targets, met or not.
//!
//! ```text
//! cargo run --release --manifest-path bench/native/Cargo.toml -- [--quick] [--only W1,W4]
//! ```
//!
//! `--quick` shrinks every workload about a hundredfold, for a smoke run in CI. `--only` runs
//! the named workloads alone (and judges only the targets their tables hold), for profiling. Either way the
//! run exits non-zero when a check fails: a library whose replicas do not converge (W2, W3) or
//! that reads back other values than it was given (W1, W4, W5), or Tidemark hiding any written
//! key after a merge (W2). The figures themselves never fail a run.

mod alloc;
mod automerge;
mod generator;
mod loro;
mod report;
mod store;
mod tidemark;
mod workloads;
mod yrs;

use std::process::ExitCode;
use std::time::Instant;

use report::{Better, Checks, Role, Table, Target, number, ratio_words};
use workloads::Scale;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// The workloads `--only` may name.
const WORKLOADS: [&str; 5] = ["W1", "W2", "W3", "W4", "W5"];

/// The dependency versions actually built, read from this workspace's lock file.
const CARGO_LOCK: &str = include_str!("../Cargo.lock");

fn main() -> ExitCode {
    const USAGE: &str = "usage: tidemark-bench-native [--quick] [--only W1,W4]";
    let mut quick = false;
    let mut only: Option<Vec<String>> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let list = match arg.as_str() {
            "--quick" => {
                quick = true;
                continue;
            }
            "--only" => args.next(),
            other => other.strip_prefix("--only=").map(str::to_string),
        };
        let Some(list) = list else {
            eprintln!("unknown argument {arg:?}; {USAGE}");
            return ExitCode::from(2);
        };
        let names: Vec<String> = list.split(',').map(|w| w.trim().to_uppercase()).collect();
        if let Some(bad) = names.iter().find(|w| !WORKLOADS.contains(&w.as_str())) {
            eprintln!("unknown workload {bad:?} (W1 to W5); {USAGE}");
            return ExitCode::from(2);
        }
        only = Some(names);
    }
    let runs = |workload: &str| {
        only.as_ref()
            .is_none_or(|o| o.iter().any(|w| w == workload))
    };
    let scale = if quick { Scale::quick() } else { Scale::full() };
    let names = scale.names();
    print_header(&scale);

    let started = Instant::now();
    let mut checks = Checks::default();
    let mut tables = Vec::new();
    // Each table is printed as soon as it is done, so a long run shows its progress.
    let mut finish = |table: Table| {
        println!("{}", table.render());
        tables.push(table);
    };
    if runs("W1") {
        finish(workloads::w1(&scale, &names, &mut checks));
    }
    if runs("W2") {
        finish(workloads::w2(&scale, &names, &mut checks));
    }
    if runs("W3") {
        finish(workloads::w3(&scale, &mut checks));
    }
    if runs("W4") {
        finish(workloads::w4(&scale, &names, &mut checks));
    }
    if runs("W5") {
        finish(workloads::w5(&scale, &names, &mut checks));
    }

    println!(
        "### Targets (issue 7, native rows; ours against the best peer with care, same run)\n"
    );
    if quick {
        println!("(quick sizes: these say little about the full-size targets)\n");
    }
    for target in targets(&tables) {
        let verdict = if target.met { "met" } else { "**missed**" };
        println!("- {verdict}: {} — {}", target.text, target.detail);
    }
    println!(
        "\nAll workloads took {:.1} s.",
        started.elapsed().as_secs_f64()
    );

    if checks.failures.is_empty() {
        println!(
            "All checks passed: every library converged and read back what it wrote; tidemark showed every written key."
        );
        ExitCode::SUCCESS
    } else {
        println!("\nFAILED CHECKS:");
        for failure in &checks.failures {
            println!("- {failure}");
        }
        ExitCode::FAILURE
    }
}

fn print_header(scale: &Scale) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim());
    let logical = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let available = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("## Native benchmarks: tidemark-core against automerge, yrs and loro (issue 7)\n");
    println!(
        "- command: `cargo run --release --manifest-path bench/native/Cargo.toml{}`",
        if scale.quick { " -- --quick" } else { "" }
    );
    println!(
        "- sizes: {}",
        if scale.quick {
            "quick (about 1/100 of the issue's)"
        } else {
            "full (the issue's)"
        }
    );
    println!(
        "- machine: {model}; {logical} logical CPUs in /proc/cpuinfo, {available} available to this process"
    );
    println!("- compiler: {}", env!("BENCH_RUSTC_VERSION"));
    let versions: Vec<String> = ["tidemark-core", "automerge", "yrs", "loro", "ed25519-dalek"]
        .iter()
        .map(|name| format!("{name} {}", locked_version(name)))
        .collect();
    println!("- crates: {}", versions.join(", "));
    println!(
        "- every library: the same operations from one SplitMix64 generator with fixed seeds, \
         {} sets per transaction; values are integers in [0, 1,000,000)\n",
        workloads::SETS_PER_TRANSACTION
    );
}

/// The version of `name` in the lock file (the first, if several are locked).
fn locked_version(name: &str) -> String {
    let mut lines = CARGO_LOCK.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{name}\"")
            && let Some(version) = lines.next().and_then(|l| l.strip_prefix("version = "))
        {
            return version.trim_matches('"').to_string();
        }
    }
    "?".to_string()
}

/// The issue's native targets, each judged on this run's tables (those of the workloads that
/// ran).
fn targets(tables: &[Table]) -> Vec<Target> {
    let table = |prefix: &str| tables.iter().find(|t| t.title.starts_with(prefix));
    let (w1, w2, w3, w4, w5) = (
        table("W1"),
        table("W2"),
        table("W3"),
        table("W4"),
        table("W5"),
    );
    let mut out = Vec::new();

    // "At least N× faster than the fastest peer" and friends: ours against the best peer row.
    let mut against_best =
        |text: &str, t: Option<&Table>, header: &str, better: Better, factor: f64| {
            let Some(t) = t else { return };
            let ours = t.figure(Role::Ours, None, header);
            let (peer, best) = t.best_peer(header);
            let advantage = match better {
                Better::HigherFaster => ours / best,
                _ => best / ours,
            };
            out.push(Target {
                text: text.to_string(),
                met: advantage >= factor,
                detail: format!(
                    "tidemark {} vs {peer} {} {header}: {}",
                    t.format(header, ours),
                    t.format(header, best),
                    ratio_words(better, ours, best).unwrap_or_default()
                ),
            });
        };
    against_best(
        "W1 ≥ 5× the fastest peer",
        w1,
        "sets/s",
        Better::HigherFaster,
        5.0,
    );
    against_best(
        "W2 ≥ 5× faster than the fastest peer",
        w2,
        "time ms",
        Better::LowerFaster,
        5.0,
    );
    against_best(
        "W3 (plain updates) ≥ 5× faster than the fastest peer",
        w3,
        "time ms",
        Better::LowerFaster,
        5.0,
    );
    against_best(
        "W4 load+read ≥ 5× faster than the fastest peer",
        w4,
        "load+read ms",
        Better::LowerFaster,
        5.0,
    );
    against_best(
        "W2 bytes exchanged ≤ half the smallest peer's",
        w2,
        "bytes exchanged",
        Better::LowerSmaller,
        2.0,
    );
    against_best(
        "W3 bytes/update ≤ the smallest peer's",
        w3,
        "bytes/update",
        Better::LowerSmaller,
        1.0,
    );
    against_best(
        "W4 bytes/register ≤ the smallest peer's",
        w4,
        "bytes/register",
        Better::LowerSmaller,
        1.0,
    );

    // W3 as signed packs, batch-verified, against the fastest peer's plain updates.
    if let Some(w3) = w3 {
        let packs = w3.figure(
            Role::OursVariant,
            Some("tidemark, signed packs (batch-verified)"),
            "time ms",
        );
        let (peer, best) = w3.best_peer("time ms");
        out.push(Target {
            text: "W3 as signed packs (batch-verified) no slower than the fastest peer's plain updates"
                .to_string(),
            met: packs <= best,
            detail: format!(
                "tidemark packs {} ms vs {peer} {} ms: {}",
                w3.format("time ms", packs),
                w3.format("time ms", best),
                ratio_words(Better::LowerFaster, packs, best).unwrap_or_default()
            ),
        });
    }

    // W4 within 1 byte of the values' entropy: log2(1,000,000) bits per value.
    let entropy = (generator::VALUE_RANGE as f64).log2() / 8.0;
    if let Some(w4) = w4 {
        let per_register = w4.figure(Role::Ours, None, "bytes/register");
        out.push(Target {
            text: format!(
                "W4 bytes/register within 1 byte of the values' entropy ({entropy:.2} bytes)"
            ),
            met: per_register <= entropy + 1.0,
            detail: format!(
                "tidemark {per_register:.2} bytes/register, bound {:.2}",
                entropy + 1.0
            ),
        });
    }

    // W5 proportional to the live fields: read here as the final encoding being at most twice
    // the encoding of the same live values written once (the issue gives no number).
    if let Some(w5) = w5 {
        let final_over_once = w5.figure(Role::Ours, None, "final / written once");
        out.push(Target {
            text: "W5 size proportional to the live fields, not to history (read as: final ≤ 2× the same values written once)".to_string(),
            met: final_over_once <= 2.0,
            detail: format!(
                "tidemark final/once = {final_over_once:.2} ({} bytes for {} fields)",
                number(w5.figure(Role::Ours, None, "final size bytes"), 0),
                w5.title.split(" fields").next().and_then(|s| s.rsplit(' ').next()).unwrap_or("?"),
            ),
        });
    }

    if let Some(w4) = w4 {
        let memory = w4.figure(Role::Ours, None, "memory B/register after load");
        out.push(Target {
            text: "W4 memory after loading ≤ 40 bytes/register".to_string(),
            met: memory <= 40.0,
            detail: format!("tidemark {memory:.1} bytes/register"),
        });
    }
    out
}
