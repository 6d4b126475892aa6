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
//!
//! Two features, both on by default, choose what is built: `store` (the store, sync and the
//! server API) and `replica` (the in-memory replica). The npm package ships two wasm files
//! built from this crate, one per feature, so that `tidemark/replica` loads none of the
//! store's, the sync engine's or IndexedDB's code.

#[cfg(feature = "store")]
pub mod api;
#[cfg(feature = "store")]
pub mod disk;
pub mod error;
#[cfg(any(feature = "store", feature = "replica"))]
mod js;
#[cfg(feature = "replica")]
pub mod replica;
#[cfg(feature = "store")]
pub mod store;
#[cfg(feature = "store")]
mod sync;

pub use error::StoreError;
#[cfg(feature = "store")]
pub use store::Store;
