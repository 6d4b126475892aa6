//! Harness for Tidemark's end-to-end suites (`tests/tests/*.rs`): the pieces between the
//! clients and the real servers.
//!
//! - [`proxy`]: an HTTP proxy that injects faults between clients and the object store.
//! - [`server`]: the real server binary, the independent S3 server, and devices joined to them.
//! - [`random`]: a seeded generator, so that workloads and faults replay.

pub mod proxy;
pub mod random;
pub mod server;
