//! Packs: the objects in the bucket. One pack holds one device's own writes to one collection
//! at one level, signed by that device and optionally encrypted under the space key.
//!
//! ```text
//! pack      = magic "TDMK" version:u8 header-len:varint header body-len:varint body signature:64
//! header    = flags:u8 space:string author:32 collection:string level:u8 generation:varint
//!             version-vector: count (device:32 hlc:varint)*
//! body      = state encoding                       (plaintext, flags bit 0 clear)
//!           | nonce:24 XChaCha20-Poly1305(state)   (flags bit 0 set; associated data: all
//!                                                   bytes from the magic to the header's end)
//! signature = Ed25519 by the author over "tidemark/pack/v1\0" ‖ all bytes before it
//! ```
//!
//! The signature covers the ciphertext, so anyone can check authorship without the space key.
//! The nonce is derived from the key, header and plaintext (HMAC-SHA-256, SIV style) instead of
//! drawn at random: the same content seals to the same bytes, and core needs no randomness.
//!
//! Opening checks, in order: framing, version, signature, the reader's expectations (space,
//! author, collection), decryption, the body encoding, and that every entry is stamped by the
//! author and lies in the header's collection. Any failure is a distinct [`PackError`] and
//! nothing of the pack is returned.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::clock::{Hlc, Stamp};
use crate::codec::{Reader, put_bytes, put_varint};
use crate::device::{DEVICE_ID_BYTES, DeviceId, DeviceKey, SIGNATURE_BYTES, SpaceKey};
use crate::error::{DecodeError, PackError};
use crate::state::{State, VersionVector};
use crate::value::{MAX_COLLECTION_NAME_BYTES, validate_collection_name};

/// The first four bytes of every pack.
pub const PACK_MAGIC: [u8; 4] = *b"TDMK";
/// The pack format version this build writes and the newest it reads.
pub const PACK_FORMAT_VERSION: u8 = 1;
/// Longest space id, in bytes. Space ids appear in bucket keys.
pub const MAX_SPACE_ID_BYTES: usize = 128;
/// Highest level number the pack format can carry.
pub const MAX_LEVEL: u8 = 15;
/// How many levels a device writes per collection: `L0` … `L5`. Each holds about eight times
/// the one below, so six levels cover any realistic collection.
pub const LEVEL_COUNT: u8 = 6;

const SIGNATURE_CONTEXT: &[u8] = b"tidemark/pack/v1\0";
const NONCE_CONTEXT: &[u8] = b"tidemark/pack-nonce/v1\0";
const FLAG_ENCRYPTED: u8 = 1;
const NONCE_BYTES: usize = 24;

/// What a pack says about itself. Authenticated by the signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackHeader {
    /// The space the pack belongs to.
    pub space: String,
    /// The device that wrote and signed it.
    pub author: DeviceId,
    /// The collection (partition) whose documents it holds.
    pub collection: String,
    /// Its level in the author's LSM (0 is the newest, smallest).
    pub level: u8,
    /// How many times the author has written this level: lets readers spot a replayed old pack.
    pub generation: u64,
    /// What the author's replica had absorbed when it wrote the pack.
    pub version_vector: VersionVector,
    /// Whether the body is encrypted under the space key.
    pub encrypted: bool,
}

/// What a reader expects of a pack, from where it found it, and the key it holds.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions<'a> {
    /// The space key, to decrypt encrypted bodies.
    pub space_key: Option<&'a SpaceKey>,
    /// Refuse plaintext bodies (for end-to-end encrypted spaces).
    pub require_encryption: bool,
    /// The space the pack must belong to.
    pub space: Option<&'a str>,
    /// The device that must have written it (e.g. from its bucket key).
    pub author: Option<DeviceId>,
    /// The collection it must hold.
    pub collection: Option<&'a str>,
}

/// An opened pack: its authenticated header and its body.
#[derive(Clone, Debug)]
pub struct Pack {
    /// The header.
    pub header: PackHeader,
    /// The body: the author's entries for the header's collection.
    pub state: State,
}

/// A pack whose signature was checked but whose body was not decoded (no key needed).
#[derive(Clone, Debug)]
pub struct VerifiedPack {
    /// The header.
    pub header: PackHeader,
    /// Size of the body as stored (ciphertext size for encrypted packs).
    pub body_bytes: usize,
}

