//! Attachments: content-addressed blobs, uploaded straight to the bucket.
//!
//! A device uploads to its own `uploads/` key, never to `blobs/`: up to
//! [`SINGLE_PUT_MAX_BYTES`] with one presigned PUT whose signed headers pin the size and the
//! SHA-256, larger blobs as a multipart upload in [`PART_BYTES`] parts (asking again returns
//! which parts are done, so an interrupted upload resumes). Then it POSTs `complete`: the
//! server hashes the upload and only if the digest matches copies it to `blobs/{sha256}`. So a
//! blob is write-once and always what its name says, whatever the store checks itself.

use axum::Json;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use tidemark_core::{DeviceId, Role};

use super::devices::owned_device;
use super::{ApiJson, ApiPath};
use crate::auth::{Session, require, role_in};
use crate::clock;
use crate::error::{AppError, AppResult};
use crate::registry::UploadRecord;
use crate::state::AppState;
use crate::store::{Access, Presigned};

/// Largest blob uploaded with one PUT.
pub const SINGLE_PUT_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Part size of multipart uploads (S3 needs at least 5 MiB for all but the last).
pub const PART_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, Deserialize)]
pub(super) struct UploadRequest {
    device: DeviceId,
    sha256: String,
    size: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PartUpload {
    number: i32,
    size: u64,
    done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    put: Option<Presigned>,
}

/// What to do to upload a blob.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub(super) enum UploadPlan {
    /// The blob is stored already: nothing to upload.
    Exists { sha256: String, size: u64 },
    /// One PUT, sent exactly as given (headers included), then POST `complete`.
    #[serde(rename_all = "camelCase")]
    Upload {
        sha256: String,
        put: Presigned,
        complete: String,
        expires_at: u64,
    },
    /// Upload the parts not `done`, then POST `complete`.
    #[serde(rename_all = "camelCase")]
    Multipart {
        sha256: String,
        upload_id: String,
        part_size: u64,
        parts: Vec<PartUpload>,
        complete: String,
        expires_at: u64,
    },
}

fn check_digest(sha256: &str) -> AppResult<()> {
    if sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(AppError::invalid(
            "sha256",
            "must be 64 lowercase hex digits",
        ))
    }
}

pub(super) async fn start_upload(
    State(state): State<AppState>,
    session: Session,
    ApiPath(space): ApiPath<String>,
    ApiJson(request): ApiJson<UploadRequest>,
) -> AppResult<Json<UploadPlan>> {
    let role = owned_device(&state, &space, &session, &request.device).await?;
    require(role, Role::Writer, "upload attachments")?;
    check_digest(&request.sha256)?;
    let limit = state.config.max_blob_bytes;
    if request.size > limit {
        return Err(AppError::BlobTooLarge {
            size: request.size,
            limit,
        });
    }
    if let Some(size) = state
        .store
        .head(&state.store.blob_key(&space, &request.sha256))
        .await?
    {
        return Ok(Json(UploadPlan::Exists {
            sha256: request.sha256,
            size,
        }));
    }
    let key = state
        .store
        .upload_key(&space, &request.device, &request.sha256);
    state
        .store
        .check_key_length(&key, true)
        .map_err(|e| AppError::invalid("space", e.0))?;
    let complete = format!(
        "{}/v1/spaces/{space}/blobs/{}/complete",
        state.public_url, request.sha256
    );
    let start = state.clock.now();
    let ttl = state.grant_ttl;
    let expires_at = state.grant_expires_at(state.clock.now_millis());
    if request.size <= SINGLE_PUT_MAX_BYTES {
        let digest =
            hex::decode(&request.sha256).map_err(|_| AppError::invalid("sha256", "must be hex"))?;
        let put = state
            .store
            .presign_blob_put(&key, request.size, &STANDARD.encode(digest), start, ttl)
            .await?;
        return Ok(Json(UploadPlan::Upload {
            sha256: request.sha256,
            put,
            complete,
            expires_at,
        }));
    }

    // Resume the upload in progress if the store still knows it; start one otherwise.
    let existing = state.registry.upload(&space, &key).await?;
    let mut resumed = None;
    if let Some(upload) = existing.filter(|u| u.size == request.size)
        && let Some(parts) = state.store.uploaded_parts(&key, &upload.upload_id).await?
    {
        resumed = Some((upload.upload_id, parts));
    }
    let (upload_id, uploaded) = match resumed {
        Some(found) => found,
        None => {
            let upload_id = state.store.create_multipart(&key).await?;
            state
                .registry
                .put_upload(&UploadRecord {
                    space: space.clone(),
                    key: key.clone(),
                    upload_id: upload_id.clone(),
                    size: request.size,
                    created_at: state.clock.now_millis(),
                })
                .await?;
            (upload_id, Vec::new())
        }
    };
    let part_count = request.size.div_ceil(PART_BYTES);
    let mut parts = Vec::with_capacity(usize::try_from(part_count).unwrap_or(0));
    for index in 0..part_count {
        let number =
            i32::try_from(index + 1).map_err(|_| AppError::invalid("size", "too many parts"))?;
        let size = PART_BYTES.min(request.size - index * PART_BYTES);
        // Done only if it can be completed: some stores (s3s-fs) list parts without their
        // ETag, and a part whose ETag neither the store nor the device has must be sent again.
        let done = uploaded
            .iter()
            .any(|p| p.number == number && p.size == size && p.etag.is_some());
        let put = if done {
            None
        } else {
            Some(
                state
                    .store
                    .presign_upload_part(&key, &upload_id, number, size, start, ttl)
                    .await?,
            )
        };
        parts.push(PartUpload {
            number,
            size,
            done,
            put,
        });
    }
    Ok(Json(UploadPlan::Multipart {
        complete,
        sha256: request.sha256,
        upload_id,
        part_size: PART_BYTES,
        parts,
        expires_at,
    }))
}

