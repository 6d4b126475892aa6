//! Object storage: presigning (aws-sdk-s3), the few calls the server makes itself (multipart
//! uploads of blobs), the bucket key layout, and the embedded S3-compatible store (s3s-fs)
//! that the zero-configuration server serves on its own origin.
//!
//! Bucket layout (`{prefix}` is the configured key prefix):
//!
//! ```text
//! {prefix}{space}/d/{device}/{collection}/L0 … L5   a device's level packs, fixed keys
//! {prefix}{space}/blobs/{sha256}                     attachments, content-addressed, write-once
//! {prefix}{space}/uploads/{sha256}.{device16}       a device's blob upload, until checked
//! ```
//!
//! Devices never get a URL for `blobs/`: they upload to their own `uploads/` key and the server
//! copies the upload into `blobs/` only once its SHA-256 matches its name. Some stores keep an
//! object even when they answer a checksum failure (s3s-fs 0.14 does), so the store's own
//! check is not relied on.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tidemark_core::DeviceId;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// A failure talking to object storage.
#[derive(Debug, thiserror::Error)]
#[error("object store: {0}")]
pub struct StoreError(pub String);

/// Store result.
pub type StoreResult<T> = Result<T, StoreError>;

/// Where the store is and how to reach it.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// Endpoint the server calls.
    pub endpoint: String,
    /// Endpoint put into presigned URLs.
    pub public_endpoint: String,
    /// Bucket.
    pub bucket: String,
    /// Region.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Path-style addressing.
    pub path_style: bool,
    /// Key prefix, empty or ending in `/`.
    pub key_prefix: String,
}

/// A presigned request: what a device sends, exactly.
#[derive(Clone, Debug, Serialize)]
pub struct Presigned {
    /// HTTP method.
    pub method: String,
    /// The URL, signature included.
    pub url: String,
    /// Headers the device must send as they are (they are signed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

impl From<PresignedRequest> for Presigned {
    fn from(request: PresignedRequest) -> Presigned {
        Presigned {
            method: request.method().to_owned(),
            url: request.uri().to_owned(),
            headers: request
                .headers()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }
}

/// What a presigned URL lets its holder do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// GET the object.
    Read,
    /// PUT the object.
    Write,
}

/// One uploaded part of a multipart upload.
#[derive(Clone, Debug)]
pub struct UploadedPart {
    /// Part number, from 1.
    pub number: i32,
    /// Its ETag, when the store lists it (s3s-fs does not).
    pub etag: Option<String>,
    /// Its size in bytes.
    pub size: u64,
}

/// Object storage as the server uses it.
#[derive(Clone, Debug)]
pub struct ObjectStore {
    /// Signs URLs for the public endpoint.
    presigner: Client,
    /// Makes the server's own calls.
    client: Client,
    bucket: String,
    key_prefix: String,
    /// Longest key the store holds, when it is shorter than S3's 1024 bytes.
    max_key_bytes: Option<usize>,
}

fn client(settings: &StoreSettings, endpoint: &str) -> Client {
    let credentials = Credentials::new(
        &settings.access_key_id,
        &settings.secret_access_key,
        None,
        None,
        "tidemark-config",
    );
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .force_path_style(settings.path_style)
        // Presigned URLs must not demand checksum headers the device cannot know.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    Client::from_conf(config)
}

fn sdk_error<E: std::error::Error + 'static>(what: &str, error: E) -> StoreError {
    // The SDK's Display is terse; the source chain says what the store answered.
    let mut message = format!("{what}: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    StoreError(message)
}

impl ObjectStore {
    /// A store reached through `settings`; `embedded` when it is the embedded s3s-fs store.
    pub fn new(settings: &StoreSettings, embedded: bool) -> ObjectStore {
        let mut key_prefix = settings.key_prefix.trim_start_matches('/').to_owned();
        if !key_prefix.is_empty() && !key_prefix.ends_with('/') {
            key_prefix.push('/');
        }
        ObjectStore {
            presigner: client(settings, &settings.public_endpoint),
            client: client(settings, &settings.endpoint),
            bucket: settings.bucket.clone(),
            key_prefix,
            max_key_bytes: embedded.then(|| {
                // ".bucket-{b64}.object-{b64}.upload-{uuid}.metadata.json" within 255 bytes.
                let b64 = |n: usize| n.div_ceil(3) * 4;
                let room = 255usize.saturating_sub(8 + b64(settings.bucket.len()) + 8 + 14 + 8);
                room / 4 * 3
            }),
        }
    }

