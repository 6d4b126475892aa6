//! The fault-injecting proxy, over real sockets: a small axum upstream that echoes what it
//! received (or a raw TCP upstream that records the exact bytes), clients using reqwest or
//! raw TCP, and the proxy in between.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use http::header::{CONTENT_LENGTH, ETAG, HOST, IF_NONE_MATCH, RETRY_AFTER, TRANSFER_ENCODING};
use tidemark_tests::proxy::{FaultProxy, Faults, Stats};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Size of the `/big` body, large enough to span several TCP segments.
const BIG_BODY_BYTES: usize = 64 * 1024;

/// The ETag the echo upstream gives every object but `/big`.
const ECHO_ETAG: &str = "\"v1\"";

/// Upper bound for anything that should be quick, so a hang fails instead of stalling.
const PATIENCE: Duration = Duration::from_secs(10);

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    uri: String,
    host: String,
    body: Bytes,
}

/// The echo upstream's record of requests.
#[derive(Clone, Debug, Default)]
struct Upstream {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Starts the echo upstream:
/// - `/big`: 64 KiB of patterned bytes with a `Content-Length`;
/// - `/chunked`: a streamed body, which hyper sends chunked;
/// - anything else: `304` if `If-None-Match` is the ETag, else a JSON echo of the method,
///   URI, `Host`, body length and `x-amz-date`, with ETag [`ECHO_ETAG`].
async fn start_upstream() -> (SocketAddr, Upstream) {
    let upstream = Upstream::default();
    let app = Router::new().fallback(echo).with_state(upstream.clone());
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, upstream)
}

fn big_body() -> Vec<u8> {
    (0..BIG_BODY_BYTES).map(|i| (i % 251) as u8).collect()
}

const CHUNKS: [&str; 3] = ["alpha-", "beta-", "gamma"];

async fn echo(State(upstream): State<Upstream>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let header = |name| {
        parts
            .headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let host = header(HOST.as_str()).unwrap_or_default();
    upstream.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        host: host.clone(),
        body: body.clone(),
    });

    let response = Response::builder().header("x-upstream", "echo");
    match parts.uri.path() {
        "/big" => response
            .header(ETAG, "\"big\"")
            .body(Body::from(big_body()))
            .unwrap(),
        "/chunked" => {
            let chunks =
                CHUNKS.map(|chunk| Ok::<_, Infallible>(Bytes::from_static(chunk.as_bytes())));
            response
                .body(Body::from_stream(futures_util::stream::iter(chunks)))
                .unwrap()
        }
        _ if header(IF_NONE_MATCH.as_str()).as_deref() == Some(ECHO_ETAG) => response
            .status(StatusCode::NOT_MODIFIED)
            .header(ETAG, ECHO_ETAG)
            .body(Body::empty())
            .unwrap(),
        _ => {
            let echoed = serde_json::json!({
                "method": parts.method.as_str(),
                "uri": parts.uri.to_string(),
                "host": host,
                "body_len": body.len(),
                "x_amz_date": header("x-amz-date"),
            });
            response
                .header(ETAG, ECHO_ETAG)
                .header("content-type", "application/json")
                .body(Body::from(echoed.to_string()))
                .unwrap()
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .unwrap()
}

async fn proxied(seed: u64) -> (FaultProxy, Upstream) {
    let (upstream_addr, upstream) = start_upstream().await;
    let proxy = FaultProxy::start(upstream_addr, seed).await.unwrap();
    (proxy, upstream)
}

fn url(proxy: &FaultProxy, path_and_query: &str) -> String {
    format!("http://{}{path_and_query}", proxy.addr())
}

/// Asserts that `result` is the failure of a connection closed without an answer — not a
/// timeout, which would mean the proxy hung instead of closing.
fn assert_connection_closed(result: reqwest::Result<reqwest::Response>) {
    match result {
        Ok(response) => panic!("expected a connection error, got {}", response.status()),
        Err(error) => assert!(!error.is_timeout(), "timed out instead of closing: {error}"),
    }
}

/// Reads one raw HTTP/1.1 response framed by `Content-Length` (or without a body).
async fn read_raw_response(reader: &mut BufReader<TcpStream>) -> (String, Vec<u8>) {
    let mut head = String::new();
    loop {
        let before = head.len();
        let read = reader.read_line(&mut head).await.unwrap();
        assert!(
            read > 0,
            "connection closed inside a response head: {head:?}"
        );
        if &head[before..] == "\r\n" {
            break;
        }
    }
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.unwrap();
    (head, body)
}

/// A raw upstream that records each request's exact bytes (head and `Content-Length` body)
/// and answers every one with `canned`.
async fn start_raw_upstream(canned: &'static [u8]) -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&received);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut request = Vec::new();
                    loop {
                        let start = request.len();
                        if reader.read_until(b'\n', &mut request).await.unwrap() == 0 {
                            return;
                        }
                        if &request[start..] == b"\r\n" {
                            break;
                        }
                    }
                    let text = String::from_utf8_lossy(&request).into_owned();
                    let length = text
                        .lines()
                        .find_map(|line| {
                            let (name, value) = line.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).await.unwrap();
                    request.extend_from_slice(&body);
                    record.lock().unwrap().push(request);
                    reader.get_mut().write_all(canned).await.unwrap();
                }
            });
        }
    });
    (addr, received)
}

