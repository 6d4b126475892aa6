//! Tidemark in the browser: the bindings behind the npm package `tidemark`.
//!
//! The crate only moves bytes. Everything that decides (merge, what to push, what to read,
//! what a query returns) is `tidemark-core`; this crate keeps the core's state in IndexedDB
//! and exposes it to JavaScript. The ergonomic API (collections, `observe`, the service-worker
//! host) is hand-written JavaScript in `wasm/js/`, on top of the [`Store`] exported here.
//!
//! - [`disk`]: the IndexedDB layout: one checkpoint record plus a journal of write batches.
//! - [`store`]: the store: writes acknowledged after their IndexedDB commit, queries, live
//!   queries.
//! - `sync`: the core's sync engine driven over `fetch` and the server's event stream.
//! - [`api`]: the server API and object storage over `fetch`.
//! - [`replica`]: an in-memory replica (no storage, no sync) for apps with their own transport.
//! - [`error`]: errors as JavaScript `Error`s with a stable `code`.

pub mod api;
pub mod disk;
pub mod error;
mod js;
pub mod replica;
pub mod store;
mod sync;

pub use error::StoreError;
pub use store::Store;
