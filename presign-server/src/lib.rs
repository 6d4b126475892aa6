//! tidemark-server: the small auth server of Tidemark. It certifies devices into spaces, hands
//! out presigned URLs to object storage (grants), and relays announcements; it never sees or
//! stores document data. With no configuration it also serves an embedded S3-compatible store
//! and the web app on its own origin.
//!
//! [`run`] serves a listener until a shutdown future resolves; `main.rs` only parses flags.
//! Tests build the same [`app`] and call it with `oneshot`, or run it on `127.0.0.1:0`.

pub mod auth;
pub mod clock;
pub mod config;
pub mod error;
pub mod events;
pub mod metrics;
pub mod rate_limit;
pub mod registry;
pub mod routes;
pub mod state;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tidemark_core::{Role, ServerKey};
use tokio::net::TcpListener;

use crate::auth::jwt::{JwtConfig, JwtVerifier};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::events::EventHub;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::registry::{InviteRecord, Registry, SpaceRecord, SqliteRegistry};
use crate::state::{AppState, Shared};
use crate::store::{EmbeddedStore, ObjectStore, StoreSettings};

pub use crate::routes::app;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A flag has a value that cannot work.
    #[error("configuration: {0}")]
    Config(String),
    /// The data folder or a file in it.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The registry.
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    /// JWT set-up (JWKS unreadable, …).
    #[error("identity tokens: {0}")]
    Jwt(#[from] auth::jwt::JwtSetupError),
    /// Serving failed.
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

/// Keys the server makes on first start and keeps in `<data-dir>/secrets.json`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Secrets {
    server_key_seed: String,
    admin_secret: String,
    embedded_store_access_key_id: String,
    embedded_store_secret_access_key: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(…)")
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StartupError + '_ {
    move |source| StartupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn load_or_create_secrets(data_dir: &Path) -> Result<Secrets, StartupError> {
    let path = data_dir.join("secrets.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StartupError::Io {
            path: path.clone(),
            source: std::io::Error::other(format!("not valid secrets JSON: {e}")),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secrets = Secrets {
                server_key_seed: hex::encode(auth::random_bytes::<32>()),
                admin_secret: auth::new_secret("tma_"),
                embedded_store_access_key_id: format!(
                    "TM{}",
                    hex::encode_upper(auth::random_bytes::<9>())
                ),
                embedded_store_secret_access_key: auth::new_secret(""),
            };
            let json = serde_json::to_vec_pretty(&secrets)
                .map_err(|e| io_error(&path)(std::io::Error::other(e)))?;
            write_private(&path, &json).map_err(io_error(&path))?;
            Ok(secrets)
        }
        Err(e) => Err(io_error(&path)(e)),
    }
}

/// Writes a file only its owner can read, atomically (temporary file, then rename).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// What the server tells its operator at start.
#[derive(Clone, Debug)]
pub struct StartupReport {
    /// Where to open the app.
    pub url: String,
    /// A fresh admin invite into the default space (24 h, one use).
    pub admin_invite: Option<String>,
    /// Where the admin secret is kept (None when it came from configuration).
    pub admin_secret_file: Option<PathBuf>,
    /// Whether objects live in the embedded store.
    pub embedded_store: bool,
}

