//! Granted URLs against real object stores over real sockets: the embedded store and an
//! independent S3 server process (s3s-fs from crates.io), both verifying signatures. Every
//! test runs against both.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use axum::http::{Method, StatusCode};
use common::{StoreKind, TestServer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tidemark_core::DeviceId;

/// Runs each scenario against both stores.
macro_rules! against_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(super::StoreKind::Embedded).await })*
        }
        mod external {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(super::StoreKind::External).await })*
        }
    };
}

against_both_stores!(
    granted_urls_upload_and_download_with_plain_http,
    tampered_or_repointed_urls_are_refused,
    expired_urls_are_refused,
    reader_cannot_write_with_any_url_it_holds,
    small_blob_is_write_once_and_checked_against_its_digest,
    large_blob_upload_resumes_and_completes,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_read_while_it_is_rewritten_pairs_its_bytes_with_their_etag() {
    // s3s-fs renames the new object file into place, then saves its ETag in a second file:
    // a read between the two (or one that opened the file before the rename and loaded the
    // ETag after) paired old bytes with the new ETag. A device that merged the old bytes
    // then took the announcement of the new ETag as already read, and its `If-None-Match`
    // got 304s for the new pack until the level changed again.
    let s = space(StoreKind::Embedded).await;
    let grant = s
        .server
        .grant(&s.writer, "default", s.writer_device, &["orders"])
        .await;
    let put_l0 = url(&grant, "/put/orders/0");
    let get_l0 = url(&grant, &format!("/get/orders/{}/0", s.writer_device));
    let versions = [vec![b'a'; 3000], vec![b'b'; 5000]];
    let mut etags = Vec::new();
    for version in &versions {
        assert_eq!(put(&s.http, &put_l0, version).await, 200);
        let response = s.http.get(&get_l0).send().await.unwrap();
        etags.push(response.headers()["etag"].to_str().unwrap().to_owned());
    }
    assert_ne!(etags[0], etags[1]);

    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (http, put_l0, versions) = (s.http.clone(), put_l0.clone(), versions.clone());
        let writing = Arc::clone(&writing);
        tokio::spawn(async move {
            let mut writes = 0;
            while writing.load(Ordering::Relaxed) {
                assert_eq!(put(&http, &put_l0, &versions[writes % 2]).await, 200);
                writes += 1;
            }
            writes
        })
    };
    for read in 0..100 {
        let response = s.http.get(&get_l0).send().await.unwrap();
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        let body = response.bytes().await.unwrap();
        let version = versions.iter().position(|v| v[..] == body[..]);
        let Some(version) = version else {
            panic!("read {} bytes that were never written", body.len());
        };
        assert_eq!(
            etag, etags[version],
            "read {read}: bytes of version {version}"
        );
    }
    writing.store(false, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert!(writes > 20, "only {writes} writes overlapped the reads");
}

struct Space {
    server: TestServer,
    writer: String,
    writer_device: DeviceId,
    reader: String,
    reader_device: DeviceId,
    http: reqwest::Client,
}

async fn space(kind: StoreKind) -> Space {
    space_with(kind, &[]).await
}

async fn space_with(kind: StoreKind, extra: &[&str]) -> Space {
    let server = TestServer::serving(kind, extra).await;
    let admin = server.admin_token().await;
    let writer = server.member(&admin, "default", "writer").await;
    let writer_device = server.device(&writer, "default", 1).await;
    let reader = server.member(&admin, "default", "reader").await;
    let reader_device = server.device(&reader, "default", 2).await;
    Space {
        server,
        writer,
        writer_device,
        reader,
        reader_device,
        http: reqwest::Client::new(),
    }
}

fn url(grant: &Value, pointer: &str) -> String {
    grant
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no {pointer} in grant"))
        .to_owned()
}

async fn put(http: &reqwest::Client, url: &str, body: &[u8]) -> reqwest::StatusCode {
    http.put(url)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
}

async fn get(http: &reqwest::Client, url: &str) -> (reqwest::StatusCode, Vec<u8>) {
    let response = http.get(url).send().await.unwrap();
    let status = response.status();
    (status, response.bytes().await.unwrap().to_vec())
}

async fn granted_urls_upload_and_download_with_plain_http(kind: StoreKind) {
    let s = space(kind).await;
    let writer_grant = s
        .server
        .grant(&s.writer, "default", s.writer_device, &["orders"])
        .await;
    let reader_grant = s
        .server
        .grant(&s.reader, "default", s.reader_device, &["orders"])
        .await;
    let pack = b"TDMK pack bytes, whatever the store holds".to_vec();

    let get_l0 = url(&reader_grant, &format!("/get/orders/{}/0", s.writer_device));
    assert_eq!(get(&s.http, &get_l0).await.0, 404, "nothing written yet");

    assert_eq!(
        put(&s.http, &url(&writer_grant, "/put/orders/0"), &pack).await,
        200
    );
    let response = s.http.get(&get_l0).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(response.bytes().await.unwrap().to_vec(), pack);

    // A level rewritten in place is read back new through the same URL.
    let rewritten = b"L0 after the next push".to_vec();
    assert_eq!(
        put(&s.http, &url(&writer_grant, "/put/orders/0"), &rewritten).await,
        200
    );
    let (status, body) = get(&s.http, &get_l0).await;
    assert_eq!((status.as_u16(), body), (200, rewritten));

    if kind == StoreKind::Embedded {
        // An idle sync round costs only 304s: the embedded store honours If-None-Match.
        let fresh = s.http.get(&get_l0).send().await.unwrap();
        let etag_now = fresh.headers()["etag"].to_str().unwrap().to_owned();
        assert_ne!(etag_now, etag);
        let unchanged = s
            .http
            .get(&get_l0)
            .header("if-none-match", &etag_now)
            .send()
            .await
            .unwrap();
        assert_eq!(unchanged.status(), 304);
        assert!(unchanged.bytes().await.unwrap().is_empty());
        let changed = s
            .http
            .get(&get_l0)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), 200);
    }
}

