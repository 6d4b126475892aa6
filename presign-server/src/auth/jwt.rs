//! JWT sessions: verifies tokens issued by an app's own identity provider and
//! maps them to a user id.
//!
//! Two kinds of keys can be configured, alone or together:
//!
//! - a shared secret, which accepts `HS256` tokens;
//! - a JWKS document (a local file or an `http(s)://` URL), whose RSA keys
//!   accept `RS256` tokens and whose EC P-256 keys accept `ES256` tokens.
//!
//! The algorithm is always decided by the key, never by the token: a token
//! whose header names an algorithm that no configured key allows is refused
//! before any signature check, `alg: none` included, and the symmetric (`oct`)
//! keys of a JWKS are ignored. Time checks (`exp` required, `nbf` optional,
//! 60 s of leeway) use the clock handed to [`JwtVerifier::verify`], so they
//! never depend on the system clock; the issuer and audience are checked when
//! configured. A JWKS from a URL is fetched at load and fetched again when a
//! token names a key it does not hold, at most once per minute however many
//! requests race for it.

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use tokio::sync::{Mutex, RwLock};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 60;
/// Least time between two fetches of a JWKS URL caused by unknown keys.
const REFETCH_INTERVAL_SECS: u64 = 60;
/// Longest token looked at; anything longer is malformed.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Time limit of one JWKS fetch, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Time limit to connect for one JWKS fetch.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Characters of token-supplied text (an `alg`, a `kid`) echoed in an error.
const MAX_ECHO_CHARS: usize = 64;
/// Smallest and largest RSA modulus accepted, in bits.
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 4096;
/// Largest RSA public exponent accepted (the RSA backend's own limit).
const RSA_MAX_EXPONENT: u64 = (1 << 33) - 1;

/// Configuration of JWT sessions (filled from the server's CLI flags by the caller).
#[derive(Clone, Debug, Default)]
pub struct JwtConfig {
    /// Shared secret of `HS256` tokens; `HS256` is refused when None.
    pub hs256_secret: Option<String>,
    /// A file path or an http(s) URL of a JWKS document.
    pub jwks: Option<String>,
    /// Required value of the `iss` claim; not checked when None.
    pub issuer: Option<String>,
    /// Value the `aud` claim (a string or an array) must hold; not checked when None.
    pub audience: Option<String>,
    /// Claim holding the user id; `sub` when None.
    pub user_claim: Option<String>,
}

/// Failure to set JWT sessions up from a [`JwtConfig`].
#[derive(Debug, thiserror::Error)]
pub enum JwtSetupError {
    /// A setting was given as an empty string.
    #[error("jwt setting `{setting}` is set but empty")]
    EmptySetting {
        /// Name of the setting.
        setting: &'static str,
    },
    /// The JWKS file could not be read.
    #[error("cannot read the jwks file {path}: {source}")]
    ReadJwksFile {
        /// Path of the file.
        path: String,
        /// What reading it gave.
        source: std::io::Error,
    },
    /// The HTTP client for the JWKS URL could not be built.
    #[error("cannot build an http client for the jwks url: {reason}")]
    HttpClient {
        /// Why.
        reason: String,
    },
    /// The JWKS URL could not be fetched.
    #[error("cannot fetch the jwks from {url}: {reason}")]
    FetchJwks {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The JWKS document is not a JSON object with a `keys` array of objects.
    #[error("malformed jwks from {origin}: {reason}")]
    MalformedJwks {
        /// File path or URL of the document.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// An RSA or EC P-256 signing key of the JWKS cannot be used.
    #[error("unusable key {key} in the jwks from {origin}: {reason}")]
    UnusableKey {
        /// File path or URL of the document.
        origin: String,
        /// The key's `kid`, or its position in `keys`.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The JWKS holds no key this server can verify with.
    #[error("the jwks from {origin} holds no rs256 (rsa) or es256 (ec p-256) signing key")]
    NoUsableKeys {
        /// File path or URL of the document.
        origin: String,
    },
}

/// Why a token was refused. [`JwtError::code`] gives a stable code for it.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The token is not a well-formed JWT, or its claims are not well formed.
    #[error("malformed token: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The signature does not verify with any key that may have made it.
    #[error("token signature does not verify")]
    BadSignature,
    /// The `exp` claim is past.
    #[error("token has expired")]
    Expired,
    /// The `nbf` claim is still to come.
    #[error("token is not valid yet")]
    NotYetValid,
    /// The `iss` claim is missing or not the configured issuer.
    #[error("token issuer is not the expected one")]
    WrongIssuer,
    /// The `aud` claim is missing or does not hold the configured audience.
    #[error("token audience does not include this server")]
    WrongAudience,
    /// No configured key matches the token's algorithm and `kid`.
    #[error("no key matches the token (kid {kid})")]
    UnknownKey {
        /// The token's `kid` (shortened), or `none`.
        kid: String,
    },
    /// The user id claim is missing, empty, or not a string or an integer.
    #[error("token has no usable `{claim}` claim (a non-empty string or an integer)")]
    MissingClaim {
        /// Name of the claim.
        claim: String,
    },
    /// The token's algorithm is not one that a configured key accepts.
    #[error("token algorithm {alg} is not accepted")]
    UnsupportedAlgorithm {
        /// The header's `alg` (shortened).
        alg: String,
    },
}

impl JwtError {
    /// Stable code: "jwt.malformed", "jwt.bad_signature", "jwt.expired", "jwt.not_yet_valid",
    /// "jwt.wrong_issuer", "jwt.wrong_audience", "jwt.unknown_key", "jwt.missing_claim",
    /// "jwt.unsupported_algorithm".
    pub fn code(&self) -> &'static str {
        match self {
            JwtError::Malformed { .. } => "jwt.malformed",
            JwtError::BadSignature => "jwt.bad_signature",
            JwtError::Expired => "jwt.expired",
            JwtError::NotYetValid => "jwt.not_yet_valid",
            JwtError::WrongIssuer => "jwt.wrong_issuer",
            JwtError::WrongAudience => "jwt.wrong_audience",
            JwtError::UnknownKey { .. } => "jwt.unknown_key",
            JwtError::MissingClaim { .. } => "jwt.missing_claim",
            JwtError::UnsupportedAlgorithm { .. } => "jwt.unsupported_algorithm",
        }
    }

    fn malformed(reason: impl Into<String>) -> Self {
        JwtError::Malformed {
            reason: reason.into(),
        }
    }
}

/// Verifies JWTs against the configured keys and returns their user id.
pub struct JwtVerifier {
    hs256: Option<DecodingKey>,
    jwks: Option<Jwks>,
    issuer: Option<String>,
    audience: Option<String>,
    user_claim: String,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("hs256", &self.hs256.as_ref().map(|_| "<secret>"))
            .field("jwks", &self.jwks)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("user_claim", &self.user_claim)
            .finish()
    }
}

impl JwtVerifier {
    /// Ok(None) when neither a secret nor a JWKS is configured (JWT sessions off).
    pub async fn load(config: &JwtConfig) -> Result<Option<JwtVerifier>, JwtSetupError> {
        let secret = non_empty(config.hs256_secret.as_deref(), "hs256 secret")?;
        let jwks = non_empty(config.jwks.as_deref(), "jwks")?;
        let issuer = non_empty(config.issuer.as_deref(), "issuer")?;
        let audience = non_empty(config.audience.as_deref(), "audience")?;
        let user_claim = non_empty(config.user_claim.as_deref(), "user claim")?;

        if secret.is_none() && jwks.is_none() {
            if issuer.is_some() || audience.is_some() || user_claim.is_some() {
                tracing::warn!(
                    "jwt claim settings are given but no jwt key is: jwt sessions are off"
                );
            }
            return Ok(None);
        }

        let hs256 = secret.map(|secret| {
            if secret.len() < 32 {
                tracing::warn!("the jwt hs256 secret is shorter than 32 bytes");
            }
            DecodingKey::from_secret(secret.as_bytes())
        });
        let jwks = match jwks {
            Some(location) => Some(Jwks::load(location).await?),
            None => None,
        };

        Ok(Some(JwtVerifier {
            hs256,
            jwks,
            issuer: issuer.map(str::to_owned),
            audience: audience.map(str::to_owned),
            user_claim: user_claim.unwrap_or("sub").to_owned(),
        }))
    }