/// Builds the server's state for a listener bound at `local_addr`, creating the data folder,
/// keys, registry and default space on first start.
pub async fn build(
    config: Config,
    local_addr: SocketAddr,
    clock: Arc<dyn Clock>,
) -> Result<(AppState, StartupReport), StartupError> {
    let grant_ttl = config.grant_ttl().map_err(StartupError::Config)?;
    tidemark_core::validate_space_id(&config.default_space)
        .map_err(|e| StartupError::Config(format!("default space: {e}")))?;
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(io_error(&data_dir))?;
    let secrets = load_or_create_secrets(&data_dir)?;
    let seed: [u8; 32] = hex::decode(&secrets.server_key_seed)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            StartupError::Config("secrets.json: serverKeySeed is not 32 hex bytes".into())
        })?;
    let server_key = ServerKey::from_seed(seed);

    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{local_addr}"))
        .trim_end_matches('/')
        .to_owned();

    let (settings, embedded) = match &config.s3_endpoint {
        Some(endpoint) => {
            let (Some(access_key_id), Some(secret_access_key)) =
                (&config.s3_access_key_id, &config.s3_secret_access_key)
            else {
                return Err(StartupError::Config(
                    "--s3-endpoint needs --s3-access-key-id and --s3-secret-access-key".into(),
                ));
            };
            let settings = StoreSettings {
                endpoint: endpoint.clone(),
                public_endpoint: config
                    .s3_public_endpoint
                    .clone()
                    .unwrap_or_else(|| endpoint.clone()),
                bucket: config.s3_bucket.clone(),
                region: config.s3_region.clone(),
                access_key_id: access_key_id.clone(),
                secret_access_key: secret_access_key.clone(),
                path_style: config.s3_path_style,
                key_prefix: config.key_prefix.clone(),
            };
            (settings, None)
        }
        None => {
            if routes::RESERVED_PATHS.contains(&config.s3_bucket.as_str()) {
                return Err(StartupError::Config(format!(
                    "bucket name {:?} collides with a server route; choose another",
                    config.s3_bucket
                )));
            }
            let root = data_dir.join("objects");
            let embedded = EmbeddedStore::open(
                &root,
                &config.s3_bucket,
                &secrets.embedded_store_access_key_id,
                &secrets.embedded_store_secret_access_key,
            )
            .map_err(io_error(&root))?;
            let settings = StoreSettings {
                // The server reaches its own store over loopback; devices through the public URL.
                endpoint: format!("http://{local_addr}"),
                public_endpoint: public_url.clone(),
                bucket: config.s3_bucket.clone(),
                region: config.s3_region.clone(),
                access_key_id: secrets.embedded_store_access_key_id.clone(),
                secret_access_key: secrets.embedded_store_secret_access_key.clone(),
                path_style: true,
                key_prefix: config.key_prefix.clone(),
            };
            (settings, Some(embedded))
        }
    };

    let registry_path = config
        .registry
        .clone()
        .unwrap_or_else(|| data_dir.join("registry.sqlite3"));
    let registry: Arc<dyn Registry> = Arc::new(SqliteRegistry::open(&registry_path)?);

    let jwt = JwtVerifier::load(&JwtConfig {
        hs256_secret: config.jwt_hs256_secret.clone(),
        jwks: config.jwt_jwks.clone(),
        issuer: config.jwt_issuer.clone(),
        audience: config.jwt_audience.clone(),
        // `sub` is the verifier's own default; passing it would read as a claim setting.
        user_claim: Some(config.jwt_user_claim.clone()).filter(|claim| claim != "sub"),
    })
    .await?;

    let (admin_secret, admin_secret_file) = match &config.admin_secret {
        Some(secret) if secret.len() >= 16 => (secret.clone(), None),
        Some(_) => {
            return Err(StartupError::Config(
                "--admin-secret must be at least 16 characters".into(),
            ));
        }
        None => (
            secrets.admin_secret.clone(),
            Some(data_dir.join("secrets.json")),
        ),
    };

    // First start: a default space, owned by the server admin.
    let now = clock.now_millis();
    registry
        .create_space(&SpaceRecord {
            id: config.default_space.clone(),
            created_by: auth::SERVER_ADMIN.into(),
            created_at: now,
        })
        .await?;
    let invite = auth::new_secret("tmi_");
    registry
        .create_invite(&InviteRecord {
            code_hash: auth::hash_secret(&invite),
            space: config.default_space.clone(),
            role: Role::Admin,
            expires_at: now + 24 * 3600 * 1000,
            max_uses: 1,
            uses: 0,
            created_by: auth::SERVER_ADMIN.into(),
        })
        .await?;

    let report = StartupReport {
        url: format!("{public_url}/"),
        admin_invite: Some(invite),
        admin_secret_file,
        embedded_store: embedded.is_some(),
    };
    let state = AppState::new(Shared {
        limiter: RateLimiter::new(config.auth_rate_per_minute),
        public_url,
        grant_ttl,
        registry,
        store: ObjectStore::new(&settings, embedded.is_some()),
        embedded,
        clock,
        server_key,
        admin_secret,
        jwt,
        events: EventHub::new(hex::encode(auth::random_bytes::<4>())),
        metrics: Metrics::default(),
        started: Instant::now(),
        config,
    });
    Ok((state, report))
}

/// Serves `listener` with `config` until `shutdown` resolves, then drains open requests.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    let local_addr = listener.local_addr().map_err(StartupError::Serve)?;
    let (state, report) = build(config, local_addr, Arc::new(SystemClock)).await?;
    print_report(&report);
    serve(listener, state, shutdown).await
}

/// Serves an already built state. When `shutdown` resolves, event streams end and open
/// requests are drained.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    let closing = state.clone();
    let shutdown = async move {
        shutdown.await;
        closing.events.close();
    };
    let app = routes::app(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(StartupError::Serve)
}

fn print_report(report: &StartupReport) {
    println!("Tidemark server is running.");
    println!("  Open:        {}", report.url);
    if let Some(invite) = &report.admin_invite {
        println!(
            "  Join as admin (one use, 24 h): {}#join={invite}",
            report.url
        );
    }
    match &report.admin_secret_file {
        Some(file) => println!(
            "  Admin page:  {}admin  (password: adminSecret in {})",
            report.url,
            file.display()
        ),
        None => println!(
            "  Admin page:  {}admin  (password: the configured admin secret)",
            report.url
        ),
    }
    println!(
        "  Objects:     {}",
        if report.embedded_store {
            "embedded store, on this origin"
        } else {
            "external S3 endpoint"
        }
    );
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

/// How long requests may take before they are answered 408.
pub fn request_timeout(config: &Config) -> Duration {
    Duration::from_secs(config.request_timeout_secs.max(1))
}