async fn tampered_or_repointed_urls_are_refused(kind: StoreKind) {
    let s = space(kind).await;
    let admin = s.server.admin_token().await;
    s.server.create_space(&admin, "other").await;
    let grant = s
        .server
        .grant(&s.writer, "default", s.writer_device, &["orders"])
        .await;
    let put_l0 = url(&grant, "/put/orders/0");
    let get_l1 = url(&grant, &format!("/get/orders/{}/1", s.writer_device));
    assert_eq!(put(&s.http, &put_l0, b"mine").await, 200);

    let mine = s.writer_device.to_string();
    let theirs = s.reader_device.to_string();
    let tampered: Vec<(&str, String)> = vec![
        ("another device's key", put_l0.replace(&mine, &theirs)),
        ("another level", put_l0.replace("/L0?", "/L1?")),
        ("another collection", put_l0.replace("/orders/", "/menu/")),
        ("another space", put_l0.replace("/default/", "/other/")),
        ("a longer expiry", {
            let ttl = put_l0
                .split("X-Amz-Expires=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap();
            put_l0.replace(&format!("X-Amz-Expires={ttl}"), "X-Amz-Expires=604800")
        }),
        ("a changed signature", {
            let (head, signature) = put_l0.rsplit_once("X-Amz-Signature=").unwrap();
            let flipped: String = signature
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i == 0 {
                        if c == '0' { '1' } else { '0' }
                    } else {
                        c
                    }
                })
                .collect();
            format!("{head}X-Amz-Signature={flipped}")
        }),
        (
            "no signature at all",
            put_l0.split('?').next().unwrap().to_owned(),
        ),
    ];
    for (what, url) in &tampered {
        let status = put(&s.http, url, b"forged").await;
        assert_eq!(status, 403, "PUT with {what} must be refused: {url}");
    }
    // Using a GET URL to write.
    let status = put(&s.http, &get_l1, b"forged").await;
    assert_eq!(status, 403, "a GET URL must not write");
    // Nothing forged landed: the own level still holds what was written.
    let (status, body) = get(&s.http, &url(&grant, &format!("/get/orders/{mine}/0"))).await;
    assert_eq!((status.as_u16(), body.as_slice()), (200, &b"mine"[..]));
}

