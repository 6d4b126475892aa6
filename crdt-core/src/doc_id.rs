//! Document ids as map keys.
//!
//! Finding a document is a search of its collection's B-tree, a dozen or more key comparisons.
//! With ids as `Box<str>`, each comparison followed a pointer to text elsewhere in memory and
//! called `memcmp`; that was most of the time a write took. A [`DocId`] carries its first eight
//! bytes as an integer and short ids inline, so a comparison is one integer compare in the node
//! itself, and only ids that share eight bytes compare their text.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use compact_str::CompactString;

/// The longest id a [`DocId`] holds without a heap allocation: 24 bytes, 12 in wasm32.
const INLINE_BYTES: usize = size_of::<CompactString>();

/// A document id, ordered exactly as its UTF-8 bytes are.
#[derive(Clone, Default)]
pub(crate) struct DocId {
    /// The first eight bytes, zero-padded, read big-endian. Two ids whose heads differ are
    /// ordered as their heads are: the first byte where the heads differ is either the first
    /// byte where the ids differ or a zero pad standing for the end of the shorter id.
    head: u64,
    /// The whole id, inline up to [`INLINE_BYTES`].
    text: CompactString,
}

impl DocId {
    /// The first eight bytes of `id`, zero-padded, as a big-endian number.
    fn head_of(id: &str) -> u64 {
        match id.as_bytes().first_chunk::<8>() {
            Some(head) => u64::from_be_bytes(*head),
            // A loop, not a copy into a zeroed buffer: that copy costs a call to `memmove`.
            None => id.bytes().zip((0..8).rev()).fold(0, |head, (byte, place)| {
                head | u64::from(byte) << (8 * place)
            }),
        }
    }

    /// `id` as a key if it fits inline, so that making it allocates nothing: how lookups build
    /// their key. Longer ids are looked up by their text instead.
    pub(crate) fn inline(id: &str) -> Option<DocId> {
        (id.len() <= INLINE_BYTES).then(|| DocId::from(id))
    }

    /// [`DocId::head_of`] this id, already computed.
    pub(crate) fn head(&self) -> u64 {
        self.head
    }
}

impl From<&str> for DocId {
    fn from(id: &str) -> DocId {
        DocId {
            head: DocId::head_of(id),
            text: CompactString::from(id),
        }
    }
}

impl Deref for DocId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

/// Lookups by `&str` work and agree with [`DocId`]'s order, which is the text's; lookups by
/// `&DocId` are the fast ones.
impl Borrow<str> for DocId {
    fn borrow(&self) -> &str {
        &self.text
    }
}

impl PartialEq for DocId {
    fn eq(&self, other: &DocId) -> bool {
        self.head == other.head && self.text == other.text
    }
}

impl Eq for DocId {}

impl Ord for DocId {
    fn cmp(&self, other: &DocId) -> Ordering {
        self.head
            .cmp(&other.head)
            .then_with(|| self.text.as_bytes().cmp(other.text.as_bytes()))
    }
}

impl PartialOrd for DocId {
    fn partial_cmp(&self, other: &DocId) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Hashes as the text does, as [`Borrow<str>`] requires.
impl Hash for DocId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.as_str().hash(state);
    }
}

impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ids() -> impl Strategy<Value = String> {
        // Short ids over a small alphabet with NUL, so that heads often tie and pads meet real
        // zero bytes; and longer ones that go to the heap.
        prop_oneof!["[\\x00ab]{0,10}", "[a-z0-9\\-]{0,40}", "\\PC{0,12}",]
    }

    proptest! {
        #[test]
        fn orders_like_the_text(a in ids(), b in ids()) {
            let (x, y) = (DocId::from(a.as_str()), DocId::from(b.as_str()));
            prop_assert_eq!(x.cmp(&y), a.as_bytes().cmp(b.as_bytes()));
            prop_assert_eq!(x == y, a == b);
            prop_assert_eq!(&*x, a.as_str());
        }
    }

    #[test]
    fn ids_up_to_the_inline_size_make_lookup_keys() {
        let fits = "x".repeat(INLINE_BYTES);
        assert_eq!(DocId::inline(&fits).as_deref(), Some(fits.as_str()));
        assert!(!DocId::inline(&fits).unwrap().text.is_heap_allocated());
        assert!(DocId::inline(&format!("{fits}x")).is_none());
    }

    #[test]
    fn a_pad_is_not_a_zero_byte() {
        let ids = [
            "",
            "\0",
            "\0\0",
            "a",
            "a\0",
            "a\0\0\0\0\0\0\0",
            "a\0\0\0\0\0\0\0\0",
            "ab",
        ];
        for a in ids {
            for b in ids {
                assert_eq!(
                    DocId::from(a).cmp(&DocId::from(b)),
                    a.cmp(b),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }
}