#[derive(Debug, Deserialize)]
pub(super) struct CompletedPartRequest {
    number: i32,
    etag: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct CompleteRequest {
    device: DeviceId,
    /// ETags the store answered to each part PUT (stores that list them need none).
    #[serde(default)]
    parts: Vec<CompletedPartRequest>,
}

pub(super) async fn complete_upload(
    State(state): State<AppState>,
    session: Session,
    ApiPath((space, sha256)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<CompleteRequest>,
) -> AppResult<Json<UploadPlan>> {
    let role = owned_device(&state, &space, &session, &request.device).await?;
    require(role, Role::Writer, "upload attachments")?;
    check_digest(&sha256)?;
    let blob = state.store.blob_key(&space, &sha256);
    let upload = state.store.upload_key(&space, &request.device, &sha256);

    if let Some(record) = state.registry.upload(&space, &upload).await? {
        complete_multipart(&state, &upload, &record, &request.parts).await?;
        state.registry.delete_upload(&space, &upload).await?;
    }
    let Some(size) = state.store.head(&upload).await? else {
        // Completed before (a retried request) or never uploaded.
        return match state.store.head(&blob).await? {
            Some(size) => Ok(Json(UploadPlan::Exists { sha256, size })),
            None => Err(AppError::UploadNotFound),
        };
    };
    // Content-addressed: only content that hashes to the name becomes the blob.
    let actual = state.store.sha256_hex(&upload).await?;
    if actual != sha256 {
        state.store.delete(&upload).await?;
        return Err(AppError::BlobDigestMismatch(sha256));
    }
    if state.store.head(&blob).await?.is_none() {
        state.store.copy(&upload, &blob).await?;
    }
    state.store.delete(&upload).await?;
    Ok(Json(UploadPlan::Exists { sha256, size }))
}

async fn complete_multipart(
    state: &AppState,
    key: &str,
    record: &UploadRecord,
    given: &[CompletedPartRequest],
) -> AppResult<()> {
    let Some(mut parts) = state.store.uploaded_parts(key, &record.upload_id).await? else {
        return Err(AppError::UploadNotFound);
    };
    let part_count = i32::try_from(record.size.div_ceil(PART_BYTES)).unwrap_or(i32::MAX);
    parts.retain(|p| p.number <= part_count);
    for part in &mut parts {
        if part.etag.is_none() {
            part.etag = given
                .iter()
                .find(|g| g.number == part.number)
                .map(|g| g.etag.clone());
        }
    }
    let missing: Vec<i32> = (1..=part_count)
        .filter(|n| !parts.iter().any(|p| p.number == *n && p.etag.is_some()))
        .collect();
    if !missing.is_empty() {
        return Err(AppError::UploadIncomplete(missing));
    }
    state
        .store
        .complete_multipart(key, &record.upload_id, &parts)
        .await?;
    Ok(())
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Download {
    url: String,
    size: u64,
    expires_at: u64,
}

pub(super) async fn download(
    State(state): State<AppState>,
    session: Session,
    ApiPath((space, sha256)): ApiPath<(String, String)>,
) -> AppResult<Json<Download>> {
    role_in(&state, &space, &session).await?;
    check_digest(&sha256)?;
    let key = state.store.blob_key(&space, &sha256);
    let size = state
        .store
        .head(&key)
        .await?
        .ok_or_else(|| AppError::BlobNotFound(sha256.clone()))?;
    let start = state.clock.now();
    let url = state
        .store
        .presign(Access::Read, &key, start, state.grant_ttl)
        .await?;
    let expires_at = state.grant_expires_at(clock::unix_millis(start));
    Ok(Json(Download {
        url,
        size,
        expires_at,
    }))
}
