//! Tidemark's native client: the core sync engine driven over real HTTP.
//!
//! - [`api`]: the tidemark-server API (sessions, device registration, grants, announcements).
//! - [`client`]: a device — profile, engine, and the driver loop that carries out the
//!   engine's steps (presigned GETs and PUTs to object storage, grant fetches, the event
//!   stream).
//! - [`events`]: the server's event stream.
//! - [`jsonl`]: export and import of collections as JSON lines.
//! - [`inspect`]: reading a space's level packs and checking them.

pub mod api;
pub mod client;
pub mod events;
pub mod inspect;
pub mod jsonl;

pub use client::{Client, ClientError, ClientOptions, Storage, WriteInbox, WriteQueue};
