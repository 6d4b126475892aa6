//! Certificates: the server's signed word that a device belongs to a space with a role, and
//! its signed list of revoked devices. Both are checked offline by other devices with the
//! server's public key (from `GET /v1/info`), so a device never has to trust the bucket or the
//! other devices about who may write.
//!
//! ```text
//! certificate = magic "TDMC" version:u8 space:string device:32 user:string role:u8
//!               issued-at-ms:varint expires-at-ms:varint signature:64
//! revocations = magic "TDMR" version:u8 space:string issued-at-ms:varint
//!               count:varint (device:32 revoked-at-ms:varint)* signature:64
//! signature   = Ed25519 by the server over "tidemark/certificate/v1\0" (or
//!               "tidemark/revocations/v1\0") ‖ all bytes before it
//! ```
//!
//! Revocations are listed in ascending device order, each device once, so one list has one
//! encoding.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{Reader, put_bytes, put_varint};
use crate::device::{DEVICE_ID_BYTES, DeviceId, SIGNATURE_BYTES};
use crate::error::{CertificateError, DecodeError};
use crate::pack::{MAX_SPACE_ID_BYTES, validate_space_id};

/// The first four bytes of a device certificate.
pub const CERTIFICATE_MAGIC: [u8; 4] = *b"TDMC";
/// The first four bytes of a revocation list.
pub const REVOCATIONS_MAGIC: [u8; 4] = *b"TDMR";
/// The certificate and revocation-list format version this build writes and reads.
pub const CERTIFICATE_FORMAT_VERSION: u8 = 1;
/// Longest user id in a certificate, in bytes.
pub const MAX_USER_ID_BYTES: usize = 256;

const CERTIFICATE_CONTEXT: &[u8] = b"tidemark/certificate/v1\0";
const REGISTRATION_CONTEXT: &[u8] = b"tidemark/register/v1\0";
const REVOCATIONS_CONTEXT: &[u8] = b"tidemark/revocations/v1\0";

/// What a device signs to prove it holds its key when it registers: the server's one-time
/// challenge, bound to the space so a signature cannot be replayed into another one.
pub fn registration_message(space: &str, challenge: &[u8]) -> Vec<u8> {
    let mut message =
        Vec::with_capacity(REGISTRATION_CONTEXT.len() + space.len() + 8 + challenge.len());
    message.extend_from_slice(REGISTRATION_CONTEXT);
    put_bytes(&mut message, space.as_bytes());
    put_bytes(&mut message, challenge);
    message
}

/// What a member may do in a space. Ordered: each role can do everything the one before can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads every collection it is granted; writes nothing.
    Reader,
    /// Reads, and writes its own packs and blobs.
    Writer,
    /// Writes, invites members, removes members, revokes devices.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Reader, Role::Writer, Role::Admin];

    /// The role's name as used in JSON and the registry: `reader`, `writer`, `admin`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }

    /// Whether the role may write packs and blobs.
    pub const fn can_write(self) -> bool {
        matches!(self, Role::Writer | Role::Admin)
    }

    const fn to_byte(self) -> u8 {
        match self {
            Role::Reader => 0,
            Role::Writer => 1,
            Role::Admin => 2,
        }
    }

    const fn from_byte(byte: u8) -> Option<Role> {
        match byte {
            0 => Some(Role::Reader),
            1 => Some(Role::Writer),
            2 => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not `reader`, `writer` or `admin`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected reader, writer or admin")]
pub struct ParseRoleError(String);

impl FromStr for Role {
    type Err = ParseRoleError;

    fn from_str(s: &str) -> Result<Role, ParseRoleError> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| ParseRoleError(s.chars().take(32).collect()))
    }
}

impl Serialize for Role {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Role, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The server's Ed25519 signing key, which certifies devices.
#[derive(Clone)]
pub struct ServerKey(SigningKey);

impl ServerKey {
    /// The key whose secret scalar derives from `seed`, 32 secret random bytes.
    pub fn from_seed(seed: [u8; 32]) -> ServerKey {
        ServerKey(SigningKey::from_bytes(&seed))
    }

    /// The seed this key was made from, for storing it.
    pub fn to_seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half, which devices use to check certificates.
    pub fn public_key(&self) -> ServerPublicKey {
        ServerPublicKey(self.0.verifying_key().to_bytes())
    }

