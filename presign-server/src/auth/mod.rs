//! Who is calling: session tokens, the admin secret, invite codes, and (in [`jwt`]) identity
//! tokens from the app's own provider.
//!
//! A session token is 32 random bytes, shown once; the registry keeps only its SHA-256. Users
//! are named by how they arrived: `admin` (the admin secret), `member:<random>` (an invite),
//! `jwt:<claim>` (an identity token).

pub mod jwt;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tidemark_core::Role;

use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// The user id of whoever holds the admin secret: an admin of every space.
pub const SERVER_ADMIN: &str = "admin";

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS generator failing is not something a server can carry on from.
    getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
    bytes
}

/// A fresh secret with a readable prefix, e.g. `tms_…` for session tokens.
pub fn new_secret(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(random_bytes::<24>()))
}

/// SHA-256 of a secret, hex: what the registry stores instead of the secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares secrets without leaking where they differ through timing.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Session {
    /// The user id.
    pub user: String,
}

#[derive(Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

impl FromRequestParts<AppState> for Session {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> AppResult<Session> {
        let from_header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|v| v.trim().to_owned());
        // Browsers' EventSource cannot send headers, so the event stream also accepts
        // `?access_token=`.
        let token = match from_header {
            Some(token) => Some(token),
            None => Query::<TokenQuery>::try_from_uri(&parts.uri)
                .ok()
                .and_then(|q| q.0.access_token),
        };
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or(AppError::Unauthenticated)?;
        let user = state
            .registry
            .session_user(&hash_secret(&token), state.clock.now_millis())
            .await?
            .ok_or(AppError::InvalidSession)?;
        Ok(Session { user })
    }
}

/// The caller's role in `space`: 404 for non-members, so spaces cannot be probed.
pub async fn role_in(state: &AppState, space: &str, session: &Session) -> AppResult<Role> {
    let not_found = || AppError::SpaceNotFound(space.to_owned());
    if tidemark_core::validate_space_id(space).is_err() {
        return Err(not_found());
    }
    if session.user == SERVER_ADMIN {
        return match state.registry.space(space).await? {
            Some(_) => Ok(Role::Admin),
            None => Err(not_found()),
        };
    }
    state
        .registry
        .member_role(space, &session.user)
        .await?
        .ok_or_else(not_found)
}

/// Refuses unless `have` is at least `need`.
pub fn require(have: Role, need: Role, action: &'static str) -> AppResult<()> {
    if have >= need {
        Ok(())
    } else {
        Err(AppError::RoleTooLow { have, need, action })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_compared_whole() {
        let (a, b) = (new_secret("tms_"), new_secret("tms_"));
        assert_ne!(a, b);
        assert!(a.starts_with("tms_") && a.len() == 4 + 32);
        assert!(secrets_equal(&a, &a.clone()));
        assert!(!secrets_equal(&a, &b));
        assert!(!secrets_equal(&a, &a[..a.len() - 1]));
        assert_eq!(hash_secret("x").len(), 64);
    }
}
