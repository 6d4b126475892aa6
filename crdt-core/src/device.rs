//! Device identity: an Ed25519 key pair made on the device; the public key is its id.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of a device id (an Ed25519 public key) in bytes.
pub const DEVICE_ID_BYTES: usize = 32;
/// Length of an Ed25519 signature in bytes.
pub const SIGNATURE_BYTES: usize = 64;

/// A device's public key, which is also its identity.
///
/// Displayed (and serialized) as 64 lowercase hex digits, the form used in bucket keys.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId([u8; DEVICE_ID_BYTES]);

impl DeviceId {
    /// Wraps raw public-key bytes. Whether they are a valid Ed25519 point is checked when a
    /// signature is verified against them.
    pub const fn from_bytes(bytes: [u8; DEVICE_ID_BYTES]) -> DeviceId {
        DeviceId(bytes)
    }

    /// The raw public-key bytes.
    pub const fn as_bytes(&self) -> &[u8; DEVICE_ID_BYTES] {
        &self.0
    }

    /// Checks that `signature` over `message` was made by this device's key (strict RFC 8032
    /// verification: no malleable or small-order encodings).
    pub fn verify(
        &self,
        message: &[u8],
        signature: &[u8; SIGNATURE_BYTES],
    ) -> Result<(), BadSignature> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| BadSignature)?;
        key.verify_strict(message, &Signature::from_bytes(signature))
            .map_err(|_| BadSignature)
    }
}

/// A signature did not verify against the claimed device key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("signature does not verify against the device key")]
pub struct BadSignature;

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex digits identify a device in logs as well as git's short hashes do.
        let hex = self.to_string();
        write!(f, "DeviceId({}…)", &hex[..8])
    }
}

/// A device id string that is not 64 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("device id must be 64 hex digits, got {0:?}")]
pub struct ParseDeviceIdError(String);

impl FromStr for DeviceId {
    type Err = ParseDeviceIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || ParseDeviceIdError(s.chars().take(80).collect());
        if s.len() != DEVICE_ID_BYTES * 2 || !s.is_ascii() {
            return Err(invalid());
        }
        let mut bytes = [0u8; DEVICE_ID_BYTES];
        for (byte, pair) in bytes.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| invalid())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
        }
        Ok(DeviceId(bytes))
    }
}

impl Serialize for DeviceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A device's private signing key. Made from 32 random bytes by the platform layer (core has
/// no source of randomness of its own).
#[derive(Clone)]
pub struct DeviceKey(SigningKey);

impl DeviceKey {
    /// The key whose secret scalar derives from `seed` (RFC 8032). `seed` must be secret and
    /// uniformly random.
    pub fn from_seed(seed: [u8; 32]) -> DeviceKey {
        DeviceKey(SigningKey::from_bytes(&seed))
    }

    /// The seed this key was made from, for storing it.
    pub fn to_seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half: this device's id.
    pub fn device_id(&self) -> DeviceId {
        DeviceId(self.0.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_BYTES] {
        self.0.sign(message).to_bytes()
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKey")
            .field("device", &self.device_id())
            .finish_non_exhaustive()
    }
}

/// The 32-byte symmetric key of a space, for end-to-end encryption of pack bodies. The server
/// never sees it.
#[derive(Clone, PartialEq, Eq)]
pub struct SpaceKey([u8; 32]);

impl SpaceKey {
    /// Wraps 32 secret random bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> SpaceKey {
        SpaceKey(bytes)
    }

    /// The raw key bytes, for storing or sharing it.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SpaceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SpaceKey(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_round_trips_through_hex() {
        let id = DeviceKey::from_seed([7; 32]).device_id();
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<DeviceId>().unwrap(), id);
        assert!("xyz".parse::<DeviceId>().is_err());
        assert!("é".repeat(32).parse::<DeviceId>().is_err());
    }

    #[test]
    fn signature_verifies_only_for_its_key_and_message() {
        let key = DeviceKey::from_seed([1; 32]);
        let other = DeviceKey::from_seed([2; 32]);
        let signature = key.sign(b"hello");
        assert!(key.device_id().verify(b"hello", &signature).is_ok());
        assert_eq!(
            key.device_id().verify(b"hellO", &signature),
            Err(BadSignature)
        );
        assert_eq!(
            other.device_id().verify(b"hello", &signature),
            Err(BadSignature)
        );
    }

    #[test]
    fn debug_never_prints_secrets() {
        let key = DeviceKey::from_seed([3; 32]);
        assert!(!format!("{key:?}").contains("03030303"));
        assert_eq!(
            format!("{:?}", SpaceKey::from_bytes([9; 32])),
            "SpaceKey(…)"
        );
    }
}
