// Decoding of packed weights, shared by every kernel. Layouts: engine/src/quant/layout.rs.
//
// Weights are N x K, row n starting at word n * params.row_words of `codes`. Scales and zero
// points are flat over the tensor, one per group (index n * groups_per_row + k / GROUP_LEN).

// Width of a stored weight: 2, 3, 4, 8, or 16 for fp16 weights.
override BITS: u32 = 4u;
// Weights per group along K; 0 = per-channel (one group per row).
override GROUP_LEN: u32 = 128u;
// Asymmetric: unsigned codes and a stored zero point. Symmetric: signed codes.
override ASYM: bool = false;
// Scales stored as f16 (two per word, low half first) rather than f32.
override SCALE_F16: bool = true;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    row_words: u32,
    groups_per_row: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> zeros: array<u32>;
@group(0) @binding(4) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

// Offset of the word that holds code i (for 3 bits: its low 2-bit plane; for fp16: its half).
fn word_of(i: u32) -> u32 {
    switch BITS {
        case 8u: { return i / 4u; }
        case 4u: { return i / 8u; }
        case 2u: { return i / 16u; }
        case 16u: { return i / 2u; }
        default: { return (i / 32u) * 3u + (i % 32u) / 16u; }
    }
}

// Offset of the word that holds the high bit of a 3-bit code (the word of the code otherwise).
fn plane_word_of(i: u32) -> u32 {
    if BITS == 3u {
        return (i / 32u) * 3u + 2u;
    }
    return word_of(i);
}

// Raw pattern of code i, given the words word_of(i) and plane_word_of(i).
fn unpack_code(word: u32, plane: u32, i: u32) -> u32 {
    switch BITS {
        case 8u: { return (word >> (8u * (i % 4u))) & 0xFFu; }
        case 4u: { return (word >> (4u * (i % 8u))) & 0xFu; }
        case 2u: { return (word >> (2u * (i % 16u))) & 0x3u; }
        default: {
            let j = i % 32u;
            let lo = (word >> (2u * (j % 16u))) & 0x3u;
            let hi = (plane >> j) & 1u;
            return lo | (hi << 2u);
        }
    }
}

// Two's complement pattern of BITS bits to a signed integer.
fn signed_code(p: u32) -> i32 {
    let shift = 32u - BITS;
    return bitcast<i32>(p << shift) >> shift;
}

fn weight_code(row_base: u32, i: u32) -> u32 {
    return unpack_code(codes[row_base + word_of(i)], codes[row_base + plane_word_of(i)], i);
}

fn zero_code(gi: u32) -> u32 {
    return unpack_code(zeros[word_of(gi)], zeros[plane_word_of(gi)], gi);
}

fn group_of(k: u32) -> u32 {
    if GROUP_LEN == 0u {
        return 0u;
    }
    return k / max(GROUP_LEN, 1u);
}

// Codes decoded per chunk: one word (two halves for fp16 weights); for 3 bits, 16 codes (one low-plane
// word and half of the block's high-plane word). Group sizes are multiples of every chunk length, so a
// chunk never straddles two groups.
fn chunk_len() -> u32 {
    switch BITS {
        case 8u: { return 4u; }
        case 4u: { return 8u; }
        case 16u: { return 2u; }
        default: { return 16u; }
    }
}

fn group_zero(gi: u32) -> i32 {
    if ASYM {
        return i32(zero_code(gi));
    }
    return 0;
}

// The weight of raw pattern p under zero point z and scale s, as the CPU emulation computes it:
// wt(q - z) * wt(scale).
fn decode(p: u32, z: i32, s: f32) -> wt {
    var q: i32;
    if ASYM {
        q = i32(p);
    } else {
        q = signed_code(p);
    }
    return wt(f32(q - z)) * wt(s);
}

// Weight (n, k), dequantized.
fn dequant(n: u32, k: u32) -> wt {
    let row_base = n * params.row_words;
    if BITS == 16u {
        let pair = unpack2x16float(codes[row_base + k / 2u]);
        return wt(select(pair.x, pair.y, k % 2u == 1u));
    }
    let gi = n * params.groups_per_row + group_of(k);
    return decode(weight_code(row_base, k), group_zero(gi), scale_at(gi));
}