    /// The key of a device's level pack.
    pub fn level_key(&self, space: &str, device: &DeviceId, collection: &str, level: u8) -> String {
        format!(
            "{}{space}/d/{device}/{collection}/L{level}",
            self.key_prefix
        )
    }

    /// The key of a blob.
    pub fn blob_key(&self, space: &str, sha256: &str) -> String {
        format!("{}{space}/blobs/{sha256}", self.key_prefix)
    }

    /// The key a device uploads a blob to before the server checks it. The device is named by
    /// its first 64 bits only, to keep the key short (see [`ObjectStore::check_key_length`]).
    pub fn upload_key(&self, space: &str, device: &DeviceId, sha256: &str) -> String {
        let device = device.to_string();
        format!(
            "{}{space}/uploads/{sha256}.{}",
            self.key_prefix,
            &device[..16]
        )
    }

    /// Refuses keys the store cannot hold. s3s-fs, the embedded store, names a metadata file
    /// after the base64 of bucket and key, and file names stop at 255 bytes.
    pub fn check_key_length(&self, key: &str, multipart: bool) -> StoreResult<()> {
        let Some(limit) = self.max_key_bytes else {
            return Ok(());
        };
        let limit = if multipart {
            limit.saturating_sub(36)
        } else {
            limit
        };
        if key.len() > limit {
            return Err(StoreError(format!(
                "key of {} bytes is longer than the embedded store holds ({limit}); use shorter space and collection names",
                key.len()
            )));
        }
        Ok(())
    }

    fn presigning(start: SystemTime, ttl: Duration) -> StoreResult<PresigningConfig> {
        PresigningConfig::builder()
            .start_time(start)
            .expires_in(ttl)
            .build()
            .map_err(|e| StoreError(format!("presigning config: {e}")))
    }

    /// A URL that reads (GET) or writes (PUT) `key`, valid from `start` for `ttl`.
    pub async fn presign(
        &self,
        access: Access,
        key: &str,
        start: SystemTime,
        ttl: Duration,
    ) -> StoreResult<String> {
        let config = Self::presigning(start, ttl)?;
        let request = match access {
            Access::Read => self
                .presigner
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .presigned(config)
                .await
                .map_err(|e| sdk_error("presign get", e))?,
            Access::Write => self
                .presigner
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .presigned(config)
                .await
                .map_err(|e| sdk_error("presign put", e))?,
        };
        Ok(request.uri().to_owned())
    }

    /// A PUT of exactly `size` bytes hashing to `sha256_base64`: the signed headers make the
    /// store refuse other sizes and (where it checks) other content.
    pub async fn presign_blob_put(
        &self,
        key: &str,
        size: u64,
        sha256_base64: &str,
        start: SystemTime,
        ttl: Duration,
    ) -> StoreResult<Presigned> {
        let size = i64::try_from(size).map_err(|_| StoreError("blob size".into()))?;
        let request = self
            .presigner
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(size)
            .checksum_sha256(sha256_base64)
            .presigned(Self::presigning(start, ttl)?)
            .await
            .map_err(|e| sdk_error("presign blob put", e))?;
        Ok(request.into())
    }