#[tokio::test]
async fn raw_requests_and_responses_pass_byte_for_byte_on_a_kept_alive_connection() {
    // Odd header spellings, a repeated header, a foreign Host, and a body containing a blank
    // line: anything a normalising proxy would change.
    const REQUEST: &[u8] = b"PUT /tidemark/docs/a.pack?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=0badc0de HTTP/1.1\r\n\
        Host: bucket.s3.example.com:9000\r\n\
        x-AMZ-date: 20240101T000000Z\r\n\
        X-Custom:tight\r\n\
        X-Repeated: one\r\n\
        X-Repeated: two\r\n\
        Content-Length: 12\r\n\
        \r\n\
        ab\r\n\r\ncd\x00\xffzz";
    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
        ETag: \"abc123\"\r\n\
        x-Odd-CASE:  spaced \r\n\
        Content-Length: 5\r\n\
        \r\n\
        hello";
    let (upstream_addr, received) = start_raw_upstream(RESPONSE).await;
    let proxy = FaultProxy::start(upstream_addr, 1).await.unwrap();

    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    for round in 1..=3 {
        client.write_all(REQUEST).await.unwrap();
        let mut answer = vec![0; RESPONSE.len()];
        tokio::time::timeout(PATIENCE, client.read_exact(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("no answer in round {round}"))
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&answer),
            String::from_utf8_lossy(RESPONSE)
        );
    }

    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 3);
    for request in received {
        assert_eq!(
            String::from_utf8_lossy(&request),
            String::from_utf8_lossy(REQUEST)
        );
    }
    let stats = proxy.stats();
    assert_eq!(stats.requests, 3);
    assert_eq!(stats.count("PUT", 200), 3);
    assert_eq!(stats.bytes_to_upstream, 3 * 12);
    assert_eq!(stats.bytes_from_upstream, 3 * 5);
}

#[tokio::test]
async fn presigned_style_request_keeps_host_query_headers_and_body() {
    let (proxy, upstream) = proxied(1).await;
    let path_and_query = "/tidemark/docs/a.pack?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=host&X-Amz-Signature=0badc0de";
    let response = client()
        .put(url(&proxy, path_and_query))
        .header("x-amz-date", "20240101T000000Z")
        .body("hello store")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[ETAG], ECHO_ETAG);
    assert_eq!(response.headers()["x-upstream"], "echo");
    let echoed: serde_json::Value = response.json().await.unwrap();
    assert_eq!(echoed["method"], "PUT");
    assert_eq!(echoed["uri"], path_and_query);
    // The client signed the proxy's address as Host; the store must see that, not its own.
    assert_eq!(echoed["host"], proxy.addr().to_string());
    assert_eq!(echoed["body_len"], 11);
    assert_eq!(echoed["x_amz_date"], "20240101T000000Z");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, path_and_query);
    assert_eq!(seen[0].body, "hello store");
}

#[tokio::test]
async fn explicit_host_header_reaches_the_store_unchanged() {
    let (proxy, upstream) = proxied(1).await;
    let response = client()
        .get(url(&proxy, "/tidemark/x"))
        .header(HOST, "bucket.s3.example.com:9000")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(upstream.seen()[0].host, "bucket.s3.example.com:9000");
}

