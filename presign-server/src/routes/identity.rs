//! Sessions, spaces, invites and members.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tidemark_core::Role;

use super::{ApiJson, ApiPath};
use crate::auth::{self, SERVER_ADMIN, Session, hash_secret, new_secret, require, role_in};
use crate::error::{AppError, AppResult};
use crate::registry::{InviteRecord, InviteRefusal, SpaceRecord};
use crate::state::AppState;

/// Longest an invite may stay valid.
const MAX_INVITE_TTL_SECS: u64 = 30 * 24 * 3600;
/// Default invite lifetime.
const DEFAULT_INVITE_TTL_SECS: u64 = 7 * 24 * 3600;
/// Most uses one invite may allow.
const MAX_INVITE_USES: u32 = 10_000;

/// `POST /v1/session`: exactly one proof of identity.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SessionRequest {
    invite: Option<String>,
    admin_secret: Option<String>,
    jwt: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SessionResponse {
    token: String,
    user: String,
    expires_at: u64,
    /// The space joined, for invite sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    space: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
}

pub(super) async fn create_session(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<SessionRequest>,
) -> AppResult<(StatusCode, Json<SessionResponse>)> {
    let now = state.clock.now_millis();
    let (user, joined) = match (request.invite, request.admin_secret, request.jwt) {
        (Some(code), None, None) => {
            let invite = redeem(&state, &code, now).await?;
            let user = format!("member:{}", hex::encode(auth::random_bytes::<12>()));
            state
                .registry
                .add_member(&invite.space, &user, invite.role, now)
                .await?;
            publish_members_changed(&state, &invite.space, "member_added", &user);
            (user, Some((invite.space, invite.role)))
        }
        (None, Some(secret), None) => {
            if !auth::secrets_equal(&secret, &state.admin_secret) {
                return Err(AppError::BadAdminSecret);
            }
            (SERVER_ADMIN.to_owned(), None)
        }
        (None, None, Some(token)) => {
            let verifier = state.jwt.as_ref().ok_or(AppError::JwtDisabled)?;
            let subject = verifier.verify(&token, now / 1000).await?;
            (format!("jwt:{subject}"), None)
        }
        _ => {
            return Err(AppError::invalid(
                "session request",
                "send exactly one of `invite`, `adminSecret` or `jwt`",
            ));
        }
    };
    let token = new_secret("tms_");
    let expires_at = now + state.config.session_ttl_secs * 1000;
    state
        .registry
        .create_session(&hash_secret(&token), &user, expires_at)
        .await?;
    state.metrics.sessions.fetch_add(1, Ordering::Relaxed);
    let (space, role) = joined.unzip();
    Ok((
        StatusCode::CREATED,
        Json(SessionResponse {
            token,
            user,
            expires_at,
            space,
            role,
        }),
    ))
}

async fn redeem(state: &AppState, code: &str, now: u64) -> AppResult<InviteRecord> {
    match state
        .registry
        .redeem_invite(&hash_secret(code), now)
        .await?
    {
        Ok(invite) => Ok(invite),
        Err(InviteRefusal::Unknown) => Err(AppError::InviteInvalid),
        Err(InviteRefusal::Expired) => Err(AppError::InviteExpired),
        Err(InviteRefusal::Exhausted) => Err(AppError::InviteExhausted),
    }
}

/// Tells a space's subscribers that membership changed.
pub(super) fn publish_members_changed(state: &AppState, space: &str, reason: &str, user: &str) {
    state.events.publish(
        space,
        "devices",
        json!({ "reason": reason, "user": user }).to_string(),
    );
}

#[derive(Debug, Serialize)]
pub(super) struct SpaceEntry {
    id: String,
    role: Role,
}

pub(super) async fn list_spaces(
    State(state): State<AppState>,
    session: Session,
) -> AppResult<Json<Vec<SpaceEntry>>> {
    let spaces = if session.user == SERVER_ADMIN {
        state
            .registry
            .spaces()
            .await?
            .into_iter()
            .map(|s| SpaceEntry {
                id: s.id,
                role: Role::Admin,
            })
            .collect()
    } else {
        state
            .registry
            .memberships(&session.user)
            .await?
            .into_iter()
            .map(|(id, role)| SpaceEntry { id, role })
            .collect()
    };
    Ok(Json(spaces))
}

#[derive(Debug, Deserialize)]
pub(super) struct CreateSpace {
    id: String,
}

