//! Handler tests: the whole app called in-process with `oneshot`, with its real registry and
//! embedded store, and a manual clock for everything that expires.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{ADMIN_SECRET, TestServer};
use serde_json::{Value, json};
use tidemark_core::{DeviceCertificate, DeviceKey, RevocationList, Role, ServerPublicKey};
use tower::ServiceExt;

fn code(value: &Value) -> &str {
    value["code"].as_str().unwrap_or("<no code>")
}

#[tokio::test]
async fn info_tells_the_server_key_time_and_auth_modes() {
    let server = TestServer::in_process(&[]).await;
    let info = server
        .expect(StatusCode::OK, Method::GET, "/v1/info", None, None)
        .await;
    assert_eq!(
        info["serverPublicKey"].as_str().unwrap(),
        server.state.server_key.public_key().to_string()
    );
    assert_eq!(info["levels"], 6);
    assert_eq!(info["authModes"], json!(["invite", "adminSecret"]));
    assert_eq!(info["serverTime"], server.state.clock.now_millis());
}

#[tokio::test]
async fn every_refusal_is_json_with_a_stable_code() {
    let server = TestServer::in_process(&[]).await;
    let (status, body) = server
        .call_raw(
            Method::POST,
            "/v1/session",
            None,
            Some(b"{not json".to_vec()),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "request.malformed")
    );

    let (status, body) = server
        .call(
            Method::POST,
            "/v1/session",
            None,
            Some(json!({ "invite": 7 })),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "request.malformed")
    );

    let (status, body) = server
        .call(
            Method::POST,
            "/v1/session",
            None,
            Some(json!({ "invite": "x", "adminSecret": "y" })),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "request.invalid")
    );

    let oversized = json!({ "invite": "x".repeat(100 * 1024) });
    let (status, body) = server
        .call(Method::POST, "/v1/session", None, Some(oversized))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "request.too_large")
    );

    let (status, body) = server.call(Method::GET, "/v1/spaces", None, None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "auth.required")
    );

    let (status, body) = server
        .call(Method::GET, "/v1/spaces", Some("tms_forged"), None)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "auth.invalid_session")
    );

    let (status, body) = server
        .call(
            Method::POST,
            "/v1/session",
            None,
            Some(json!({ "adminSecret": "wrong" })),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "auth.bad_admin_secret")
    );

    let (status, body) = server
        .call(
            Method::POST,
            "/v1/session",
            None,
            Some(json!({ "jwt": "a.b.c" })),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "jwt.disabled")
    );

    let (status, body) = server
        .call(Method::GET, "/v1/nothing-here", None, None)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "request.no_route")
    );

    let (status, body) = server
        .call(
            Method::POST,
            "/v1/session",
            None,
            Some(json!({ "invite": "tmi_guess" })),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "invite.invalid")
    );
    assert!(
        body["message"].as_str().unwrap().len() > 10,
        "messages say what to do"
    );
}

#[tokio::test]
async fn invites_expire_and_run_out() {
    let server = TestServer::in_process(&[]).await;
    let admin = server.admin_token().await;
    let twice = server
        .expect(
            StatusCode::CREATED,
            Method::POST,
            "/v1/spaces/default/invites",
            Some(&admin),
            Some(json!({ "role": "writer", "maxUses": 2, "expiresInSecs": 60 })),
        )
        .await;
    assert!(twice["joinUrl"].as_str().unwrap().contains("#join=tmi_"));
    let code_of = |v: &Value| v["code"].as_str().unwrap().to_owned();
    let session = json!({ "invite": code_of(&twice) });
    for _ in 0..2 {
        server
            .expect(
                StatusCode::CREATED,
                Method::POST,
                "/v1/session",
                None,
                Some(session.clone()),
            )
            .await;
    }
    let (status, body) = server
        .call(Method::POST, "/v1/session", None, Some(session))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::GONE, "invite.exhausted")
    );

    let short = server
        .expect(
            StatusCode::CREATED,
            Method::POST,
            "/v1/spaces/default/invites",
            Some(&admin),
            Some(json!({ "role": "reader", "expiresInSecs": 60 })),
        )
        .await;
    server.clock.advance(Duration::from_secs(61));
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/session",
            None,
            Some(json!({ "invite": code_of(&short) })),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::GONE, "invite.expired"));

    let (status, body) = server
        .call(
            Method::POST,
            "/v1/spaces/default/invites",
            Some(&admin),
            Some(json!({ "role": "owner" })),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "request.malformed")
    );
}