#[tokio::test]
async fn conditional_get_answers_304_through_the_proxy() {
    let (proxy, _upstream) = proxied(1).await;
    let response = client()
        .get(url(&proxy, "/tidemark/manifest"))
        .header(IF_NONE_MATCH, ECHO_ETAG)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(response.headers()[ETAG], ECHO_ETAG);
    assert!(response.bytes().await.unwrap().is_empty());
    assert_eq!(proxy.stats().count("GET", 304), 1);
}

#[tokio::test]
async fn chunked_and_head_answers_pass_through_and_the_connection_stays_usable() {
    let (upstream_addr, _upstream) = start_upstream().await;
    let proxy = FaultProxy::start(upstream_addr, 1).await.unwrap();
    let client = client();

    let chunked = client.get(url(&proxy, "/chunked")).send().await.unwrap();
    assert_eq!(chunked.headers()[TRANSFER_ENCODING], "chunked");
    assert_eq!(chunked.text().await.unwrap(), CHUNKS.concat());

    // A HEAD answer announces a length but carries no body: a proxy that waited for one
    // would hang here until the client's timeout.
    let head = client.head(url(&proxy, "/big")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()[CONTENT_LENGTH], BIG_BODY_BYTES.to_string());
    assert!(head.bytes().await.unwrap().is_empty());

    let big = client.get(url(&proxy, "/big")).send().await.unwrap();
    assert_eq!(big.bytes().await.unwrap(), big_body());

    let stats = proxy.stats();
    assert_eq!(stats.count("GET", 200), 2);
    assert_eq!(stats.count("HEAD", 200), 1);
    let chunked_payload = CHUNKS.concat().len() as u64;
    assert_eq!(
        stats.bytes_from_upstream,
        chunked_payload + BIG_BODY_BYTES as u64
    );
}

#[tokio::test]
async fn expect_continue_is_answered_by_the_proxy_and_the_store_interim_answer_skipped() {
    let (proxy, upstream) = proxied(1).await;
    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut client = BufReader::new(stream);
    client
        .get_mut()
        .write_all(
            b"PUT /tidemark/e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
        )
        .await
        .unwrap();
    let mut interim = String::new();
    tokio::time::timeout(PATIENCE, client.read_line(&mut interim))
        .await
        .expect("the proxy should invite the body")
        .unwrap();
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n");
    let mut blank = String::new();
    client.read_line(&mut blank).await.unwrap();
    assert_eq!(blank, "\r\n");

    client.get_mut().write_all(b"body").await.unwrap();
    let (head, body) = tokio::time::timeout(PATIENCE, read_raw_response(&mut client))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let echoed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echoed["body_len"], 4);
    assert_eq!(upstream.seen()[0].body, "body");
}

#[tokio::test]
async fn drop_before_forward_closes_the_connection_and_the_store_never_sees_it() {
    let (proxy, upstream) = proxied(1).await;
    proxy.set_faults(Faults {
        drop_before_forward: 1.0,
        ..Faults::default()
    });
    let result = client()
        .put(url(&proxy, "/tidemark/a"))
        .body("payload")
        .send()
        .await;
    assert_connection_closed(result);
    assert!(upstream.seen().is_empty());
    let stats = proxy.stats();
    assert_eq!(stats.requests, 1);
    assert_eq!(stats.faults_injected, 1);
    assert!(stats.by_method_status.is_empty());
    assert_eq!(stats.bytes_to_upstream, 0);
}

#[tokio::test]
async fn drop_after_forward_applies_the_put_but_the_client_sees_a_closed_connection() {
    let (proxy, upstream) = proxied(1).await;
    proxy.set_faults(Faults {
        drop_after_forward: 1.0,
        ..Faults::default()
    });
    let result = client()
        .put(url(&proxy, "/tidemark/a"))
        .body("payload")
        .send()
        .await;
    assert_connection_closed(result);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "the store applied the PUT exactly once");
    assert_eq!(seen[0].method, "PUT");
    assert_eq!(seen[0].body, "payload");
    let stats = proxy.stats();
    assert_eq!(stats.faults_injected, 1);
    assert_eq!(stats.bytes_to_upstream, 7);
    assert!(stats.bytes_from_upstream > 0, "the store did answer");
    assert!(stats.by_method_status.is_empty());
}

