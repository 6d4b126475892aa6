//! The tidemark-server HTTP API, as the native client uses it.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tidemark_core::{DeviceId, DeviceKey, Role, registration_message};

pub use tidemark_core::sync::api::{ApiError, Info, Session};

/// A client of one server, with or without a session.
#[derive(Clone, Debug)]
pub struct Api {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Api {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8787`).
    pub fn new(base: &str, http: reqwest::Client) -> Api {
        Api {
            base: base.trim_end_matches('/').to_string(),
            http,
            token: None,
        }
    }

    /// The same client, authenticated by `token`.
    pub fn with_token(mut self, token: &str) -> Api {
        self.token = Some(token.to_string());
        self
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The session token, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, ApiError> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|e| ApiError::Unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| ApiError::Unreachable(e.to_string()))?;
        if (200..300).contains(&status) {
            return Ok(body.to_vec());
        }
        Err(ApiError::refused(status, &body))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ApiError> {
        let body = self.send(request).await?;
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Unreachable(format!("unexpected answer: {e}")))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /v1/info`.
    pub async fn info(&self) -> Result<Info, ApiError> {
        self.call(self.http.get(self.url("/v1/info"))).await
    }

    /// `POST /v1/session` with an invite code.
    pub async fn accept_invite(&self, code: &str) -> Result<Session, ApiError> {
        self.call(
            self.http
                .post(self.url("/v1/session"))
                .json(&json!({ "invite": code })),
        )
        .await
    }

    /// `POST /v1/session` with the admin secret.
    pub async fn admin_session(&self, secret: &str) -> Result<Session, ApiError> {
        self.call(
            self.http
                .post(self.url("/v1/session"))
                .json(&json!({ "adminSecret": secret })),
        )
        .await
    }

    /// Registers `key` in `space`: asks for a challenge and answers it with a signature.
    /// Returns the role the device syncs with.
    pub async fn register_device(
        &self,
        space: &str,
        key: &DeviceKey,
        name: &str,
    ) -> Result<Role, ApiError> {
        #[derive(Deserialize)]
        struct Challenge {
            challenge: String,
        }
        #[derive(Deserialize)]
        struct Registered {
            role: Role,
        }
        let challenge: Challenge = self
            .call(
                self.http
                    .post(self.url(&format!("/v1/spaces/{space}/devices/challenge"))),
            )
            .await?;
        let bytes = hex::decode(&challenge.challenge)
            .map_err(|_| ApiError::Unreachable("challenge is not hex".into()))?;
        let signature = key.sign(&registration_message(space, &bytes));
        let registered: Registered = self
            .call(
                self.http
                    .post(self.url(&format!("/v1/spaces/{space}/devices")))
                    .json(&json!({
                        "device": key.device_id(),
                        "challenge": challenge.challenge,
                        "signature": hex::encode(signature),
                        "name": name,
                        "sdkVersion": concat!("tidemark-cli/", env!("CARGO_PKG_VERSION")),
                    })),
            )
            .await?;
        Ok(registered.role)
    }

    /// `POST /v1/spaces/{space}/grants`: the grant's JSON, for the engine to check.
    pub async fn grant(
        &self,
        space: &str,
        device: DeviceId,
        collections: &[String],
    ) -> Result<Vec<u8>, ApiError> {
        self.send(
            self.http
                .post(self.url(&format!("/v1/spaces/{space}/grants")))
                .json(&json!({
                    "device": device,
                    "collections": collections,
                    "sdkVersion": concat!("tidemark-cli/", env!("CARGO_PKG_VERSION")),
                })),
        )
        .await
    }

    /// `POST /v1/spaces/{space}/announce`.
    pub async fn announce(
        &self,
        space: &str,
        device: DeviceId,
        collection: &str,
        level: u8,
        etag: Option<&str>,
    ) -> Result<(), ApiError> {
        self.send(
            self.http
                .post(self.url(&format!("/v1/spaces/{space}/announce")))
                .json(&json!({
                    "device": device,
                    "collection": collection,
                    "level": level,
                    "etag": etag,
                })),
        )
        .await
        .map(drop)
    }

    /// `POST /v1/spaces/{space}/invites`: an invite code (admins only).
    pub async fn invite(&self, space: &str, role: Role) -> Result<String, ApiError> {
        #[derive(Deserialize)]
        struct Invite {
            code: String,
        }
        let invite: Invite = self
            .call(
                self.http
                    .post(self.url(&format!("/v1/spaces/{space}/invites")))
                    .json(&json!({ "role": role })),
            )
            .await?;
        Ok(invite.code)
    }

    /// `DELETE /v1/spaces/{space}/devices/{device}` (admins only).
    pub async fn revoke_device(&self, space: &str, device: DeviceId) -> Result<(), ApiError> {
        self.send(
            self.http
                .delete(self.url(&format!("/v1/spaces/{space}/devices/{device}"))),
        )
        .await
        .map(drop)
    }

    /// Opens the event stream (`GET /v1/spaces/{space}/events`), resuming after
    /// `last_event_id`.
    pub async fn events(
        &self,
        space: &str,
        last_event_id: Option<&str>,
    ) -> Result<reqwest::Response, ApiError> {
        let mut request = self
            .http
            .get(self.url(&format!("/v1/spaces/{space}/events")))
            .header("accept", "text/event-stream");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ApiError::Unreachable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(ApiError::Refused {
                status: response.status().as_u16(),
                code: "events.refused".into(),
                message: "the event stream was refused".into(),
            });
        }
        Ok(response)
    }
}
