//! Error types, one per domain. Every variant has a stable [`code`](WriteError::code) that the
//! bindings and the server pass on unchanged, so applications can match on it.

use crate::device::DeviceId;

/// A local write was refused; the replica is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The collection name cannot be used.
    #[error(
        "invalid collection name {name:?}: use 1 to 64 ASCII letters, digits, '_' or '-', starting with a letter or digit"
    )]
    InvalidCollectionName {
        /// The refused name (shortened).
        name: String,
    },
    /// The document id cannot be used.
    #[error("invalid document id {id:?}: ids are 1 to 256 bytes of UTF-8")]
    InvalidDocumentId {
        /// The refused id (shortened).
        id: String,
    },
    /// The field name cannot be used.
    #[error("invalid field name {name:?}: {reason}")]
    InvalidFieldName {
        /// The refused name (shortened).
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A float was NaN or infinite.
    #[error("floats must be finite: NaN and infinities cannot be stored")]
    NonFiniteFloat,
    /// A value nests arrays/objects too deeply.
    #[error("value nests arrays and objects deeper than {limit} levels")]
    ValueTooDeep {
        /// The limit.
        limit: usize,
    },
    /// A value is too large.
    #[error(
        "value is {size} bytes encoded, over the limit of {limit}; store large data as an attachment"
    )]
    ValueTooLarge {
        /// Its encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The write would make the document too large.
    #[error(
        "document {id:?} would be {size} bytes, over the limit of {limit}; split it or use attachments"
    )]
    DocumentTooLarge {
        /// The document id.
        id: String,
        /// Its size after the write.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// `update` of a document that does not exist (or is deleted).
    #[error("document {id:?} not found in collection {collection:?}")]
    NotFound {
        /// The collection.
        collection: String,
        /// The document id.
        id: String,
    },
    /// `increment` of a field whose current value is not a number.
    #[error("field {field:?} holds a non-numeric value and cannot be incremented")]
    NotNumeric {
        /// The field.
        field: String,
    },
    /// A document given as JSON was not a JSON object.
    #[error("a document must be a JSON object of fields")]
    NotAnObject,
    /// The document or collection was evicted on this device.
    #[error("{what} was evicted on this device; readmit it before writing to it")]
    Evicted {
        /// What was evicted.
        what: String,
    },
    /// The hybrid clock reached its maximum (year 10889), usually because a field holds a
    /// corrupt stamp.
    #[error("the clock cannot advance past its maximum; a stored stamp is corrupt")]
    ClockExhausted,
}

impl WriteError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            WriteError::InvalidCollectionName { .. } => "write.invalid_collection",
            WriteError::InvalidDocumentId { .. } => "write.invalid_document_id",
            WriteError::InvalidFieldName { .. } => "write.invalid_field",
            WriteError::NonFiniteFloat => "write.non_finite_float",
            WriteError::ValueTooDeep { .. } => "write.value_too_deep",
            WriteError::ValueTooLarge { .. } => "write.value_too_large",
            WriteError::DocumentTooLarge { .. } => "write.document_too_large",
            WriteError::NotFound { .. } => "write.not_found",
            WriteError::NotNumeric { .. } => "write.not_numeric",
            WriteError::NotAnObject => "write.not_an_object",
            WriteError::Evicted { .. } => "write.evicted",
            WriteError::ClockExhausted => "write.clock_exhausted",
        }
    }
}

/// Bytes that are not a valid encoding. Decoding never panics and never allocates more than
/// the input could describe.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended early.
    #[error("input ends early: needed {needed} more bytes at offset {offset}")]
    Truncated {
        /// Where the read started.
        offset: usize,
        /// How many bytes were missing.
        needed: usize,
    },
    /// Written by a newer format than this build reads.
    #[error(
        "encoded with format version {found}, this build reads up to {supported}; upgrade tidemark"
    )]
    UnsupportedVersion {
        /// The version in the input.
        found: u8,
        /// The newest version this build reads.
        supported: u8,
    },
    /// Structurally invalid input.
    #[error("malformed encoding at offset {offset}: {reason}")]
    Malformed {
        /// Where.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Valid structure, but not the one canonical form (unsorted or duplicate keys).
    #[error("non-canonical encoding at offset {offset}: {reason}")]
    NonCanonical {
        /// Where.
        offset: usize,
        /// What is out of order.
        reason: &'static str,
    },
    /// Bytes left after the end of the encoded value.
    #[error("{extra} unexpected bytes after the end of the encoding")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
}

impl DecodeError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Truncated { .. } => "decode.truncated",
            DecodeError::UnsupportedVersion { .. } => "decode.unsupported_version",
            DecodeError::Malformed { .. } => "decode.malformed",
            DecodeError::NonCanonical { .. } => "decode.non_canonical",
            DecodeError::TrailingBytes { .. } => "decode.trailing_bytes",
        }
    }
}

