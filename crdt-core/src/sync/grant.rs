//! Grants: the server's answer to `POST /v1/spaces/{space}/grants`, parsed and checked here so
//! every driver trusts the same things.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::certificate::{DeviceCertificate, RevocationList, Role, ServerPublicKey};
use crate::device::DeviceId;
use crate::pack::LEVEL_COUNT;
use crate::sync::SyncError;

/// A grant as the server sends it (JSON).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrantJson {
    space: String,
    device: DeviceId,
    role: Role,
    server_time: u64,
    expires_at: u64,
    levels: u8,
    #[serde(default)]
    put: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    get: BTreeMap<String, BTreeMap<DeviceId, Vec<String>>>,
    certificates: Vec<String>,
    revocations: String,
    server_public_key: ServerPublicKey,
}

/// A checked grant: URLs to this space's level packs until `expires_at`, and which devices'
/// packs to trust.
#[derive(Clone, Debug)]
pub(crate) struct Grant {
    /// The JSON it came from, kept for the checkpoint.
    pub(crate) raw: Vec<u8>,
    pub(crate) role: Role,
    pub(crate) server_time: u64,
    pub(crate) expires_at: u64,
    pub(crate) server_key: ServerPublicKey,
    /// Per collection, this device's level PUT URLs.
    pub(crate) put: BTreeMap<String, Vec<String>>,
    /// Per collection and device, level GET URLs.
    pub(crate) get: BTreeMap<String, BTreeMap<DeviceId, Vec<String>>>,
    /// Devices whose packs are read: certified writers of this space, not revoked.
    pub(crate) authors: BTreeSet<DeviceId>,
    /// Revoked devices and since when (server time).
    pub(crate) revoked: BTreeMap<DeviceId, u64>,
}

impl Grant {
    /// Parses and checks a grant for `device` in `space`. `pinned` is the server key learned
    /// when the device joined; a grant signed by another key is refused, so a server (or
    /// whoever answers in its place) cannot swap in its own certificates.
    pub(crate) fn parse(
        raw: &[u8],
        space: &str,
        device: DeviceId,
        pinned: Option<&ServerPublicKey>,
    ) -> Result<Grant, SyncError> {
        let bad = |reason: String| SyncError::BadGrant(reason);
        let json: GrantJson =
            serde_json::from_slice(raw).map_err(|e| bad(format!("not a grant: {e}")))?;
        if json.space != space {
            return Err(bad(format!("grant is for space {:?}", json.space)));
        }
        if json.device != device {
            return Err(bad(format!("grant is for device {}", json.device)));
        }
        if json.levels != LEVEL_COUNT {
            return Err(bad(format!(
                "grant has {} levels, this build uses {LEVEL_COUNT}",
                json.levels
            )));
        }
        if let Some(pinned) = pinned
            && *pinned != json.server_public_key
        {
            return Err(SyncError::ServerKeyChanged);
        }
        let server_key = json.server_public_key;
        let level_urls_ok = |urls: &Vec<String>| urls.len() == usize::from(LEVEL_COUNT);
        if !json.put.values().all(level_urls_ok)
            || !json
                .get
                .values()
                .flat_map(|d| d.values())
                .all(level_urls_ok)
        {
            return Err(bad(format!("every device needs {LEVEL_COUNT} level URLs")));
        }

        let revocations = STANDARD
            .decode(&json.revocations)
            .map_err(|_| bad("revocation list is not base64".into()))?;
        let revocations = RevocationList::verify(&revocations, &server_key)
            .map_err(|e| bad(format!("revocation list: {e}")))?;
        if revocations.space != space {
            return Err(bad("revocation list is for another space".into()));
        }
        // Inserted, not collected: collecting into a B-tree map compiles a sort of its own
        // into the wasm (about 5 KB), for a list that is short and sorted already.
        let mut revoked = BTreeMap::new();
        for r in &revocations.revoked {
            revoked.insert(r.device, r.revoked_at_millis);
        }

        let mut authors = BTreeSet::new();
        for encoded in &json.certificates {
            let bytes = STANDARD
                .decode(encoded)
                .map_err(|_| bad("certificate is not base64".into()))?;
            let certificate = DeviceCertificate::verify(&bytes, &server_key)
                .map_err(|e| bad(format!("certificate: {e}")))?;
            // Certificates are checked against server time: the device's own clock may be off.
            if certificate.space == space
                && certificate.role.can_write()
                && certificate.is_valid_at(json.server_time)
                && !revoked.contains_key(&certificate.device)
            {
                authors.insert(certificate.device);
            }
        }

        Ok(Grant {
            raw: raw.to_vec(),
            role: json.role,
            server_time: json.server_time,
            expires_at: json.expires_at,
            server_key,
            put: json.put,
            get: json.get,
            authors,
            revoked,
        })
    }

    /// Whether this grant covers `collection` (GET URLs for it).
    pub(crate) fn covers(&self, collection: &str) -> bool {
        self.get.contains_key(collection)
    }

    /// The GET URL of `device`'s level pack, if this grant has one.
    pub(crate) fn get_url(&self, collection: &str, device: &DeviceId, level: u8) -> Option<&str> {
        self.get
            .get(collection)?
            .get(device)?
            .get(usize::from(level))
            .map(String::as_str)
    }

    /// The PUT URL of this device's level pack, if this grant has one (writers only).
    pub(crate) fn put_url(&self, collection: &str, level: u8) -> Option<&str> {
        self.put
            .get(collection)?
            .get(usize::from(level))
            .map(String::as_str)
    }
}
