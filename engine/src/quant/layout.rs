//! Packed storage of weight codes.
//!
//! Codes are raw bit patterns of the weight's width (two's complement for signed codes).
//! Bytes are read as little-endian 32-bit words by the GPU kernels, so a layout that is
//! "low bits first" within a byte is also low bits first within a word.
//!
//! | layout   | width | packing                                                            |
//! |----------|-------|--------------------------------------------------------------------|
//! | `bytes`  | 8     | one code a byte                                                    |
//! | `nibbles`| 4     | two a byte, low nibble first (WebNN int4: `[0xF8, 0x7F]` = `[-8, -1, -1, 7]`) |
//! | `crumbs` | 2     | four a byte, lowest bits first                                     |
//! | `planes3`| 3     | blocks of 32 codes in 12 bytes: 8 bytes of low 2-bit crumbs, then 4 bytes of high bits |
//! | `half`   | 16    | IEEE f16, little endian (fp16 weights; not a code)                 |
//!
//! Why bit planes for 3 bits: it is exactly 3 bits a weight (no 10-in-32 waste), and no code
//! straddles a 32-bit word, so a kernel extracts code `j` of a block with two word-aligned shifts
//! (`(lo[j/16] >> 2*(j%16)) & 3 | ((hi >> j) & 1) << 2`) instead of a funnel shift across words.
//! llama.cpp's Q3_K splits its codes the same way for the same reason. A partial last block is
//! padded with zero codes.

use serde::Serialize;

use super::format::IntBits;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Bytes,
    Nibbles,
    Crumbs,
    Planes3,
    Half,
}

/// Codes in one `planes3` block.
pub const PLANES3_BLOCK: usize = 32;
/// Bytes of one `planes3` block.
pub const PLANES3_BLOCK_BYTES: usize = 12;
const _: () = assert!(PLANES3_BLOCK * 3 / 8 == PLANES3_BLOCK_BYTES);

impl Layout {
    pub fn for_bits(bits: IntBits) -> Layout {
        match bits {
            IntBits::B2 => Layout::Crumbs,
            IntBits::B3 => Layout::Planes3,
            IntBits::B4 => Layout::Nibbles,
            IntBits::B8 => Layout::Bytes,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Layout::Bytes => "bytes",
            Layout::Nibbles => "nibbles",
            Layout::Crumbs => "crumbs",
            Layout::Planes3 => "planes3",
            Layout::Half => "half",
        }
    }

    /// Bytes that `count` packed values take, without word padding.
    pub fn packed_bytes(self, count: usize) -> usize {
        match self {
            Layout::Bytes => count,
            Layout::Nibbles => count.div_ceil(2),
            Layout::Crumbs => count.div_ceil(4),
            Layout::Planes3 => count.div_ceil(PLANES3_BLOCK) * PLANES3_BLOCK_BYTES,
            Layout::Half => count * 2,
        }
    }

    /// Bytes of one stored row of `k` values: rows start on a 32-bit word boundary.
    pub fn row_stride_bytes(self, k: usize) -> usize {
        self.packed_bytes(k).div_ceil(4) * 4
    }

