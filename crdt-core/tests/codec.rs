//! The codec round-trips, is canonical, and never panics on arbitrary input.

mod common;

use common::{history, play};
use proptest::prelude::*;
use tidemark_core::{
    DeviceKey, OpenOptions, Pack, PackHeader, STATE_FORMAT_VERSION, SpaceKey, State, VersionVector,
};

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn encoding_round_trips(steps in history()) {
        let played = play(&steps);
        for replica in &played.replicas {
            let bytes = replica.state().encode();
            let decoded = State::decode(&bytes).unwrap();
            prop_assert_eq!(decoded.encode(), bytes);
            prop_assert_eq!(&decoded, replica.state());
            prop_assert_eq!(decoded.version_vector(), replica.state().version_vector());
        }
    }

    #[test]
    fn packs_round_trip_plain_and_encrypted(steps in history()) {
        let played = play(&steps);
        let key = common::device_key(0);
        let own = played.replicas[0].own_state();
        for collection in own.collection_names() {
            let body = own.collection(collection);
            let header = PackHeader {
                space: "s".into(),
                author: key.device_id(),
                collection: collection.into(),
                level: 2,
                generation: 9,
                version_vector: played.replicas[0].version_vector(),
                encrypted: false,
            };
            let space_key = SpaceKey::from_bytes([5; 32]);
            for encryption in [None, Some(&space_key)] {
                let bytes = Pack::seal(&header, &body, &key, encryption).unwrap();
                let options = OpenOptions { space_key: encryption, ..OpenOptions::default() };
                let pack = Pack::open(&bytes, &options).unwrap();
                prop_assert_eq!(pack.state.encode(), body.encode());
                prop_assert_eq!(&pack.header.version_vector, &header.version_vector);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_state_decoding(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(state) = State::decode(&bytes) {
            prop_assert_eq!(state.encode(), bytes, "only canonical encodings decode");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_pack_opening(mut bytes in proptest::collection::vec(any::<u8>(), 0..512), magic in any::<bool>()) {
        if magic && bytes.len() >= 5 {
            bytes[..4].copy_from_slice(b"TDMK");
            bytes[4] = 1;
        }
        let key = SpaceKey::from_bytes([1; 32]);
        let _ = Pack::open(&bytes, &OpenOptions::default());
        let _ = Pack::open(&bytes, &OpenOptions { space_key: Some(&key), ..OpenOptions::default() });
        let _ = Pack::verify(&bytes);
    }

    #[test]
    fn mutated_encodings_decode_to_an_error_or_a_canonical_state(steps in history(), flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..4)) {
        let played = play(&steps);
        let mut bytes = played.replicas[0].state().encode();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        // A flipped version byte may select format 1, which decodes but re-encodes as format 2.
        if let Ok(state) = State::decode(&bytes) && bytes[0] == STATE_FORMAT_VERSION {
            prop_assert_eq!(state.encode(), bytes);
        }
    }

    #[test]
    fn mutated_packs_never_open(steps in history(), at in any::<proptest::sample::Index>(), bit in 0u8..8) {
        let played = play(&steps);
        let key = DeviceKey::from_seed([1; 32]);
        let own = played.replicas[0].own_state();
        let Some(collection) = own.collection_names().next().map(str::to_string) else { return Ok(()) };
        let header = PackHeader {
            space: "s".into(), author: key.device_id(), collection: collection.clone(),
            level: 0, generation: 1, version_vector: VersionVector::new(), encrypted: false,
        };
        let mut bytes = Pack::seal(&header, &own.collection(&collection), &key, None).unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert!(Pack::open(&bytes, &OpenOptions::default()).is_err(), "any flipped bit is caught");
    }
}

#[test]
fn non_canonical_encodings_are_refused() {
    for version in [1u8, STATE_FORMAT_VERSION] {
        // version, 0 devices, 0 names, 1 collection "c" with 0 documents.
        let empty_collection = [version, 0, 0, 1, 1, b'c', 0];
        assert_eq!(
            State::decode(&empty_collection).unwrap_err().code(),
            "decode.non_canonical"
        );
        // An overlong varint for the device count.
        assert_eq!(
            State::decode(&[version, 0x80, 0x00, 0, 0])
                .unwrap_err()
                .code(),
            "decode.non_canonical"
        );
        // A huge count with no bytes behind it must not allocate.
        assert_eq!(
            State::decode(&[version, 0xff, 0xff, 0xff, 0xff, 0x0f])
                .unwrap_err()
                .code(),
            "decode.malformed"
        );
        assert_eq!(
            State::decode(&[version, 0, 0, 0, 0]).unwrap_err().code(),
            "decode.trailing_bytes"
        );
        assert_eq!(State::decode(&[version, 0, 0, 0]).unwrap(), State::new());
    }
    assert_eq!(
        State::decode(&[9]).unwrap_err().code(),
        "decode.unsupported_version"
    );
    assert_eq!(State::decode(&[]).unwrap_err().code(), "decode.truncated");
    assert_eq!(State::new().encode(), [STATE_FORMAT_VERSION, 0, 0, 0]);

    // Format 2: 0 devices, 1 name "x", collection "c" with 1 document "a" that claims two
    // registers. Each column holds one value, written as its zigzag varint alone.
    let too_many_registers = [
        2, 0, 1, 1, b'x', 1, 1, b'c', 1,    // tables and collections
        0,    // shared prefix 0
        2,    // suffix length 1
        b'a', // suffix
        4,    // 2 registers, but there is 1 name
        0,    // 0 cells
    ];
    let mut one_register = too_many_registers;
    one_register[12] = 2;
    assert_eq!(
        State::decode(&one_register).unwrap_err().code(),
        "decode.truncated",
        "the same bytes with one register decode up to the missing register columns"
    );
    assert_eq!(
        State::decode(&too_many_registers).unwrap_err().code(),
        "decode.malformed"
    );
}
