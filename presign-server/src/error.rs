//! Every refusal the server gives: an [`AppError`] becomes a JSON body
//! `{ "code": "…", "message": "…" }` with a fitting status. Codes are stable; messages say what
//! to do. Internal causes go to the log, never to the client.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A refusal with a stable code.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No credentials were presented.
    #[error("authentication required: send `Authorization: Bearer <session token>`")]
    Unauthenticated,
    /// The session token is unknown or expired.
    #[error("session token is unknown or expired; start a new session")]
    InvalidSession,
    /// The admin secret is wrong.
    #[error("admin secret is wrong")]
    BadAdminSecret,
    /// An invite code that does not exist.
    #[error("invite code is not valid")]
    InviteInvalid,
    /// An invite past its expiry.
    #[error("invite has expired; ask an admin of the space for a new one")]
    InviteExpired,
    /// An invite used as often as it allows.
    #[error("invite has been used as many times as it allows")]
    InviteExhausted,
    /// A JWT that does not verify.
    #[error("identity token refused: {0}")]
    Jwt(#[from] crate::auth::jwt::JwtError),
    /// JWT sessions are not configured on this server.
    #[error("this server does not accept identity tokens (no JWT secret or JWKS configured)")]
    JwtDisabled,
    /// The space does not exist, or the caller may not know of it.
    #[error("space {0:?} not found")]
    SpaceNotFound(String),
    /// A space with this id exists already.
    #[error("space {0:?} already exists")]
    SpaceExists(String),
    /// The caller is a member, but their role does not allow this.
    #[error("your role in this space ({have}) cannot {action}; it needs {need}")]
    RoleTooLow {
        /// The caller's role.
        have: tidemark_core::Role,
        /// The role needed.
        need: tidemark_core::Role,
        /// What was attempted.
        action: &'static str,
    },
    /// The device is not registered in this space.
    #[error("device {0} is not registered in this space; register it first")]
    DeviceNotFound(String),
    /// The device belongs to another member.
    #[error("device {0} belongs to another member")]
    DeviceNotOwned(String),
    /// The device was revoked.
    #[error("device {0} has been revoked from this space")]
    DeviceRevoked(String),
    /// A registration challenge that is unknown, used or expired.
    #[error("registration challenge is unknown, used or expired; request a new one")]
    ChallengeInvalid,
    /// Proof of possession failed.
    #[error("signature over the challenge does not verify against the device key")]
    BadSignature,
    /// The member does not exist in the space.
    #[error("{0:?} is not a member of this space")]
    MemberNotFound(String),
    /// A blob upload that does not exist.
    #[error("no upload in progress for this blob; start it again")]
    UploadNotFound,
    /// A blob that is not in the bucket.
    #[error("blob {0} not found")]
    BlobNotFound(String),
    /// A completed upload whose content does not hash to its name.
    #[error("uploaded content does not match its sha256 {0}; the upload was discarded")]
    BlobDigestMismatch(String),
    /// The upload is not complete.
    #[error("upload is missing parts {0:?}; upload them and complete again")]
    UploadIncomplete(Vec<i32>),
    /// A blob larger than the server allows.
    #[error("blob of {size} bytes is larger than this server's limit of {limit} bytes")]
    BlobTooLarge {
        /// The size asked for.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A request field with a bad value.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A body that is not the JSON the route expects.
    #[error("request body is not valid: {0}")]
    Malformed(String),
    /// A body over the size limit.
    #[error("request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    /// Too many requests from this address.
    #[error("too many requests; retry after {0} s")]
    RateLimited(u64),
    /// The request took too long.
    #[error("request took longer than the server's timeout")]
    Timeout,
    /// No such route.
    #[error("no such route; see GET /v1/info")]
    NoRoute,
    /// The object store did not answer as expected.
    #[error("object store is unavailable; retry later")]
    Store(String),
    /// Anything else: details are logged, not sent.
    #[error("internal error; the server log has the details")]
    Internal(String),
}

impl AppError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated => "auth.required",
            AppError::InvalidSession => "auth.invalid_session",
            AppError::BadAdminSecret => "auth.bad_admin_secret",
            AppError::InviteInvalid => "invite.invalid",
            AppError::InviteExpired => "invite.expired",
            AppError::InviteExhausted => "invite.exhausted",
            AppError::Jwt(e) => e.code(),
            AppError::JwtDisabled => "jwt.disabled",
            AppError::SpaceNotFound(_) => "space.not_found",
            AppError::SpaceExists(_) => "space.exists",
            AppError::RoleTooLow { .. } => "role.insufficient",
            AppError::DeviceNotFound(_) => "device.not_found",
            AppError::DeviceNotOwned(_) => "device.not_owned",
            AppError::DeviceRevoked(_) => "device.revoked",
            AppError::ChallengeInvalid => "device.challenge_invalid",
            AppError::BadSignature => "device.bad_signature",
            AppError::MemberNotFound(_) => "member.not_found",
            AppError::UploadNotFound => "blob.upload_not_found",
            AppError::BlobNotFound(_) => "blob.not_found",
            AppError::BlobDigestMismatch(_) => "blob.digest_mismatch",
            AppError::UploadIncomplete(_) => "blob.upload_incomplete",
            AppError::BlobTooLarge { .. } => "blob.too_large",
            AppError::Invalid { .. } => "request.invalid",
            AppError::Malformed(_) => "request.malformed",
            AppError::TooLarge(_) => "request.too_large",
            AppError::RateLimited(_) => "request.rate_limited",
            AppError::Timeout => "request.timeout",
            AppError::NoRoute => "request.no_route",
            AppError::Store(_) => "store.unavailable",
            AppError::Internal(_) => "internal",
        }
    }

    /// The HTTP status that fits.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Unauthenticated
            | AppError::InvalidSession
            | AppError::BadAdminSecret
            | AppError::Jwt(_) => StatusCode::UNAUTHORIZED,
            AppError::InviteInvalid | AppError::SpaceNotFound(_) => StatusCode::NOT_FOUND,
            AppError::InviteExpired | AppError::InviteExhausted => StatusCode::GONE,
            AppError::JwtDisabled => StatusCode::BAD_REQUEST,
            AppError::RoleTooLow { .. }
            | AppError::DeviceNotOwned(_)
            | AppError::DeviceRevoked(_)
            | AppError::BadSignature
            | AppError::ChallengeInvalid => StatusCode::FORBIDDEN,
            AppError::DeviceNotFound(_)
            | AppError::MemberNotFound(_)
            | AppError::UploadNotFound
            | AppError::BlobNotFound(_)
            | AppError::NoRoute => StatusCode::NOT_FOUND,
            AppError::SpaceExists(_) | AppError::UploadIncomplete(_) => StatusCode::CONFLICT,
            AppError::BlobDigestMismatch(_) | AppError::Invalid { .. } | AppError::Malformed(_) => {
                StatusCode::BAD_REQUEST
            }
            AppError::BlobTooLarge { .. } | AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Timeout => StatusCode::REQUEST_TIMEOUT,
            AppError::Store(_) => StatusCode::BAD_GATEWAY,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A request field with a bad value.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> AppError {
        AppError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// The JSON body of every refusal.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// Stable, machine-readable code.
    pub code: &'static str,
    /// What went wrong and what to do, for people.
    pub message: String,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match &self {
            AppError::Internal(detail) => tracing::error!(%detail, "internal error"),
            AppError::Store(detail) => tracing::warn!(%detail, "object store error"),
            _ => {}
        }
        let status = self.status();
        let mut response = (
            status,
            Json(ErrorBody {
                code: self.code(),
                message: self.to_string(),
            }),
        )
            .into_response();
        if let AppError::RateLimited(seconds) = self
            && let Ok(value) = seconds.to_string().parse()
        {
            response.headers_mut().insert("retry-after", value);
        }
        response
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> AppError {
        match rejection {
            JsonRejection::BytesRejection(_)
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                AppError::TooLarge(crate::routes::API_BODY_LIMIT_BYTES)
            }
            other => AppError::Malformed(other.body_text()),
        }
    }
}

impl From<PathRejection> for AppError {
    fn from(rejection: PathRejection) -> AppError {
        AppError::Malformed(rejection.body_text())
    }
}

impl From<QueryRejection> for AppError {
    fn from(rejection: QueryRejection) -> AppError {
        AppError::Malformed(rejection.body_text())
    }
}

impl From<crate::registry::RegistryError> for AppError {
    fn from(error: crate::registry::RegistryError) -> AppError {
        AppError::Internal(error.to_string())
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(error: crate::store::StoreError) -> AppError {
        AppError::Store(error.to_string())
    }
}

/// Handler result.
pub type AppResult<T> = Result<T, AppError>;