    fn sign(&self, context: &[u8], body: &[u8]) -> [u8; SIGNATURE_BYTES] {
        self.0.sign(&[context, body].concat()).to_bytes()
    }
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerKey")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// The server's public key. Displayed (and serialized) as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerPublicKey([u8; 32]);

impl ServerPublicKey {
    /// Wraps raw public-key bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> ServerPublicKey {
        ServerPublicKey(bytes)
    }

    /// The raw public-key bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn verify(
        &self,
        context: &[u8],
        body: &[u8],
        signature: &[u8; SIGNATURE_BYTES],
    ) -> Result<(), CertificateError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| CertificateError::BadSignature)?;
        key.verify_strict(&[context, body].concat(), &Signature::from_bytes(signature))
            .map_err(|_| CertificateError::BadSignature)
    }
}

impl fmt::Display for ServerPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Same hex form as device ids.
        fmt::Display::fmt(&DeviceId::from_bytes(self.0), f)
    }
}

impl fmt::Debug for ServerPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerPublicKey({self})")
    }
}

impl FromStr for ServerPublicKey {
    type Err = crate::device::ParseDeviceIdError;

    fn from_str(s: &str) -> Result<ServerPublicKey, Self::Err> {
        s.parse::<DeviceId>()
            .map(|id| ServerPublicKey(*id.as_bytes()))
    }
}

impl Serialize for ServerPublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ServerPublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ServerPublicKey, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The server's statement that `device` belongs to `user`, a member of `space` with `role`,
/// until `expires_at_millis`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCertificate {
    /// The space the device may sync.
    pub space: String,
    /// The certified device key.
    pub device: DeviceId,
    /// The member the device belongs to.
    pub user: String,
    /// The member's role when the certificate was issued.
    pub role: Role,
    /// When it was issued (server time, ms since the Unix epoch).
    pub issued_at_millis: u64,
    /// When it stops being valid (server time, ms since the Unix epoch).
    pub expires_at_millis: u64,
}

impl DeviceCertificate {
    /// Encodes and signs the certificate.
    pub fn sign(&self, key: &ServerKey) -> Result<Vec<u8>, CertificateError> {
        check_space(&self.space)?;
        if self.user.is_empty() || self.user.len() > MAX_USER_ID_BYTES {
            return Err(CertificateError::Malformed(
                "user id must be 1 to 256 bytes",
            ));
        }
        if self.expires_at_millis < self.issued_at_millis {
            return Err(CertificateError::Malformed("expires before it is issued"));
        }
        let mut out = Vec::with_capacity(128 + self.space.len() + self.user.len());
        out.extend_from_slice(&CERTIFICATE_MAGIC);
        out.push(CERTIFICATE_FORMAT_VERSION);
        put_bytes(&mut out, self.space.as_bytes());
        out.extend_from_slice(self.device.as_bytes());
        put_bytes(&mut out, self.user.as_bytes());
        out.push(self.role.to_byte());
        put_varint(&mut out, self.issued_at_millis);
        put_varint(&mut out, self.expires_at_millis);
        let signature = key.sign(CERTIFICATE_CONTEXT, &out);
        out.extend_from_slice(&signature);
        Ok(out)
    }

    /// Checks the signature against the server's key and decodes the certificate. Time is not
    /// checked here: see [`DeviceCertificate::is_valid_at`].
    pub fn verify(
        bytes: &[u8],
        server: &ServerPublicKey,
    ) -> Result<DeviceCertificate, CertificateError> {
        let body = signed_body(bytes, CERTIFICATE_MAGIC, CERTIFICATE_CONTEXT, server)?;
        let mut r = Reader::new(&body[5..]);
        let certificate = (|| -> Result<DeviceCertificate, DecodeError> {
            let space = r.str(MAX_SPACE_ID_BYTES)?.to_string();
            let device = DeviceId::from_bytes(r.array::<DEVICE_ID_BYTES>()?);
            let user = r.str(MAX_USER_ID_BYTES)?.to_string();
            let role = Role::from_byte(r.u8()?).ok_or_else(|| r.malformed("unknown role"))?;
            let issued_at_millis = r.varint()?;
            let expires_at_millis = r.varint()?;
            r.finish()?;
            Ok(DeviceCertificate {
                space,
                device,
                user,
                role,
                issued_at_millis,
                expires_at_millis,
            })
        })()
        .map_err(CertificateError::Decode)?;
        check_space(&certificate.space)?;
        Ok(certificate)
    }