#[tokio::test]
async fn injected_statuses_are_answered_without_reaching_the_store() {
    let (proxy, upstream) = proxied(1).await;
    let client = client();
    let cases = [
        (
            Faults {
                status_500: 1.0,
                ..Faults::default()
            },
            500,
        ),
        (
            Faults {
                status_503: 1.0,
                ..Faults::default()
            },
            503,
        ),
        (
            Faults {
                status_429: 1.0,
                ..Faults::default()
            },
            429,
        ),
    ];
    for (faults, status) in cases {
        proxy.set_faults(faults);
        let response = client.get(url(&proxy, "/tidemark/a")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(response.headers()["x-fault-proxy"], "injected");
        assert_eq!(
            response
                .headers()
                .get(RETRY_AFTER)
                .map(|v| v.to_str().unwrap()),
            (status == 429).then_some("1")
        );
        let body = response.text().await.unwrap();
        assert!(body.contains("<Error><Code>"), "{body}");
    }
    assert!(upstream.seen().is_empty());
    let stats = proxy.stats();
    assert_eq!(stats.faults_injected, 3);
    for status in [500, 503, 429] {
        assert_eq!(stats.count("GET", status), 1);
    }
}

/// Reads `response` to its end, which must be an error; returns the bytes that arrived.
async fn read_until_body_error(mut response: reqwest::Response) -> usize {
    let mut received = 0;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => panic!("body ended cleanly after {received} bytes"),
            Err(error) => {
                assert!(!error.is_timeout(), "timed out instead of closing: {error}");
                return received;
            }
        }
    }
}

#[tokio::test]
async fn truncated_body_keeps_the_original_length_and_fails_the_read() {
    let (proxy, upstream) = proxied(3).await;
    proxy.set_faults(Faults {
        truncate_body: 1.0,
        ..Faults::default()
    });
    let client = client();

    let response = client.get(url(&proxy, "/big")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[ETAG], "\"big\"");
    assert_eq!(
        response.headers()[CONTENT_LENGTH],
        BIG_BODY_BYTES.to_string()
    );
    let received = read_until_body_error(response).await;
    assert!(received < BIG_BODY_BYTES, "{received} bytes");

    let response = client.get(url(&proxy, "/chunked")).send().await.unwrap();
    assert_eq!(response.headers()[TRANSFER_ENCODING], "chunked");
    let received = read_until_body_error(response).await;
    assert!(received < CHUNKS.concat().len());

    assert_eq!(
        upstream.seen().len(),
        2,
        "truncated requests were forwarded"
    );
    let stats = proxy.stats();
    assert_eq!(stats.faults_injected, 2);
    assert_eq!(stats.count("GET", 200), 2);
    assert_eq!(
        stats.bytes_from_upstream,
        (BIG_BODY_BYTES + CHUNKS.concat().len()) as u64
    );
}

