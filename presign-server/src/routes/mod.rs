//! The HTTP API. Every route, in one place:
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /v1/info` | anyone | server public key, time, auth modes, limits |
//! | `POST /v1/session` | anyone (rate-limited) | invite, admin secret or JWT → session token |
//! | `GET /v1/spaces`, `POST /v1/spaces` | session | your spaces; create one (you become admin) |
//! | `POST /v1/spaces/{space}/invites` | admin | invite code with role, expiry, uses |
//! | `POST /v1/invites/{code}/accept` | session (rate-limited) | join a space with an invite |
//! | `GET /v1/spaces/{space}/members` | member | members and roles |
//! | `DELETE /v1/spaces/{space}/members/{user}` | admin, or yourself | remove a member, revoke their devices |
//! | `POST /v1/spaces/{space}/devices/challenge` | member (rate-limited) | one-time challenge |
//! | `POST /v1/spaces/{space}/devices` | member (rate-limited) | signed challenge → device certificate |
//! | `GET /v1/spaces/{space}/devices` | member | device table: name, role, SDK, last seen, last push |
//! | `DELETE /v1/spaces/{space}/devices/{id}` | admin, or the device's owner | revoke |
//! | `POST /v1/spaces/{space}/grants` | device owner | presigned URLs, certificates, revocations |
//! | `POST /v1/spaces/{space}/announce` | writer device | tell subscribers a pack changed |
//! | `GET /v1/spaces/{space}/events` | member | server-sent events (`pack`, `devices`, `reset`) |
//! | `POST /v1/spaces/{space}/blobs` | writer device | upload URLs: single write-once PUT or multipart |
//! | `POST /v1/spaces/{space}/blobs/{sha256}/complete` | writer device | finish a multipart upload |
//! | `GET /v1/spaces/{space}/blobs/{sha256}` | member | download URL |
//! | `GET /healthz`, `GET /metrics` | anyone | health; Prometheus text |
//! | `GET /admin` | admin secret (HTTP basic) | device table of every space |
//! | `/{bucket}/…` | presigned URLs | the embedded object store (zero-config mode) |
//! | `/…` | anyone | the web app |

mod blobs;
mod devices;
mod identity;
mod ops;
mod sync;

pub use blobs::{PART_BYTES, SINGLE_PUT_MAX_BYTES};
pub use sync::MAX_GRANT_COLLECTIONS;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Router, extract::DefaultBodyLimit};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::error::AppError;
use crate::state::AppState;

/// Largest JSON body the API accepts.
pub const API_BODY_LIMIT_BYTES: usize = 64 * 1024;
/// First path segments the API uses; the embedded bucket may not be named like one.
pub const RESERVED_PATHS: &[&str] = &["v1", "admin", "healthz", "metrics", "assets", "sw.js"];

/// A JSON body whose rejections are [`AppError`]s.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct ApiJson<T>(pub T);

/// Path parameters whose rejections are [`AppError`]s.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct ApiPath<T>(pub T);

/// The whole application: API, embedded store, web app.
pub fn app(state: AppState) -> Router {
    let credential_routes = Router::new()
        .route("/v1/session", post(identity::create_session))
        .route("/v1/invites/{code}/accept", post(identity::accept_invite))
        .route(
            "/v1/spaces/{space}/devices/challenge",
            post(devices::challenge),
        )
        .route("/v1/spaces/{space}/devices", post(devices::register))
        .route_layer(middleware::from_fn_with_state(state.clone(), rate_limit));

    let api = Router::new()
        .route("/v1/info", get(ops::info))
        .route(
            "/v1/spaces",
            get(identity::list_spaces).post(identity::create_space),
        )
        .route("/v1/spaces/{space}/invites", post(identity::create_invite))
        .route("/v1/spaces/{space}/members", get(identity::list_members))
        .route(
            "/v1/spaces/{space}/members/{user}",
            delete(identity::remove_member),
        )
        .route("/v1/spaces/{space}/devices", get(devices::list))
        .route(
            "/v1/spaces/{space}/devices/{device}",
            delete(devices::revoke),
        )
        .route("/v1/spaces/{space}/grants", post(sync::grant))
        .route("/v1/spaces/{space}/announce", post(sync::announce))
        .route("/v1/spaces/{space}/blobs", post(blobs::start_upload))
        .route(
            "/v1/spaces/{space}/blobs/{sha256}/complete",
            post(blobs::complete_upload),
        )
        .route("/v1/spaces/{space}/blobs/{sha256}", get(blobs::download))
        .merge(credential_routes)
        .route("/v1/{*rest}", any(no_route))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/admin", get(ops::admin_page))
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), time_limit))
        // Long-lived: not under the request time limit.
        .route("/v1/spaces/{space}/events", get(sync::events));

    let mut app = api;
    if let Some(embedded) = &state.embedded {
        let bucket = &state.config.s3_bucket;
        let store = embedded.clone();
        let handler = any(move |request: Request| {
            let store = store.clone();
            async move { store.serve(request).await }
        });
        app = app
            .route(&format!("/{bucket}"), handler.clone())
            .route(&format!("/{bucket}/"), handler.clone())
            .route(&format!("/{bucket}/{{*key}}"), handler);
    }
    app = match ops::app_dir(&state) {
        Some(dir) => app.fallback_service(tower_http::services::ServeDir::new(dir)),
        None => app.fallback(ops::landing),
    };
    app.layer(middleware::from_fn_with_state(
        state.clone(),
        count_requests,
    ))
    .layer(cors(&state))
    .layer(TraceLayer::new_for_http())
    .layer(CatchPanicLayer::custom(|_| {
        AppError::Internal("a handler panicked".into()).into_response()
    }))
    .with_state(state)
}

fn cors(state: &AppState) -> CorsLayer {
    let origins: Vec<HeaderValue> = state
        .config
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim().trim_end_matches('/')).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::DELETE,
        ])
        .allow_headers(tower_http::cors::Any)
        .expose_headers([header::ETAG, header::CONTENT_LENGTH])
}

async fn no_route() -> AppError {
    AppError::NoRoute
}

async fn rate_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Absent when the app is called without a socket (handler tests): one shared bucket.
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    match state.limiter.check(address, std::time::Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            state
                .metrics
                .rate_limited
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            AppError::RateLimited(wait).into_response()
        }
    }
}

async fn time_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(crate::request_timeout(&state.config), next.run(request)).await {
        Ok(response) => response,
        Err(_) => AppError::Timeout.into_response(),
    }
}

async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path)
            if path
                .as_str()
                .starts_with(&format!("/{}", state.config.s3_bucket)) =>
        {
            "store".to_owned()
        }
        Some(path) => path.as_str().to_owned(),
        None => "other".to_owned(),
    };
    let response = next.run(request).await;
    state
        .metrics
        .count_request(&route, response.status().as_u16());
    response
}
