//! Grants (presigned URLs for a device's sync), announcements and the event stream.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tidemark_core::{
    DeviceId, LEVEL_COUNT, Revocation, RevocationList, Role, ServerPublicKey,
    validate_collection_name,
};
use tokio::sync::broadcast::error::RecvError;

use super::devices::{issue_certificate, owned_device};
use super::{ApiJson, ApiPath};
use crate::auth::{Session, role_in};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store::Access;

/// Most collections one grant may cover.
pub const MAX_GRANT_COLLECTIONS: usize = 64;
/// How often the event stream sends a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GrantRequest {
    device: DeviceId,
    collections: Vec<String>,
    sdk_version: Option<String>,
}

/// A grant: everything a device needs to sync until `expires_at` without the server.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Grant {
    space: String,
    device: DeviceId,
    role: Role,
    server_time: u64,
    expires_at: u64,
    levels: u8,
    /// Per collection, PUT URLs of this device's levels `L0…L5` (writers only).
    put: BTreeMap<String, Vec<String>>,
    /// Per collection and device (this one included), GET URLs of its levels.
    get: BTreeMap<String, BTreeMap<DeviceId, Vec<String>>>,
    /// Certificates of every device of the space, base64.
    certificates: Vec<String>,
    /// The signed revocation list, base64.
    revocations: String,
    server_public_key: ServerPublicKey,
}

pub(super) async fn grant(
    State(state): State<AppState>,
    session: Session,
    ApiPath(space): ApiPath<String>,
    ApiJson(request): ApiJson<GrantRequest>,
) -> AppResult<Json<Grant>> {
    let role = owned_device(&state, &space, &session, &request.device).await?;
    let collections: BTreeSet<String> = request.collections.into_iter().collect();
    if collections.len() > MAX_GRANT_COLLECTIONS {
        return Err(AppError::invalid(
            "collections",
            format!("at most {MAX_GRANT_COLLECTIONS} per grant"),
        ));
    }
    for collection in &collections {
        validate_collection_name(collection)
            .map_err(|e| AppError::invalid("collections", e.to_string()))?;
        let longest = state
            .store
            .level_key(&space, &request.device, collection, LEVEL_COUNT - 1);
        state
            .store
            .check_key_length(&longest, false)
            .map_err(|e| AppError::invalid("collections", e.0))?;
    }
    if let Some(version) = &request.sdk_version
        && version.len() > 64
    {
        return Err(AppError::invalid("sdkVersion", "at most 64 bytes"));
    }

    let start = state.clock.now();
    let now = state.clock.now_millis();
    let expires_at = state.grant_expires_at(now);
    let devices = state.registry.devices(&space).await?;
    let members: HashMap<String, Role> =
        state.registry.members(&space).await?.into_iter().collect();

    let mut certificates = Vec::with_capacity(devices.len());
    let mut revoked = Vec::new();
    for device in &devices {
        if let Some(at) = device.revoked_at {
            revoked.push(Revocation {
                device: device.id,
                revoked_at_millis: at,
            });
        }
        // Certificates are renewed once they would lapse before this grant does: a device
        // holding the grant can always check every author it reads. Revoked devices and
        // devices of former members keep their old certificate and are never renewed.
        let renew = device.revoked_at.is_none() && device.certificate_expires_at < expires_at;
        let certificate = match members.get(&device.user) {
            Some(owner_role) if renew => {
                let issued =
                    issue_certificate(&state, &space, device.id, &device.user, *owner_role, now)?;
                state
                    .registry
                    .set_certificate(&space, &device.id, &issued.bytes, issued.expires_at)
                    .await?;
                issued.bytes
            }
            _ => device.certificate.clone(),
        };
        certificates.push(STANDARD.encode(certificate));
    }
    let revocations = RevocationList {
        space: space.clone(),
        issued_at_millis: now,
        revoked,
    }
    .sign(&state.server_key)
    .map_err(|e| AppError::Internal(format!("cannot sign revocations: {e}")))?;

    let mut put = BTreeMap::new();
    let mut get = BTreeMap::new();
    for collection in &collections {
        if role.can_write() {
            let urls = level_urls(
                &state,
                Access::Write,
                (&space, &request.device, collection),
                start,
            )
            .await?;
            put.insert(collection.clone(), urls);
        }
        let mut readable = BTreeMap::new();
        for device in &devices {
            let urls = level_urls(
                &state,
                Access::Read,
                (&space, &device.id, collection),
                start,
            )
            .await?;
            readable.insert(device.id, urls);
        }
        get.insert(collection.clone(), readable);
    }
    let presigned =
        (put.len() + get.values().map(BTreeMap::len).sum::<usize>()) * usize::from(LEVEL_COUNT);

    state
        .registry
        .touch_device(
            &space,
            &request.device,
            now,
            false,
            request.sdk_version.as_deref(),
        )
        .await?;
    state.metrics.grants.fetch_add(1, Ordering::Relaxed);
    state
        .metrics
        .presigned_urls
        .fetch_add(presigned as u64, Ordering::Relaxed);
    Ok(Json(Grant {
        space,
        device: request.device,
        role,
        server_time: now,
        expires_at,
        levels: LEVEL_COUNT,
        put,
        get,
        certificates,
        revocations: STANDARD.encode(revocations),
        server_public_key: state.server_key.public_key(),
    }))
}