#[tokio::test]
async fn sessions_expire_with_the_clock() {
    let server = TestServer::in_process(&["--session-ttl-secs", "60"]).await;
    let admin = server.admin_token().await;
    server
        .expect(
            StatusCode::OK,
            Method::GET,
            "/v1/spaces",
            Some(&admin),
            None,
        )
        .await;
    server.clock.advance(Duration::from_secs(61));
    let (status, body) = server
        .call(Method::GET, "/v1/spaces", Some(&admin), None)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "auth.invalid_session")
    );
}

#[tokio::test]
async fn jwt_sessions_map_the_configured_claim_to_a_user() {
    let secret = "an-hs256-secret-of-the-identity-provider";
    let server = TestServer::in_process(&["--jwt-hs256-secret", secret]).await;
    let now = server.state.clock.now_millis() / 1000;
    let token = |exp: u64| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({ "sub": "alice", "exp": exp }),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let session = server
        .expect(
            StatusCode::CREATED,
            Method::POST,
            "/v1/session",
            None,
            Some(json!({ "jwt": token(now + 600) })),
        )
        .await;
    assert_eq!(session["user"], "jwt:alice");
    // A JWT user can make a space and becomes its admin.
    let alice = session["token"].as_str().unwrap();
    server.create_space(alice, "alices").await;
    let spaces = server
        .expect(StatusCode::OK, Method::GET, "/v1/spaces", Some(alice), None)
        .await;
    assert_eq!(spaces, json!([{ "id": "alices", "role": "admin" }]));

    let (status, body) = server
        .call(
            Method::POST,
            "/v1/session",
            None,
            Some(json!({ "jwt": token(now - 600) })),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "jwt.expired")
    );
}

#[tokio::test]
async fn registration_needs_a_fresh_challenge_signed_by_the_device_key() {
    let server = TestServer::in_process(&[]).await;
    let admin = server.admin_token().await;
    let writer = server.member(&admin, "default", "writer").await;
    let key = DeviceKey::from_seed([9; 32]);
    let register = |challenge: String, signature: [u8; 64]| {
        json!({
            "device": key.device_id(),
            "challenge": challenge,
            "signature": hex::encode(signature),
            "name": "Counter tablet",
        })
    };
    let sign = |space: &str, challenge: &str| {
        key.sign(&tidemark_core::registration_message(
            space,
            &hex::decode(challenge).unwrap(),
        ))
    };

    // Signed by another key: refused, and the challenge is still usable afterwards.
    let c = server.challenge(&writer, "default").await;
    let forged = DeviceKey::from_seed([8; 32]).sign(&tidemark_core::registration_message(
        "default",
        &hex::decode(&c).unwrap(),
    ));
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/spaces/default/devices",
            Some(&writer),
            Some(register(c.clone(), forged)),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "device.bad_signature")
    );

    // Signed for another space: refused.
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/spaces/default/devices",
            Some(&writer),
            Some(register(c.clone(), sign("elsewhere", &c))),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "device.bad_signature")
    );

    let registered = server
        .expect(
            StatusCode::CREATED,
            Method::POST,
            "/v1/spaces/default/devices",
            Some(&writer),
            Some(register(c.clone(), sign("default", &c))),
        )
        .await;
    // The certificate verifies offline with the server's public key.
    let server_key: ServerPublicKey = registered["serverPublicKey"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let certificate = DeviceCertificate::verify(
        &STANDARD
            .decode(registered["certificate"].as_str().unwrap())
            .unwrap(),
        &server_key,
    )
    .unwrap();
    assert_eq!(certificate.device, key.device_id());
    assert_eq!(certificate.role, Role::Writer);
    assert_eq!(certificate.space, "default");

    // A challenge works once.
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/spaces/default/devices",
            Some(&writer),
            Some(register(c.clone(), sign("default", &c))),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "device.challenge_invalid")
    );

    // And expires after five minutes.
    let late = server.challenge(&writer, "default").await;
    server.clock.advance(Duration::from_secs(301));
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/spaces/default/devices",
            Some(&writer),
            Some(register(late.clone(), sign("default", &late))),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "device.challenge_invalid")
    );

    // Another member cannot take over a registered key, even with a valid signature.
    let other = server.member(&admin, "default", "writer").await;
    let c = server.challenge(&other, "default").await;
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/spaces/default/devices",
            Some(&other),
            Some(register(c.clone(), sign("default", &c))),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "device.not_owned")
    );
}

