//! Reads a space's level packs straight from object storage and checks them: signatures,
//! sizes, levels, generations, entry counts.

use std::collections::BTreeMap;

use serde::Deserialize;
use tidemark_core::{DeviceId, OpenOptions, Pack};

use crate::client::{Client, ClientError};

/// One level pack as found in the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LevelReport {
    /// The device whose key it is stored under.
    pub device: DeviceId,
    /// The collection.
    pub collection: String,
    /// The level.
    pub level: u8,
    /// Stored size in bytes.
    pub bytes: usize,
    /// What the checks found.
    pub verdict: Verdict,
}

/// The result of checking one pack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Signature verified and body read.
    Valid {
        /// Header generation.
        generation: u64,
        /// Documents in the body.
        documents: usize,
        /// Registers in the body.
        registers: usize,
        /// Whether the body is encrypted.
        encrypted: bool,
    },
    /// Signature verified; the body is encrypted and this device has no space key.
    Sealed {
        /// Header generation.
        generation: u64,
    },
    /// The pack failed a check: the error's code and message.
    Invalid(String),
}

#[derive(Deserialize)]
struct GrantUrls {
    get: BTreeMap<String, BTreeMap<DeviceId, Vec<String>>>,
}

/// Fetches a fresh grant for the client's collections and reads every level of every device
/// (or only `device`'s), reporting the packs that exist.
pub async fn inspect(
    client: &Client,
    device: Option<DeviceId>,
) -> Result<Vec<LevelReport>, ClientError> {
    let collections: Vec<String> = client.engine().collections().map(str::to_string).collect();
    let profile = client.profile();
    let grant = client
        .api()
        .grant(&profile.space, client.device(), &collections)
        .await?;
    let urls: GrantUrls = serde_json::from_slice(&grant)
        .map_err(|e| ClientError::Profile(format!("unexpected grant: {e}")))?;
    let key = profile
        .space_key
        .as_deref()
        .and_then(|k| hex::decode(k).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(tidemark_core::SpaceKey::from_bytes);
    let http = reqwest::Client::new();
    let mut reports = Vec::new();
    for (collection, devices) in &urls.get {
        for (author, levels) in devices {
            if device.is_some_and(|d| d != *author) {
                continue;
            }
            for (level, url) in levels.iter().enumerate() {
                let response = http.get(url).send().await.map_err(|e| {
                    ClientError::Profile(format!("reading {collection} L{level}: {e}"))
                })?;
                if response.status() == reqwest::StatusCode::NOT_FOUND {
                    continue;
                }
                let status = response.status();
                let bytes = response
                    .bytes()
                    .await
                    .map_err(|e| ClientError::Profile(e.to_string()))?;
                let verdict = if !status.is_success() {
                    Verdict::Invalid(format!("store answered {status}"))
                } else {
                    check(&bytes, &profile.space, *author, collection, key.as_ref())
                };
                reports.push(LevelReport {
                    device: *author,
                    collection: collection.clone(),
                    level: level as u8,
                    bytes: bytes.len(),
                    verdict,
                });
            }
        }
    }
    Ok(reports)
}

fn check(
    bytes: &[u8],
    space: &str,
    author: DeviceId,
    collection: &str,
    key: Option<&tidemark_core::SpaceKey>,
) -> Verdict {
    let verified = match Pack::verify(bytes) {
        Ok(verified) => verified,
        Err(e) => return Verdict::Invalid(format!("{}: {e}", e.code())),
    };
    if verified.header.encrypted && key.is_none() {
        return Verdict::Sealed {
            generation: verified.header.generation,
        };
    }
    let options = OpenOptions {
        space_key: key,
        space: Some(space),
        author: Some(author),
        collection: Some(collection),
        ..OpenOptions::default()
    };
    match Pack::open(bytes, &options) {
        Ok(pack) => Verdict::Valid {
            generation: pack.header.generation,
            documents: pack.state.document_count(),
            registers: pack.state.register_count(),
            encrypted: pack.header.encrypted,
        },
        Err(e) => Verdict::Invalid(format!("{}: {e}", e.code())),
    }
}