    /// The user id from a valid token.
    pub async fn verify(&self, token: &str, now_unix_secs: u64) -> Result<String, JwtError> {
        let token = parse_token(token)?;

        match token.alg {
            SigAlg::Hs256 => {
                let Some(secret) = &self.hs256 else {
                    return Err(unsupported(token.alg.name()));
                };
                match check_signature(&token, secret) {
                    Ok(()) => {}
                    Err(Refusal::WrongKey) => return Err(JwtError::BadSignature),
                    Err(Refusal::Final(e)) => return Err(e),
                }
            }
            SigAlg::Rs256 | SigAlg::Es256 => {
                let Some(jwks) = &self.jwks else {
                    return Err(unsupported(token.alg.name()));
                };
                jwks.check(&token, now_unix_secs).await?;
            }
        }

        // Only now that the signature holds are the claims looked at.
        let claims = URL_SAFE_NO_PAD
            .decode(token.payload)
            .map_err(|_| JwtError::malformed("the claims are not base64url"))?;
        let claims: Value = serde_json::from_slice(&claims)
            .map_err(|_| JwtError::malformed("the claims are not json"))?;
        self.check_claims(&claims, now_unix_secs)
    }

    fn check_claims(&self, claims: &Value, now: u64) -> Result<String, JwtError> {
        let Value::Object(claims) = claims else {
            return Err(JwtError::malformed("the claims are not a json object"));
        };

        let Some(exp) = numeric_date(claims, "exp")? else {
            return Err(JwtError::malformed("the token has no `exp` claim"));
        };
        if now >= exp.saturating_add(LEEWAY_SECS) {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = numeric_date(claims, "nbf")?
            && nbf > now.saturating_add(LEEWAY_SECS)
        {
            return Err(JwtError::NotYetValid);
        }

        if let Some(issuer) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(JwtError::WrongIssuer);
        }
        if let Some(audience) = &self.audience {
            let holds = match claims.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => auds
                    .iter()
                    .any(|aud| aud.as_str() == Some(audience.as_str())),
                _ => false,
            };
            if !holds {
                return Err(JwtError::WrongAudience);
            }
        }

        let user = match claims.get(&self.user_claim) {
            Some(Value::String(user)) if !user.is_empty() => Some(user.clone()),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(|n| n.to_string())
                .or_else(|| n.as_i64().map(|n| n.to_string())),
            _ => None,
        };
        user.ok_or_else(|| JwtError::MissingClaim {
            claim: self.user_claim.clone(),
        })
    }
}

/// A setting that is absent, or present and not empty.
fn non_empty<'a>(
    value: Option<&'a str>,
    setting: &'static str,
) -> Result<Option<&'a str>, JwtSetupError> {
    match value {
        Some(v) if v.trim().is_empty() => Err(JwtSetupError::EmptySetting { setting }),
        other => Ok(other),
    }
}

/// A NumericDate claim in whole seconds, rounded up; None when absent.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(secs), _) => Ok(Some(secs)),
            // Negative or fractional: `as` saturates (negative gives 0).
            (None, Some(secs)) => Ok(Some(secs.ceil() as u64)),
            (None, None) => Err(JwtError::malformed(format!("`{name}` is not a number"))),
        },
        Some(_) => Err(JwtError::malformed(format!("`{name}` is not a number"))),
    }
}

/// The signature algorithms this module knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SigAlg {
    Hs256,
    Rs256,
    Es256,
}

impl SigAlg {
    fn jwt(self) -> Algorithm {
        match self {
            SigAlg::Hs256 => Algorithm::HS256,
            SigAlg::Rs256 => Algorithm::RS256,
            SigAlg::Es256 => Algorithm::ES256,
        }
    }

    fn name(self) -> &'static str {
        match self {
            SigAlg::Hs256 => "HS256",
            SigAlg::Rs256 => "RS256",
            SigAlg::Es256 => "ES256",
        }
    }
}

/// A token cut into its parts, with what its header says; nothing of it is
/// trusted yet.
struct Token<'a> {
    alg: SigAlg,
    kid: Option<String>,
    /// `header.payload`, what the signature signs.
    signed: &'a str,
    /// The claims, base64url.
    payload: &'a str,
    /// The signature, base64url.
    signature: &'a str,
}

fn parse_token(token: &str) -> Result<Token<'_>, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::malformed("the token is too long"));
    }
    let Some((signed, signature)) = token.rsplit_once('.') else {
        return Err(JwtError::malformed("a jwt has three dot-separated parts"));
    };
    let Some((header, payload)) = signed.split_once('.') else {
        return Err(JwtError::malformed("a jwt has three dot-separated parts"));
    };
    if payload.contains('.') {
        return Err(JwtError::malformed("a jwt has three dot-separated parts"));
    }
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| JwtError::malformed("the header is not base64url"))?;
    let header: Value = serde_json::from_slice(&header)
        .map_err(|_| JwtError::malformed("the header is not json"))?;
    let Value::Object(header) = header else {
        return Err(JwtError::malformed("the header is not a json object"));
    };

    let alg = match header.get("alg") {
        Some(Value::String(alg)) => match alg.as_str() {
            "HS256" => SigAlg::Hs256,
            "RS256" => SigAlg::Rs256,
            "ES256" => SigAlg::Es256,
            other => return Err(unsupported(other)),
        },
        _ => return Err(JwtError::malformed("the header has no `alg` string")),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(JwtError::malformed("the header's `kid` is not a string")),
    };
    if header.contains_key("crit") {
        return Err(JwtError::malformed(
            "critical header parameters are not supported",
        ));
    }
    Ok(Token {
        alg,
        kid,
        signed,
        payload,
        signature,
    })
}

fn unsupported(alg: &str) -> JwtError {
    JwtError::UnsupportedAlgorithm { alg: echo(alg) }
}

/// Token-supplied text made safe to show: shortened and escaped.
fn echo(text: &str) -> String {
    let mut shown: String = text
        .chars()
        .take(MAX_ECHO_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(MAX_ECHO_CHARS).is_some() {
        shown.push('…');
    }
    shown
}

/// Outcome of one key against a token.
enum Refusal {
    /// The signature does not verify with this key; another key may do.
    WrongKey,
    /// The token is refused whatever the key.
    Final(JwtError),
}

/// Checks the token's signature with `key`, used with the algorithm the
/// header named: the callers only pair a header algorithm with a key of that
/// algorithm, so the key decides. Only the signature is checked here; the
/// claims (time, issuer, audience) are checked by
/// [`JwtVerifier::check_claims`] against the given clock, never by
/// jsonwebtoken, whose claim checks read the system clock and whose claim
/// parser refuses some valid claims (a `sub` that is an array).
fn check_signature(token: &Token<'_>, key: &DecodingKey) -> Result<(), Refusal> {
    match jsonwebtoken::crypto::verify(
        token.signature,
        token.signed.as_bytes(),
        key,
        token.alg.jwt(),
    ) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Refusal::WrongKey),
        Err(e) => Err(match e.kind() {
            ErrorKind::Base64(_) => {
                Refusal::Final(JwtError::malformed("the signature is not base64url"))
            }
            // The key cannot be used with this algorithm (checked at load,
            // so not expected): another key may do.
            _ => Refusal::WrongKey,
        }),
    }
}

/// One verification key of a JWKS.
struct PublicKey {
    kid: Option<String>,
    alg: SigAlg,
    key: DecodingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The keys of one version of a JWKS.
#[derive(Debug)]
struct KeySet {
    /// Bumped on each successful refetch.
    generation: u64,
    keys: Vec<PublicKey>,
}

/// Where a JWKS comes from.
enum JwksSource {
    File(PathBuf),
    Url {
        url: String,
        client: reqwest::Client,
    },
}

impl JwksSource {
    fn origin(&self) -> String {
        match self {
            JwksSource::File(path) => path.display().to_string(),
            JwksSource::Url { url, .. } => url.clone(),
        }
    }
}

/// A JWKS and, for a URL, what refetching it needs.
struct Jwks {
    source: JwksSource,
    keys: RwLock<Arc<KeySet>>,
    /// Time (from the callers' clock) of the last refetch; held during a
    /// refetch so that concurrent verifiers wait for it instead of fetching.
    refetch: Mutex<Option<u64>>,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwks")
            .field("source", &self.source.origin())
            .finish_non_exhaustive()
    }
}