/// The parts of a pack, split but not yet verified.
struct Parts<'a> {
    header: PackHeader,
    /// Magic through the end of the header: the associated data of encryption.
    prefix: &'a [u8],
    body: &'a [u8],
    /// Everything the signature covers (minus the context string).
    signed: &'a [u8],
    signature: [u8; SIGNATURE_BYTES],
}

impl Pack {
    /// Seals `body` into a pack signed by `author`, encrypted when `space_key` is given.
    ///
    /// `header.author` and `header.encrypted` are set from `author` and `space_key`. The body
    /// must hold only entries by `author` in `header.collection`, as readers refuse anything
    /// else.
    pub fn seal(
        header: &PackHeader,
        body: &State,
        author: &DeviceKey,
        space_key: Option<&SpaceKey>,
    ) -> Result<Vec<u8>, PackError> {
        let header = PackHeader {
            author: author.device_id(),
            encrypted: space_key.is_some(),
            ..header.clone()
        };
        check_header(&header)?;
        check_body(&header, body)?;

        let mut out = Vec::new();
        out.extend_from_slice(&PACK_MAGIC);
        out.push(PACK_FORMAT_VERSION);
        put_bytes(&mut out, &encode_header(&header));
        let plaintext = body.encode();
        match space_key {
            None => put_bytes(&mut out, &plaintext),
            Some(key) => {
                let nonce = derive_nonce(key, &out, &plaintext);
                let ciphertext = XChaCha20Poly1305::new(key.as_bytes().into())
                    .encrypt(
                        &nonce,
                        Payload {
                            msg: &plaintext,
                            aad: &out,
                        },
                    )
                    .map_err(|_| PackError::TooLarge("body cannot be encrypted"))?;
                put_varint(&mut out, (NONCE_BYTES + ciphertext.len()) as u64);
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&ciphertext);
            }
        }
        let signature = author.sign(&signed_message(&out));
        out.extend_from_slice(&signature);
        Ok(out)
    }

    /// Checks a pack's framing and signature without decoding or decrypting its body.
    pub fn verify(bytes: &[u8]) -> Result<VerifiedPack, PackError> {
        let parts = split(bytes)?;
        verify_signature(&parts)?;
        Ok(VerifiedPack {
            body_bytes: parts.body.len(),
            header: parts.header,
        })
    }

    /// Opens a pack: verifies, checks expectations, decrypts, decodes, and checks that every
    /// entry belongs to the author and the collection. All of the pack or an error.
    pub fn open(bytes: &[u8], options: &OpenOptions<'_>) -> Result<Pack, PackError> {
        let parts = split(bytes)?;
        verify_signature(&parts)?;
        open_verified(parts, options)
    }

    /// Opens many packs, checking all their signatures in one Ed25519 batch: what a reader does
    /// when it catches up on many small packs (one per device) at once.
    ///
    /// Returns what [`Pack::open`] returns for each pack, in order. A batch check costs about
    /// half as much per signature as checking each alone. When the batch fails, every pack is
    /// checked on its own, so a bad pack gets its own error and the others still open.
    ///
    /// Like `open`, this refuses small-order keys and signature points. The one case where the
    /// two can answer differently is a signature whose point carries a small torsion
    /// component besides its main part: only the holder of the author's key can make one, it
    /// still proves that the author signed, and the batch may accept it where `open` refuses.
    pub fn open_batch(packs: &[&[u8]], options: &OpenOptions<'_>) -> Vec<Result<Pack, PackError>> {
        let split: Vec<Result<Parts<'_>, PackError>> =
            packs.iter().map(|bytes| split(bytes)).collect();
        let framed: Vec<&Parts<'_>> = split.iter().filter_map(|p| p.as_ref().ok()).collect();
        let batch_holds = batch_signatures_hold(&framed);
        split
            .into_iter()
            .map(|parts| {
                let parts = parts?;
                if !batch_holds {
                    verify_signature(&parts)?;
                }
                open_verified(parts, options)
            })
            .collect()
    }
}

