//! Feeds arbitrary bytes to everything that reads a pack from the bucket: `Pack::verify`,
//! `Pack::open` with and without the space key, and `State::decode` (a pack's body).
//!
//! Beyond "never panics", it checks properties that hold for every input:
//! - opening verifies first, so nothing opens that does not verify, and both see one header;
//! - the space key only adds what can be read: a pack that opens without it opens with it;
//! - the codec is canonical: bytes that decode are exactly what encoding the result gives;
//! - merge is idempotent: joining a decoded state into itself changes nothing.
//!
//! Run from `crdt-core/fuzz` with `cargo +nightly fuzz run open_pack`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark_core::{OpenOptions, Pack, SpaceKey, State};

/// Any fixed key does: the fuzzer cannot forge signatures, so decryption is reached only by
/// mutations of validly signed packs (e.g. from a seed corpus) that keep their signature.
const SPACE_KEY: SpaceKey = SpaceKey::from_bytes([0x5a; 32]);

fuzz_target!(|data: &[u8]| {
    check_pack(data);
    check_state(data);
});

fn check_pack(data: &[u8]) {
    let verified = Pack::verify(data);
    let without_key = Pack::open(data, &OpenOptions::default());
    let with_key = Pack::open(
        data,
        &OpenOptions {
            space_key: Some(&SPACE_KEY),
            ..OpenOptions::default()
        },
    );

    for pack in [&without_key, &with_key].into_iter().flatten() {
        let verified = verified.as_ref().expect("a pack that opens also verifies");
        assert_eq!(
            pack.header, verified.header,
            "open and verify disagree on the header"
        );
    }
    if let Ok(pack) = &without_key {
        let with_key = with_key
            .as_ref()
            .expect("a pack that opens without the key opens with it");
        assert!(
            pack.state == with_key.state,
            "the key changed a plaintext body"
        );
    }
}

fn check_state(data: &[u8]) {
    let Ok(state) = State::decode(data) else {
        return;
    };
    assert_eq!(
        state.encode(),
        data,
        "decode accepted bytes that encode does not produce"
    );

    let mut merged = state.clone();
    assert_eq!(
        merged.merge(&state),
        0,
        "merging a state into itself changed documents"
    );
    assert_eq!(
        merged.encode(),
        data,
        "merging a state into itself changed it"
    );
}
