//! Operations: server info, health, metrics, the admin page, and the web app.

use std::path::PathBuf;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use tidemark_core::{LEVEL_COUNT, ServerPublicKey};

use super::devices::device_table;
use crate::auth::secrets_equal;
use crate::error::AppResult;
use crate::state::AppState;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Info {
    name: &'static str,
    version: &'static str,
    server_public_key: ServerPublicKey,
    server_time: u64,
    auth_modes: Vec<&'static str>,
    levels: u8,
    grant_ttl_secs: u64,
    max_blob_bytes: u64,
    default_space: String,
}

pub(super) async fn info(State(state): State<AppState>) -> Json<Info> {
    let mut auth_modes = vec!["invite", "adminSecret"];
    if state.jwt.is_some() {
        auth_modes.push("jwt");
    }
    Json(Info {
        name: "tidemark-server",
        version: env!("CARGO_PKG_VERSION"),
        server_public_key: state.server_key.public_key(),
        server_time: state.clock.now_millis(),
        auth_modes,
        levels: LEVEL_COUNT,
        grant_ttl_secs: state.grant_ttl.as_secs(),
        max_blob_bytes: state.config.max_blob_bytes,
        default_space: state.config.default_space.clone(),
    })
}

/// `GET /healthz`: 200 when the registry and the object store answer, 503 otherwise.
pub(super) async fn healthz(State(state): State<AppState>) -> Response {
    let registry = state.registry.ping().await;
    let store = state.store.ping().await;
    // Details (endpoints, store messages) go to the log: this route answers anyone.
    let verdict = |part: &str, result: Result<(), String>| match result {
        Ok(()) => "ok",
        Err(detail) => {
            tracing::warn!(part, %detail, "health check failed");
            "unavailable"
        }
    };
    let body = serde_json::json!({
        "registry": verdict("registry", registry.as_ref().map(|_| ()).map_err(ToString::to_string)),
        "store": verdict("store", store.as_ref().map(|_| ()).map_err(ToString::to_string)),
    });
    let status = if registry.is_ok() && store.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(
            state.events.subscriber_count(),
            state.started.elapsed().as_secs(),
        ),
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Whether the request carries HTTP basic credentials whose password is the admin secret.
fn is_admin(headers: &HeaderMap, secret: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| STANDARD.decode(v.trim()).ok())
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.split_once(':').map(|(_, password)| password.to_owned()))
        .is_some_and(|password| secrets_equal(&password, secret))
}

/// `GET /admin`: every space's device table, behind HTTP basic auth with the admin secret.
pub(super) async fn admin_page(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> AppResult<Response> {
    if !is_admin(&headers, &state.admin_secret) {
        return Ok((
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"tidemark admin\"")],
            Html("<p>Sign in with any user name and the admin secret.</p>"),
        )
            .into_response());
    }
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Tidemark admin</title><style>\
         body{font:15px system-ui,sans-serif;margin:2rem;color:#1b2a36}\
         table{border-collapse:collapse;margin:0 0 2rem}\
         th,td{border-bottom:1px solid #d5dde3;padding:.35rem .7rem;text-align:left}\
         th{background:#eef3f6}.revoked{color:#9a3b3b}</style></head><body>\
         <h1>Tidemark admin</h1>",
    );
    let now = state.clock.now_millis();
    for space in state.registry.spaces().await? {
        let devices = device_table(&state, &space.id).await?;
        html.push_str(&format!(
            "<h2>Space <code>{}</code></h2><table><caption class=\"sr\">Devices of {}</caption><thead><tr>\
             <th>Name</th><th>Device</th><th>User</th><th>Role</th><th>SDK</th>\
             <th>Last seen</th><th>Last push</th><th>Status</th></tr></thead><tbody>",
            escape(&space.id),
            escape(&space.id)
        ));
        if devices.is_empty() {
            html.push_str("<tr><td colspan=\"8\">No devices yet.</td></tr>");
        }
        for device in devices {
            let [name, id, user, role, sdk, seen, push, status] = device.cells();
            let ago = |ms: &str| {
                ms.parse::<u64>().map_or(ms.to_owned(), |t| {
                    format!("{} s ago", now.saturating_sub(t) / 1000)
                })
            };
            html.push_str(&format!(
                "<tr class=\"{status}\"><td>{}</td><td><code>{}…</code></td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{status}</td></tr>",
                escape(&name),
                escape(&id),
                escape(&user),
                escape(&role),
                escape(&sdk),
                escape(&ago(&seen)),
                escape(&ago(&push)),
            ));
        }
        html.push_str("</tbody></table>");
    }
    html.push_str("</body></html>");
    Ok(Html(html).into_response())
}

/// The folder of the web app, if there is one to serve: one holding an `index.html`.
pub(super) fn app_dir(state: &AppState) -> Option<PathBuf> {
    let dir = state
        .config
        .app_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/web-demo"));
    if dir.join("index.html").is_file() {
        return Some(dir);
    }
    if state.config.app_dir.is_some() {
        tracing::warn!(dir = %dir.display(), "--app-dir holds no index.html; not serving an app");
    }
    None
}

/// `/` when no web app is configured: where to go from here (404 for any other path).
pub(super) async fn landing(State(state): State<AppState>, uri: axum::http::Uri) -> Response {
    let status = if uri.path() == "/" {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    (
        status,
        Html(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Tidemark</title></head>\
             <body style=\"font:16px system-ui,sans-serif;margin:2rem\"><h1>Tidemark server</h1>\
             <p>The server is running, but no web app is configured here \
             (<code>--app-dir</code>).</p><ul>\
             <li><a href=\"{0}/v1/info\">API info</a></li>\
             <li><a href=\"{0}/admin\">Admin page</a></li>\
             <li><a href=\"{0}/healthz\">Health</a></li></ul></body></html>",
            escape(&state.public_url)
        )),
    )
        .into_response()
}