    /// A PUT URL for one part of a multipart upload, of exactly `size` bytes.
    pub async fn presign_upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part: i32,
        size: u64,
        start: SystemTime,
        ttl: Duration,
    ) -> StoreResult<Presigned> {
        let size = i64::try_from(size).map_err(|_| StoreError("part size".into()))?;
        let request = self
            .presigner
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part)
            .content_length(size)
            .presigned(Self::presigning(start, ttl)?)
            .await
            .map_err(|e| sdk_error("presign upload part", e))?;
        Ok(request.into())
    }

    /// The size of the object at `key`, or None if there is none.
    pub async fn head(&self, key: &str) -> StoreResult<Option<u64>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => Ok(Some(
                output
                    .content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
            )),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(error)
                if error
                    .raw_response()
                    .is_some_and(|r| r.status().as_u16() == 404) =>
            {
                Ok(None)
            }
            Err(error) => Err(sdk_error("head object", error)),
        }
    }

    /// SHA-256 (hex) of the object at `key`, streamed.
    pub async fn sha256_hex(&self, key: &str) -> StoreResult<String> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk_error("get object", e))?;
        let mut body = output.body;
        let mut hasher = Sha256::new();
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| sdk_error("read object", e))?
        {
            hasher.update(&chunk);
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// Deletes the object at `key`.
    pub async fn delete(&self, key: &str) -> StoreResult<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk_error("delete object", e))?;
        Ok(())
    }

    /// Starts a multipart upload; its id.
    pub async fn create_multipart(&self, key: &str) -> StoreResult<String> {
        let output = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk_error("create multipart upload", e))?;
        output
            .upload_id()
            .map(str::to_owned)
            .ok_or_else(|| StoreError("create multipart upload: no upload id".into()))
    }

    /// The parts uploaded so far, or None if the store no longer knows the upload.
    pub async fn uploaded_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> StoreResult<Option<Vec<UploadedPart>>> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let result = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await;
            let output = match result {
                Ok(output) => output,
                Err(error)
                    if error
                        .raw_response()
                        .is_some_and(|r| r.status().as_u16() == 404) =>
                {
                    return Ok(None);
                }
                Err(error) => return Err(sdk_error("list parts", error)),
            };
            for part in output.parts() {
                if let Some(number) = part.part_number() {
                    parts.push(UploadedPart {
                        number,
                        etag: part.e_tag().map(str::to_owned),
                        size: part.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    });
                }
            }
            if output.is_truncated() == Some(true) {
                marker = output.next_part_number_marker().map(str::to_owned);
                if marker.is_some() {
                    continue;
                }
            }
            break;
        }
        parts.sort_by_key(|p| p.number);
        Ok(Some(parts))
    }

    /// Completes a multipart upload from its parts.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> StoreResult<()> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        CompletedPart::builder()
                            .part_number(p.number)
                            .set_e_tag(p.etag.clone())
                            .build()
                    })
                    .collect(),
            ))
            .build();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .send()
            .await
            .map_err(|e| sdk_error("complete multipart upload", e))?;
        Ok(())
    }

    /// Copies the object at `from` to `to` inside the bucket.
    pub async fn copy(&self, from: &str, to: &str) -> StoreResult<()> {
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(format!("{}/{from}", self.bucket))
            .key(to)
            .send()
            .await
            .map_err(|e| sdk_error("copy object", e))?;
        Ok(())
    }

    /// Checks that the bucket answers.
    pub async fn ping(&self) -> StoreResult<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| sdk_error("head bucket", e))?;
        Ok(())
    }
}

/// The embedded S3-compatible store: s3s-fs over a folder, answering signed requests only.
#[derive(Clone, Debug)]
pub struct EmbeddedStore {
    service: S3Service,
    locks: Arc<ObjectLocks>,
}

/// Writes whose body is at most this long are read whole before their object is locked, so
/// that a slow (or vanished) uploader does not hold up the object's readers. Level packs fit;
/// longer bodies are streamed with the lock held.
const BUFFERED_WRITE_LIMIT: u64 = 8 << 20;

