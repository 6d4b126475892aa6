//! The registry: who is who. Users' sessions, spaces and their members, invites, registration
//! challenges, devices and their certificates, blob uploads in progress.
//!
//! Behind the [`Registry`] trait so that a shared database (Postgres, for several server
//! instances) can replace the SQLite file without touching a handler. Secrets (session tokens,
//! invite codes) are stored only as SHA-256 hashes.

mod sqlite;

pub use sqlite::SqliteRegistry;

use async_trait::async_trait;
use tidemark_core::{DeviceId, Role};

/// A failure of the registry's storage (not a refusal: those are results).
#[derive(Debug, thiserror::Error)]
#[error("registry: {0}")]
pub struct RegistryError(pub String);

/// Registry result.
pub type RegistryResult<T> = Result<T, RegistryError>;

/// A space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpaceRecord {
    /// Its id (also its bucket prefix).
    pub id: String,
    /// Who made it.
    pub created_by: String,
    /// When (ms since the Unix epoch).
    pub created_at: u64,
}

/// An invite into a space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InviteRecord {
    /// SHA-256 of the code, hex.
    pub code_hash: String,
    /// The space it admits to.
    pub space: String,
    /// The role it grants.
    pub role: Role,
    /// When it stops working (ms).
    pub expires_at: u64,
    /// How many times it may be used.
    pub max_uses: u32,
    /// How many times it was used.
    pub uses: u32,
    /// Who made it.
    pub created_by: String,
}

/// Why an invite could not be redeemed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InviteRefusal {
    /// No such code.
    Unknown,
    /// Past its expiry.
    Expired,
    /// Used up.
    Exhausted,
}

/// A device registered in a space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    /// The space.
    pub space: String,
    /// The device key.
    pub id: DeviceId,
    /// The member it belongs to.
    pub user: String,
    /// Its name, for people ("Counter tablet").
    pub name: String,
    /// The SDK version it last reported.
    pub sdk_version: String,
    /// When it registered (ms).
    pub created_at: u64,
    /// When it last talked to the server (ms).
    pub last_seen: u64,
    /// When it last announced a push (ms).
    pub last_push: Option<u64>,
    /// When it was revoked (ms).
    pub revoked_at: Option<u64>,
    /// Its current certificate.
    pub certificate: Vec<u8>,
    /// When that certificate expires (ms).
    pub certificate_expires_at: u64,
}

/// What registering a device key did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registration {
    /// The key is new in this space.
    Created,
    /// The same member registered the same key again (a reinstall): name and certificate
    /// were updated.
    Renewed,
    /// The key belongs to another member of the space.
    OwnedByOther,
    /// The key was revoked in this space and stays so.
    Revoked,
}

/// A multipart upload in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRecord {
    /// The space.
    pub space: String,
    /// The object key uploaded to (a device's `uploads/` key for the blob).
    pub key: String,
    /// The object store's upload id.
    pub upload_id: String,
    /// The blob's size in bytes.
    pub size: u64,
    /// When it started (ms).
    pub created_at: u64,
}

/// Where the server keeps who is who.
#[async_trait]
pub trait Registry: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a session token's hash for `user` until `expires_at`.
    async fn create_session(
        &self,
        token_hash: &str,
        user: &str,
        expires_at: u64,
    ) -> RegistryResult<()>;
    /// The user of an unexpired session.
    async fn session_user(&self, token_hash: &str, now: u64) -> RegistryResult<Option<String>>;

    /// Creates a space and makes `space.created_by` its admin. False if the id is taken.
    async fn create_space(&self, space: &SpaceRecord) -> RegistryResult<bool>;
    /// A space by id.
    async fn space(&self, id: &str) -> RegistryResult<Option<SpaceRecord>>;
    /// Every space.
    async fn spaces(&self) -> RegistryResult<Vec<SpaceRecord>>;
    /// The spaces `user` is a member of, with the role.
    async fn memberships(&self, user: &str) -> RegistryResult<Vec<(String, Role)>>;
    /// `user`'s role in `space`.
    async fn member_role(&self, space: &str, user: &str) -> RegistryResult<Option<Role>>;
    /// Members of `space` with their roles.
    async fn members(&self, space: &str) -> RegistryResult<Vec<(String, Role)>>;
    /// Adds `user` to `space`, or raises their role if `role` is higher.
    async fn add_member(&self, space: &str, user: &str, role: Role, now: u64)
    -> RegistryResult<()>;
    /// Removes `user` from `space` and revokes their devices there. The revoked devices.
    async fn remove_member(
        &self,
        space: &str,
        user: &str,
        now: u64,
    ) -> RegistryResult<Option<Vec<DeviceId>>>;

    /// Stores an invite.
    async fn create_invite(&self, invite: &InviteRecord) -> RegistryResult<()>;
    /// Uses an invite once, atomically.
    async fn redeem_invite(
        &self,
        code_hash: &str,
        now: u64,
    ) -> RegistryResult<Result<InviteRecord, InviteRefusal>>;

    /// Stores a one-time registration challenge.
    async fn create_challenge(
        &self,
        challenge: &str,
        space: &str,
        user: &str,
        expires_at: u64,
    ) -> RegistryResult<()>;
    /// Consumes a challenge; true if it existed for this space and user and had not expired.
    async fn take_challenge(
        &self,
        challenge: &str,
        space: &str,
        user: &str,
        now: u64,
    ) -> RegistryResult<bool>;

    /// Registers a device key (see [`Registration`]).
    async fn register_device(&self, device: &DeviceRecord) -> RegistryResult<Registration>;
    /// A device of a space.
    async fn device(&self, space: &str, id: &DeviceId) -> RegistryResult<Option<DeviceRecord>>;
    /// Every device of a space, revoked ones included.
    async fn devices(&self, space: &str) -> RegistryResult<Vec<DeviceRecord>>;
    /// Replaces a device's certificate.
    async fn set_certificate(
        &self,
        space: &str,
        id: &DeviceId,
        certificate: &[u8],
        expires_at: u64,
    ) -> RegistryResult<()>;
    /// Records that a device was seen (and pushed, if `pushed`), with the SDK version it sent.
    async fn touch_device(
        &self,
        space: &str,
        id: &DeviceId,
        now: u64,
        pushed: bool,
        sdk_version: Option<&str>,
    ) -> RegistryResult<()>;
    /// Revokes a device. False if it was unknown or already revoked.
    async fn revoke_device(&self, space: &str, id: &DeviceId, now: u64) -> RegistryResult<bool>;

    /// Records a multipart upload in progress (replacing an older one to the same key).
    async fn put_upload(&self, upload: &UploadRecord) -> RegistryResult<()>;
    /// The multipart upload in progress to an object key.
    async fn upload(&self, space: &str, key: &str) -> RegistryResult<Option<UploadRecord>>;
    /// Forgets an upload.
    async fn delete_upload(&self, space: &str, key: &str) -> RegistryResult<()>;

    /// Checks that the registry answers.
    async fn ping(&self) -> RegistryResult<()>;
}
