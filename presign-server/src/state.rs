//! What every handler shares: configuration, registry, object store, clock, keys, event hub.
//! Parts are trait objects where tests swap them (registry, clock), never the object store:
//! tests run against a real one.

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidemark_core::ServerKey;

use crate::auth::jwt::JwtVerifier;
use crate::clock::Clock;
use crate::config::Config;
use crate::events::EventHub;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::registry::Registry;
use crate::store::{EmbeddedStore, ObjectStore};

/// Shared server state; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct Shared {
    /// Configuration as started.
    pub config: Config,
    /// The origin devices reach the server at, without a trailing `/`.
    pub public_url: String,
    /// Lifetime of grants.
    pub grant_ttl: Duration,
    /// Who is who.
    pub registry: Arc<dyn Registry>,
    /// Object storage.
    pub store: ObjectStore,
    /// The embedded store, when no external one is configured.
    pub embedded: Option<EmbeddedStore>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Signs certificates.
    pub server_key: ServerKey,
    /// Opens the admin session and page.
    pub admin_secret: String,
    /// Identity tokens, when configured.
    pub jwt: Option<JwtVerifier>,
    /// Announcements.
    pub events: EventHub,
    /// Counters.
    pub metrics: Metrics,
    /// Slows credential guessing.
    pub limiter: RateLimiter,
    /// When the server started.
    pub started: Instant,
}

impl AppState {
    /// Wraps the parts.
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl Shared {
    /// When a grant (or a URL presigned with the grant lifetime) made at `now_millis` expires.
    pub fn grant_expires_at(&self, now_millis: u64) -> u64 {
        let ttl = u64::try_from(self.grant_ttl.as_millis()).unwrap_or(u64::MAX);
        now_millis.saturating_add(ttl)
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