enum Lookup {
    Verified,
    NoCandidate,
    Refused(JwtError),
}

impl Jwks {
    async fn load(location: &str) -> Result<Self, JwtSetupError> {
        let is_url = location
            .get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
            || location
                .get(..7)
                .is_some_and(|p| p.eq_ignore_ascii_case("http://"));
        let source = if is_url {
            let client = reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                .connect_timeout(CONNECT_TIMEOUT)
                .build()
                .map_err(|e| JwtSetupError::HttpClient {
                    reason: error_chain(&e),
                })?;
            JwksSource::Url {
                url: location.to_owned(),
                client,
            }
        } else {
            JwksSource::File(PathBuf::from(location))
        };
        let keys = read_key_set(&source).await?;
        tracing::info!(
            jwks = %source.origin(),
            keys = keys.len(),
            "loaded the jwks of jwt sessions"
        );
        Ok(Jwks {
            source,
            keys: RwLock::new(Arc::new(KeySet {
                generation: 0,
                keys,
            })),
            refetch: Mutex::new(None),
        })
    }

    /// Checks the token's signature with the keys that may have made it.
    async fn check(&self, token: &Token<'_>, now: u64) -> Result<(), JwtError> {
        let seen = Arc::clone(&*self.keys.read().await);
        let mut outcome = try_keys(&seen, token);
        if matches!(outcome, Lookup::NoCandidate)
            && let Some(fresh) = self.refetch_after_miss(seen.generation, now).await
        {
            outcome = try_keys(&fresh, token);
        }
        match outcome {
            Lookup::Verified => Ok(()),
            Lookup::Refused(e) => Err(e),
            Lookup::NoCandidate => Err(JwtError::UnknownKey {
                kid: token.kid.as_deref().map_or_else(|| "none".to_owned(), echo),
            }),
        }
    }

    /// A newer key set than generation `seen`, fetched now unless a fetch
    /// already happened meanwhile or less than a minute ago; None when there
    /// is none (a file, the minute not past, or the fetch failed).
    async fn refetch_after_miss(&self, seen: u64, now: u64) -> Option<Arc<KeySet>> {
        if !matches!(self.source, JwksSource::Url { .. }) {
            return None;
        }
        let mut last = self.refetch.lock().await;
        let current = Arc::clone(&*self.keys.read().await);
        if current.generation != seen {
            return Some(current);
        }
        // abs_diff: a clock that jumps back does not stop refetches for long.
        if let Some(last) = *last
            && now.abs_diff(last) < REFETCH_INTERVAL_SECS
        {
            return None;
        }
        *last = Some(now);
        match read_key_set(&self.source).await {
            Ok(keys) => {
                tracing::info!(
                    jwks = %self.source.origin(),
                    keys = keys.len(),
                    "refetched the jwks after a token named an unknown key"
                );
                let fresh = Arc::new(KeySet {
                    generation: current.generation.wrapping_add(1),
                    keys,
                });
                *self.keys.write().await = Arc::clone(&fresh);
                Some(fresh)
            }
            Err(e) => {
                tracing::warn!(error = %e, "jwks refetch failed; keeping the previous keys");
                None
            }
        }
    }
}

/// Tries the keys that may have signed the token: those of its algorithm
/// with its `kid`; failing those (or without a `kid`), those of its
/// algorithm without a `kid`, or all of them when the token has no `kid`.
fn try_keys(set: &KeySet, token: &Token<'_>) -> Lookup {
    let (alg, kid) = (token.alg, token.kid.as_deref());
    let of_alg = || set.keys.iter().filter(move |k| k.alg == alg);
    let mut candidates: Vec<&PublicKey> = match kid {
        Some(kid) => of_alg().filter(|k| k.kid.as_deref() == Some(kid)).collect(),
        None => of_alg().collect(),
    };
    if candidates.is_empty() && kid.is_some() {
        candidates = of_alg().filter(|k| k.kid.is_none()).collect();
    }
    if candidates.is_empty() {
        return Lookup::NoCandidate;
    }
    for candidate in candidates {
        match check_signature(token, &candidate.key) {
            Ok(()) => return Lookup::Verified,
            Err(Refusal::WrongKey) => continue,
            Err(Refusal::Final(e)) => return Lookup::Refused(e),
        }
    }
    Lookup::Refused(JwtError::BadSignature)
}

async fn read_key_set(source: &JwksSource) -> Result<Vec<PublicKey>, JwtSetupError> {
    let body = match source {
        JwksSource::File(path) => {
            tokio::fs::read(path)
                .await
                .map_err(|source| JwtSetupError::ReadJwksFile {
                    path: path.display().to_string(),
                    source,
                })?
        }
        JwksSource::Url { url, client } => {
            fetch(client, url)
                .await
                .map_err(|reason| JwtSetupError::FetchJwks {
                    url: url.clone(),
                    reason,
                })?
        }
    };
    parse_jwks(&body, &source.origin())
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let mut response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| error_chain(&e))?;
    if !response.status().is_success() {
        return Err(format!("http status {}", response.status()));
    }
    let too_large = || format!("the document is larger than {MAX_JWKS_BYTES} bytes");
    if response
        .content_length()
        .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        if body.len().saturating_add(chunk.len()) > MAX_JWKS_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its sources, `: `-separated.
fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn parse_jwks(body: &[u8], origin: &str) -> Result<Vec<PublicKey>, JwtSetupError> {
    let malformed = |reason: &str| JwtSetupError::MalformedJwks {
        origin: origin.to_owned(),
        reason: reason.to_owned(),
    };
    let document: Value = serde_json::from_slice(body).map_err(|e| malformed(&e.to_string()))?;
    let Some(Value::Array(entries)) = document.get("keys") else {
        return Err(malformed("no `keys` array"));
    };

    let mut keys = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let Value::Object(jwk) = entry else {
            return Err(malformed(&format!("key #{index} is not a json object")));
        };
        let kid = match jwk.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => {
                return Err(malformed(&format!(
                    "the `kid` of key #{index} is not a string"
                )));
            }
        };
        let name = kid
            .as_deref()
            .map_or_else(|| format!("#{index}"), |kid| format!("{kid:?}"));
        let unusable = |reason: String| JwtSetupError::UnusableKey {
            origin: origin.to_owned(),
            key: name.clone(),
            reason,
        };
        let field = |field: &str| jwk.get(field).and_then(Value::as_str);

        if field("use").is_some_and(|u| u != "sig") {
            tracing::debug!(key = %name, "skipping a jwks key not meant for signatures");
            continue;
        }
        if let Some(ops) = jwk.get("key_ops").and_then(Value::as_array)
            && !ops.iter().any(|op| op.as_str() == Some("verify"))
        {
            tracing::debug!(key = %name, "skipping a jwks key not meant for verifying");
            continue;
        }
        let alg = field("alg");
        let (sig_alg, key) = match (field("kty"), field("crv")) {
            (Some("RSA"), _) if alg.is_none_or(|a| a == "RS256") => {
                let (Some(n), Some(e)) = (field("n"), field("e")) else {
                    return Err(unusable("an rsa key needs `n` and `e` strings".into()));
                };
                let n = b64url(n).ok_or_else(|| unusable("`n` is not base64url".into()))?;
                let e = b64url(e).ok_or_else(|| unusable("`e` is not base64url".into()))?;
                check_rsa(&n, &e).map_err(unusable)?;
                (SigAlg::Rs256, DecodingKey::from_rsa_raw_components(&n, &e))
            }
            (Some("EC"), Some("P-256")) if alg.is_none_or(|a| a == "ES256") => {
                let (Some(x), Some(y)) = (field("x"), field("y")) else {
                    return Err(unusable("an ec key needs `x` and `y` strings".into()));
                };
                let key = ec_p256_key(x, y).map_err(unusable)?;
                (SigAlg::Es256, key)
            }
            (kty, crv) => {
                tracing::debug!(
                    key = %name,
                    kty = kty.unwrap_or("?"),
                    crv = crv.unwrap_or("-"),
                    alg = alg.unwrap_or("-"),
                    "skipping a jwks key that is not rs256 or es256"
                );
                continue;
            }
        };
        keys.push(PublicKey {
            kid,
            alg: sig_alg,
            key,
        });
    }

    if keys.is_empty() {
        return Err(JwtSetupError::NoUsableKeys {
            origin: origin.to_owned(),
        });
    }
    Ok(keys)
}