/// A pack that cannot be sealed or opened. Opening a pack either yields all of it or nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// The bytes do not start with the pack magic.
    #[error("not a tidemark pack (bad magic bytes)")]
    NotAPack,
    /// The pack is in a newer format.
    #[error(
        "pack format version {found} is newer than this build reads ({supported}); upgrade tidemark"
    )]
    UnsupportedVersion {
        /// The version in the pack.
        found: u8,
        /// The newest version this build reads.
        supported: u8,
    },
    /// The pack is cut short.
    #[error("pack is truncated: {0}")]
    Truncated(&'static str),
    /// The framing or header is not well formed.
    #[error("pack is malformed: {0}")]
    Malformed(&'static str),
    /// The signature does not verify against the author named in the header.
    #[error(
        "pack signature does not verify against author {author}: the pack was forged or tampered with"
    )]
    BadSignature {
        /// The claimed author.
        author: DeviceId,
    },
    /// The body is encrypted and no space key was given.
    #[error("pack body is end-to-end encrypted; the space key is required to read it")]
    KeyRequired,
    /// The reader requires encryption and the pack is plaintext.
    #[error("pack body is not encrypted, but this space requires end-to-end encryption")]
    NotEncrypted,
    /// Decryption failed: wrong space key (or a body its own author corrupted).
    #[error(
        "pack body does not decrypt with this space key; check that the key belongs to this space"
    )]
    DecryptionFailed,
    /// The (authentic, decrypted) body is not a valid encoding.
    #[error("pack body is malformed: {0}")]
    MalformedBody(#[from] DecodeError),
    /// An entry is stamped by a device other than the pack's author.
    #[error(
        "pack by {author} carries an entry stamped by {entry_device}; a pack may only carry its author's own writes"
    )]
    ForeignEntry {
        /// The pack's author.
        author: DeviceId,
        /// The device the entry claims.
        entry_device: DeviceId,
    },
    /// The body holds documents of another collection than the header names.
    #[error("pack for collection {expected:?} holds documents of collection {found:?}")]
    CollectionMismatch {
        /// The header's collection.
        expected: String,
        /// The collection found in the body.
        found: String,
    },
    /// The pack is not for the space the reader expected.
    #[error("pack belongs to space {found:?}, expected {expected:?}")]
    WrongSpace {
        /// Expected.
        expected: String,
        /// Found.
        found: String,
    },
    /// The pack is not by the device the reader expected (e.g. from its bucket key).
    #[error("pack is by device {found}, expected {expected}")]
    WrongAuthor {
        /// Expected.
        expected: DeviceId,
        /// Found.
        found: DeviceId,
    },
    /// The pack is not for the collection the reader expected.
    #[error("pack is for collection {found:?}, expected {expected:?}")]
    WrongCollection {
        /// Expected.
        expected: String,
        /// Found.
        found: String,
    },
    /// The pack would exceed the format's limits.
    #[error("pack is too large: {0}")]
    TooLarge(&'static str),
}

impl PackError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            PackError::NotAPack => "pack.not_a_pack",
            PackError::UnsupportedVersion { .. } => "pack.unsupported_version",
            PackError::Truncated(_) => "pack.truncated",
            PackError::Malformed(_) => "pack.malformed",
            PackError::BadSignature { .. } => "pack.bad_signature",
            PackError::KeyRequired => "pack.key_required",
            PackError::NotEncrypted => "pack.not_encrypted",
            PackError::DecryptionFailed => "pack.decryption_failed",
            PackError::MalformedBody(_) => "pack.malformed_body",
            PackError::ForeignEntry { .. } => "pack.foreign_entry",
            PackError::CollectionMismatch { .. } => "pack.collection_mismatch",
            PackError::WrongSpace { .. } => "pack.wrong_space",
            PackError::WrongAuthor { .. } => "pack.wrong_author",
            PackError::WrongCollection { .. } => "pack.wrong_collection",
            PackError::TooLarge(_) => "pack.too_large",
        }
    }
}

/// A device certificate or revocation list that cannot be trusted or read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The bytes do not start with the expected magic.
    #[error("not a tidemark certificate or revocation list (bad magic bytes)")]
    NotACertificate,
    /// Written by a newer format.
    #[error(
        "certificate format version {found} is newer than this build reads ({supported}); upgrade tidemark"
    )]
    UnsupportedVersion {
        /// The version found.
        found: u8,
        /// The newest version this build reads.
        supported: u8,
    },
    /// The signature does not verify against the server's key.
    #[error(
        "certificate signature does not verify against the server key: forged, tampered, or from another server"
    )]
    BadSignature,
    /// Fields that cannot be encoded, or a signed body that is not well formed.
    #[error("certificate is malformed: {0}")]
    Malformed(&'static str),
    /// The signed body does not decode.
    #[error("certificate body does not decode: {0}")]
    Decode(DecodeError),
}

impl CertificateError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            CertificateError::NotACertificate => "certificate.not_a_certificate",
            CertificateError::UnsupportedVersion { .. } => "certificate.unsupported_version",
            CertificateError::BadSignature => "certificate.bad_signature",
            CertificateError::Malformed(_) | CertificateError::Decode(_) => "certificate.malformed",
        }
    }
}

/// A query that cannot be evaluated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid query: {0}")]
pub struct QueryError(pub(crate) String);

impl QueryError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        "query.invalid"
    }
}