/// The rest of [`Pack::open`] once the signature is known to hold: the reader's expectations,
/// decryption, decoding, and the body's entries.
fn open_verified(parts: Parts<'_>, options: &OpenOptions<'_>) -> Result<Pack, PackError> {
    let header = &parts.header;
    if let Some(space) = options.space
        && header.space != space
    {
        return Err(PackError::WrongSpace {
            expected: space.to_string(),
            found: header.space.clone(),
        });
    }
    if let Some(author) = options.author
        && header.author != author
    {
        return Err(PackError::WrongAuthor {
            expected: author,
            found: header.author,
        });
    }
    if let Some(collection) = options.collection
        && header.collection != collection
    {
        return Err(PackError::WrongCollection {
            expected: collection.to_string(),
            found: header.collection.clone(),
        });
    }
    let plaintext;
    let body = if header.encrypted {
        let key = options.space_key.ok_or(PackError::KeyRequired)?;
        if parts.body.len() < NONCE_BYTES {
            return Err(PackError::DecryptionFailed);
        }
        let (nonce, ciphertext) = parts.body.split_at(NONCE_BYTES);
        let nonce = XNonce::try_from(nonce).map_err(|_| PackError::DecryptionFailed)?;
        plaintext = XChaCha20Poly1305::new(key.as_bytes().into())
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: parts.prefix,
                },
            )
            .map_err(|_| PackError::DecryptionFailed)?;
        &plaintext[..]
    } else if options.require_encryption {
        return Err(PackError::NotEncrypted);
    } else {
        parts.body
    };
    let state = State::decode(body)?;
    check_body(header, &state)?;
    Ok(Pack {
        header: parts.header,
        state,
    })
}

/// Whether every signature of `parts` holds, checked as one batch. `false` says only that at
/// least one does not (or that a key or point is unusable); the caller then checks each alone.
fn batch_signatures_hold(parts: &[&Parts<'_>]) -> bool {
    if parts.is_empty() {
        return true;
    }
    let mut messages = Vec::with_capacity(parts.len());
    let mut signatures = Vec::with_capacity(parts.len());
    let mut keys = Vec::with_capacity(parts.len());
    for p in parts {
        let Ok(key) = VerifyingKey::from_bytes(p.header.author.as_bytes()) else {
            return false;
        };
        // The batch equation holds trivially for small-order keys and signature points (the
        // identity key with R = identity and s = 0 would pass), so refuse them here, as
        // `verify_strict` does for single signatures. A point is decoded the way keys are.
        let r: [u8; 32] = p.signature[..32]
            .try_into()
            .expect("signatures hold R first");
        let Ok(r_point) = VerifyingKey::from_bytes(&r) else {
            return false;
        };
        if key.is_weak() || r_point.is_weak() {
            return false;
        }
        messages.push(signed_message(p.signed));
        signatures.push(Signature::from_bytes(&p.signature));
        keys.push(key);
    }
    let messages: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}

fn signed_message(bytes: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNATURE_CONTEXT.len() + bytes.len());
    message.extend_from_slice(SIGNATURE_CONTEXT);
    message.extend_from_slice(bytes);
    message
}

fn verify_signature(parts: &Parts<'_>) -> Result<(), PackError> {
    parts
        .header
        .author
        .verify(&signed_message(parts.signed), &parts.signature)
        .map_err(|_| PackError::BadSignature {
            author: parts.header.author,
        })
}

fn derive_nonce(key: &SpaceKey, prefix: &[u8], plaintext: &[u8]) -> XNonce {
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(NONCE_CONTEXT);
    mac.update(&(prefix.len() as u64).to_le_bytes());
    mac.update(prefix);
    mac.update(plaintext);
    let tag = mac.finalize().into_bytes();
    let mut nonce = [0u8; NONCE_BYTES];
    nonce.copy_from_slice(&tag[..NONCE_BYTES]);
    XNonce::from(nonce)
}

/// Checks a space id: 1 to 128 ASCII letters, digits, `_` or `-`, so it is safe in bucket keys
/// and URLs.
pub fn validate_space_id(space: &str) -> Result<(), &'static str> {
    let valid = !space.is_empty()
        && space.len() <= MAX_SPACE_ID_BYTES
        && space
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err("space id must be 1 to 128 ASCII letters, digits, '_' or '-'")
    }
}

