//! Integer columns: a run of integers, bit-packed in blocks against a frame of reference.
//!
//! ```text
//! column = block*                         the value count comes from the context
//! block  = base:zigzag-varint width:u8 packed
//!        | base:zigzag-varint             when the block holds one value
//! packed = ⌈n·width/8⌉ bytes              n = min(BLOCK_LEN, values left); each value − base
//!                                         in `width` bits, least significant bit first
//! ```
//!
//! A one-value block has nothing to pack, so it is its base alone: small states (one write, a
//! few fields) stay as small as in a row layout.
//!
//! A block of equal values costs two bytes whatever its length, and a block of values spread over
//! a range of 2^k costs k bits per value, so a column pays for the spread of its values, never for
//! their magnitude. The state format (format 2, `super::v2`) shapes its columns so that the values
//! in one block tend to be close: deltas within a document, counts, tags.
//!
//! Canonical: `base` is the least value of the block, `width` the fewest bits that hold the
//! greatest offset (zero when all values are equal), and the unused bits of the last byte are
//! zero. The reader checks all three.

use super::{Reader, put_varint};
use crate::error::DecodeError;
use crate::value::{unzigzag, zigzag};

/// Values per block: small enough that one outlier widens few values, large enough that the
/// two header bytes vanish.
pub(crate) const BLOCK_LEN: usize = 128;
/// The fewest bytes a block of more than one value takes: a one-byte base and the width.
const MIN_BLOCK_BYTES: usize = 2;

/// Appends `values` as a column. Unsigned quantities are passed bit-cast (`u as i64`): the
/// offsets wrap consistently, so every 64-bit pattern survives the round trip.
pub(crate) fn put_column(out: &mut Vec<u8>, values: &[i64]) {
    for block in values.chunks(BLOCK_LEN) {
        let (mut base, mut max) = (block[0], block[0]);
        for &v in block {
            base = base.min(v);
            max = max.max(v);
        }
        let width = bit_width(max.wrapping_sub(base) as u64);
        put_varint(out, zigzag(base));
        if block.len() == 1 {
            continue;
        }
        out.push(width as u8);
        if width == 0 {
            continue;
        }
        // At most 7 pending bits plus one 64-bit offset: a u128 never overflows.
        let mut pending: u128 = 0;
        let mut pending_bits = 0u32;
        for &v in block {
            pending |= u128::from(v.wrapping_sub(base) as u64) << pending_bits;
            pending_bits += width;
            while pending_bits >= 8 {
                out.push(pending as u8);
                pending >>= 8;
                pending_bits -= 8;
            }
        }
        if pending_bits > 0 {
            out.push(pending as u8);
        }
    }
}

/// A column being read: its blocks are located when it is opened, and values are unpacked
/// straight from the bits as they are taken, so reading a state holds no column in memory and
/// a one-value column costs next to nothing. A clone reads the same values again.
#[derive(Clone, Debug)]
pub(crate) struct Column<'a> {
    /// Positioned just past the block being read.
    blocks: Reader<'a>,
    /// Values in the blocks not yet started.
    left: usize,
    block: Block<'a>,
}

/// The block a [`Column`] is taking values from.
#[derive(Clone, Debug, Default)]
struct Block<'a> {
    /// Packed bytes not yet read.
    packed: &'a [u8],
    base: i64,
    width: u32,
    /// Values not yet taken.
    left: usize,
    /// Bits read from `packed` and not yet taken: at most 63 (see [`Block::bits`]). A `u64`,
    /// not a `u128`: in wasm32 every `u128` shift is a call into compiler-builtins.
    pending: u64,
    pending_bits: u32,
    /// The least and greatest offsets taken, for the canonical checks at the block's end.
    least: u64,
    greatest: u64,
}