async fn expired_urls_are_refused(kind: StoreKind) {
    let s = space_with(kind, &["--grant-ttl-secs", "3600"]).await;
    let real_now = SystemTime::now();
    // Granted two hours ago for one hour: expired by the store's own (real) clock.
    s.server.clock.set(real_now - Duration::from_secs(2 * 3600));
    let stale = s
        .server
        .grant(&s.writer, "default", s.writer_device, &["orders"])
        .await;
    // Granted half an hour ago: still valid.
    s.server.clock.set(real_now - Duration::from_secs(1800));
    let fresh = s
        .server
        .grant(&s.writer, "default", s.writer_device, &["orders"])
        .await;
    s.server.clock.set(real_now);

    assert_eq!(
        put(&s.http, &url(&stale, "/put/orders/0"), b"late").await,
        403
    );
    let stale_get = url(&stale, &format!("/get/orders/{}/0", s.writer_device));
    assert_eq!(get(&s.http, &stale_get).await.0, 403);
    assert_eq!(
        put(&s.http, &url(&fresh, "/put/orders/0"), b"on time").await,
        200
    );
}

async fn reader_cannot_write_with_any_url_it_holds(kind: StoreKind) {
    let s = space(kind).await;
    let grant = s
        .server
        .grant(&s.reader, "default", s.reader_device, &["orders"])
        .await;
    assert_eq!(grant["put"], json!({}));
    let gets = grant["get"]["orders"].as_object().unwrap();
    for urls in gets.values() {
        for url in urls.as_array().unwrap() {
            assert_eq!(put(&s.http, url.as_str().unwrap(), b"x").await, 403);
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn send_presigned(http: &reqwest::Client, put: &Value, body: Vec<u8>) -> reqwest::Response {
    let mut request = http.put(put["url"].as_str().unwrap());
    for pair in put["headers"].as_array().into_iter().flatten() {
        let (name, value) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        if name.eq_ignore_ascii_case("content-length") {
            continue; // reqwest sets it from the body.
        }
        request = request.header(name, value);
    }
    request.body(body).send().await.unwrap()
}

async fn small_blob_is_write_once_and_checked_against_its_digest(kind: StoreKind) {
    let s = space(kind).await;
    let photo: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let sha = sha256_hex(&photo);
    let blobs = "/v1/spaces/default/blobs";
    let complete = format!("{blobs}/{sha}/complete");
    let start = json!({ "device": s.writer_device, "sha256": sha, "size": photo.len() });
    let done = json!({ "device": s.writer_device });
    let plan = s
        .server
        .expect(
            StatusCode::OK,
            Method::POST,
            blobs,
            Some(&s.writer),
            Some(start.clone()),
        )
        .await;
    assert_eq!(plan["status"], "upload");
    assert!(
        plan["put"]["url"].as_str().unwrap().contains("/uploads/"),
        "devices upload to their own key, never to blobs/"
    );

    // Same size, other content: the store refuses it (the signed checksum) ...
    let mut wrong = photo.clone();
    wrong[0] ^= 1;
    let refused = send_presigned(&s.http, &plan["put"], wrong).await.status();
    assert!(
        refused.is_client_error(),
        "content not matching the digest: {refused}"
    );
    // ... and whatever the store kept of it never becomes the blob.
    let (status, body) = s
        .server
        .call(Method::POST, &complete, Some(&s.writer), Some(done.clone()))
        .await;
    assert!(
        (status, body["code"].as_str().unwrap())
            == (StatusCode::BAD_REQUEST, "blob.digest_mismatch")
            || (status, body["code"].as_str().unwrap())
                == (StatusCode::NOT_FOUND, "blob.upload_not_found"),
        "{status} {body}"
    );
    let refused = send_presigned(&s.http, &plan["put"], photo[..1000].to_vec())
        .await
        .status();
    assert!(
        refused.is_client_error(),
        "content of another size: {refused}"
    );

    assert_eq!(
        send_presigned(&s.http, &plan["put"], photo.clone())
            .await
            .status(),
        200
    );
    let stored = s
        .server
        .expect(
            StatusCode::OK,
            Method::POST,
            &complete,
            Some(&s.writer),
            Some(done.clone()),
        )
        .await;
    assert_eq!(
        stored,
        json!({ "status": "exists", "sha256": sha, "size": photo.len() })
    );
    // Completing again (a retry) answers the same.
    s.server
        .expect(
            StatusCode::OK,
            Method::POST,
            &complete,
            Some(&s.writer),
            Some(done),
        )
        .await;
    let plan = s
        .server
        .expect(
            StatusCode::OK,
            Method::POST,
            blobs,
            Some(&s.writer),
            Some(start),
        )
        .await;
    assert_eq!(plan["status"], "exists");

    // Any member downloads it; the bytes hash to the name.
    let download = s
        .server
        .expect(
            StatusCode::OK,
            Method::GET,
            &format!("{blobs}/{sha}"),
            Some(&s.reader),
            None,
        )
        .await;
    assert_eq!(download["size"], photo.len());
    let (status, body) = get(&s.http, download["url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(sha256_hex(&body), sha);

    let (status, body) = s
        .server
        .call(
            Method::POST,
            blobs,
            Some(&s.writer),
            Some(json!({ "device": s.writer_device, "sha256": sha, "size": (1u64 << 30) + 1 })),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str().unwrap()),
        (StatusCode::PAYLOAD_TOO_LARGE, "blob.too_large")
    );
}

async fn large_blob_upload_resumes_and_completes(kind: StoreKind) {
    let s = space(kind).await;
    let size = 20 * 1024 * 1024 + 12_345;
    let video: Vec<u8> = (0..size).map(|i| (i * 7 % 253) as u8).collect();
    let sha = sha256_hex(&video);
    let start = json!({ "device": s.writer_device, "sha256": sha, "size": size });
    let blobs = "/v1/spaces/default/blobs";
    let plan = s
        .server
        .expect(
            StatusCode::OK,
            Method::POST,
            blobs,
            Some(&s.writer),
            Some(start.clone()),
        )
        .await;
    assert_eq!(plan["status"], "multipart");
    let parts = plan["parts"].as_array().unwrap().clone();
    assert_eq!(parts.len(), 3);
    let part_size = plan["partSize"].as_u64().unwrap() as usize;
    let slice = |number: usize| {
        let from = (number - 1) * part_size;
        video[from..(from + part_size).min(video.len())].to_vec()
    };

    // Upload only the first part, then "lose the connection".
    let mut etags = Vec::new();
    let first = send_presigned(&s.http, &parts[0]["put"], slice(1)).await;
    assert_eq!(first.status(), 200);
    etags.push(json!({ "number": 1, "etag": first.headers()["etag"].to_str().unwrap() }));
    let complete = format!("/v1/spaces/default/blobs/{sha}/complete");
    let (status, body) = s
        .server
        .call(
            Method::POST,
            &complete,
            Some(&s.writer),
            Some(json!({ "device": s.writer_device, "parts": etags })),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str().unwrap()),
        (StatusCode::CONFLICT, "blob.upload_incomplete")
    );

    // Asking again resumes the same upload. A part counts as done only when the store lists
    // it with its ETag (which completing needs); s3s-fs lists parts without ETags, so part 1
    // comes with a URL again, and this device, which kept its ETag, need not send it.
    let resumed = s
        .server
        .expect(
            StatusCode::OK,
            Method::POST,
            blobs,
            Some(&s.writer),
            Some(start),
        )
        .await;
    assert_eq!(resumed["uploadId"], plan["uploadId"]);
    let parts = resumed["parts"].as_array().unwrap();
    assert_eq!(parts[0]["done"], false);
    assert!(parts[0].get("put").is_some());
    for part in &parts[1..] {
        assert_eq!(part["done"], false);
        let number = part["number"].as_u64().unwrap() as usize;
        let sent = send_presigned(&s.http, &part["put"], slice(number)).await;
        assert_eq!(sent.status(), 200);
        etags.push(json!({ "number": number, "etag": sent.headers()["etag"].to_str().unwrap() }));
    }
    let done = s
        .server
        .expect(
            StatusCode::OK,
            Method::POST,
            &complete,
            Some(&s.writer),
            Some(json!({ "device": s.writer_device, "parts": etags })),
        )
        .await;
    assert_eq!(done["status"], "exists");
    assert_eq!(done["size"], size);

    let download = s
        .server
        .expect(
            StatusCode::OK,
            Method::GET,
            &format!("{blobs}/{sha}"),
            Some(&s.reader),
            None,
        )
        .await;
    let (status, body) = get(&s.http, download["url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(sha256_hex(&body), sha);
}