#[tokio::test]
async fn grant_holds_own_put_urls_every_devices_get_urls_and_signed_certificates() {
    let server = TestServer::in_process(&[]).await;
    let admin = server.admin_token().await;
    let writer = server.member(&admin, "default", "writer").await;
    let reader = server.member(&admin, "default", "reader").await;
    let mine = server.device(&writer, "default", 1).await;
    let theirs = server.device(&reader, "default", 2).await;

    let grant = server
        .grant(&writer, "default", mine, &["orders", "menu"])
        .await;
    assert_eq!(grant["role"], "writer");
    assert_eq!(grant["serverTime"], server.state.clock.now_millis());
    assert_eq!(
        grant["expiresAt"].as_u64().unwrap(),
        server.state.clock.now_millis() + 24 * 3600 * 1000
    );
    for collection in ["orders", "menu"] {
        let puts = grant["put"][collection].as_array().unwrap();
        assert_eq!(puts.len(), 6);
        for (level, url) in puts.iter().enumerate() {
            let url = url.as_str().unwrap();
            assert!(
                url.contains(&format!("/default/d/{mine}/{collection}/L{level}?")),
                "{url}"
            );
        }
        let gets = grant["get"][collection].as_object().unwrap();
        assert_eq!(gets.len(), 2, "both devices, own included");
        assert_eq!(gets[&theirs.to_string()].as_array().unwrap().len(), 6);
    }
    let server_key = server.state.server_key.public_key();
    let certificates: Vec<DeviceCertificate> = grant["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            DeviceCertificate::verify(&STANDARD.decode(c.as_str().unwrap()).unwrap(), &server_key)
                .unwrap()
        })
        .collect();
    assert_eq!(certificates.len(), 2);
    assert!(
        certificates
            .iter()
            .any(|c| c.device == theirs && c.role == Role::Reader)
    );

    let reader_grant = server.grant(&reader, "default", theirs, &["orders"]).await;
    assert_eq!(reader_grant["put"], json!({}), "a reader gets no PUT URLs");
    assert_eq!(reader_grant["get"]["orders"].as_object().unwrap().len(), 2);

    for (collections, expected) in [
        (json!(["bad/name"]), "request.invalid"),
        (
            json!((0..65).map(|i| format!("c{i}")).collect::<Vec<_>>()),
            "request.invalid",
        ),
    ] {
        let (status, body) = server
            .call(
                Method::POST,
                "/v1/spaces/default/grants",
                Some(&writer),
                Some(json!({ "device": mine, "collections": collections })),
            )
            .await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, expected));
    }
}

#[tokio::test]
async fn revoked_devices_get_no_grant_and_appear_in_the_signed_revocation_list() {
    let server = TestServer::in_process(&[]).await;
    let admin = server.admin_token().await;
    let writer = server.member(&admin, "default", "writer").await;
    let lost = server.device(&writer, "default", 1).await;
    let kept = server.device(&writer, "default", 2).await;
    server
        .expect(
            StatusCode::OK,
            Method::DELETE,
            &format!("/v1/spaces/default/devices/{lost}"),
            Some(&admin),
            None,
        )
        .await;
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/spaces/default/grants",
            Some(&writer),
            Some(json!({ "device": lost, "collections": ["orders"] })),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "device.revoked")
    );

    let grant = server.grant(&writer, "default", kept, &["orders"]).await;
    let revocations = RevocationList::verify(
        &STANDARD
            .decode(grant["revocations"].as_str().unwrap())
            .unwrap(),
        &server.state.server_key.public_key(),
    )
    .unwrap();
    assert_eq!(
        revocations.revoked_at(&lost),
        Some(server.state.clock.now_millis())
    );
    assert_eq!(revocations.revoked_at(&kept), None);

    // Removing the member revokes the rest of their devices and ends their access.
    server
        .expect(
            StatusCode::OK,
            Method::GET,
            "/v1/spaces/default/members",
            Some(&writer),
            None,
        )
        .await;
    let user = server.user_with_role(&admin, "default", "writer").await;
    let removed = server
        .expect(
            StatusCode::OK,
            Method::DELETE,
            &format!("/v1/spaces/default/members/{user}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(removed["revokedDevices"], json!([kept]));
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/spaces/default/grants",
            Some(&writer),
            Some(json!({ "device": kept, "collections": ["orders"] })),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "space.not_found")
    );
}

/// One cell of the matrix: action, method, path, body, expected status and code.
type Case = (&'static str, Method, String, Value, (u16, &'static str));