fn check_header(header: &PackHeader) -> Result<(), PackError> {
    validate_space_id(&header.space).map_err(PackError::Malformed)?;
    if validate_collection_name(&header.collection).is_err() {
        return Err(PackError::Malformed("invalid collection name"));
    }
    if header.level > MAX_LEVEL {
        return Err(PackError::Malformed("level above the maximum"));
    }
    Ok(())
}

/// Every entry must be the author's own and lie in the header's collection.
fn check_body(header: &PackHeader, state: &State) -> Result<(), PackError> {
    if let Some(found) = state.collection_names().find(|c| *c != header.collection) {
        return Err(PackError::CollectionMismatch {
            expected: header.collection.clone(),
            found: found.to_string(),
        });
    }
    for (_, _, doc) in state.documents() {
        let devices = doc
            .registers
            .iter()
            .map(|r| r.device)
            .chain(doc.counters.iter().map(|c| c.device));
        for idx in devices {
            let device = state.device(idx);
            if device != header.author {
                return Err(PackError::ForeignEntry {
                    author: header.author,
                    entry_device: device,
                });
            }
        }
    }
    Ok(())
}

fn encode_header(header: &PackHeader) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(if header.encrypted { FLAG_ENCRYPTED } else { 0 });
    put_bytes(&mut out, header.space.as_bytes());
    out.extend_from_slice(header.author.as_bytes());
    put_bytes(&mut out, header.collection.as_bytes());
    out.push(header.level);
    put_varint(&mut out, header.generation);
    put_varint(&mut out, header.version_vector.len() as u64);
    for (device, hlc) in header.version_vector.iter() {
        out.extend_from_slice(device.as_bytes());
        put_varint(&mut out, hlc.as_u64());
    }
    out
}

fn decode_header(bytes: &[u8]) -> Result<PackHeader, PackError> {
    let malformed = |_: DecodeError| PackError::Malformed("header fields do not parse");
    let mut r = Reader::new(bytes);
    let flags = r.u8().map_err(malformed)?;
    if flags & !FLAG_ENCRYPTED != 0 {
        return Err(PackError::Malformed("unknown header flags"));
    }
    let space = r.str(MAX_SPACE_ID_BYTES).map_err(malformed)?.to_string();
    let author = DeviceId::from_bytes(r.array().map_err(malformed)?);
    let collection = r
        .str(MAX_COLLECTION_NAME_BYTES)
        .map_err(malformed)?
        .to_string();
    let level = r.u8().map_err(malformed)?;
    let generation = r.varint().map_err(malformed)?;
    let devices = r.count(DEVICE_ID_BYTES + 1).map_err(malformed)?;
    let mut version_vector = VersionVector::new();
    let mut previous: Option<DeviceId> = None;
    for _ in 0..devices {
        let device = DeviceId::from_bytes(r.array().map_err(malformed)?);
        if previous.is_some_and(|p| p >= device) {
            return Err(PackError::Malformed("version vector out of order"));
        }
        previous = Some(device);
        let hlc = Hlc::from_u64(r.varint().map_err(malformed)?);
        version_vector.observe(Stamp::new(hlc, device));
    }
    r.finish().map_err(malformed)?;
    let header = PackHeader {
        space,
        author,
        collection,
        level,
        generation,
        version_vector,
        encrypted: flags & FLAG_ENCRYPTED != 0,
    };
    check_header(&header)?;
    Ok(header)
}