#[tokio::test]
async fn truncation_leaves_answers_without_a_body_alone() {
    let (proxy, _upstream) = proxied(1).await;
    proxy.set_faults(Faults {
        truncate_body: 1.0,
        ..Faults::default()
    });
    let client = client();
    let head = client.head(url(&proxy, "/big")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let not_modified = client
        .get(url(&proxy, "/x"))
        .header(IF_NONE_MATCH, ECHO_ETAG)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(proxy.stats().faults_injected, 0);
}

#[tokio::test]
async fn delay_holds_each_request_within_the_configured_range() {
    let (proxy, upstream) = proxied(1).await;
    let client = client();
    let (min, max) = (Duration::from_millis(150), Duration::from_millis(250));
    proxy.set_faults(Faults {
        delay: Some((min, max)),
        ..Faults::default()
    });
    for _ in 0..3 {
        let started = Instant::now();
        let response = client.get(url(&proxy, "/x")).send().await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(elapsed >= min, "{elapsed:?} is shorter than the delay");
        // Generous slack above `max` for a loaded machine.
        assert!(elapsed < max + Duration::from_secs(2), "{elapsed:?}");
    }

    proxy.set_faults(Faults::default());
    let started = Instant::now();
    client.get(url(&proxy, "/x")).send().await.unwrap();
    assert!(started.elapsed() < min, "no delay once it is unset");
    assert_eq!(upstream.seen().len(), 4);
    assert_eq!(proxy.stats().faults_injected, 0, "delays are not faults");
}

#[tokio::test]
async fn stats_count_methods_statuses_and_bytes_and_reset_to_zero() {
    let (proxy, _upstream) = proxied(1).await;
    let client = client();

    let put = client
        .put(url(&proxy, "/tidemark/a"))
        .body(vec![7u8; 100])
        .send()
        .await
        .unwrap();
    let put_answer_bytes = put.bytes().await.unwrap().len() as u64;
    let conditional = client
        .get(url(&proxy, "/tidemark/a"))
        .header(IF_NONE_MATCH, ECHO_ETAG)
        .send()
        .await
        .unwrap();
    assert_eq!(conditional.status(), StatusCode::NOT_MODIFIED);
    let big = client.get(url(&proxy, "/big")).send().await.unwrap();
    assert_eq!(big.bytes().await.unwrap().len(), BIG_BODY_BYTES);
    proxy.set_faults(Faults {
        status_503: 1.0,
        ..Faults::default()
    });
    let refused = client.get(url(&proxy, "/x")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);

    let stats = proxy.stats();
    assert_eq!(stats.requests, 4);
    let expected: Vec<((String, u16), u64)> = vec![
        (("GET".into(), 200), 1),
        (("GET".into(), 304), 1),
        (("GET".into(), 503), 1),
        (("PUT".into(), 200), 1),
    ];
    assert_eq!(
        stats.by_method_status.into_iter().collect::<Vec<_>>(),
        expected
    );
    assert_eq!(stats.faults_injected, 1);
    assert_eq!(stats.bytes_to_upstream, 100);
    assert_eq!(
        stats.bytes_from_upstream,
        put_answer_bytes + BIG_BODY_BYTES as u64
    );

    proxy.reset_stats();
    assert_eq!(proxy.stats(), Stats::default());
}

/// The statuses 40 sequential GETs see through a proxy failing half of them.
async fn fates_for_seed(seed: u64) -> Vec<u16> {
    let (proxy, _upstream) = proxied(seed).await;
    proxy.set_faults(Faults {
        status_500: 0.5,
        ..Faults::default()
    });
    let client = client();
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let response = client.get(url(&proxy, "/x")).send().await.unwrap();
        statuses.push(response.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn same_seed_replays_the_same_faults_and_another_seed_does_not() {
    let first = fates_for_seed(7).await;
    let again = fates_for_seed(7).await;
    let other = fates_for_seed(8).await;
    assert_eq!(first, again);
    assert_ne!(first, other);
    let failures = first.iter().filter(|status| **status == 500).count();
    assert!((8..=32).contains(&failures), "{failures} of 40 at p=0.5");
    assert!(first.iter().all(|status| [200, 500].contains(status)));
}

#[tokio::test]
async fn set_faults_takes_effect_for_the_next_request() {
    let (proxy, _upstream) = proxied(1).await;
    let client = client();
    let get = || client.get(url(&proxy, "/x")).send();
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    proxy.set_faults(Faults {
        status_500: 1.0,
        ..Faults::default()
    });
    assert_eq!(
        get().await.unwrap().status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    proxy.set_faults(Faults::default());
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn unreachable_upstream_answers_502() {
    // A port that was just free and is now closed: connecting to it is refused.
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let proxy = FaultProxy::start(closed_addr, 1).await.unwrap();
    let response = client().get(url(&proxy, "/x")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers()["x-fault-proxy"], "upstream-failed");
    assert_eq!(proxy.stats().count("GET", 502), 1);
}

#[tokio::test]
async fn start_on_serves_a_listener_bound_before_the_upstream_exists() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    // The upstream is started knowing the proxy's address already, as the real server is
    // when it presigns URLs for the proxy.
    let (upstream_addr, _upstream) = start_upstream().await;
    let proxy = FaultProxy::start_on(listener, upstream_addr, 1)
        .await
        .unwrap();
    assert_eq!(proxy.addr(), proxy_addr);
    let response = client().get(url(&proxy, "/x")).send().await.unwrap();
    let echoed: serde_json::Value = response.json().await.unwrap();
    assert_eq!(echoed["host"], proxy_addr.to_string());
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_port_and_open_connections() {
    let (proxy, _upstream) = proxied(1).await;
    let addr = proxy.addr();
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut open = BufReader::new(stream);
    open.get_mut()
        .write_all(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_raw_response(&mut open).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");

    drop(proxy);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PATIENCE, open.read_to_end(&mut rest))
        .await
        .expect("the kept-alive connection should be closed");
    // A clean end of stream or a reset both mean the connection is gone.
    assert!(read.map_or(true, |n| n == 0));
    assert!(TcpStream::connect(addr).await.is_err(), "port still open");
}