impl EmbeddedStore {
    /// Serves the buckets under `root` (creating `root/bucket`), accepting one key pair.
    pub fn open(
        root: &Path,
        bucket: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> std::io::Result<EmbeddedStore> {
        std::fs::create_dir_all(root.join(bucket))?;
        let fs =
            s3s_fs::FileSystem::new(root).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(access_key_id, secret_access_key));
        Ok(EmbeddedStore {
            service: builder.build(),
            locks: Arc::default(),
        })
    }

    /// Answers one S3 request.
    ///
    /// s3s-fs ignores `If-None-Match` on reads; devices rely on it to make an idle sync round
    /// cost nothing, so a matching GET or HEAD is answered `304 Not Modified` here.
    ///
    /// s3s-fs also saves an object's bytes and its ETag one after the other, in two files:
    /// unguarded, a read between the two paired old bytes with the new ETag, and a device that
    /// merged them then ignored the announcement of that ETag as already read. So every
    /// request holds its object's lock while s3s-fs handles it: shared for reads (their body
    /// streams from the file opened under it), exclusive for writes.
    pub async fn serve(&self, request: Request<Body>) -> Response<Body> {
        let is_read = matches!(request.method().as_str(), "GET" | "HEAD");
        let if_none_match = request
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let key = request.uri().path().to_owned();
        // A part of a multipart upload is saved apart from its object until the upload is
        // completed (which is locked): parts go straight through.
        let is_part = request.method() == Method::PUT
            && request
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|p| p.starts_with("uploadId=")));
        let (request, _lock) = if is_part {
            (request, None)
        } else if is_read {
            (request, Some(self.locks.lock(key, Access::Read).await))
        } else {
            let request = match buffer_small_body(request).await {
                Ok(request) => request,
                Err(response) => return response,
            };
            (request, Some(self.locks.lock(key, Access::Write).await))
        };
        let response = match self
            .service
            .call(request.map(s3s::Body::http_body_unsync))
            .await
        {
            Ok(response) => response.map(Body::new),
            Err(error) => {
                tracing::warn!(?error, "embedded store failed a request");
                let mut response = Response::new(Body::from("embedded object store error"));
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                return response;
            }
        };
        if let (true, Some(wanted)) = (is_read, if_none_match)
            && response.status() == StatusCode::OK
            && let Some(etag) = response.headers().get(header::ETAG)
            && etag_matches(&wanted, etag)
        {
            let mut not_modified = Response::new(Body::empty());
            *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
            not_modified
                .headers_mut()
                .insert(header::ETAG, etag.clone());
            return not_modified;
        }
        response
    }
}

/// Reads a write's body into memory when it declares a length of at most
/// [`BUFFERED_WRITE_LIMIT`]; other requests pass as they are. An upload cut short is answered
/// 400 here, and reaches no object.
async fn buffer_small_body(request: Request<Body>) -> Result<Request<Body>, Response<Body>> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_none_or(|length| length > BUFFERED_WRITE_LIMIT) {
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, BUFFERED_WRITE_LIMIT as usize).await {
        Ok(bytes) => Ok(Request::from_parts(parts, Body::from(bytes))),
        Err(error) => {
            tracing::debug!(%error, "an upload to the embedded store ended early");
            let mut response = Response::new(Body::from("the request body was cut short"));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            Err(response)
        }
    }
}

/// One read/write lock per object key, alive only while a request holds or awaits it: the map
/// keeps weak references, so a request given up while waiting (its client went away) leaves
/// nothing behind but an entry that the next pruning drops.
#[derive(Debug, Default)]
struct ObjectLocks {
    held: Mutex<LockMap>,
}

#[derive(Debug, Default)]
struct LockMap {
    by_key: HashMap<String, Weak<RwLock<()>>>,
    /// Dead entries are dropped when the map reaches this size (then twice the live count).
    prune_at: usize,
}

/// The map is first pruned at this many entries.
const LOCK_MAP_PRUNE_AT: usize = 256;

impl ObjectLocks {
    /// Waits for `key`'s lock: shared for [`Access::Read`], exclusive for [`Access::Write`].
    async fn lock(&self, key: String, access: Access) -> ObjectGuard {
        let lock = self.lock_for(key);
        match access {
            Access::Read => ObjectGuard::Shared {
                _guard: lock.read_owned().await,
            },
            Access::Write => ObjectGuard::Exclusive {
                _guard: lock.write_owned().await,
            },
        }
    }