fn split(bytes: &[u8]) -> Result<Parts<'_>, PackError> {
    if bytes.len() < PACK_MAGIC.len() {
        return Err(if PACK_MAGIC.starts_with(bytes) {
            PackError::Truncated("shorter than the magic bytes")
        } else {
            PackError::NotAPack
        });
    }
    if bytes[..PACK_MAGIC.len()] != PACK_MAGIC {
        return Err(PackError::NotAPack);
    }
    let mut r = Reader::new(bytes);
    r.take(PACK_MAGIC.len())
        .map_err(|_| PackError::Truncated("magic"))?;
    let version = r
        .u8()
        .map_err(|_| PackError::Truncated("no version byte"))?;
    if version > PACK_FORMAT_VERSION {
        return Err(PackError::UnsupportedVersion {
            found: version,
            supported: PACK_FORMAT_VERSION,
        });
    }
    if version == 0 {
        return Err(PackError::Malformed("version 0 does not exist"));
    }
    let truncated_or = |e: DecodeError, what: &'static str| match e {
        DecodeError::Truncated { .. } => PackError::Truncated(what),
        _ => PackError::Malformed(what),
    };
    let header_bytes = r.bytes(usize::MAX).map_err(|e| truncated_or(e, "header"))?;
    let header = decode_header(header_bytes)?;
    let prefix = &bytes[..r.position()];
    let body = r.bytes(usize::MAX).map_err(|e| truncated_or(e, "body"))?;
    let signed = &bytes[..r.position()];
    let signature = r
        .array::<SIGNATURE_BYTES>()
        .map_err(|_| PackError::Truncated("signature"))?;
    if r.remaining() != 0 {
        return Err(PackError::Malformed("bytes after the signature"));
    }
    Ok(Parts {
        header,
        prefix,
        body,
        signed,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::Replica;

    const SPACE: &str = "space-1";
    const WALL: u64 = 1_750_000_000_000;

    fn key(seed: u8) -> DeviceKey {
        DeviceKey::from_seed([seed; 32])
    }

    fn space_key(seed: u8) -> SpaceKey {
        SpaceKey::from_bytes([seed; 32])
    }

    fn header(collection: &str) -> PackHeader {
        PackHeader {
            space: SPACE.into(),
            author: key(1).device_id(),
            collection: collection.into(),
            level: 0,
            generation: 3,
            version_vector: VersionVector::new(),
            encrypted: false,
        }
    }

    /// A replica of device 1 with a few writes in "orders", and its own state.
    fn orders() -> State {
        let mut replica = Replica::new(key(1).device_id());
        replica
            .write(WALL, |w| {
                w.upsert("orders", "o1", [("dish", "secret-soup"), ("table", "t4")])?;
                w.increment("orders", "o1", "covers", 3)
            })
            .unwrap();
        replica.own_state()
    }

    fn options() -> OpenOptions<'static> {
        OpenOptions::default()
    }

    /// Signs arbitrary framing as `author`, bypassing `seal`'s checks: what a malicious device
    /// could upload.
    fn forge(header: &PackHeader, body: &State, author: &DeviceKey) -> Vec<u8> {
        let mut out = PACK_MAGIC.to_vec();
        out.push(PACK_FORMAT_VERSION);
        put_bytes(&mut out, &encode_header(header));
        put_bytes(&mut out, &body.encode());
        let signature = author.sign(&signed_message(&out));
        out.extend_from_slice(&signature);
        out
    }

    #[test]
    fn sealed_pack_opens_to_the_same_state_and_header() {
        let state = orders();
        let mut h = header("orders");
        h.version_vector = state.version_vector();
        let bytes = Pack::seal(&h, &state, &key(1), None).unwrap();
        let pack = Pack::open(&bytes, &options()).unwrap();
        assert_eq!(pack.header, h);
        assert_eq!(pack.state, state);
        assert_eq!(
            bytes,
            Pack::seal(&h, &state, &key(1), None).unwrap(),
            "sealing is deterministic"
        );
    }

    #[test]
    fn encrypted_pack_hides_values_but_still_verifies_without_the_key() {
        let state = orders();
        let bytes = Pack::seal(&header("orders"), &state, &key(1), Some(&space_key(7))).unwrap();
        assert!(
            !bytes.windows(11).any(|w| w == b"secret-soup"),
            "no plaintext in the object"
        );

        let verified = Pack::verify(&bytes).unwrap();
        assert!(verified.header.encrypted);
        assert_eq!(verified.header.author, key(1).device_id());
        assert_eq!(
            Pack::open(&bytes, &options()).unwrap_err(),
            PackError::KeyRequired
        );

        let opened = Pack::open(
            &bytes,
            &OpenOptions {
                space_key: Some(&space_key(7)),
                ..options()
            },
        )
        .unwrap();
        assert_eq!(opened.state, state);
    }

    #[test]
    fn each_failure_has_its_own_error() {
        let state = orders();
        let plain = Pack::seal(&header("orders"), &state, &key(1), None).unwrap();
        let sealed = Pack::seal(&header("orders"), &state, &key(1), Some(&space_key(7))).unwrap();
        let with_key = OpenOptions {
            space_key: Some(&space_key(7)),
            ..options()
        };
        let code = |bytes: &[u8], options: &OpenOptions<'_>| {
            Pack::open(bytes, options).unwrap_err().code()
        };

        let mut forged_signature = plain.clone();
        *forged_signature.last_mut().unwrap() ^= 1;
        assert_eq!(code(&forged_signature, &options()), "pack.bad_signature");

        // The header names device 2 but device 1 signed: the wrong key.
        let mut other_author = header("orders");
        other_author.author = key(2).device_id();
        let wrong_key = forge(&other_author, &State::new(), &key(1));
        assert_eq!(code(&wrong_key, &options()), "pack.bad_signature");

        let mut tampered_header = plain.clone();
        let level_at = plain.windows(6).position(|w| w == b"orders").unwrap() + 6;
        tampered_header[level_at] = 1;
        assert_eq!(code(&tampered_header, &options()), "pack.bad_signature");

        let mut tampered_ciphertext = sealed.clone();
        let middle = sealed.len() - SIGNATURE_BYTES - 10;
        tampered_ciphertext[middle] ^= 0x40;
        assert_eq!(code(&tampered_ciphertext, &with_key), "pack.bad_signature");

        let wrong_space_key = OpenOptions {
            space_key: Some(&space_key(8)),
            ..options()
        };
        assert_eq!(code(&sealed, &wrong_space_key), "pack.decryption_failed");
        assert_eq!(code(&sealed, &options()), "pack.key_required");
        let strict = OpenOptions {
            require_encryption: true,
            ..options()
        };
        assert_eq!(code(&plain, &strict), "pack.not_encrypted");

        let mut future = plain.clone();
        future[4] = PACK_FORMAT_VERSION + 1;
        assert_eq!(code(&future, &options()), "pack.unsupported_version");

        assert_eq!(
            code(b"PK\x03\x04 not a pack", &options()),
            "pack.not_a_pack"
        );
        assert_eq!(
            code(&plain[..plain.len() - 1], &options()),
            "pack.truncated"
        );
        assert_eq!(code(&plain[..3], &options()), "pack.truncated");

        let mut trailing = plain.clone();
        trailing.push(0);
        assert_eq!(code(&trailing, &options()), "pack.malformed");

        let elsewhere = OpenOptions {
            space: Some("space-2"),
            ..options()
        };
        assert_eq!(code(&plain, &elsewhere), "pack.wrong_space");
        let by_other = OpenOptions {
            author: Some(key(2).device_id()),
            ..options()
        };
        assert_eq!(code(&plain, &by_other), "pack.wrong_author");
        let other_collection = OpenOptions {
            collection: Some("menu"),
            ..options()
        };
        assert_eq!(code(&plain, &other_collection), "pack.wrong_collection");
    }

    #[test]
    fn entry_stamped_by_another_device_is_refused() {
        // Device 1 signs a pack that carries device 2's write.
        let mut device2 = Replica::new(key(2).device_id());
        let foreign = device2
            .write(WALL, |w| w.set("orders", "o9", "dish", "stolen"))
            .unwrap();
        let mut body = orders();
        body.merge(&foreign);
        let bytes = forge(&header("orders"), &body, &key(1));
        assert_eq!(
            Pack::open(&bytes, &options()).unwrap_err(),
            PackError::ForeignEntry {
                author: key(1).device_id(),
                entry_device: key(2).device_id(),
            }
        );
        assert!(
            matches!(
                Pack::seal(&header("orders"), &body, &key(1), None),
                Err(PackError::ForeignEntry { .. })
            ),
            "an honest device cannot seal such a pack either"
        );
    }

    #[test]
    fn documents_of_another_collection_are_refused() {
        let bytes = forge(&header("menu"), &orders(), &key(1));
        assert_eq!(
            Pack::open(&bytes, &options()).unwrap_err().code(),
            "pack.collection_mismatch"
        );
    }

    #[test]
    fn malformed_body_is_reported_after_authentication() {
        let mut out = PACK_MAGIC.to_vec();
        out.push(PACK_FORMAT_VERSION);
        put_bytes(&mut out, &encode_header(&header("orders")));
        put_bytes(&mut out, &[1, 0, 0, 5]);
        out.extend_from_slice(&key(1).sign(&signed_message(&out)));
        assert!(matches!(
            Pack::open(&out, &options()).unwrap_err(),
            PackError::MalformedBody(DecodeError::Malformed { .. } | DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = Pack::seal(&header("orders"), &orders(), &key(1), Some(&space_key(7))).unwrap();
        let with_key = OpenOptions {
            space_key: Some(&space_key(7)),
            ..options()
        };
        for end in 0..bytes.len() {
            assert!(
                Pack::open(&bytes[..end], &with_key).is_err(),
                "prefix of {end} bytes"
            );
            assert!(Pack::verify(&bytes[..end]).is_err());
        }
    }

    /// A pack of `seed`'s device holding one write to "orders".
    fn pack_of(seed: u8, space_key: Option<&SpaceKey>) -> Vec<u8> {
        let author = key(seed);
        let mut replica = Replica::new(author.device_id());
        let body = replica
            .write(WALL, |w| w.set("orders", "o1", "by", i64::from(seed)))
            .unwrap();
        Pack::seal(&header("orders"), &body, &author, space_key).unwrap()
    }

    #[test]
    fn open_batch_gives_what_open_gives_for_each_pack() {
        let sk = space_key(7);
        let packs: Vec<Vec<u8>> = (1..=5)
            .map(|seed| pack_of(seed, (seed % 2 == 0).then_some(&sk)))
            .collect();
        let refs: Vec<&[u8]> = packs.iter().map(Vec::as_slice).collect();
        let options = OpenOptions {
            space_key: Some(&sk),
            ..options()
        };
        let batch = Pack::open_batch(&refs, &options);
        assert_eq!(batch.len(), packs.len());
        for (bytes, opened) in packs.iter().zip(batch) {
            let one = Pack::open(bytes, &options).unwrap();
            let opened = opened.unwrap();
            assert_eq!(opened.header, one.header);
            assert_eq!(opened.state, one.state);
        }
        assert!(Pack::open_batch(&[], &options).is_empty());
    }

    #[test]
    fn bad_pack_in_a_batch_gets_its_own_error_and_the_others_open() {
        let mut tampered = pack_of(2, None);
        *tampered.last_mut().unwrap() ^= 1;
        let good = [pack_of(1, None), pack_of(3, None)];
        let truncated = &good[0][..20];
        let refs: Vec<&[u8]> = vec![&good[0], &tampered, truncated, &good[1]];
        let codes: Vec<&str> = Pack::open_batch(&refs, &options())
            .iter()
            .map(|r| r.as_ref().map_or_else(PackError::code, |_| "ok"))
            .collect();
        assert_eq!(codes, ["ok", "pack.bad_signature", "pack.truncated", "ok"]);
    }

    #[test]
    fn open_batch_refuses_a_small_order_key_as_open_does() {
        // The identity point as key, R = identity and s = 0: the batch equation holds for any
        // message, so only the small-order check stands between this forgery and acceptance.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut forged_header = header("orders");
        forged_header.author = DeviceId::from_bytes(identity);
        let mut bytes = PACK_MAGIC.to_vec();
        bytes.push(PACK_FORMAT_VERSION);
        put_bytes(&mut bytes, &encode_header(&forged_header));
        put_bytes(&mut bytes, &State::new().encode());
        bytes.extend_from_slice(&identity);
        bytes.extend_from_slice(&[0u8; 32]);
        let good = pack_of(1, None);
        let batch = Pack::open_batch(&[&bytes, &good], &options());
        assert_eq!(batch[0].as_ref().unwrap_err().code(), "pack.bad_signature");
        assert!(batch[1].is_ok());
        assert_eq!(
            Pack::open(&bytes, &options()).unwrap_err().code(),
            "pack.bad_signature"
        );
    }

    #[test]
    fn invalid_headers_cannot_be_sealed() {
        let state = State::new();
        for (space, collection, level) in [
            ("", "orders", 0),
            ("a/b", "orders", 0),
            (SPACE, "no/slash", 0),
            (SPACE, "orders", MAX_LEVEL + 1),
        ] {
            let h = PackHeader {
                space: space.into(),
                collection: collection.into(),
                level,
                ..header("orders")
            };
            assert_eq!(
                Pack::seal(&h, &state, &key(1), None).unwrap_err().code(),
                "pack.malformed"
            );
        }
    }
}
