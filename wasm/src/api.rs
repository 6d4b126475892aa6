//! The tidemark-server API and object storage over `fetch` (gloo-net), in a page or a worker.

use gloo_net::http::{Request, RequestBuilder, Response};
use js_sys::{Reflect, Uint8Array};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};
pub use tidemark_core::sync::api::{ApiError, Info, Session};
use tidemark_core::sync::{EventStream, HttpMethod, HttpOutcome, HttpRequest, ServerEvent};
use tidemark_core::{DeviceId, DeviceKey, Role, registration_message};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, ReadableStreamDefaultReader, RequestCache};

/// Sent to the server with registrations and grants, for its device list.
const SDK_VERSION: &str = concat!("tidemark-wasm/", env!("CARGO_PKG_VERSION"));

/// A client of one server.
#[derive(Clone, Debug)]
pub struct Api {
    base: String,
    token: Option<String>,
}

impl Api {
    /// A client of the server at `base` (e.g. `https://sync.example.com`).
    pub fn new(base: &str, token: Option<&str>) -> Api {
        Api {
            base: base.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
        }
    }

    fn request(&self, builder: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(token) => builder.header("authorization", &format!("Bearer {token}")),
            None => builder,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, request: Result<Request, gloo_net::Error>) -> Result<Vec<u8>, ApiError> {
        let request = request.map_err(|e| ApiError::Unreachable(e.to_string()))?;
        let response = request
            .send()
            .await
            .map_err(|e| ApiError::Unreachable(e.to_string()))?;
        let status = response.status();
        let body = response
            .binary()
            .await
            .map_err(|e| ApiError::Unreachable(e.to_string()))?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        Err(ApiError::refused(status, &body))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: Result<Request, gloo_net::Error>,
    ) -> Result<T, ApiError> {
        let body = self.send(request).await?;
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Unreachable(format!("unexpected answer: {e}")))
    }

    fn post(&self, path: &str, body: &Json) -> Result<Request, gloo_net::Error> {
        self.request(Request::post(&self.url(path))).json(body)
    }

    /// `GET /v1/info`.
    pub async fn info(&self) -> Result<Info, ApiError> {
        self.call(Request::get(&self.url("/v1/info")).build()).await
    }

    /// `POST /v1/session` with an invite code.
    pub async fn accept_invite(&self, code: &str) -> Result<Session, ApiError> {
        self.call(self.post("/v1/session", &json!({ "invite": code })))
            .await
    }

    /// Registers `key` in `space`: asks for a challenge and signs it. Returns the role.
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
            .call(self.post(&format!("/v1/spaces/{space}/devices/challenge"), &json!({})))
            .await?;
        let bytes = hex::decode(&challenge.challenge)
            .map_err(|_| ApiError::Unreachable("the challenge is not hex".into()))?;
        let signature = key.sign(&registration_message(space, &bytes));
        let registered: Registered = self
            .call(self.post(
                &format!("/v1/spaces/{space}/devices"),
                &json!({
                    "device": key.device_id(),
                    "challenge": challenge.challenge,
                    "signature": hex::encode(signature),
                    "name": name,
                    "sdkVersion": SDK_VERSION,
                }),
            ))
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
        self.send(self.post(
            &format!("/v1/spaces/{space}/grants"),
            &json!({ "device": device, "collections": collections, "sdkVersion": SDK_VERSION }),
        ))
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
        self.send(self.post(
            &format!("/v1/spaces/{space}/announce"),
            &json!({ "device": device, "collection": collection, "level": level, "etag": etag }),
        ))
        .await
        .map(drop)
    }

    /// `POST /v1/spaces/{space}/invites`: a new invite (`options`: role, expiry, uses).
    pub async fn create_invite(&self, space: &str, options: &Json) -> Result<Json, ApiError> {
        self.call(self.post(&format!("/v1/spaces/{space}/invites"), options))
            .await
    }

    /// `GET /v1/spaces/{space}/devices`: the space's devices, as the server lists them.
    pub async fn devices(&self, space: &str) -> Result<Json, ApiError> {
        self.call(
            self.request(Request::get(
                &self.url(&format!("/v1/spaces/{space}/devices")),
            ))
            .build(),
        )
        .await
    }

    /// Reads `GET /v1/spaces/{space}/events` until it ends or `signal` aborts it, handing
    /// each event to `on_event`. A streaming `fetch`, not `EventSource`: it works in service
    /// workers too and sends the token as a header.
    pub async fn events(
        &self,
        space: &str,
        last_event_id: Option<&str>,
        signal: &AbortSignal,
        mut on_event: impl FnMut(ServerEvent),
    ) -> Result<(), ApiError> {
        let mut builder = self
            .request(Request::get(
                &self.url(&format!("/v1/spaces/{space}/events")),
            ))
            .header("accept", "text/event-stream")
            .cache(RequestCache::NoStore)
            .abort_signal(Some(signal));
        if let Some(id) = last_event_id {
            builder = builder.header("last-event-id", id);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| ApiError::Unreachable(e.to_string()))?;
        if !response.ok() {
            return Err(ApiError::Refused {
                status: response.status(),
                code: "sync.events_refused".into(),
                message: "the event stream was refused".into(),
            });
        }
        let reader = body_reader(&response)?;
        let mut stream = EventStream::new();
        loop {
            let chunk = JsFuture::from(reader.read())
                .await
                .map_err(|e| ApiError::Unreachable(format!("event stream: {e:?}")))?;
            let done = Reflect::get(&chunk, &"done".into()).is_ok_and(|d| d.is_truthy());
            if done {
                return Ok(());
            }
            let value = Reflect::get(&chunk, &"value".into()).unwrap_or_default();
            let bytes = value
                .dyn_into::<Uint8Array>()
                .map(|a| a.to_vec())
                .unwrap_or_default();
            stream.push(&bytes).into_iter().for_each(&mut on_event);
        }
    }
}

fn body_reader(response: &Response) -> Result<ReadableStreamDefaultReader, ApiError> {
    let body = response
        .body()
        .ok_or_else(|| ApiError::Unreachable("the event stream has no body".into()))?;
    body.get_reader()
        .dyn_into()
        .map_err(|_| ApiError::Unreachable("the event stream cannot be read".into()))
}

/// Sends one request of the engine to object storage (a presigned URL) and reads the whole
/// answer. The HTTP cache is bypassed: the engine's `If-None-Match` must reach the store, and
/// its 304 must reach the engine.
pub async fn send_to_store(request: &HttpRequest) -> HttpOutcome {
    let builder = match request.method {
        HttpMethod::Get => Request::get(&request.url),
        HttpMethod::Put => Request::put(&request.url),
    }
    .cache(RequestCache::NoStore);
    let builder = match &request.if_none_match {
        Some(etag) => builder.header("if-none-match", etag),
        None => builder,
    };
    let built = match request.method {
        HttpMethod::Get => builder.build(),
        HttpMethod::Put => builder.body(Uint8Array::from(request.body.as_slice())),
    };
    let failed = |e: gloo_net::Error| HttpOutcome::Failed {
        reason: e.to_string(),
    };
    let response = match built {
        Ok(request) => match request.send().await {
            Ok(response) => response,
            Err(e) => return failed(e),
        },
        Err(e) => return failed(e),
    };
    let headers = response.headers();
    let etag = headers.get("etag");
    let retry_after_secs = headers
        .get("retry-after")
        .and_then(|v| v.trim().parse().ok());
    match response.binary().await {
        Ok(body) => HttpOutcome::Response {
            status: response.status(),
            etag,
            body,
            retry_after_secs,
        },
        Err(e) => failed(e),
    }
}