    /// Whether the certificate is in force at `now_millis` (server time).
    pub fn is_valid_at(&self, now_millis: u64) -> bool {
        (self.issued_at_millis..self.expires_at_millis).contains(&now_millis)
    }
}

/// One revoked device: its writes stamped after `revoked_at_millis` are not to be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// The revoked device.
    pub device: DeviceId,
    /// When it was revoked (server time, ms since the Unix epoch).
    pub revoked_at_millis: u64,
}

/// The server's signed list of the devices revoked in a space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationList {
    /// The space.
    pub space: String,
    /// When the list was issued (server time, ms since the Unix epoch).
    pub issued_at_millis: u64,
    /// The revoked devices.
    pub revoked: Vec<Revocation>,
}

impl RevocationList {
    /// Encodes and signs the list (sorting it by device first).
    pub fn sign(&self, key: &ServerKey) -> Result<Vec<u8>, CertificateError> {
        check_space(&self.space)?;
        let mut revoked = self.revoked.clone();
        revoked.sort_by_key(|r| r.device);
        if revoked
            .windows(2)
            .any(|pair| pair[0].device == pair[1].device)
        {
            return Err(CertificateError::Malformed("a device is listed twice"));
        }
        let mut out = Vec::with_capacity(64 + revoked.len() * 40);
        out.extend_from_slice(&REVOCATIONS_MAGIC);
        out.push(CERTIFICATE_FORMAT_VERSION);
        put_bytes(&mut out, self.space.as_bytes());
        put_varint(&mut out, self.issued_at_millis);
        put_varint(&mut out, revoked.len() as u64);
        for entry in &revoked {
            out.extend_from_slice(entry.device.as_bytes());
            put_varint(&mut out, entry.revoked_at_millis);
        }
        let signature = key.sign(REVOCATIONS_CONTEXT, &out);
        out.extend_from_slice(&signature);
        Ok(out)
    }

    /// Checks the signature against the server's key and decodes the list.
    pub fn verify(
        bytes: &[u8],
        server: &ServerPublicKey,
    ) -> Result<RevocationList, CertificateError> {
        let body = signed_body(bytes, REVOCATIONS_MAGIC, REVOCATIONS_CONTEXT, server)?;
        let mut r = Reader::new(&body[5..]);
        let list = (|| -> Result<RevocationList, DecodeError> {
            let space = r.str(MAX_SPACE_ID_BYTES)?.to_string();
            let issued_at_millis = r.varint()?;
            let count = r.count(DEVICE_ID_BYTES + 1)?;
            let mut revoked: Vec<Revocation> = Vec::with_capacity(count);
            for _ in 0..count {
                let device = DeviceId::from_bytes(r.array::<DEVICE_ID_BYTES>()?);
                if revoked.last().is_some_and(|last| last.device >= device) {
                    return Err(r.non_canonical("revocations out of order"));
                }
                revoked.push(Revocation {
                    device,
                    revoked_at_millis: r.varint()?,
                });
            }
            r.finish()?;
            Ok(RevocationList {
                space,
                issued_at_millis,
                revoked,
            })
        })()
        .map_err(CertificateError::Decode)?;
        check_space(&list.space)?;
        Ok(list)
    }

    /// When `device` was revoked, if it is on the list.
    pub fn revoked_at(&self, device: &DeviceId) -> Option<u64> {
        self.revoked
            .iter()
            .find(|r| r.device == *device)
            .map(|r| r.revoked_at_millis)
    }
}

fn check_space(space: &str) -> Result<(), CertificateError> {
    validate_space_id(space).map_err(|_| {
        CertificateError::Malformed("space id must be 1 to 128 ASCII letters, digits, '_' or '-'")
    })
}

