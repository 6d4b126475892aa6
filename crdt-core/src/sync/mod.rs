//! The sync engine: everything a device decides about syncing through object storage, with no
//! I/O. The browser package and the native client drive the same [`SyncEngine`].
//!
//! A driver loops:
//!
//! 1. take every [`Step`] from [`SyncEngine::poll`] and carry it out — [`Step::Persist`] at once
//!    and before anything after it, the others (HTTP requests, grant fetches, announcements)
//!    concurrently if it likes;
//! 2. feed back what happened: [`SyncEngine::on_response`], [`SyncEngine::on_grant`],
//!    [`SyncEngine::on_announcement`], …;
//! 3. sleep until [`SyncEngine::next_wakeup`] or until something arrives.
//!
//! Local writes go through [`SyncEngine::write`]; a write is *acknowledged* (safe to report as
//! saved) once the [`Step::Persist`] that follows it has been carried out.
//!
//! See `ARCHITECTURE.md` ("Sync") for the levels, polling and persistence rules.

pub mod api;
mod backoff;
mod checkpoint;
mod engine;
mod events;
mod grant;
mod levels;

use std::collections::BTreeSet;

pub use backoff::RetryPolicy;
pub use engine::{SyncEngine, SyncStatus};
pub use events::{EventStream, ServerEvent, parse_event};

use crate::device::{DeviceId, SpaceKey};
use crate::error::{DecodeError, PackError, WriteError};
use crate::replica::Changed;

/// How a device syncs one space. [`SyncConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// The space.
    pub space: String,
    /// Collections to sync. Writing to another collection adds it.
    pub collections: BTreeSet<String>,
    /// The space key: packs are sealed with it, and plaintext packs are refused.
    pub space_key: Option<SpaceKey>,
    /// `L0`'s budget in encoded bytes (default 64 KiB).
    pub level0_budget: usize,
    /// Each level's budget is this many times the one below (default 8).
    pub level_growth: usize,
    /// How long a write waits before it is pushed, so a burst becomes one PUT (default 25 ms).
    pub push_delay_millis: u64,
    /// Shortest time between polling rounds, right after a change (default 1 s).
    pub poll_min_millis: u64,
    /// Longest time between polling rounds: quiet rounds double the interval up to this
    /// (default 60 s).
    pub poll_max_millis: u64,
    /// Time between polling rounds while announcements arrive (default 5 min): a safety net.
    pub poll_live_millis: u64,
    /// Every this many rounds, read every level of every device, not only `L0` (default 30).
    pub full_round_every: u32,
    /// Retry timing for failed requests.
    pub retry: RetryPolicy,
    /// Refresh the grant this long before it expires (default 10 min, at most a quarter of
    /// the grant's lifetime).
    pub grant_refresh_margin_millis: u64,
    /// Most requests in flight at once (default 16).
    pub max_in_flight: usize,
    /// Seed for retry jitter (use a random value; fixed in tests).
    pub jitter_seed: u64,
}

impl SyncConfig {
    /// The defaults for `space`.
    pub fn new(space: impl Into<String>) -> SyncConfig {
        SyncConfig {
            space: space.into(),
            collections: BTreeSet::new(),
            space_key: None,
            level0_budget: 64 * 1024,
            level_growth: 8,
            push_delay_millis: 25,
            poll_min_millis: 1_000,
            poll_max_millis: 60_000,
            poll_live_millis: 5 * 60_000,
            full_round_every: 30,
            retry: RetryPolicy::default(),
            grant_refresh_margin_millis: 10 * 60_000,
            max_in_flight: 16,
            jitter_seed: 0,
        }
    }

    /// Adds collections to sync.
    pub fn with_collections<I, S>(mut self, collections: I) -> SyncConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.collections
            .extend(collections.into_iter().map(Into::into));
        self
    }
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Store [`SyncEngine::checkpoint`] durably, replacing the previous one, before taking any
    /// later step. Writes made before it are acknowledged once it is done.
    Persist,
    /// Ask the server for a grant (`POST /v1/spaces/{space}/grants`) covering these
    /// collections; answer with [`SyncEngine::on_grant`] or [`SyncEngine::on_grant_failed`].
    FetchGrant {
        /// The collections to cover.
        collections: Vec<String>,
    },
    /// Send this request to object storage; answer with [`SyncEngine::on_response`].
    Http(HttpRequest),
    /// Tell the server a pack changed (`POST /v1/spaces/{space}/announce`). Best effort:
    /// nothing is lost if it fails, others find the change by polling.
    Announce {
        /// The collection.
        collection: String,
        /// The level written.
        level: u8,
        /// Its new ETag.
        etag: Option<String>,
    },
}

/// Identifies a request, to match its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// GET or PUT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpMethod {
    /// Read a pack.
    Get,
    /// Write a pack.
    Put,
}

