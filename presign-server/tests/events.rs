//! Announcements over a real socket: the SSE stream, replay after reconnect, `devices` events.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{StoreKind, TestServer};
use serde_json::{Value, json};

/// A minimal SSE reader over reqwest's chunked body.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

#[derive(Debug, Clone)]
struct Received {
    id: Option<String>,
    kind: String,
    data: Value,
}

impl EventStream {
    async fn open(
        base: &str,
        space: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> EventStream {
        let mut request = reqwest::Client::new()
            .get(format!("{base}/v1/spaces/{space}/events"))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event, or None when the server ended the stream.
    async fn next(&mut self) -> Option<Received> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, String::from("message"), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                return Some(Received {
                    id,
                    kind,
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("no event within 10 s")
                .unwrap()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    async fn expect(&mut self, kind: &str) -> Received {
        let event = self.next().await.expect("stream ended");
        assert_eq!(event.kind, kind, "{event:?}");
        event
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_reach_subscribers_and_replay_after_reconnect() {
    let server = TestServer::serving(StoreKind::Embedded, &[]).await;
    let base = server.url.clone().unwrap();
    let admin = server.admin_token().await;
    let writer = server.member(&admin, "default", "writer").await;
    let device = server.device(&writer, "default", 1).await;
    let reader = server.member(&admin, "default", "reader").await;

    let mut stream = EventStream::open(&base, "default", &reader, None).await;
    let hello = stream.expect("hello").await;
    assert!(hello.data["serverTime"].as_u64().unwrap() > 0);

    let announce = |level: u8, etag: &str| {
        server.expect(
            StatusCode::ACCEPTED,
            Method::POST,
            "/v1/spaces/default/announce",
            Some(&writer),
            Some(json!({ "device": device, "collection": "orders", "level": level, "etag": etag })),
        )
    };
    for n in 0..3 {
        announce(0, &format!("e{n}")).await;
    }
    let mut last_id = String::new();
    for n in 0..3 {
        let event = stream.expect("pack").await;
        assert_eq!(event.data["device"], json!(device));
        assert_eq!(event.data["collection"], "orders");
        assert_eq!(event.data["etag"], format!("e{n}"));
        last_id = event.id.unwrap();
    }
    drop(stream);

    // Missed while disconnected: replayed on reconnect with Last-Event-ID.
    announce(1, "missed-1").await;
    announce(2, "missed-2").await;
    let mut again = EventStream::open(&base, "default", &reader, Some(&last_id)).await;
    again.expect("hello").await;
    assert_eq!(again.expect("pack").await.data["etag"], "missed-1");
    assert_eq!(again.expect("pack").await.data["etag"], "missed-2");

    // An id the server cannot place (another boot, or too old): reset, poll everything.
    let mut stale = EventStream::open(&base, "default", &reader, Some("0000.1")).await;
    stale.expect("hello").await;
    stale.expect("reset").await;

    // The stream needs a member of the space.
    let outsider_admin = server.admin_token().await;
    server.create_space(&outsider_admin, "elsewhere").await;
    let outsider = server.member(&outsider_admin, "elsewhere", "writer").await;
    let refused = reqwest::Client::new()
        .get(format!("{base}/v1/spaces/default/events"))
        .bearer_auth(&outsider)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_are_announced_and_a_removed_member_is_cut_off() {
    let server = TestServer::serving(StoreKind::Embedded, &[]).await;
    let base = server.url.clone().unwrap();
    let admin = server.admin_token().await;
    let watcher = server.member(&admin, "default", "reader").await;
    let leaving = server.member(&admin, "default", "writer").await;

    // Browsers' EventSource cannot set headers: the token also works as a query parameter.
    let response = reqwest::Client::new()
        .get(format!(
            "{base}/v1/spaces/default/events?access_token={watcher}"
        ))
        .send()
        .await
        .unwrap();
    let mut watching = EventStream {
        response,
        buffer: String::new(),
    };
    watching.expect("hello").await;
    let mut cut_off = EventStream::open(&base, "default", &leaving, None).await;
    cut_off.expect("hello").await;

    let device = server.device(&leaving, "default", 7).await;
    let registered = watching.expect("devices").await;
    assert_eq!(registered.data["reason"], "registered");
    assert_eq!(registered.data["device"], json!(device));
    cut_off.expect("devices").await;

    let user = server.user_with_role(&admin, "default", "writer").await;
    server
        .expect(
            StatusCode::OK,
            Method::DELETE,
            &format!("/v1/spaces/default/members/{user}"),
            Some(&admin),
            None,
        )
        .await;
    let removed = watching.expect("devices").await;
    assert_eq!(removed.data["reason"], "member_removed");
    assert_eq!(removed.data["revoked"], json!([device]));
    // The removed member hears of it once, then the stream ends.
    assert_eq!(
        cut_off.expect("devices").await.data["reason"],
        "member_removed"
    );
    assert!(
        cut_off.next().await.is_none(),
        "stream ends for a removed member"
    );
}
