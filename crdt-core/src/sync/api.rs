//! The tidemark-server API's shapes that every client shares: its answers to `GET /v1/info`
//! and `POST /v1/session`, and how a refusal reads. The HTTP itself is the drivers'
//! (reqwest natively, `fetch` in the browser).

use serde::Deserialize;

use crate::certificate::{Role, ServerPublicKey};

/// A refusal or failure of the server API.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The server answered with an error: its status and `{code, message}`.
    #[error("server refused ({status} {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's stable error code.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The server could not be reached or answered something unreadable.
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
}

impl ApiError {
    /// The refusal a non-2xx answer carries: its JSON body's `code` and `message`, or the
    /// status when the body says nothing readable.
    pub fn refused(status: u16, body: &[u8]) -> ApiError {
        let error: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let text = |field: &str| {
            error[field]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {status}"))
        };
        ApiError::Refused {
            status,
            code: text("code"),
            message: text("message"),
        }
    }

    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Refused { status, .. } => Some(*status),
            ApiError::Unreachable(_) => None,
        }
    }

    /// A stable code: the server's, or `sync.unreachable`.
    pub fn code(&self) -> &str {
        match self {
            ApiError::Refused { code, .. } => code,
            ApiError::Unreachable(_) => "sync.unreachable",
        }
    }
}

/// `GET /v1/info`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    /// The key that signs certificates and grants' revocation lists.
    pub server_public_key: ServerPublicKey,
    /// The server's clock.
    pub server_time: u64,
}

/// A session from `POST /v1/session`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// Bearer token.
    pub token: String,
    /// The member.
    pub user: String,
    /// When the token expires (server time).
    pub expires_at: u64,
    /// The space joined (invite sessions).
    pub space: Option<String>,
    /// The role in it.
    pub role: Option<Role>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_the_servers_code_or_fall_back_to_the_status() {
        let body = br#"{"code":"invite.invalid","message":"no such invite"}"#;
        let error = ApiError::refused(404, body);
        assert_eq!(error.code(), "invite.invalid");
        assert_eq!(error.status(), Some(404));
        assert_eq!(ApiError::refused(502, b"<html>").code(), "HTTP 502");
        assert_eq!(ApiError::Unreachable("x".into()).code(), "sync.unreachable");
    }
}
