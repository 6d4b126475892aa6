//! Test support: the server built from its real parts (SQLite registry, embedded s3s-fs store
//! or an external S3 server process), called in-process with `oneshot` or over a real socket.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use clap::Parser;
use serde_json::{Value, json};
use tempfile::TempDir;
use tidemark_core::{DeviceId, DeviceKey, registration_message};
use tidemark_server::clock::{Clock, ManualClock};
use tidemark_server::config::Config;
use tidemark_server::state::AppState;
// From the end-to-end harness, so that both suites start s3s-fs the same way.
use tidemark_tests::server::ExternalS3;
use tower::ServiceExt;

pub const ADMIN_SECRET: &str = "test-admin-secret-0123456789";

/// Which object store a server under test uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Embedded,
    External,
}

/// A server under test.
pub struct TestServer {
    pub state: AppState,
    pub router: Router,
    /// Set when serving a socket.
    pub url: Option<String>,
    pub clock: Arc<ManualClock>,
    pub external: Option<ExternalS3>,
    pub data: TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
    }
}

/// Server logs go to the test's captured output, shown when a test fails.
fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("tidemark_server=debug")
        .with_test_writer()
        .try_init();
}

fn config(data: &TempDir, external: Option<&ExternalS3>, extra: &[&str]) -> Config {
    let mut args: Vec<String> = vec![
        "tidemark-server".into(),
        "--data-dir".into(),
        data.path().display().to_string(),
        "--admin-secret".into(),
        ADMIN_SECRET.into(),
    ];
    if let Some(s3) = external {
        args.extend(
            [
                "--s3-endpoint",
                &s3.endpoint,
                "--s3-bucket",
                ExternalS3::BUCKET,
                "--s3-access-key-id",
                ExternalS3::ACCESS_KEY,
                "--s3-secret-access-key",
                ExternalS3::SECRET_KEY,
                "--s3-path-style",
                "--key-prefix",
                "apps/test",
            ]
            .map(String::from),
        );
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    Config::parse_from(args)
}

impl TestServer {
    /// The server without a socket, for `oneshot` calls.
    pub async fn in_process(extra: &[&str]) -> TestServer {
        init_logs();
        let data = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(SystemTime::now()));
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let (state, _) = tidemark_server::build(config(&data, None, extra), addr, clock.clone())
            .await
            .unwrap();
        TestServer {
            router: tidemark_server::app(state.clone()),
            state,
            url: None,
            clock,
            external: None,
            data,
            shutdown: None,
        }
    }

    /// The server on a real socket on 127.0.0.1, with the given store.
    pub async fn serving(kind: StoreKind, extra: &[&str]) -> TestServer {
        init_logs();
        let external = match kind {
            StoreKind::Embedded => None,
            StoreKind::External => Some(ExternalS3::start().await),
        };
        let data = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(SystemTime::now()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (state, _) = tidemark_server::build(
            config(&data, external.as_ref(), extra),
            addr,
            clock.clone() as Arc<dyn Clock>,
        )
        .await
        .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        tokio::spawn(async move {
            tidemark_server::serve(listener, served, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            router: tidemark_server::app(state.clone()),
            state,
            url: Some(format!("http://{addr}")),
            clock,
            external,
            data,
            shutdown: Some(stop),
        }
    }

    /// Calls the API: over the socket when serving one, in-process otherwise.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let body = body.map(|b| b.to_string().into_bytes());
        self.call_raw(method, path, token, body).await
    }

    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(bytes) => request
                .header("content-type", "application/json")
                .body(Body::from(bytes)),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    /// Calls the API and expects `status`; the JSON answer.
    pub async fn expect(
        &self,
        status: StatusCode,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let (got, value) = self.call(method.clone(), path, token, body).await;
        assert_eq!(got, status, "{method} {path} answered {value}");
        value
    }

    pub async fn admin_token(&self) -> String {
        let session = self
            .expect(
                StatusCode::CREATED,
                Method::POST,
                "/v1/session",
                None,
                Some(json!({ "adminSecret": ADMIN_SECRET })),
            )
            .await;
        session["token"].as_str().unwrap().to_owned()
    }

    pub async fn create_space(&self, admin: &str, space: &str) {
        self.expect(
            StatusCode::CREATED,
            Method::POST,
            "/v1/spaces",
            Some(admin),
            Some(json!({ "id": space })),
        )
        .await;
    }

    pub async fn invite(&self, admin: &str, space: &str, role: &str) -> String {
        let invite = self
            .expect(
                StatusCode::CREATED,
                Method::POST,
                &format!("/v1/spaces/{space}/invites"),
                Some(admin),
                Some(json!({ "role": role })),
            )
            .await;
        invite["code"].as_str().unwrap().to_owned()
    }

    /// A new member of `space` with `role`; their session token.
    pub async fn member(&self, admin: &str, space: &str, role: &str) -> String {
        let code = self.invite(admin, space, role).await;
        let session = self
            .expect(
                StatusCode::CREATED,
                Method::POST,
                "/v1/session",
                None,
                Some(json!({ "invite": code })),
            )
            .await;
        assert_eq!(session["space"], space);
        assert_eq!(session["role"], role);
        session["token"].as_str().unwrap().to_owned()
    }

    /// The user id of the (first) member of `space` with `role`, as an admin sees it.
    pub async fn user_with_role(&self, admin: &str, space: &str, role: &str) -> String {
        let members = self
            .expect(
                StatusCode::OK,
                Method::GET,
                &format!("/v1/spaces/{space}/members"),
                Some(admin),
                None,
            )
            .await;
        members
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["role"] == role)
            .unwrap_or_else(|| panic!("no {role} in {members}"))["user"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A registration challenge, hex.
    pub async fn challenge(&self, token: &str, space: &str) -> String {
        let challenge = self
            .expect(
                StatusCode::CREATED,
                Method::POST,
                &format!("/v1/spaces/{space}/devices/challenge"),
                Some(token),
                None,
            )
            .await;
        challenge["challenge"].as_str().unwrap().to_owned()
    }

    /// Registers a device made from `seed` for the member holding `token`.
    pub async fn device(&self, token: &str, space: &str, seed: u8) -> DeviceId {
        let key = DeviceKey::from_seed([seed; 32]);
        let challenge = self.challenge(token, space).await;
        let signature = key.sign(&registration_message(
            space,
            &hex::decode(&challenge).unwrap(),
        ));
        self.expect(
            StatusCode::CREATED,
            Method::POST,
            &format!("/v1/spaces/{space}/devices"),
            Some(token),
            Some(json!({
                "device": key.device_id(),
                "challenge": challenge,
                "signature": hex::encode(signature),
                "name": format!("device {seed}"),
                "sdkVersion": "test/1",
            })),
        )
        .await;
        key.device_id()
    }

    pub async fn grant(
        &self,
        token: &str,
        space: &str,
        device: DeviceId,
        collections: &[&str],
    ) -> Value {
        self.expect(
            StatusCode::OK,
            Method::POST,
            &format!("/v1/spaces/{space}/grants"),
            Some(token),
            Some(json!({ "device": device, "collections": collections })),
        )
        .await
    }
}