/// Checks framing and signature; returns the signed bytes (magic and version included).
fn signed_body<'a>(
    bytes: &'a [u8],
    magic: [u8; 4],
    context: &[u8],
    server: &ServerPublicKey,
) -> Result<&'a [u8], CertificateError> {
    if bytes.len() < magic.len() || bytes[..4] != magic {
        return Err(CertificateError::NotACertificate);
    }
    if bytes.len() < 5 + SIGNATURE_BYTES {
        return Err(CertificateError::Decode(DecodeError::Truncated {
            offset: bytes.len(),
            needed: 5 + SIGNATURE_BYTES - bytes.len(),
        }));
    }
    if bytes[4] != CERTIFICATE_FORMAT_VERSION {
        return Err(CertificateError::UnsupportedVersion {
            found: bytes[4],
            supported: CERTIFICATE_FORMAT_VERSION,
        });
    }
    let (body, signature) = bytes.split_at(bytes.len() - SIGNATURE_BYTES);
    let signature: &[u8; SIGNATURE_BYTES] = signature
        .try_into()
        .map_err(|_| CertificateError::Malformed("signature length"))?;
    server.verify(context, body, signature)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceKey;

    fn server() -> ServerKey {
        ServerKey::from_seed([5; 32])
    }

    fn certificate() -> DeviceCertificate {
        DeviceCertificate {
            space: "kitchen-1".into(),
            device: DeviceKey::from_seed([1; 32]).device_id(),
            user: "invite:8f2a".into(),
            role: Role::Writer,
            issued_at_millis: 1_700_000_000_000,
            expires_at_millis: 1_700_086_400_000,
        }
    }

    #[test]
    fn certificate_round_trips_and_checks_time() {
        let cert = certificate();
        let bytes = cert.sign(&server()).unwrap();
        let opened = DeviceCertificate::verify(&bytes, &server().public_key()).unwrap();
        assert_eq!(opened, cert);
        assert!(opened.is_valid_at(1_700_000_000_000));
        assert!(!opened.is_valid_at(1_700_086_400_000));
        assert!(!opened.is_valid_at(1_699_999_999_999));
    }

    #[test]
    fn certificate_from_another_server_or_tampered_is_refused() {
        let bytes = certificate().sign(&server()).unwrap();
        let other = ServerKey::from_seed([6; 32]).public_key();
        assert_eq!(
            DeviceCertificate::verify(&bytes, &other),
            Err(CertificateError::BadSignature)
        );
        // Flip every byte in turn: no variant may open, none may panic.
        for i in 0..bytes.len() {
            let mut forged = bytes.clone();
            forged[i] ^= 0x04;
            assert!(DeviceCertificate::verify(&forged, &server().public_key()).is_err());
        }
        for len in 0..bytes.len() {
            assert!(DeviceCertificate::verify(&bytes[..len], &server().public_key()).is_err());
        }
    }

    #[test]
    fn certificate_and_revocation_list_cannot_stand_in_for_each_other() {
        let cert = certificate().sign(&server()).unwrap();
        assert_eq!(
            RevocationList::verify(&cert, &server().public_key()),
            Err(CertificateError::NotACertificate)
        );
    }

    #[test]
    fn revocation_list_round_trips_sorted_and_refuses_duplicates() {
        let a = DeviceKey::from_seed([1; 32]).device_id();
        let b = DeviceKey::from_seed([2; 32]).device_id();
        let list = RevocationList {
            space: "s".into(),
            issued_at_millis: 42,
            revoked: vec![
                Revocation {
                    device: a.max(b),
                    revoked_at_millis: 7,
                },
                Revocation {
                    device: a.min(b),
                    revoked_at_millis: 9,
                },
            ],
        };
        let bytes = list.sign(&server()).unwrap();
        let opened = RevocationList::verify(&bytes, &server().public_key()).unwrap();
        assert_eq!(opened.revoked[0].device, a.min(b));
        assert_eq!(opened.revoked_at(&a.max(b)), Some(7));
        assert_eq!(
            opened.revoked_at(&DeviceKey::from_seed([3; 32]).device_id()),
            None
        );

        let mut twice = list.clone();
        twice.revoked[1].device = twice.revoked[0].device;
        assert!(matches!(
            twice.sign(&server()),
            Err(CertificateError::Malformed(_))
        ));
    }

    #[test]
    fn invalid_fields_cannot_be_signed() {
        let mut bad_space = certificate();
        bad_space.space = "a/b".into();
        assert!(bad_space.sign(&server()).is_err());
        let mut no_user = certificate();
        no_user.user.clear();
        assert!(no_user.sign(&server()).is_err());
        let mut backwards = certificate();
        backwards.expires_at_millis = 0;
        assert!(backwards.sign(&server()).is_err());
    }

    #[test]
    fn roles_parse_order_and_serialize_by_name() {
        assert!(Role::Reader < Role::Writer && Role::Writer < Role::Admin);
        assert!(!Role::Reader.can_write() && Role::Writer.can_write());
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!("owner".parse::<Role>().is_err());
        assert_eq!(serde_json::to_string(&Role::Reader).unwrap(), "\"reader\"");
    }
}
