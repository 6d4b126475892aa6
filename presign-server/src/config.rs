//! The server's configuration: one clap struct, every flag also readable from a
//! `TIDEMARK_…` environment variable. With no flags at all the server runs self-contained:
//! embedded object store, SQLite registry and keys under `./tidemark-data/`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Longest lifetime a presigned URL can have (S3's limit: 7 days).
pub const MAX_GRANT_TTL_SECS: u64 = 7 * 24 * 3600;

/// Configuration of `tidemark-server`.
#[derive(Clone, Debug, Parser)]
#[command(name = "tidemark-server", version, about)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "TIDEMARK_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,

    /// Folder for everything the server keeps: registry, keys, and the embedded store's objects.
    #[arg(long, env = "TIDEMARK_DATA_DIR", default_value = "tidemark-data")]
    pub data_dir: PathBuf,

    /// The origin devices reach this server at (default: `http://<listen address>`). Presigned
    /// URLs of the embedded store point here, so it must be what browsers use.
    #[arg(long, env = "TIDEMARK_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// S3 endpoint of external object storage, e.g. `https://s3.eu-west-1.amazonaws.com`.
    /// Without it the server runs its embedded object store.
    #[arg(long, env = "TIDEMARK_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// Endpoint put into presigned URLs when devices reach the store by another address than
    /// the server does (default: the endpoint itself).
    #[arg(long, env = "TIDEMARK_S3_PUBLIC_ENDPOINT")]
    pub s3_public_endpoint: Option<String>,

    /// Bucket holding the spaces. Must exist on external storage.
    #[arg(long, env = "TIDEMARK_S3_BUCKET", default_value = "tidemark")]
    pub s3_bucket: String,

    /// Region of the bucket (`auto` for R2).
    #[arg(long, env = "TIDEMARK_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// Access key id for external storage.
    #[arg(long, env = "TIDEMARK_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,

    /// Secret access key for external storage.
    #[arg(long, env = "TIDEMARK_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,

    /// Address the bucket as `endpoint/bucket/key` instead of `bucket.endpoint/key` (MinIO,
    /// Garage, most self-hosted stores).
    #[arg(long, env = "TIDEMARK_S3_PATH_STYLE", default_value_t = false)]
    pub s3_path_style: bool,

    /// Prefix for every key the server hands out, e.g. `tidemark/` to share a bucket.
    #[arg(long, env = "TIDEMARK_KEY_PREFIX", default_value = "")]
    pub key_prefix: String,

    /// Lifetime of grants and their presigned URLs, in seconds (at most 604800, 7 days).
    #[arg(long, env = "TIDEMARK_GRANT_TTL_SECS", default_value_t = 24 * 3600)]
    pub grant_ttl_secs: u64,

    /// Lifetime of session tokens, in seconds.
    #[arg(long, env = "TIDEMARK_SESSION_TTL_SECS", default_value_t = 30 * 24 * 3600)]
    pub session_ttl_secs: u64,

    /// Lifetime of device certificates, in seconds. Grants carry fresh ones.
    #[arg(long, env = "TIDEMARK_CERTIFICATE_TTL_SECS", default_value_t = 30 * 24 * 3600)]
    pub certificate_ttl_secs: u64,

    /// Browser origins allowed to call the API from another origin (comma-separated), e.g.
    /// `https://app.example.com`. The demo app is served on the same origin and needs none.
    #[arg(long, env = "TIDEMARK_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Registry location: a SQLite file path (default `<data-dir>/registry.sqlite3`).
    #[arg(long, env = "TIDEMARK_REGISTRY")]
    pub registry: Option<PathBuf>,

    /// Secret that opens an admin session and the `/admin` page (default: generated on first
    /// start and kept in `<data-dir>/secrets.json`).
    #[arg(long, env = "TIDEMARK_ADMIN_SECRET", hide_env_values = true)]
    pub admin_secret: Option<String>,

    /// Shared secret of the identity provider's HS256 JWTs.
    #[arg(long, env = "TIDEMARK_JWT_HS256_SECRET", hide_env_values = true)]
    pub jwt_hs256_secret: Option<String>,

    /// JWKS of the identity provider (RS256/ES256): a file path or an http(s) URL.
    #[arg(long, env = "TIDEMARK_JWT_JWKS")]
    pub jwt_jwks: Option<String>,

    /// Required `iss` of JWTs.
    #[arg(long, env = "TIDEMARK_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` of JWTs.
    #[arg(long, env = "TIDEMARK_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// JWT claim holding the user id.
    #[arg(long, env = "TIDEMARK_JWT_USER_CLAIM", default_value = "sub")]
    pub jwt_user_claim: String,

    /// Largest attachment (blob) accepted, in bytes.
    #[arg(long, env = "TIDEMARK_MAX_BLOB_BYTES", default_value_t = 1 << 30)]
    pub max_blob_bytes: u64,

    /// Requests per minute one address may make to the session and registration routes.
    #[arg(long, env = "TIDEMARK_AUTH_RATE_PER_MINUTE", default_value_t = 60)]
    pub auth_rate_per_minute: u32,

    /// Time limit of one API request, in seconds.
    #[arg(long, env = "TIDEMARK_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Folder of the web app to serve at `/` (default: `target/web-demo/`, the demo app as
    /// `cargo xtask demo` assembles it, when it holds an `index.html`).
    #[arg(long, env = "TIDEMARK_APP_DIR")]
    pub app_dir: Option<PathBuf>,

    /// Name of the space made on first start, for which an admin invite is printed.
    #[arg(long, env = "TIDEMARK_DEFAULT_SPACE", default_value = "default")]
    pub default_space: String,
}

impl Config {
    /// Grant lifetime, checked against S3's 7-day limit.
    pub fn grant_ttl(&self) -> Result<Duration, String> {
        if self.grant_ttl_secs == 0 || self.grant_ttl_secs > MAX_GRANT_TTL_SECS {
            return Err(format!(
                "grant lifetime must be 1 to {MAX_GRANT_TTL_SECS} seconds (7 days, the limit of presigned URLs), got {}",
                self.grant_ttl_secs
            ));
        }
        Ok(Duration::from_secs(self.grant_ttl_secs))
    }
}