/// Role × action × own/other device × own/other space: every cell's status and code.
#[tokio::test]
async fn authorization_matrix() {
    // Blob routes ask the store whether a blob exists, so the store must be listening.
    let server = TestServer::serving(common::StoreKind::Embedded, &[]).await;
    let admin = server.admin_token().await;
    server.create_space(&admin, "beta").await;
    let beta_member = server.member(&admin, "beta", "writer").await;
    let beta_device = server.device(&beta_member, "beta", 200).await;
    let bystander = server.member(&admin, "default", "writer").await;

    let blob = "ab".repeat(32);
    let mut failures = Vec::new();
    for (seed, role) in [
        (10u8, "reader"),
        (20, "writer"),
        (30, "admin"),
        (40, "outsider"),
    ] {
        // An outsider holds a session (a member of beta only) but is no member of default.
        let token = match role {
            "outsider" => server.member(&admin, "beta", "writer").await,
            role => server.member(&admin, "default", role).await,
        };
        let own = match role {
            "outsider" => server.device(&token, "beta", seed).await,
            _ => server.device(&token, "default", seed).await,
        };
        let other = server.device(&bystander, "default", seed + 1).await;
        let spare = match role {
            "outsider" => own,
            _ => server.device(&token, "default", seed + 2).await,
        };
        let member = role != "outsider";
        let writes = matches!(role, "writer" | "admin");
        let is_admin = role == "admin";
        let ok_if = |allowed: bool, status: u16, refusal: (u16, &'static str)| {
            if allowed { (status, "") } else { refusal }
        };
        let not_member = (404, "space.not_found");
        let gate = |rule: (u16, &'static str)| if member { rule } else { not_member };
        let cases: Vec<Case> = vec![
            (
                "grant own device",
                Method::POST,
                "/v1/spaces/default/grants".into(),
                json!({ "device": own, "collections": ["orders"] }),
                gate((200, "")),
            ),
            (
                "grant other member's device",
                Method::POST,
                "/v1/spaces/default/grants".into(),
                json!({ "device": other, "collections": ["orders"] }),
                gate((403, "device.not_owned")),
            ),
            (
                "grant in other space",
                Method::POST,
                "/v1/spaces/beta/grants".into(),
                json!({ "device": beta_device, "collections": ["orders"] }),
                if member {
                    not_member
                } else {
                    (403, "device.not_owned")
                },
            ),
            (
                "announce own device",
                Method::POST,
                "/v1/spaces/default/announce".into(),
                json!({ "device": own, "collection": "orders", "level": 0 }),
                gate(ok_if(writes, 202, (403, "role.insufficient"))),
            ),
            (
                "announce as other device",
                Method::POST,
                "/v1/spaces/default/announce".into(),
                json!({ "device": other, "collection": "orders", "level": 0 }),
                gate((403, "device.not_owned")),
            ),
            (
                "announce in other space",
                Method::POST,
                "/v1/spaces/beta/announce".into(),
                json!({ "device": beta_device, "collection": "orders", "level": 0 }),
                if member {
                    not_member
                } else {
                    (403, "device.not_owned")
                },
            ),
            (
                "upload blob",
                Method::POST,
                "/v1/spaces/default/blobs".into(),
                json!({ "device": own, "sha256": blob, "size": 10 }),
                gate(ok_if(writes, 200, (403, "role.insufficient"))),
            ),
            (
                "upload blob as other device",
                Method::POST,
                "/v1/spaces/default/blobs".into(),
                json!({ "device": other, "sha256": blob, "size": 10 }),
                gate((403, "device.not_owned")),
            ),
            (
                "download blob",
                Method::GET,
                format!("/v1/spaces/default/blobs/{blob}"),
                Value::Null,
                gate((404, "blob.not_found")),
            ),
            (
                "invite",
                Method::POST,
                "/v1/spaces/default/invites".into(),
                json!({ "role": "reader" }),
                gate(ok_if(is_admin, 201, (403, "role.insufficient"))),
            ),
            (
                "list devices",
                Method::GET,
                "/v1/spaces/default/devices".into(),
                Value::Null,
                gate((200, "")),
            ),
            (
                "list devices of other space",
                Method::GET,
                "/v1/spaces/beta/devices".into(),
                Value::Null,
                if member { not_member } else { (200, "") },
            ),
            (
                "events of other space",
                Method::GET,
                "/v1/spaces/beta/events".into(),
                Value::Null,
                if member { not_member } else { (200, "") },
            ),
            (
                "revoke other member's device",
                Method::DELETE,
                format!("/v1/spaces/default/devices/{other}"),
                Value::Null,
                gate(ok_if(is_admin, 200, (403, "role.insufficient"))),
            ),
            (
                "revoke own device",
                Method::DELETE,
                format!("/v1/spaces/default/devices/{spare}"),
                Value::Null,
                gate((200, "")),
            ),
        ];
        for (action, method, path, body, (status, expected)) in cases {
            if path.ends_with("/events") && status == 200 {
                continue; // A stream: covered by the socket tests.
            }
            let body = (!body.is_null()).then_some(body);
            let (got, answer) = server.call(method, &path, Some(&token), body).await;
            let got_code = answer["code"].as_str().unwrap_or("");
            if got.as_u16() != status || (!expected.is_empty() && got_code != expected) {
                failures.push(format!(
                    "{role:8} {action:30} expected {status} {expected}, got {got} {answer}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[tokio::test]
async fn credential_routes_are_rate_limited_per_address() {
    let server = TestServer::in_process(&["--auth-rate-per-minute", "3"]).await;
    for _ in 0..3 {
        server.admin_token().await;
    }
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/session",
            None,
            Some(json!({ "adminSecret": ADMIN_SECRET })),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "request.rate_limited")
    );
    // Other routes are not limited.
    server
        .expect(StatusCode::OK, Method::GET, "/v1/info", None, None)
        .await;
}

#[tokio::test]
async fn admin_page_needs_the_admin_secret_and_lists_devices() {
    let server = TestServer::in_process(&[]).await;
    let admin = server.admin_token().await;
    let writer = server.member(&admin, "default", "writer").await;
    server.device(&writer, "default", 3).await;
    let page = |auth: Option<String>| {
        let mut request = Request::builder().uri("/admin");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        server
            .router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
    };
    let refused = page(None).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(
        refused.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let wrong = page(Some(format!("Basic {}", STANDARD.encode("admin:nope"))))
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let shown = page(Some(format!(
        "Basic {}",
        STANDARD.encode(format!("admin:{ADMIN_SECRET}"))
    )))
    .await
    .unwrap();
    assert_eq!(shown.status(), StatusCode::OK);
    let html = String::from_utf8(
        axum::body::to_bytes(shown.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        html.contains("device 3") && html.contains("test/1"),
        "{html}"
    );

    let devices = server
        .expect(
            StatusCode::OK,
            Method::GET,
            "/v1/spaces/default/devices",
            Some(&writer),
            None,
        )
        .await;
    assert_eq!(devices[0]["name"], "device 3");
    assert_eq!(devices[0]["role"], "writer");
    assert_eq!(devices[0]["sdkVersion"], "test/1");
    assert_eq!(devices[0]["lastPush"], Value::Null);
}

#[tokio::test]
async fn announce_records_last_push_and_metrics_count_it() {
    let server = TestServer::in_process(&[]).await;
    let admin = server.admin_token().await;
    let writer = server.member(&admin, "default", "writer").await;
    let device = server.device(&writer, "default", 4).await;
    server.clock.advance(Duration::from_secs(5));
    let announced = server
        .expect(
            StatusCode::ACCEPTED,
            Method::POST,
            "/v1/spaces/default/announce",
            Some(&writer),
            Some(json!({ "device": device, "collection": "orders", "level": 0, "etag": "\"e1\"" })),
        )
        .await;
    assert!(announced["eventId"].as_str().unwrap().contains('.'));
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/spaces/default/announce",
            Some(&writer),
            Some(json!({ "device": device, "collection": "orders", "level": 6 })),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "request.invalid")
    );
    let devices = server
        .expect(
            StatusCode::OK,
            Method::GET,
            "/v1/spaces/default/devices",
            Some(&writer),
            None,
        )
        .await;
    assert_eq!(devices[0]["lastPush"], server.state.clock.now_millis());

    let metrics = server.call(Method::GET, "/metrics", None, None).await.1;
    let text = metrics.as_str().unwrap();
    assert!(text.contains("tidemark_announcements_total 1"), "{text}");
    assert!(
        text.contains("tidemark_device_registrations_total 1"),
        "{text}"
    );
    assert!(
        text.contains("route=\"/v1/spaces/{space}/announce\",status=\"202\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn configured_origins_may_call_the_api_cross_origin_and_others_may_not() {
    let server = TestServer::in_process(&["--allowed-origins", "https://app.example.com"]).await;
    let preflight = |origin: &'static str| {
        let request = Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/spaces/default/grants")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .body(Body::empty())
            .unwrap();
        server.router.clone().oneshot(request)
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let refused = preflight("https://evil.example.net").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn root_without_an_app_points_to_the_api() {
    let server = TestServer::in_process(&[]).await;
    let (status, page) = server.call(Method::GET, "/", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.as_str().unwrap().contains("/v1/info"));
    let (status, _) = server.call(Method::GET, "/favicon.ico", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn health_reports_an_unreachable_store_without_details() {
    // In-process: nothing listens where the server expects its embedded store.
    let server = TestServer::in_process(&[]).await;
    let (status, body) = server.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, json!({ "registry": "ok", "store": "unavailable" }));
}