/// A request to object storage, on a presigned URL.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Pass back with the answer.
    pub id: RequestId,
    /// The method.
    pub method: HttpMethod,
    /// The presigned URL.
    pub url: String,
    /// Send as `If-None-Match` (GET only): the ETag of the pack last merged.
    pub if_none_match: Option<String>,
    /// The body (PUT only).
    pub body: Vec<u8>,
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRequest")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("url", &self.url.split('?').next().unwrap_or_default())
            .field("if_none_match", &self.if_none_match)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// What became of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpOutcome {
    /// An answer arrived, whole.
    Response {
        /// The status code.
        status: u16,
        /// The `ETag` header.
        etag: Option<String>,
        /// The body.
        body: Vec<u8>,
        /// The `Retry-After` header in seconds, if any.
        retry_after_secs: Option<u64>,
    },
    /// No whole answer: connection refused or dropped, timeout, body cut short.
    Failed {
        /// What went wrong, for reports.
        reason: String,
    },
}

/// What happened, for the app and for logs. Take them with [`SyncEngine::take_events`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncEvent {
    /// Remote changes were merged: these documents changed.
    Changed(Changed),
    /// This many of the device's write transactions in `collection` are now in the bucket.
    Acknowledged {
        /// The collection.
        collection: String,
        /// How many write transactions.
        writes: usize,
    },
    /// A pack was refused; the state is as before it.
    Rejected {
        /// Whose pack (by its bucket key).
        device: DeviceId,
        /// Its collection.
        collection: String,
        /// Its level.
        level: u8,
        /// Why.
        error: SyncError,
    },
    /// A transient problem; the engine retries by itself.
    Problem(SyncError),
    /// A polling round finished: every device's levels were checked.
    RoundComplete {
        /// Whether it merged any change.
        changed: bool,
    },
    /// Syncing stopped for good (device revoked, server key changed); local reads and writes
    /// still work.
    Stopped(SyncError),
}

/// Why syncing could not do something. Every variant has a stable [`SyncError::code`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// A local write was refused.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// This device's role cannot write to the space.
    #[error("this device is a reader in space {0:?}; writes are refused so none is kept unsynced")]
    ReadOnly(String),
    /// The grant is malformed or its certificates do not verify.
    #[error("grant refused: {0}")]
    BadGrant(String),
    /// The grant is signed by another server key than the one pinned when the device joined.
    #[error(
        "the server's key changed since this device joined; re-join the space if the server was reset on purpose"
    )]
    ServerKeyChanged,
    /// The server refused a grant (membership removed, device revoked, space gone).
    #[error("the server refused access ({status}): {message}")]
    AccessDenied {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The server could not be reached for a grant, or answered with an error.
    #[error("cannot get a grant: {0}")]
    GrantUnavailable(String),
    /// Object storage did not answer, or answered 5xx or 429.
    #[error("object storage unavailable: {0}")]
    StoreUnavailable(String),
    /// Object storage refused a request (4xx other than 403, 404, 429).
    #[error("object storage refused {method} with status {status}")]
    StoreRefused {
        /// GET or PUT.
        method: &'static str,
        /// The status.
        status: u16,
    },
    /// A pack could not be opened.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// A pack is older than one already merged from the same key: replayed.
    #[error("pack generation {found} is older than generation {seen} already merged: a replay")]
    Replayed {
        /// The generation already merged.
        seen: u64,
        /// The generation found.
        found: u64,
    },
    /// A checkpoint cannot be read.
    #[error("checkpoint is damaged: {0}")]
    BadCheckpoint(#[from] DecodeError),
    /// A checkpoint belongs to another space or device.
    #[error("checkpoint is for {0}")]
    CheckpointMismatch(String),
    /// The space key cannot change once this device has written packs.
    #[error(
        "this device has already written packs under its current space key; open a new store to use another"
    )]
    SpaceKeyLocked,
    /// The device already belongs to another space.
    #[error(
        "this store already syncs space {joined:?}; open a store under another name to join {requested:?}"
    )]
    OtherSpace {
        /// The space joined before.
        joined: String,
        /// The space asked for.
        requested: String,
    },
}

impl SyncError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            SyncError::Write(e) => e.code(),
            SyncError::ReadOnly(_) => "sync.read_only",
            SyncError::BadGrant(_) => "sync.bad_grant",
            SyncError::ServerKeyChanged => "sync.server_key_changed",
            SyncError::AccessDenied { .. } => "sync.access_denied",
            SyncError::GrantUnavailable(_) => "sync.grant_unavailable",
            SyncError::StoreUnavailable(_) => "sync.store_unavailable",
            SyncError::StoreRefused { .. } => "sync.store_refused",
            SyncError::Pack(e) => e.code(),
            SyncError::Replayed { .. } => "sync.replayed_pack",
            SyncError::BadCheckpoint(_) => "sync.bad_checkpoint",
            SyncError::CheckpointMismatch(_) => "sync.checkpoint_mismatch",
            SyncError::OtherSpace { .. } => "sync.other_space",
            SyncError::SpaceKeyLocked => "sync.space_key_locked",
        }
    }
}
