//! Device registration with proof of possession, the device table, revocation.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tidemark_core::{DeviceCertificate, DeviceId, Role, SIGNATURE_BYTES, ServerPublicKey};

use super::{ApiJson, ApiPath};
use crate::auth::{self, Session, require, role_in};
use crate::error::{AppError, AppResult};
use crate::registry::{DeviceRecord, Registration};
use crate::state::AppState;

/// How long a registration challenge stays usable.
const CHALLENGE_TTL_MILLIS: u64 = 5 * 60 * 1000;
/// Longest device name, in bytes.
const MAX_DEVICE_NAME_BYTES: usize = 100;
/// Longest SDK version string, in bytes.
const MAX_SDK_VERSION_BYTES: usize = 64;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ChallengeResponse {
    /// 32 random bytes, hex. Sign `tidemark_core::registration_message(space, bytes)`.
    challenge: String,
    expires_at: u64,
}

pub(super) async fn challenge(
    State(state): State<AppState>,
    session: Session,
    ApiPath(space): ApiPath<String>,
) -> AppResult<(StatusCode, Json<ChallengeResponse>)> {
    role_in(&state, &space, &session).await?;
    let challenge = hex::encode(auth::random_bytes::<32>());
    let expires_at = state.clock.now_millis() + CHALLENGE_TTL_MILLIS;
    state
        .registry
        .create_challenge(&challenge, &space, &session.user, expires_at)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ChallengeResponse {
            challenge,
            expires_at,
        }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RegisterRequest {
    device: DeviceId,
    challenge: String,
    /// Ed25519 signature, hex, over `registration_message(space, challenge bytes)`.
    signature: String,
    name: String,
    #[serde(default)]
    sdk_version: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RegisterResponse {
    device: DeviceId,
    role: Role,
    /// The certificate, base64.
    certificate: String,
    certificate_expires_at: u64,
    server_public_key: ServerPublicKey,
}

pub(super) async fn register(
    State(state): State<AppState>,
    session: Session,
    ApiPath(space): ApiPath<String>,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> AppResult<(StatusCode, Json<RegisterResponse>)> {
    let role = role_in(&state, &space, &session).await?;
    let name = request.name.trim();
    if name.is_empty() || name.len() > MAX_DEVICE_NAME_BYTES {
        return Err(AppError::invalid(
            "name",
            format!("must be 1 to {MAX_DEVICE_NAME_BYTES} bytes"),
        ));
    }
    if request.sdk_version.len() > MAX_SDK_VERSION_BYTES {
        return Err(AppError::invalid(
            "sdkVersion",
            format!("must be at most {MAX_SDK_VERSION_BYTES} bytes"),
        ));
    }
    let challenge: [u8; 32] = hex::decode(&request.challenge)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| AppError::invalid("challenge", "must be 64 hex digits"))?;
    let signature: [u8; SIGNATURE_BYTES] = hex::decode(&request.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| AppError::invalid("signature", "must be 128 hex digits"))?;
    let now = state.clock.now_millis();
    // Checked before the challenge is spent, so a bad signature cannot burn someone's
    // challenge; spent before the device is stored, so one challenge registers once.
    request
        .device
        .verify(
            &tidemark_core::registration_message(&space, &challenge),
            &signature,
        )
        .map_err(|_| AppError::BadSignature)?;
    if !state
        .registry
        .take_challenge(&request.challenge, &space, &session.user, now)
        .await?
    {
        return Err(AppError::ChallengeInvalid);
    }
    let certificate = issue_certificate(&state, &space, request.device, &session.user, role, now)?;
    let record = DeviceRecord {
        space: space.clone(),
        id: request.device,
        user: session.user.clone(),
        name: name.to_owned(),
        sdk_version: request.sdk_version.clone(),
        created_at: now,
        last_seen: now,
        last_push: None,
        revoked_at: None,
        certificate: certificate.bytes.clone(),
        certificate_expires_at: certificate.expires_at,
    };
    match state.registry.register_device(&record).await? {
        Registration::Created | Registration::Renewed => {}
        Registration::OwnedByOther => {
            return Err(AppError::DeviceNotOwned(request.device.to_string()));
        }
        Registration::Revoked => return Err(AppError::DeviceRevoked(request.device.to_string())),
    }
    state.metrics.registrations.fetch_add(1, Ordering::Relaxed);
    state.events.publish(
        &space,
        "devices",
        json!({ "reason": "registered", "device": request.device }).to_string(),
    );
    Ok((
        StatusCode::CREATED,
        Json(RegisterResponse {
            device: request.device,
            role,
            certificate: STANDARD.encode(&certificate.bytes),
            certificate_expires_at: certificate.expires_at,
            server_public_key: state.server_key.public_key(),
        }),
    ))
}

/// A signed certificate and its expiry.
pub(super) struct IssuedCertificate {
    pub(super) bytes: Vec<u8>,
    pub(super) expires_at: u64,
}

/// Signs a certificate for `device` valid from `now` for the configured lifetime.
pub(super) fn issue_certificate(
    state: &AppState,
    space: &str,
    device: DeviceId,
    user: &str,
    role: Role,
    now: u64,
) -> AppResult<IssuedCertificate> {
    let expires_at = now + state.config.certificate_ttl_secs * 1000;
    let bytes = DeviceCertificate {
        space: space.to_owned(),
        device,
        user: user.to_owned(),
        role,
        issued_at_millis: now,
        expires_at_millis: expires_at,
    }
    .sign(&state.server_key)
    .map_err(|e| AppError::Internal(format!("cannot sign certificate: {e}")))?;
    Ok(IssuedCertificate { bytes, expires_at })
}

/// The caller's role in `space`, once `device` is checked to be theirs and unrevoked.
pub(super) async fn owned_device(
    state: &AppState,
    space: &str,
    session: &Session,
    device: &DeviceId,
) -> AppResult<Role> {
    let role = role_in(state, space, session).await?;
    let record = state
        .registry
        .device(space, device)
        .await?
        .ok_or_else(|| AppError::DeviceNotFound(device.to_string()))?;
    if record.user != session.user {
        return Err(AppError::DeviceNotOwned(device.to_string()));
    }
    if record.revoked_at.is_some() {
        return Err(AppError::DeviceRevoked(device.to_string()));
    }
    Ok(role)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeviceEntry {
    id: DeviceId,
    user: String,
    name: String,
    /// The owner's current role (None once they left the space).
    role: Option<Role>,
    sdk_version: String,
    created_at: u64,
    last_seen: u64,
    last_push: Option<u64>,
    revoked_at: Option<u64>,
}

/// The device table of a space, for the API and the admin page.
pub(crate) async fn device_table(state: &AppState, space: &str) -> AppResult<Vec<DeviceEntry>> {
    let members: std::collections::HashMap<String, Role> =
        state.registry.members(space).await?.into_iter().collect();
    Ok(state
        .registry
        .devices(space)
        .await?
        .into_iter()
        .map(|d| DeviceEntry {
            role: members.get(&d.user).copied(),
            id: d.id,
            user: d.user,
            name: d.name,
            sdk_version: d.sdk_version,
            created_at: d.created_at,
            last_seen: d.last_seen,
            last_push: d.last_push,
            revoked_at: d.revoked_at,
        })
        .collect())
}

impl DeviceEntry {
    /// Cells for the admin page: name, id, user, role, SDK, last seen, last push, status.
    pub(crate) fn cells(&self) -> [String; 8] {
        [
            self.name.clone(),
            self.id.to_string()[..16].to_owned(),
            self.user.clone(),
            self.role.map_or("-".into(), |r| r.to_string()),
            self.sdk_version.clone(),
            self.last_seen.to_string(),
            self.last_push.map_or("never".into(), |t| t.to_string()),
            if self.revoked_at.is_some() {
                "revoked".into()
            } else {
                "active".into()
            },
        ]
    }
}

pub(super) async fn list(
    State(state): State<AppState>,
    session: Session,
    ApiPath(space): ApiPath<String>,
) -> AppResult<Json<Vec<DeviceEntry>>> {
    role_in(&state, &space, &session).await?;
    Ok(Json(device_table(&state, &space).await?))
}

pub(super) async fn revoke(
    State(state): State<AppState>,
    session: Session,
    ApiPath((space, device)): ApiPath<(String, String)>,
) -> AppResult<Json<serde_json::Value>> {
    let role = role_in(&state, &space, &session).await?;
    let device: DeviceId = device
        .parse()
        .map_err(|e: tidemark_core::ParseDeviceIdError| {
            AppError::invalid("device", e.to_string())
        })?;
    let record = state
        .registry
        .device(&space, &device)
        .await?
        .ok_or_else(|| AppError::DeviceNotFound(device.to_string()))?;
    if record.user != session.user {
        require(role, Role::Admin, "revoke other members' devices")?;
    }
    let now = state.clock.now_millis();
    if state.registry.revoke_device(&space, &device, now).await? {
        state.events.publish(
            &space,
            "devices",
            json!({ "reason": "revoked", "device": device }).to_string(),
        );
    }
    Ok(Json(json!({ "revoked": device })))
}