impl<'a> Column<'a> {
    /// Opens a column of `len` values at `r` and moves `r` past it. Refuses a `len` the bytes
    /// left could not hold before anything is allocated.
    pub(crate) fn open(r: &mut Reader<'a>, len: usize) -> Result<Column<'a>, DecodeError> {
        // Every block but a one-value last one takes two bytes or more.
        if len > 0 && (len - 1) / BLOCK_LEN > r.remaining().saturating_sub(1) / MIN_BLOCK_BYTES {
            return Err(r.malformed("column longer than the bytes left"));
        }
        if len == 0 {
            return Ok(Column {
                blocks: r.clone(),
                left: 0,
                block: Block::default(),
            });
        }
        // The first block is made ready here, so a short column (most columns of a small
        // state are one block, often of one value) is parsed once, not once here and again
        // on the first `take`. The other blocks are only stepped over.
        let mut blocks = r.clone();
        let first = BLOCK_LEN.min(len);
        let block = Block::read(&mut blocks, first)?;
        *r = blocks.clone();
        let mut skipped = first;
        while skipped < len {
            let n = BLOCK_LEN.min(len - skipped);
            r.varint()?;
            let width = block_width(r, n)?;
            r.take((n * width as usize).div_ceil(8))?;
            skipped += n;
        }
        Ok(Column {
            blocks,
            left: len - first,
            block,
        })
    }

    /// How many values are left to take.
    pub(crate) fn remaining(&self) -> usize {
        self.left + self.block.left
    }

    /// The next value. Taking more than the column holds is an error, not a panic.
    pub(crate) fn take(&mut self) -> Result<i64, DecodeError> {
        if self.block.left == 0 {
            self.start_block()?;
        }
        let b = &mut self.block;
        // The block holds exactly ⌈n·width/8⌉ bytes, so this never runs dry.
        let Some(offset) = b.next_offset() else {
            return Err(self.blocks.malformed("column block shorter than its width"));
        };
        b.least = b.least.min(offset);
        b.greatest = b.greatest.max(offset);
        b.left -= 1;
        let value = b
            .base
            .checked_add_unsigned(offset)
            .ok_or_else(|| self.blocks.malformed("column value overflows 64 bits"))?;
        if self.block.left == 0 {
            self.finish_block()?;
        }
        Ok(value)
    }

    /// Readies the next block: once per 128 values, so kept out of `take`'s loop (inlined
    /// there, it made a million-register load 6% slower).
    #[cold]
    fn start_block(&mut self) -> Result<(), DecodeError> {
        if self.left == 0 {
            return Err(self.blocks.malformed("column read past its end"));
        }
        let n = BLOCK_LEN.min(self.left);
        self.left -= n;
        self.block = Block::read(&mut self.blocks, n)?;
        Ok(())
    }

    /// Checks, once a block's values are all taken, that [`put_column`] would have written it.
    fn finish_block(&self) -> Result<(), DecodeError> {
        let (b, r) = (&self.block, &self.blocks);
        if b.pending != 0 {
            return Err(r.non_canonical("column padding bits are set"));
        }
        if b.least != 0 {
            return Err(r.non_canonical("column block base is not its least value"));
        }
        if bit_width(b.greatest) != b.width {
            return Err(r.non_canonical("column block width is not minimal"));
        }
        Ok(())
    }
}

impl<'a> Block<'a> {
    /// Reads the header of a block of `n` values at `r` and moves `r` past its packed bytes.
    fn read(r: &mut Reader<'a>, n: usize) -> Result<Block<'a>, DecodeError> {
        let base = unzigzag(r.varint()?);
        let width = block_width(r, n)?;
        let packed = r.take((n * width as usize).div_ceil(8))?;
        Ok(Block {
            packed,
            base,
            width,
            left: n,
            least: u64::MAX,
            ..Block::default()
        })
    }

    /// The next value's offset from the base: its `width` bits, least significant first.
    fn next_offset(&mut self) -> Option<u64> {
        match self.width {
            0 => Some(0),
            width @ 1..=56 => self.bits(width),
            width => {
                let low = self.bits(32)?;
                Some(low | self.bits(width - 32)? << 32)
            }
        }
    }

    /// The next `n` bits, `n` at most 56: fewer than 8 bits are pending before the call, so
    /// the pending bits never exceed 63.
    fn bits(&mut self, n: u32) -> Option<u64> {
        while self.pending_bits < n {
            let (&byte, rest) = self.packed.split_first()?;
            self.packed = rest;
            self.pending |= u64::from(byte) << self.pending_bits;
            self.pending_bits += 8;
        }
        let bits = self.pending & ((1 << n) - 1);
        self.pending >>= n;
        self.pending_bits -= n;
        Some(bits)
    }
}

/// The width of a block of `n` values: read, unless the block holds one value (width 0).
fn block_width(r: &mut Reader<'_>, n: usize) -> Result<u32, DecodeError> {
    if n == 1 {
        return Ok(0);
    }
    let width = u32::from(r.u8()?);
    if width > 64 {
        return Err(r.malformed("column width over 64 bits"));
    }
    Ok(width)
}

/// The number of bits needed to write `v`: 0 for 0, 64 for values with the top bit set.
fn bit_width(v: u64) -> u32 {
    u64::BITS - v.leading_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_column(r: &mut Reader<'_>, len: usize) -> Result<Vec<i64>, DecodeError> {
        let mut column = Column::open(r, len)?;
        (0..len).map(|_| column.take()).collect()
    }

    fn round_trip(values: &[i64]) -> Vec<u8> {
        let mut out = Vec::new();
        put_column(&mut out, values);
        let mut r = Reader::new(&out);
        assert_eq!(read_column(&mut r, values.len()).unwrap(), values);
        assert_eq!(r.remaining(), 0);
        out
    }

    #[test]
    fn columns_round_trip_every_width() {
        round_trip(&[]);
        assert_eq!(
            round_trip(&[7; 256]).len(),
            2 * 2,
            "equal values: two bytes per block"
        );
        assert_eq!(
            round_trip(&[7; 257]).len(),
            2 * 2 + 1,
            "a one-value block is its base"
        );
        assert_eq!(round_trip(&[-3]), [5]);
        round_trip(&[i64::MIN, i64::MAX, 0, -1, 1]);
        round_trip(&[u64::MAX as i64, 0]);
        for width in 1..=63 {
            // Each block holds 0 and the greatest value of the width, so it is packed at
            // exactly `width` bits (a first block's header: base 0 in one byte, the width).
            let greatest = ((1u64 << width) - 1) as i64;
            let values: Vec<i64> = (0..200)
                .map(|i| match i % 100 {
                    0 => 0,
                    1 => greatest,
                    _ => (i * 7919) & greatest,
                })
                .collect();
            assert_eq!(round_trip(&values)[1], width as u8, "width {width}");
        }
    }

    #[test]
    fn uniform_values_cost_their_spread_in_bits() {
        // 1,000 values spread over [0, 2^20): 20 bits each plus 2–4 header bytes per block.
        let values: Vec<i64> = (0..1000).map(|i| (i * 1_000_003) % (1 << 20)).collect();
        let bytes = round_trip(&values).len();
        assert!(bytes <= 1000 * 20 / 8 + 8 * 5, "{bytes} bytes");
    }

    #[test]
    fn non_canonical_blocks_are_refused() {
        let refused = |bytes: &[u8], n: usize| read_column(&mut Reader::new(bytes), n).unwrap_err();
        // Base 0 (zigzag 0), width 2, values 1 and 2: the base is not the least value.
        assert_eq!(refused(&[0, 2, 0b1001], 2).code(), "decode.non_canonical");
        // Base 0, width 3, values 0 and 1: wider than needed.
        assert_eq!(
            refused(&[0, 3, 0b001_000], 2).code(),
            "decode.non_canonical"
        );
        // Base 0, width 1, values 0 and 1, a padding bit set.
        assert_eq!(refused(&[0, 1, 0b110], 2).code(), "decode.non_canonical");
        // Width 65.
        assert_eq!(
            refused(&[0, 65, 0, 0, 0, 0, 0, 0, 0, 0], 2).code(),
            "decode.malformed"
        );
        // base i64::MAX (zigzag u64::MAX − 1) plus an offset of 1 overflows.
        let mut bytes = Vec::new();
        put_varint(&mut bytes, u64::MAX - 1);
        bytes.extend_from_slice(&[1, 0b10]);
        assert_eq!(refused(&bytes, 2).code(), "decode.malformed");
        // A million values promised by three bytes: refused before allocating.
        assert_eq!(refused(&[0, 0, 0], 1_000_000).code(), "decode.malformed");
    }
}
