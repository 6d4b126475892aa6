#![doc = include_str!("../README.md")]

mod certificate;
mod clock;
mod codec;
mod device;
mod doc_id;
mod error;
mod pack;
mod query;
mod replica;
mod state;
pub mod sync;
mod value;

pub use certificate::{
    CERTIFICATE_FORMAT_VERSION, CERTIFICATE_MAGIC, DeviceCertificate, MAX_USER_ID_BYTES,
    ParseRoleError, REVOCATIONS_MAGIC, Revocation, RevocationList, Role, ServerKey,
    ServerPublicKey, registration_message,
};
pub use clock::{DEFAULT_MAX_DRIFT_MILLIS, HLC_MILLIS_BITS, Hlc, HybridClock, Stamp};
pub use codec::STATE_FORMAT_VERSION;
pub use device::{
    BadSignature, DEVICE_ID_BYTES, DeviceId, DeviceKey, ParseDeviceIdError, SIGNATURE_BYTES,
    SpaceKey,
};
pub use error::{CertificateError, DecodeError, PackError, QueryError, WriteError};
pub use pack::{
    LEVEL_COUNT, MAX_LEVEL, MAX_SPACE_ID_BYTES, OpenOptions, PACK_FORMAT_VERSION, PACK_MAGIC, Pack,
    PackHeader, VerifiedPack, validate_space_id,
};
pub use query::{Condition, ID_FIELD, LiveQuery, Op, OrderBy, Query};
pub use replica::{Changed, DocumentRef, Eviction, Replica, Writer};
pub use state::{State, VersionVector};
pub use value::{
    ArcStr, DELETED_FIELD, MAX_COLLECTION_NAME_BYTES, MAX_DOCUMENT_BYTES, MAX_DOCUMENT_ID_BYTES,
    MAX_FIELD_NAME_BYTES, MAX_VALUE_BYTES, MAX_VALUE_DEPTH, ThinVec, Value,
    validate_collection_name, validate_document_id, validate_field_name,
};

/// The workspace README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct WorkspaceReadme;