    /// Packs raw code patterns (only the low bits of each byte are used). Not for `Half`.
    pub fn pack(self, codes: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; self.packed_bytes(codes.len())];
        self.pack_into(codes, &mut out);
        out
    }

    /// Packs into `out`, which must hold `packed_bytes(codes.len())` zeroed bytes.
    pub fn pack_into(self, codes: &[u8], out: &mut [u8]) {
        match self {
            Layout::Bytes => out[..codes.len()].copy_from_slice(codes),
            Layout::Nibbles => {
                for (i, &c) in codes.iter().enumerate() {
                    out[i / 2] |= (c & 0xF) << (4 * (i % 2));
                }
            }
            Layout::Crumbs => {
                for (i, &c) in codes.iter().enumerate() {
                    out[i / 4] |= (c & 0x3) << (2 * (i % 4));
                }
            }
            Layout::Planes3 => {
                for (i, &c) in codes.iter().enumerate() {
                    let block = &mut out[(i / PLANES3_BLOCK) * PLANES3_BLOCK_BYTES..];
                    let j = i % PLANES3_BLOCK;
                    block[j / 4] |= (c & 0x3) << (2 * (j % 4));
                    block[8 + j / 8] |= ((c >> 2) & 1) << (j % 8);
                }
            }
            Layout::Half => panic!("fp16 weights are not packed codes"),
        }
    }

    /// Code `i` of a packed sequence, as a raw pattern.
    pub fn code_at(self, packed: &[u8], i: usize) -> u8 {
        match self {
            Layout::Bytes => packed[i],
            Layout::Nibbles => (packed[i / 2] >> (4 * (i % 2))) & 0xF,
            Layout::Crumbs => (packed[i / 4] >> (2 * (i % 4))) & 0x3,
            Layout::Planes3 => {
                let block = &packed[(i / PLANES3_BLOCK) * PLANES3_BLOCK_BYTES..];
                let j = i % PLANES3_BLOCK;
                let lo = (block[j / 4] >> (2 * (j % 4))) & 0x3;
                let hi = (block[8 + j / 8] >> (j % 8)) & 1;
                lo | (hi << 2)
            }
            Layout::Half => panic!("fp16 weights are not packed codes"),
        }
    }

    /// Unpacks `count` raw code patterns.
    pub fn unpack(self, packed: &[u8], count: usize) -> Vec<u8> {
        let mut out = vec![0; count];
        self.unpack_into(packed, &mut out);
        out
    }

    /// Unpacks `out.len()` raw code patterns into `out`: whole bytes at a time where codes lie whole
    /// in bytes (the CPU path decodes a row per output channel, so this is its inner loop).
    pub fn unpack_into(self, packed: &[u8], out: &mut [u8]) {
        let per_byte = match self {
            Layout::Bytes => return out.copy_from_slice(&packed[..out.len()]),
            Layout::Nibbles => 2,
            Layout::Crumbs => 4,
            Layout::Planes3 | Layout::Half => {
                out.iter_mut().enumerate().for_each(|(i, o)| *o = self.code_at(packed, i));
                return;
            }
        };
        let bits = 8 / per_byte;
        let mask = (1u8 << bits) - 1;
        let whole = out.len() / per_byte * per_byte;
        for (codes, &b) in out[..whole].chunks_exact_mut(per_byte).zip(packed) {
            for (j, c) in codes.iter_mut().enumerate() {
                *c = (b >> (bits * j)) & mask;
            }
        }
        for (i, o) in out.iter_mut().enumerate().skip(whole) {
            *o = self.code_at(packed, i);
        }
    }
}

/// Sign-extends a `bits`-wide two's complement pattern.
pub fn sign_extend(pattern: u8, bits: u32) -> i32 {
    let shift = 32 - bits;
    ((pattern as i32) << shift) >> shift
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webnn_int4_byte_order() {
        let packed = [0xF8u8, 0x7F];
        let codes: Vec<i32> = Layout::Nibbles.unpack(&packed, 4).into_iter().map(|c| sign_extend(c, 4)).collect();
        assert_eq!(codes, vec![-8, -1, -1, 7]);
        assert_eq!(Layout::Nibbles.pack(&[0x8, 0xF, 0xF, 0x7]), packed);
    }

    #[test]
    fn planes3_block_is_twelve_bytes() {
        let codes: Vec<u8> = (0..32).map(|i| (i % 8) as u8).collect();
        let packed = Layout::Planes3.pack(&codes);
        assert_eq!(packed.len(), 12);
        // code 5 = 0b101: low crumb 0b01 at byte 1 bits 2..4, high bit at byte 8 bit 5
        assert_eq!((packed[1] >> 2) & 3, 1);
        assert_eq!((packed[8] >> 5) & 1, 1);
        assert_eq!(Layout::Planes3.unpack(&packed, 32), codes);
    }

    #[test]
    fn unpacking_whole_bytes_gives_what_code_at_gives() {
        for layout in [Layout::Bytes, Layout::Nibbles, Layout::Crumbs, Layout::Planes3] {
            let max = match layout {
                Layout::Bytes => 256,
                Layout::Nibbles => 16,
                Layout::Crumbs => 4,
                _ => 8,
            };
            for count in [1, 7, 33, 100] {
                let codes: Vec<u8> = (0..count).map(|i| ((i * 37 + 11) % max) as u8).collect();
                let packed = layout.pack(&codes);
                let one_by_one: Vec<u8> = (0..count).map(|i| layout.code_at(&packed, i)).collect();
                assert_eq!(layout.unpack(&packed, count), one_by_one, "{layout:?} {count}");
                assert_eq!(one_by_one, codes, "{layout:?} {count}");
            }
        }
    }
}