pub(super) async fn create_space(
    State(state): State<AppState>,
    session: Session,
    ApiJson(request): ApiJson<CreateSpace>,
) -> AppResult<(StatusCode, Json<SpaceEntry>)> {
    tidemark_core::validate_space_id(&request.id).map_err(|e| AppError::invalid("id", e))?;
    let created = state
        .registry
        .create_space(&SpaceRecord {
            id: request.id.clone(),
            created_by: session.user,
            created_at: state.clock.now_millis(),
        })
        .await?;
    if !created {
        return Err(AppError::SpaceExists(request.id));
    }
    Ok((
        StatusCode::CREATED,
        Json(SpaceEntry {
            id: request.id,
            role: Role::Admin,
        }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateInvite {
    role: Role,
    expires_in_secs: Option<u64>,
    max_uses: Option<u32>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InviteResponse {
    code: String,
    space: String,
    role: Role,
    expires_at: u64,
    max_uses: u32,
    /// Opens the app and joins: the code travels in the fragment, never to a server log.
    join_url: String,
}

pub(super) async fn create_invite(
    State(state): State<AppState>,
    session: Session,
    ApiPath(space): ApiPath<String>,
    ApiJson(request): ApiJson<CreateInvite>,
) -> AppResult<(StatusCode, Json<InviteResponse>)> {
    let role = role_in(&state, &space, &session).await?;
    require(role, Role::Admin, "invite members")?;
    let ttl = request.expires_in_secs.unwrap_or(DEFAULT_INVITE_TTL_SECS);
    if ttl == 0 || ttl > MAX_INVITE_TTL_SECS {
        return Err(AppError::invalid(
            "expiresInSecs",
            format!("must be 1 to {MAX_INVITE_TTL_SECS}"),
        ));
    }
    let max_uses = request.max_uses.unwrap_or(1);
    if max_uses == 0 || max_uses > MAX_INVITE_USES {
        return Err(AppError::invalid(
            "maxUses",
            format!("must be 1 to {MAX_INVITE_USES}"),
        ));
    }
    let code = new_secret("tmi_");
    let expires_at = state.clock.now_millis() + ttl * 1000;
    state
        .registry
        .create_invite(&InviteRecord {
            code_hash: hash_secret(&code),
            space: space.clone(),
            role: request.role,
            expires_at,
            max_uses,
            uses: 0,
            created_by: session.user,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(InviteResponse {
            join_url: format!("{}/#join={code}", state.public_url),
            code,
            space,
            role: request.role,
            expires_at,
            max_uses,
        }),
    ))
}

pub(super) async fn accept_invite(
    State(state): State<AppState>,
    session: Session,
    ApiPath(code): ApiPath<String>,
) -> AppResult<Json<SpaceEntry>> {
    let now = state.clock.now_millis();
    let invite = redeem(&state, &code, now).await?;
    state
        .registry
        .add_member(&invite.space, &session.user, invite.role, now)
        .await?;
    publish_members_changed(&state, &invite.space, "member_added", &session.user);
    let role = state
        .registry
        .member_role(&invite.space, &session.user)
        .await?
        .unwrap_or(invite.role);
    Ok(Json(SpaceEntry {
        id: invite.space,
        role,
    }))
}

#[derive(Debug, Serialize)]
pub(super) struct MemberEntry {
    user: String,
    role: Role,
}

pub(super) async fn list_members(
    State(state): State<AppState>,
    session: Session,
    ApiPath(space): ApiPath<String>,
) -> AppResult<Json<Vec<MemberEntry>>> {
    role_in(&state, &space, &session).await?;
    let members = state.registry.members(&space).await?;
    Ok(Json(
        members
            .into_iter()
            .map(|(user, role)| MemberEntry { user, role })
            .collect(),
    ))
}

pub(super) async fn remove_member(
    State(state): State<AppState>,
    session: Session,
    ApiPath((space, user)): ApiPath<(String, String)>,
) -> AppResult<Json<serde_json::Value>> {
    let role = role_in(&state, &space, &session).await?;
    if user != session.user {
        require(role, Role::Admin, "remove other members")?;
    }
    let revoked = state
        .registry
        .remove_member(&space, &user, state.clock.now_millis())
        .await?
        .ok_or_else(|| AppError::MemberNotFound(user.clone()))?;
    state.events.publish(
        &space,
        "devices",
        json!({ "reason": "member_removed", "user": user, "revoked": revoked }).to_string(),
    );
    Ok(Json(json!({ "removed": user, "revokedDevices": revoked })))
}