    fn lock_for(&self, key: String) -> Arc<RwLock<()>> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lock) = held.by_key.get(&key).and_then(Weak::upgrade) {
            return lock;
        }
        if held.by_key.len() >= held.prune_at.max(LOCK_MAP_PRUNE_AT) {
            held.by_key.retain(|_, lock| lock.strong_count() > 0);
            held.prune_at = 2 * held.by_key.len();
        }
        let lock = Arc::new(RwLock::new(()));
        held.by_key.insert(key, Arc::downgrade(&lock));
        lock
    }
}

/// A held object lock; released when dropped.
#[derive(Debug)]
enum ObjectGuard {
    Shared { _guard: OwnedRwLockReadGuard<()> },
    Exclusive { _guard: OwnedRwLockWriteGuard<()> },
}

/// Whether an `If-None-Match` list names `etag` (weak comparison, `*` matches anything).
fn etag_matches(if_none_match: &str, etag: &HeaderValue) -> bool {
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    let bare = |tag: &str| {
        tag.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned()
    };
    let etag = bare(etag);
    if_none_match
        .split(',')
        .any(|candidate| candidate.trim() == "*" || bare(candidate) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn object_locks_are_shared_by_reads_taken_alone_by_writes_and_forgotten_when_free() {
        let locks = ObjectLocks::default();
        let first = locks.lock("k".into(), Access::Read).await;
        let second = locks.lock("k".into(), Access::Read).await;
        let write = locks.lock("k".into(), Access::Write);
        tokio::pin!(write);
        let waited = tokio::time::timeout(Duration::from_millis(20), &mut write).await;
        assert!(waited.is_err(), "a write waits for the reads");
        drop((first, second));
        let _write = write.await;
        let other = tokio::time::timeout(
            Duration::from_secs(1),
            locks.lock("other".into(), Access::Write),
        )
        .await;
        assert!(other.is_ok(), "objects are locked apart");

        for n in 0..10_000 {
            drop(locks.lock(format!("k{n}"), Access::Write).await);
        }
        let entries = locks.held.lock().unwrap().by_key.len();
        assert!(entries <= LOCK_MAP_PRUNE_AT, "{entries} entries");
    }

    #[test]
    fn if_none_match_lists_are_compared_weakly() {
        let etag = HeaderValue::from_static("\"abc\"");
        assert!(etag_matches("\"abc\"", &etag));
        assert!(etag_matches("W/\"abc\"", &etag));
        assert!(etag_matches("\"x\", \"abc\"", &etag));
        assert!(etag_matches("*", &etag));
        assert!(!etag_matches("\"abd\"", &etag));
    }

    #[test]
    fn keys_follow_the_bucket_layout() {
        let settings = StoreSettings {
            endpoint: "http://127.0.0.1:1".into(),
            public_endpoint: "http://127.0.0.1:1".into(),
            bucket: "b".into(),
            region: "us-east-1".into(),
            access_key_id: "a".into(),
            secret_access_key: "s".into(),
            path_style: true,
            key_prefix: "apps/one".into(),
        };
        let store = ObjectStore::new(&settings, false);
        let device = tidemark_core::DeviceKey::from_seed([1; 32]).device_id();
        assert_eq!(
            store.level_key("s1", &device, "orders", 3),
            format!("apps/one/s1/d/{device}/orders/L3")
        );
        assert_eq!(store.blob_key("s1", "ab"), "apps/one/s1/blobs/ab");
        assert!(store.check_key_length(&"k".repeat(1000), true).is_ok());
        let embedded = ObjectStore::new(&settings, true);
        assert!(embedded.check_key_length(&"k".repeat(150), false).is_ok());
        assert!(embedded.check_key_length(&"k".repeat(200), false).is_err());
    }
}