/// URLs for one device's levels `L0…L5` of a collection, in level order.
async fn level_urls(
    state: &AppState,
    access: Access,
    (space, device, collection): (&str, &DeviceId, &str),
    start: SystemTime,
) -> AppResult<Vec<String>> {
    let ttl = state.grant_ttl;
    let mut urls = Vec::with_capacity(usize::from(LEVEL_COUNT));
    for level in 0..LEVEL_COUNT {
        let key = state.store.level_key(space, device, collection, level);
        urls.push(state.store.presign(access, &key, start, ttl).await?);
    }
    Ok(urls)
}

#[derive(Debug, Deserialize)]
pub(super) struct Announcement {
    device: DeviceId,
    collection: String,
    level: u8,
    etag: Option<String>,
}

pub(super) async fn announce(
    State(state): State<AppState>,
    session: Session,
    ApiPath(space): ApiPath<String>,
    ApiJson(announcement): ApiJson<Announcement>,
) -> AppResult<(StatusCode, Json<serde_json::Value>)> {
    let role = owned_device(&state, &space, &session, &announcement.device).await?;
    crate::auth::require(role, Role::Writer, "announce packs")?;
    validate_collection_name(&announcement.collection)
        .map_err(|e| AppError::invalid("collection", e.to_string()))?;
    if announcement.level >= LEVEL_COUNT {
        return Err(AppError::invalid(
            "level",
            format!("must be below {LEVEL_COUNT}"),
        ));
    }
    if announcement.etag.as_ref().is_some_and(|e| e.len() > 256) {
        return Err(AppError::invalid("etag", "at most 256 bytes"));
    }
    let now = state.clock.now_millis();
    let event_id = state.events.publish(
        &space,
        "pack",
        json!({
            "device": announcement.device,
            "collection": announcement.collection,
            "level": announcement.level,
            "etag": announcement.etag,
            "at": now,
        })
        .to_string(),
    );
    state
        .registry
        .touch_device(&space, &announcement.device, now, true, None)
        .await?;
    state.metrics.announcements.fetch_add(1, Ordering::Relaxed);
    Ok((StatusCode::ACCEPTED, Json(json!({ "eventId": event_id }))))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EventsQuery {
    /// For clients that cannot send `Last-Event-ID` on their first connection.
    last_event_id: Option<String>,
}

/// `GET /v1/spaces/{space}/events`: `hello` first (server time), then `pack` and `devices`
/// events; `reset` when the client missed events that are no longer kept.
pub(super) async fn events(
    State(state): State<AppState>,
    session: Session,
    ApiPath(space): ApiPath<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> AppResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    role_in(&state, &space, &session).await?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.last_event_id);
    let subscription = state.events.subscribe(&space, last_event_id.as_deref());
    let server_time = state.clock.now_millis();
    let mut first = vec![
        SseEvent::default()
            .event("hello")
            .data(json!({ "serverTime": server_time }).to_string()),
    ];
    if subscription.reset {
        first.push(SseEvent::default().event("reset").data("{}"));
    }
    first.extend(subscription.replay.iter().map(|e| to_sse(e)));
    let user = session.user;

    struct Stream {
        pending: std::vec::IntoIter<SseEvent>,
        receiver: tokio::sync::broadcast::Receiver<std::sync::Arc<crate::events::Event>>,
        user: String,
        done: bool,
    }
    let stream = futures_util::stream::unfold(
        Stream {
            pending: first.into_iter(),
            receiver: subscription.receiver,
            user,
            done: false,
        },
        |mut s| async move {
            if let Some(event) = s.pending.next() {
                return Some((Ok(event), s));
            }
            if s.done {
                return None;
            }
            match s.receiver.recv().await {
                Ok(event) => {
                    // A member removed from the space stops hearing about it.
                    if event.kind == "devices" && removes(&event.data, &s.user) {
                        s.done = true;
                    }
                    Some((Ok(to_sse(&event)), s))
                }
                // Fell behind the channel: the client must poll everything once.
                Err(RecvError::Lagged(_)) => {
                    Some((Ok(SseEvent::default().event("reset").data("{}")), s))
                }
                Err(RecvError::Closed) => None,
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

fn to_sse(event: &crate::events::Event) -> SseEvent {
    SseEvent::default()
        .id(event.id.clone())
        .event(event.kind)
        .data(event.data.clone())
}

fn removes(data: &str, user: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(data)
        .is_ok_and(|v| v["reason"] == "member_removed" && v["user"] == user)
}