/// Base64url, with or without padding.
fn b64url(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// The checks the RSA backend makes at each verification, made once at load
/// so that a bad key is a setup error, plus a floor on the modulus size.
fn check_rsa(n: &[u8], e: &[u8]) -> Result<(), String> {
    let n = strip_leading_zeros(n);
    let bits = match n.first() {
        Some(&top) => (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
        None => 0,
    };
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(format!(
            "the modulus has {bits} bits, not {RSA_MIN_BITS} to {RSA_MAX_BITS}"
        ));
    }
    if n.last().is_some_and(|last| last % 2 == 0) {
        return Err("the modulus is even".into());
    }
    let e = strip_leading_zeros(e);
    if e.len() > 8 {
        return Err("the exponent is too large".into());
    }
    let exponent = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if !(3..=RSA_MAX_EXPONENT).contains(&exponent) || exponent % 2 == 0 {
        return Err(format!(
            "the exponent {exponent} is not an odd number from 3 to {RSA_MAX_EXPONENT}"
        ));
    }
    Ok(())
}

/// An ES256 key from its coordinates, checked to be a point of P-256.
fn ec_p256_key(x: &str, y: &str) -> Result<DecodingKey, String> {
    let (Some(xb), Some(yb)) = (b64url(x), b64url(y)) else {
        return Err("`x` or `y` is not base64url".into());
    };
    if xb.len() != 32 || yb.len() != 32 {
        return Err("p-256 coordinates are 32 bytes each".into());
    }
    let key = DecodingKey::from_ec_components(x.trim_end_matches('='), y.trim_end_matches('='))
        .map_err(|e| e.to_string())?;
    // The backend parses the point when it builds a verifier: a dummy
    // verification tells a bad point (an error) from a fine one (false).
    let dummy_signature = URL_SAFE_NO_PAD.encode([1u8; 64]);
    match jsonwebtoken::crypto::verify(&dummy_signature, b"probe", &key, Algorithm::ES256) {
        Ok(_) => Ok(key),
        Err(_) => Err("the point is not on the p-256 curve".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Mutex as StdMutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;
    const SECRET: &str = "test-secret-of-more-than-thirty-two-bytes";

    // Fixed test keys, made once with `openssl genpkey`; their public halves
    // are in the JWK parameters below.
    const RSA1_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEuwIBADANBgkqhkiG9w0BAQEFAASCBKUwggShAgEAAoIBAQDViIyedNsv4iHl
0Zi3qU09Mwox9zfSSy0sxRE4rnyjitv9vRCdQhDVtY0MmtG07VHtYNP0y/vJjYvH
xWua32iZyShnSmi/6ksx22AFlnqztLSPLiM0GCRKqTuWbmBdy0Vn8as/o4DN2bB6
bG1rW3HmPKHV/nI4154HrclGi/pDTjKot8UoyTD8Gv/6bfAIzQ8JFVv7jFRA/S2E
JdeK+sNKAkNBRo68/at71uHyJP8RlWcGK0beOwLyhKzDqwJrsSIem0D3XfYpmMgP
ASX90RW963iWR9W90N+u7fpJntV2b40GfL2YmM9ItH66LHsYGgWrGcGQqQXYUjRN
rbyLYEFpAgMBAAECgf8h92v1HhNN7iqvHO88R9y6X3JN8i/9NWnr/FCWUA68ZtpC
V98FlqdsOth8GpZBI0YsGNdlmUX0ENcdGq3YkVvLGrR9R/VFPJwrQ+TXqV9NGkbz
1P9vO700zdMstykrUI3kevBfIOoxm5naiiv6EoOLuKeT4rsPwXWMikMWki2go1qq
YMzC8/dD5c+AVkx6zdyCWKNcut/52VS5Ifp0Iipv1zHY+9iD5rs3uc7dbaU93W9Q
rdQA+YQ81mpZzBYtIn0APmmcG7JCY+NRGA7TraXUMhbz+9PdvDftGOEMYAZx8LXK
ZP6KB/mSDK0j+BxhCRoWgeYnN4BTsleM3h++n0kCgYEA8W3NXfL7PK61BSKtNm+8
PdONOQEG5NL6JVqUFpHFoSO0VE+VYm0kTYHOUQDfnnU4EV7haF96lTZGDCTs2jtq
E5a8yguwl+RoOHvjY12ppzwA1tLISeICTqT8CxVQku+dCWrSSEDtHg/TxeCvTcoD
f4t4QwgaNTSn1KtSoaTlGTUCgYEA4mu/UFRYkuMJTTO5mZIh4b/tMQj4mAuDX17i
NiCrIKjiPFeZQZ9SZ1tk9JtEQ5o0D7gJDj2iQ+M63v/k988xESua55nSj0yttsld
EE6w2KJVUNm8/wHUUjUDksk7/GkBCVD3mQiUjah7+8I44950l4IhZtKRr4jtEOXX
CnppgeUCgYEA22glVfcnObuwSQ19itY6pZlnY2G6iSPvLxlFMcmiaFIRZPm6UevM
LSAFhvobP19Z5/dpNDhpJ8deG1VHZwDN4yV/RsMe5rstt/9m4/vP3WqbfJ+sY/Cg
liY75DqnshFOjqtklUNj+oj5tX/+8NvhF/2A+rIXVzkWOSDFhJ9dkO0CgYAp9K1O
xVJkZY2jsKIDwwBkRJw/Kdpm0jtVwM9KGGOdea3yYIkVj+BFJrpeWScdH8Xl48RJ
z0HyMnkGOYTEJrCA7gOWRvqtcxf9dvK3wt0iR3JnuPE8j6o4UXqICKIE87AtecNn
qB9e4ImY7TR9hQs1x/dIhlxYmpbTOsPOPUCvwQKBgDcTZ40XDZxHVy6KZ1rTxmRL
8qqLCMnck0rps85Sv3URDCgzzzjNO+G0PiJIGPy5YT4PYQneI4Heyq9yGWd9sozL
EASilZbm8tcpef9bFEzIsFGOy14x5KlTH5GQ0Gpb1egWb1HCSGAO6NBWfLNrhi/1
U0k+gwS5xh7OPb9VuB1E
-----END PRIVATE KEY-----
";
    const RSA1_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1YiMnnTbL+Ih5dGYt6lN
PTMKMfc30kstLMUROK58o4rb/b0QnUIQ1bWNDJrRtO1R7WDT9Mv7yY2Lx8Vrmt9o
mckoZ0pov+pLMdtgBZZ6s7S0jy4jNBgkSqk7lm5gXctFZ/GrP6OAzdmwemxta1tx
5jyh1f5yONeeB63JRov6Q04yqLfFKMkw/Br/+m3wCM0PCRVb+4xUQP0thCXXivrD
SgJDQUaOvP2re9bh8iT/EZVnBitG3jsC8oSsw6sCa7EiHptA9132KZjIDwEl/dEV
vet4lkfVvdDfru36SZ7Vdm+NBny9mJjPSLR+uix7GBoFqxnBkKkF2FI0Ta28i2BB
aQIDAQAB
-----END PUBLIC KEY-----
";
    const RSA1_N: &str = "1YiMnnTbL-Ih5dGYt6lNPTMKMfc30kstLMUROK58o4rb_b0QnUIQ1bWNDJrRtO1R7WDT9Mv7yY2Lx8Vrmt9omckoZ0pov-pLMdtgBZZ6s7S0jy4jNBgkSqk7lm5gXctFZ_GrP6OAzdmwemxta1tx5jyh1f5yONeeB63JRov6Q04yqLfFKMkw_Br_-m3wCM0PCRVb-4xUQP0thCXXivrDSgJDQUaOvP2re9bh8iT_EZVnBitG3jsC8oSsw6sCa7EiHptA9132KZjIDwEl_dEVvet4lkfVvdDfru36SZ7Vdm-NBny9mJjPSLR-uix7GBoFqxnBkKkF2FI0Ta28i2BBaQ";
    const RSA2_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC/kqTvaxcIGv41
pup7Ja7zPtNziI+1BDkQ3670soVuBsr8iVq6xU+S6RnqbhByO6pn55K1TMWpc2ki
HfOh2MBBVl0XMQua7BQfCUDO/Vt29c49wYxe3yUVAV+TRgNkEJIpjswmdTy9TllU
f3jbZZfks2Ke1p24dNVfRPz056XQGLb2AcwCM2TXkOEHSEDlOBNYDJsIdi/HmNuQ
WeRDfeNwh8AnPHoYnGR+NwvRKIXCJNgN488sKgkT4LVA5EunwH1FAYYTtul2SH1q
WxbXmbeWWFR/ZpQBLZ/vebXQ4B0bom1h0ZGqLwHDA40CXwgsl5IDBYOCX1lD5qBQ
FYODd3/5AgMBAAECggEAEHj4UDLt489IYQ4ldunWWYmjLnnFW5wNmR8WwOkx0nRo
k17vK4SoUzpSdWc56EyrmiweIBNGIswu89VN+/Jyk5usvQAFXrCiiUmnJjVAXmID
9ij0nDrFSkFYOcZpJ7tKCiNCeCMYEjIQudSNLJZXgX2QQxaysKfxKfQ5aQibKCG1
cU4OFewiYioYPhqLvyABkDcHN3hHFLcIWS9LPgDk+GrSkKbeoKCAkUlExn8N4qvD
M0fzxQCP91TsbmNH9/4ZAQUqi34qlkXmXW2W2BQhPf/AoQDSms6r3/zLneTBGwDC
ybUGL53SMR6BfFCKZNbqMcWcx9v2GSK46zE97WDewQKBgQD+7wOhV7YP2xhAf21q
vfnelvHgG2Oa2CRLyqZxISFHxxWHmZ8WiJ9MzBwCx1GOJxtyt9ORmwBQZCMD9J3j
JDXxnXFzftjdlAZ8MEQ7vM/oc08n2IQ7KEv/BPAupeiOU2PhOJ8Qw6rKHxhD4ML6
xLW03CuMoDDIQ5kjU0sayXTioQKBgQDAX8hZtUHowEHGzm/2OrKS04tOABiQjUeP
3VcHdKBR9oZVyZgyiLm/YZ0yLzk+07aTEbWnc4GDW8Knr+PEZDzxVytsVE3acBXu
2+VNzbV/28sItNsHN8qTp70M448+NBAst6tHkyqhSV8WzgsAaEnZCDIx9t/3Sj7V
ytilO072WQKBgQDEkb2F2aDbZv+zM85FgQi61j7Yo6XQzppmCnL+RiJoOxzhutVN
Rbk3OSbcCZ5b8tGaSh4LZq3+TsglE6fubYxeqhzBhmxnpey+M2VZfoP9Y3QEcFG9
X5wBnmgoP+sqWyhnkAYuogD96q4GILeXLrhBJYc63oXe1SiucVo25GGJIQKBgGAE
rtSP0wjgRTR8v4dv/seoTOSuyZQE4E4fVRwEiyy91oklKRE4CzZJ+5Mb3P/N3lgD
w96DmYY+G6dk9FOHEKAJOURFw+IeheQF36r43Pmnc+yxkI1GvJb8ZzDyuAF9LQGU
3ynHe8SrAYo5Z2ZZp1pra9pidaFRbpF5QK8gLiZpAoGBAKSWBK59AtKa47ju5BTQ
hiWOKfrSjTDdoMm/iNhAV1yxoBJZC91rBAcq08+A2ApLbkNs8IcZ7qn7ktV4Mcxc
rEiinEpRYT8Jc/RR8Z8+R1oi3TL9gaFm6Da/Ctcy0WQEKc4gYfmdk3KPXcAxMvdo
hlMazK9KUldDiq4intJYNfxi
-----END PRIVATE KEY-----
";
    const RSA2_N: &str = "v5Kk72sXCBr-NabqeyWu8z7Tc4iPtQQ5EN-u9LKFbgbK_IlausVPkukZ6m4QcjuqZ-eStUzFqXNpIh3zodjAQVZdFzELmuwUHwlAzv1bdvXOPcGMXt8lFQFfk0YDZBCSKY7MJnU8vU5ZVH9422WX5LNintaduHTVX0T89Oel0Bi29gHMAjNk15DhB0hA5TgTWAybCHYvx5jbkFnkQ33jcIfAJzx6GJxkfjcL0SiFwiTYDePPLCoJE-C1QORLp8B9RQGGE7bpdkh9alsW15m3llhUf2aUAS2f73m10OAdG6JtYdGRqi8BwwONAl8ILJeSAwWDgl9ZQ-agUBWDg3d_-Q";
    const RSA_E: &str = "AQAB";
    const EC_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgj4A7/7AO+s6ykWPe
oZIsGRYcFf8e1z1fvrF2e+WsPs2hRANCAATurkQSXpQgoAGW+mc4k6cujclm50ie
c8531D/bRVXFHB5H1DC321lCkqQEEm1VX3+lcSJllTAFh3gAHyXOfDdn
-----END PRIVATE KEY-----
";
    const EC_X: &str = "7q5EEl6UIKABlvpnOJOnLo3JZudInnPOd9Q_20VVxRw";
    const EC_Y: &str = "HkfUMLfbWUKSpAQSbVVff6VxImWVMAWHeAAfJc58N2c";

    fn rsa_jwk(kid: Option<&str>, n: &str) -> Value {
        let mut jwk = json!({"kty": "RSA", "use": "sig", "alg": "RS256", "n": n, "e": RSA_E});
        if let Some(kid) = kid {
            jwk["kid"] = json!(kid);
        }
        jwk
    }

    fn ec_jwk(kid: Option<&str>) -> Value {
        let mut jwk = json!({"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y});
        if let Some(kid) = kid {
            jwk["kid"] = json!(kid);
        }
        jwk
    }

    fn jwks(keys: &[Value]) -> String {
        json!({ "keys": keys }).to_string()
    }

    fn claims() -> Value {
        json!({"sub": "user-42", "iss": "https://idp.example", "aud": "tidemark", "exp": NOW + 3600})
    }

    fn sign(claims: &Value, alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn hs(claims: &Value) -> String {
        sign(
            claims,
            Algorithm::HS256,
            None,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
    }

    fn rs(claims: &Value, kid: Option<&str>, pem: &str) -> String {
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        sign(claims, Algorithm::RS256, kid, &key)
    }

    fn es(claims: &Value, kid: Option<&str>) -> String {
        let key = EncodingKey::from_ec_pem(EC_PRIVATE_PEM.as_bytes()).unwrap();
        sign(claims, Algorithm::ES256, kid, &key)
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn secret_config() -> JwtConfig {
        JwtConfig {
            hs256_secret: Some(SECRET.into()),
            ..JwtConfig::default()
        }
    }

    async fn verifier(config: JwtConfig) -> JwtVerifier {
        JwtVerifier::load(&config).await.unwrap().unwrap()
    }

    async fn code_of(verifier: &JwtVerifier, token: &str) -> &'static str {
        match verifier.verify(token, NOW).await {
            Ok(user) => panic!("token accepted as {user:?}"),
            Err(e) => e.code(),
        }
    }

    /// A JWKS file that removes itself when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, content: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "tidemark-jwt-test-{}-{name}.json",
                std::process::id()
            ));
            std::fs::write(&path, content).unwrap();
            TempFile(path)
        }

        fn path(&self) -> String {
            self.0.display().to_string()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    async fn jwks_file_verifier(name: &str, keys: &[Value]) -> (JwtVerifier, TempFile) {
        let file = TempFile::new(name, &jwks(keys));
        let verifier = verifier(JwtConfig {
            jwks: Some(file.path()),
            ..JwtConfig::default()
        })
        .await;
        (verifier, file)
    }

    /// A JWKS server on 127.0.0.1 whose document and status can be changed.
    #[derive(Clone)]
    struct JwksServer {
        document: Arc<StdMutex<(u16, String)>>,
        fetches: Arc<AtomicUsize>,
        url: String,
    }

    impl JwksServer {
        async fn start(document: String) -> Self {
            let state = Arc::new(StdMutex::new((200u16, document)));
            let fetches = Arc::new(AtomicUsize::new(0));
            let (handler_state, handler_fetches) = (Arc::clone(&state), Arc::clone(&fetches));
            let app = axum::Router::new().route(
                "/.well-known/jwks.json",
                axum::routing::get(move || {
                    let (state, fetches) =
                        (Arc::clone(&handler_state), Arc::clone(&handler_fetches));
                    async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        // Slow enough that concurrent verifiers overlap.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let (status, body) = state.lock().unwrap().clone();
                        (axum::http::StatusCode::from_u16(status).unwrap(), body)
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            JwksServer {
                document: state,
                fetches,
                url: format!("http://{addr}/.well-known/jwks.json"),
            }
        }

        fn serve(&self, status: u16, document: String) {
            *self.document.lock().unwrap() = (status, document);
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn verifier_can_be_shared_across_tasks() {
        fn shared<T: Send + Sync>() {}
        shared::<JwtVerifier>();
    }

    #[tokio::test]
    async fn nothing_configured_means_jwt_sessions_are_off() {
        let loaded = JwtVerifier::load(&JwtConfig {
            issuer: Some("https://idp.example".into()),
            ..JwtConfig::default()
        })
        .await
        .unwrap();
        assert!(loaded.is_none());
    }

    #[tokio::test]
    async fn empty_secret_is_a_setup_error() {
        let err = JwtVerifier::load(&JwtConfig {
            hs256_secret: Some(String::new()),
            ..JwtConfig::default()
        })
        .await
        .unwrap_err();
        assert!(matches!(
            err,
            JwtSetupError::EmptySetting {
                setting: "hs256 secret"
            }
        ));
    }

    #[tokio::test]
    async fn hs256_token_with_valid_claims_yields_the_subject() {
        let v = verifier(secret_config()).await;
        assert_eq!(v.verify(&hs(&claims()), NOW).await.unwrap(), "user-42");
    }

    #[tokio::test]
    async fn expired_token_is_refused() {
        let v = verifier(secret_config()).await;
        let mut c = claims();
        c["exp"] = json!(NOW - 61);
        assert_eq!(code_of(&v, &hs(&c)).await, "jwt.expired");
    }

    #[tokio::test]
    async fn token_expired_within_the_leeway_is_accepted() {
        let v = verifier(secret_config()).await;
        let mut c = claims();
        c["exp"] = json!(NOW - 59);
        assert_eq!(v.verify(&hs(&c), NOW).await.unwrap(), "user-42");
        // The same token is refused once the clock passes the leeway.
        assert_eq!(
            v.verify(&hs(&c), NOW + 2).await.unwrap_err().code(),
            "jwt.expired"
        );
    }

    #[tokio::test]
    async fn token_without_exp_is_refused() {
        let v = verifier(secret_config()).await;
        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(code_of(&v, &hs(&c)).await, "jwt.malformed");
        c["exp"] = json!("tomorrow");
        assert_eq!(code_of(&v, &hs(&c)).await, "jwt.malformed");
    }

    #[tokio::test]
    async fn not_yet_valid_token_is_refused() {
        let v = verifier(secret_config()).await;
        let mut c = claims();
        c["nbf"] = json!(NOW + 61);
        assert_eq!(code_of(&v, &hs(&c)).await, "jwt.not_yet_valid");
        c["nbf"] = json!(NOW + 59);
        assert_eq!(v.verify(&hs(&c), NOW).await.unwrap(), "user-42");
    }

    #[tokio::test]
    async fn token_from_another_issuer_is_refused() {
        let v = verifier(JwtConfig {
            issuer: Some("https://idp.example".into()),
            ..secret_config()
        })
        .await;
        assert_eq!(v.verify(&hs(&claims()), NOW).await.unwrap(), "user-42");
        let mut c = claims();
        c["iss"] = json!("https://evil.example");
        assert_eq!(code_of(&v, &hs(&c)).await, "jwt.wrong_issuer");
        c.as_object_mut().unwrap().remove("iss");
        assert_eq!(code_of(&v, &hs(&c)).await, "jwt.wrong_issuer");
    }

    #[tokio::test]
    async fn token_for_another_audience_is_refused() {
        let v = verifier(JwtConfig {
            audience: Some("tidemark".into()),
            ..secret_config()
        })
        .await;
        let mut c = claims();
        c["aud"] = json!("someone-else");
        assert_eq!(code_of(&v, &hs(&c)).await, "jwt.wrong_audience");
        c["aud"] = json!(["someone-else", "another"]);
        assert_eq!(code_of(&v, &hs(&c)).await, "jwt.wrong_audience");
        c.as_object_mut().unwrap().remove("aud");
        assert_eq!(code_of(&v, &hs(&c)).await, "jwt.wrong_audience");
    }

    #[tokio::test]
    async fn audience_array_holding_the_configured_audience_is_accepted() {
        let v = verifier(JwtConfig {
            audience: Some("tidemark".into()),
            ..secret_config()
        })
        .await;
        let mut c = claims();
        c["aud"] = json!(["someone-else", "tidemark"]);
        assert_eq!(v.verify(&hs(&c), NOW).await.unwrap(), "user-42");
    }

    #[tokio::test]
    async fn audience_is_ignored_when_none_is_configured() {
        let v = verifier(secret_config()).await;
        let mut c = claims();
        c["aud"] = json!(["someone-else"]);
        assert_eq!(v.verify(&hs(&c), NOW).await.unwrap(), "user-42");
    }

    #[tokio::test]
    async fn tampered_payload_is_refused() {
        let v = verifier(secret_config()).await;
        let token = hs(&claims());
        let parts: Vec<&str> = token.split('.').collect();
        let mut c = claims();
        c["sub"] = json!("admin");
        let forged = format!("{}.{}.{}", parts[0], b64(&c), parts[2]);
        assert_eq!(code_of(&v, &forged).await, "jwt.bad_signature");
    }

    #[tokio::test]
    async fn token_signed_with_another_secret_is_refused() {
        let v = verifier(secret_config()).await;
        let token = sign(
            &claims(),
            Algorithm::HS256,
            None,
            &EncodingKey::from_secret(b"another-secret-of-more-than-32-bytes!!"),
        );
        assert_eq!(code_of(&v, &token).await, "jwt.bad_signature");
    }

    #[tokio::test]
    async fn alg_none_token_is_refused() {
        let (v, _file) = jwks_file_verifier("alg-none", &[rsa_jwk(Some("k1"), RSA1_N)]).await;
        let v_secret = verifier(secret_config()).await;
        for header in [json!({"alg": "none", "typ": "JWT"}), json!({"alg": "None"})] {
            for signature in ["", "c2ln"] {
                let token = format!("{}.{}.{signature}", b64(&header), b64(&claims()));
                assert_eq!(code_of(&v, &token).await, "jwt.unsupported_algorithm");
                assert_eq!(
                    code_of(&v_secret, &token).await,
                    "jwt.unsupported_algorithm"
                );
            }
        }
    }

    #[tokio::test]
    async fn hs256_token_is_refused_when_only_jwks_is_configured() {
        let (v, _file) = jwks_file_verifier("confusion", &[rsa_jwk(Some("k1"), RSA1_N)]).await;
        // The classic confusion attack: the RSA public key used as an HMAC secret.
        for secret in [RSA1_PUBLIC_PEM.as_bytes().to_vec(), b64url(RSA1_N).unwrap()] {
            let token = sign(
                &claims(),
                Algorithm::HS256,
                Some("k1"),
                &EncodingKey::from_secret(&secret),
            );
            assert_eq!(code_of(&v, &token).await, "jwt.unsupported_algorithm");
        }
    }

    #[tokio::test]
    async fn oct_keys_of_a_jwks_are_never_used() {
        let oct = json!({"kty": "oct", "kid": "sym", "k": URL_SAFE_NO_PAD.encode(SECRET)});
        let (v, _file) =
            jwks_file_verifier("oct", &[oct.clone(), rsa_jwk(Some("k1"), RSA1_N)]).await;
        let token = sign(
            &claims(),
            Algorithm::HS256,
            Some("sym"),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        );
        assert_eq!(code_of(&v, &token).await, "jwt.unsupported_algorithm");

        let file = TempFile::new("oct-only", &jwks(&[oct]));
        let err = JwtVerifier::load(&JwtConfig {
            jwks: Some(file.path()),
            ..JwtConfig::default()
        })
        .await
        .unwrap_err();
        assert!(matches!(err, JwtSetupError::NoUsableKeys { .. }), "{err}");
    }

    #[tokio::test]
    async fn rs256_token_is_refused_when_only_a_secret_is_configured() {
        let v = verifier(secret_config()).await;
        let token = rs(&claims(), Some("k1"), RSA1_PRIVATE_PEM);
        assert_eq!(code_of(&v, &token).await, "jwt.unsupported_algorithm");
    }

    #[tokio::test]
    async fn other_algorithms_are_refused() {
        let v = verifier(secret_config()).await;
        let token = sign(
            &claims(),
            Algorithm::HS512,
            None,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        );
        assert_eq!(code_of(&v, &token).await, "jwt.unsupported_algorithm");
    }

    #[tokio::test]
    async fn missing_or_empty_user_claim_is_refused() {
        let v = verifier(secret_config()).await;
        let mut c = claims();
        c["sub"] = json!("");
        assert_eq!(code_of(&v, &hs(&c)).await, "jwt.missing_claim");
        c["sub"] = json!(["user-42"]);
        assert_eq!(code_of(&v, &hs(&c)).await, "jwt.missing_claim");
        c.as_object_mut().unwrap().remove("sub");
        assert_eq!(code_of(&v, &hs(&c)).await, "jwt.missing_claim");
    }

    #[tokio::test]
    async fn custom_user_claim_is_used() {
        let v = verifier(JwtConfig {
            user_claim: Some("uid".into()),
            ..secret_config()
        })
        .await;
        let mut c = claims();
        c["uid"] = json!("custom-7");
        assert_eq!(v.verify(&hs(&c), NOW).await.unwrap(), "custom-7");
        // Whatever the other claims hold, `sub` included.
        c["sub"] = json!({"tenant": "t1", "ids": [1, 2]});
        assert_eq!(v.verify(&hs(&c), NOW).await.unwrap(), "custom-7");
        c.as_object_mut().unwrap().remove("uid");
        let err = v.verify(&hs(&c), NOW).await.unwrap_err();
        assert!(matches!(&err, JwtError::MissingClaim { claim } if claim == "uid"));
    }

    #[tokio::test]
    async fn numeric_user_claim_is_rendered_in_decimal() {
        let v = verifier(secret_config()).await;
        let mut c = claims();
        c["sub"] = json!(1234567890123_u64);
        assert_eq!(v.verify(&hs(&c), NOW).await.unwrap(), "1234567890123");
        c["sub"] = json!(1.5);
        assert_eq!(code_of(&v, &hs(&c)).await, "jwt.missing_claim");
    }

    #[tokio::test]
    async fn garbage_tokens_are_refused_as_malformed() {
        let v = verifier(secret_config()).await;
        let sig = hs(&claims());
        let parts: Vec<&str> = sig.split('.').collect();
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        let cases = [
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
            "a.b.c".into(),
            "not a token".into(),
            format!("{sig}.extra"),
            format!("{}.{}", parts[0], parts[1]),
            format!("{}.{}.{}", b64(&json!([1])), parts[1], parts[2]),
            format!("{}.{}.{}", b64(&json!({"alg": 5})), parts[1], parts[2]),
            format!("{}.{}.{}", b64(&json!({"typ": "JWT"})), parts[1], parts[2]),
            format!(
                "{}.{}.{}",
                b64(&json!({"alg": "HS256", "kid": 1})),
                parts[1],
                parts[2]
            ),
            format!(
                "{}.{}.{}",
                b64(&json!({"alg": "HS256", "crit": ["b64"], "b64": false})),
                parts[1],
                parts[2]
            ),
            format!("{}.{}.!!!", parts[0], parts[1]),
            huge,
        ];
        for token in cases {
            let code = code_of(&v, &token).await;
            assert_eq!(code, "jwt.malformed", "{token:.80}");
        }
        // Validly signed claims that are not an object are malformed too.
        for claims in [json!([1, 2]), json!("text")] {
            let token = hs(&claims);
            assert_eq!(code_of(&v, &token).await, "jwt.malformed");
        }
    }

    #[tokio::test]
    async fn rs256_token_verifies_against_a_jwks_file() {
        let (v, _file) = jwks_file_verifier(
            "rs256",
            &[rsa_jwk(Some("k1"), RSA1_N), rsa_jwk(Some("k2"), RSA2_N)],
        )
        .await;
        let token = rs(&claims(), Some("k2"), RSA2_PRIVATE_PEM);
        assert_eq!(v.verify(&token, NOW).await.unwrap(), "user-42");
        let mut c = claims();
        c["exp"] = json!(NOW - 61);
        let expired = rs(&c, Some("k2"), RSA2_PRIVATE_PEM);
        assert_eq!(code_of(&v, &expired).await, "jwt.expired");
    }

    #[tokio::test]
    async fn es256_token_verifies_against_a_jwks_file() {
        let (v, _file) =
            jwks_file_verifier("es256", &[rsa_jwk(Some("k1"), RSA1_N), ec_jwk(Some("e1"))]).await;
        assert_eq!(
            v.verify(&es(&claims(), Some("e1")), NOW).await.unwrap(),
            "user-42"
        );
        assert_eq!(
            v.verify(&es(&claims(), None), NOW).await.unwrap(),
            "user-42"
        );
    }

    #[tokio::test]
    async fn rs256_token_signed_by_another_rsa_key_is_refused() {
        let (v, _file) = jwks_file_verifier("wrong-rsa", &[rsa_jwk(Some("k1"), RSA1_N)]).await;
        let token = rs(&claims(), Some("k1"), RSA2_PRIVATE_PEM);
        assert_eq!(code_of(&v, &token).await, "jwt.bad_signature");
    }

    #[tokio::test]
    async fn token_with_unknown_kid_is_refused_as_unknown_key() {
        let (v, _file) = jwks_file_verifier("unknown-kid", &[rsa_jwk(Some("k1"), RSA1_N)]).await;
        let token = rs(&claims(), Some("k9"), RSA1_PRIVATE_PEM);
        let err = v.verify(&token, NOW).await.unwrap_err();
        assert_eq!(err.code(), "jwt.unknown_key");
        assert!(err.to_string().contains("k9"), "{err}");
    }

    #[tokio::test]
    async fn es256_header_naming_an_rsa_kid_finds_no_key() {
        let (v, _file) = jwks_file_verifier("es-on-rsa", &[rsa_jwk(Some("k1"), RSA1_N)]).await;
        let token = es(&claims(), Some("k1"));
        assert_eq!(code_of(&v, &token).await, "jwt.unknown_key");
    }

    #[tokio::test]
    async fn jwks_without_kids_tries_each_key_of_the_token_type() {
        let (v, _file) = jwks_file_verifier(
            "no-kids",
            &[rsa_jwk(None, RSA1_N), ec_jwk(None), rsa_jwk(None, RSA2_N)],
        )
        .await;
        for token in [
            rs(&claims(), None, RSA2_PRIVATE_PEM),
            rs(&claims(), Some("whatever"), RSA1_PRIVATE_PEM),
            es(&claims(), None),
        ] {
            assert_eq!(v.verify(&token, NOW).await.unwrap(), "user-42");
        }
        let mut c = claims();
        c["sub"] = json!("admin");
        let other = sign(
            &c,
            Algorithm::RS256,
            None,
            &EncodingKey::from_rsa_pem(RSA1_PRIVATE_PEM.as_bytes()).unwrap(),
        );
        let forged = format!(
            "{}.{}",
            other.rsplit_once('.').unwrap().0,
            rs(&claims(), None, RSA2_PRIVATE_PEM)
                .rsplit_once('.')
                .unwrap()
                .1
        );
        assert_eq!(code_of(&v, &forged).await, "jwt.bad_signature");
    }

    #[tokio::test]
    async fn secret_and_jwks_work_together() {
        let file = TempFile::new("both", &jwks(&[ec_jwk(Some("e1"))]));
        let v = verifier(JwtConfig {
            jwks: Some(file.path()),
            issuer: Some("https://idp.example".into()),
            audience: Some("tidemark".into()),
            ..secret_config()
        })
        .await;
        assert_eq!(v.verify(&hs(&claims()), NOW).await.unwrap(), "user-42");
        assert_eq!(
            v.verify(&es(&claims(), Some("e1")), NOW).await.unwrap(),
            "user-42"
        );
    }

    #[tokio::test]
    async fn unreadable_jwks_file_is_a_setup_error() {
        let err = JwtVerifier::load(&JwtConfig {
            jwks: Some("/nonexistent/tidemark/jwks.json".into()),
            ..JwtConfig::default()
        })
        .await
        .unwrap_err();
        assert!(matches!(err, JwtSetupError::ReadJwksFile { .. }), "{err}");
    }

    #[tokio::test]
    async fn malformed_jwks_is_a_setup_error() {
        for (name, content) in [
            ("not-json", "{"),
            ("no-keys", "{\"key\": []}"),
            ("key-not-object", "{\"keys\": [1]}"),
        ] {
            let file = TempFile::new(name, content);
            let err = JwtVerifier::load(&JwtConfig {
                jwks: Some(file.path()),
                ..JwtConfig::default()
            })
            .await
            .unwrap_err();
            assert!(matches!(err, JwtSetupError::MalformedJwks { .. }), "{err}");
        }
    }

    #[tokio::test]
    async fn unusable_keys_are_setup_errors() {
        let off_curve = json!({"kty": "EC", "crv": "P-256", "kid": "bad-ec", "x": EC_X, "y": EC_X});
        let short_ec = json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": EC_Y});
        let weak_rsa = rsa_jwk(Some("weak"), &URL_SAFE_NO_PAD.encode([0xC3u8; 128]));
        let bad_b64 = rsa_jwk(Some("b64"), "not base64!");
        let even_exponent = json!({"kty": "RSA", "n": RSA1_N, "e": "AAE="});
        let no_modulus = json!({"kty": "RSA", "e": RSA_E});
        for (name, key) in [
            ("off-curve", off_curve),
            ("short-ec", short_ec),
            ("weak-rsa", weak_rsa),
            ("bad-b64", bad_b64),
            ("even-exponent", even_exponent),
            ("no-modulus", no_modulus),
        ] {
            let file = TempFile::new(name, &jwks(&[key]));
            let err = JwtVerifier::load(&JwtConfig {
                jwks: Some(file.path()),
                ..JwtConfig::default()
            })
            .await
            .unwrap_err();
            assert!(
                matches!(err, JwtSetupError::UnusableKey { .. }),
                "{name}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn keys_for_other_uses_or_algorithms_are_skipped() {
        let encryption = json!({"kty": "RSA", "use": "enc", "kid": "enc", "n": RSA1_N, "e": RSA_E});
        let rs512 = json!({"kty": "RSA", "alg": "RS512", "kid": "512", "n": RSA1_N, "e": RSA_E});
        let p384 = json!({"kty": "EC", "crv": "P-384", "kid": "384", "x": "AA", "y": "AA"});
        let (v, _file) =
            jwks_file_verifier("skipped", &[encryption, rs512, p384, ec_jwk(Some("e1"))]).await;
        for kid in ["enc", "512"] {
            let token = rs(&claims(), Some(kid), RSA1_PRIVATE_PEM);
            assert_eq!(code_of(&v, &token).await, "jwt.unknown_key");
        }
    }

    #[tokio::test]
    async fn jwks_from_a_url_verifies_tokens() {
        let server =
            JwksServer::start(jwks(&[rsa_jwk(Some("k1"), RSA1_N), ec_jwk(Some("e1"))])).await;
        let v = verifier(JwtConfig {
            jwks: Some(server.url.clone()),
            ..JwtConfig::default()
        })
        .await;
        assert_eq!(server.fetches(), 1);
        let token = rs(&claims(), Some("k1"), RSA1_PRIVATE_PEM);
        assert_eq!(v.verify(&token, NOW).await.unwrap(), "user-42");
        assert_eq!(
            v.verify(&es(&claims(), Some("e1")), NOW).await.unwrap(),
            "user-42"
        );
        assert_eq!(server.fetches(), 1, "known keys need no fetch");
    }

    #[tokio::test]
    async fn unknown_kid_refetches_the_jwks_url_at_most_once_a_minute() {
        let server = JwksServer::start(jwks(&[rsa_jwk(Some("k1"), RSA1_N)])).await;
        let v = Arc::new(
            verifier(JwtConfig {
                jwks: Some(server.url.clone()),
                ..JwtConfig::default()
            })
            .await,
        );
        assert_eq!(server.fetches(), 1);

        // The identity provider rotates to k2; many requests race with it.
        server.serve(
            200,
            jwks(&[rsa_jwk(Some("k1"), RSA1_N), rsa_jwk(Some("k2"), RSA2_N)]),
        );
        let token = rs(&claims(), Some("k2"), RSA2_PRIVATE_PEM);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (v, token) = (Arc::clone(&v), token.clone());
                tokio::spawn(async move { v.verify(&token, NOW).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), "user-42");
        }
        assert_eq!(server.fetches(), 2, "one refetch for all racing verifiers");

        // Another unknown kid within the minute: no fetch.
        server.serve(200, jwks(&[rsa_jwk(Some("k3"), RSA1_N)]));
        let k3 = rs(&claims(), Some("k3"), RSA1_PRIVATE_PEM);
        let err = v.verify(&k3, NOW + 30).await.unwrap_err();
        assert_eq!(err.code(), "jwt.unknown_key");
        assert_eq!(server.fetches(), 2);

        // Once the minute has passed, it is fetched again.
        assert_eq!(v.verify(&k3, NOW + 61).await.unwrap(), "user-42");
        assert_eq!(server.fetches(), 3);
    }

    #[tokio::test]
    async fn failed_refetch_keeps_the_previous_keys() {
        let server = JwksServer::start(jwks(&[rsa_jwk(Some("k1"), RSA1_N)])).await;
        let v = verifier(JwtConfig {
            jwks: Some(server.url.clone()),
            ..JwtConfig::default()
        })
        .await;
        server.serve(500, "oops".into());
        let unknown = rs(&claims(), Some("k2"), RSA2_PRIVATE_PEM);
        assert_eq!(code_of(&v, &unknown).await, "jwt.unknown_key");
        assert_eq!(server.fetches(), 2);
        let known = rs(&claims(), Some("k1"), RSA1_PRIVATE_PEM);
        assert_eq!(v.verify(&known, NOW).await.unwrap(), "user-42");
    }

    #[tokio::test]
    async fn jwks_url_that_cannot_be_fetched_is_a_setup_error() {
        let server = JwksServer::start(String::new()).await;
        server.serve(404, "not found".into());
        let err = JwtVerifier::load(&JwtConfig {
            jwks: Some(server.url.clone()),
            ..JwtConfig::default()
        })
        .await
        .unwrap_err();
        assert!(matches!(err, JwtSetupError::FetchJwks { .. }), "{err}");
        assert!(err.to_string().contains("404"), "{err}");
    }
}
