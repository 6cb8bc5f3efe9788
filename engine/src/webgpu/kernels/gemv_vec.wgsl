// GEMV with 128-bit loads, for adapters where memory bandwidth is the limit (LLM decode on real GPUs).
//
// A workgroup of WG_X threads computes ROWS outputs. Thread t takes tiles t, t + WG_X, ... of a row; a
// tile is one vec4<u32> of packed weights per row (for 3 bits: three, four planes3 blocks). The thread
// loads the tile of every one of its ROWS rows first (all loads in flight), then reads the tile's
// activations once, as vec4<f32>, and applies them to all ROWS rows: activations cost 1/ROWS of the
// weight traffic instead of several times it. Codes become floats without conversion instructions (the
// code is or'ed into the mantissa of 2^23, then 2^23 plus the zero point is subtracted, exactly), and
// the tile's scale and zero point are read once per tile (per word where groups are shorter than a tile).
// With f16 arithmetic each term is formed as the CPU emulation forms it, wt(q - z) * wt(scale) times
// wt(x); with f32 the scale multiplies a word's or tile's sum of (q - z) * x once (a rounding apart).
//
// Needs K to be a multiple of the tile (tile_codes()); the executor refuses other shapes, where the
// portable `gemv` runs instead. Bindings are those of every matmul kernel, with the packed weights and
// the activations typed as vectors (the reason this kernel does not share dequant.wgsl).

override BITS: u32 = 4u;
override GROUP_LEN: u32 = 128u;
override ASYM: bool = false;
override SCALE_F16: bool = true;
override WG_X: u32 = 64u; // a power of two, at least ROWS
const ROWS: u32 = 4u;     // rows a thread computes, 1 to 8: written into the source (see gemv_vec below)

struct Params {
    m: u32,
    n: u32,
    k: u32,
    row_words: u32,
    groups_per_row: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> codes: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> zeros: array<u32>;
@group(0) @binding(4) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

var<workgroup> partial: array<f32, 2048>; // WG_X * ROWS <= 256 * 8

const MAGIC: u32 = 0x4B000000u; // the bits of 2^23
const TWO23: f32 = 8388608.0;

// Weights per tile: four words, or four planes3 blocks of 32.
fn tile_codes() -> u32 {
    switch BITS {
        case 16u: { return 8u; }
        case 3u: { return 128u; }
        default: { return 128u / BITS; }
    }
}

// The top bit of every code in a word: flipping it turns a two's complement code p into p + 2^(BITS-1).
fn sign_bits() -> u32 {
    switch BITS {
        case 8u: { return 0x80808080u; }
        case 4u: { return 0x88888888u; }
        case 2u: { return 0xAAAAAAAAu; }
        default: { return 0xFFFFFFFFu; } // 3 bits: the whole high-bit plane
    }
}

// What `lanes` values must have subtracted for group gi: 2^23, plus the zero point (asymmetric) or
// the bias 2^(BITS-1) that the sign flip added (symmetric).
fn bias_at(gi: u32) -> f32 {
    if !ASYM {
        return TWO23 + f32(1u << (BITS - 1u));
    }
    var z: u32;
    if BITS == 3u {
        let j = gi % 32u;
        let block = (gi / 32u) * 3u;
        let lo = (zeros[block + j / 16u] >> (2u * (j % 16u))) & 3u;
        let hi = (zeros[block + 2u] >> j) & 1u;
        z = lo | (hi << 2u);
    } else {
        let per_word = 32u / BITS;
        z = (zeros[gi / per_word] >> (BITS * (gi % per_word))) & ((1u << BITS) - 1u);
    }
    return TWO23 + f32(z);
}

fn group_index(n: u32, k: u32) -> u32 {
    if GROUP_LEN == 0u {
        return n * params.groups_per_row;
    }
    return n * params.groups_per_row + k / max(GROUP_LEN, 1u); // max: no division by a constant zero
}

// Codes 4j..4j+3 of a word of 2, 4 or 8 bits, each plus 2^23 (as floats, exactly).
fn lanes(w: u32, j: u32) -> vec4<f32> {
    let sh = (vec4<u32>(4u * j) + vec4<u32>(0u, 1u, 2u, 3u)) * BITS;
    let codes = (vec4<u32>(w) >> sh) & vec4<u32>((1u << BITS) - 1u);
    return bitcast<vec4<f32>>(codes | vec4<u32>(MAGIC));
}

// Codes 4j..4j+3 of a 16-code half of a planes3 block (`lo`: its crumbs; `hi`: its high bits, shifted
// to bit 0), each plus 2^23.
fn lanes3(lo: u32, hi: u32, j: u32) -> vec4<f32> {
    let idx = vec4<u32>(4u * j) + vec4<u32>(0u, 1u, 2u, 3u);
    let crumbs = (vec4<u32>(lo) >> (idx * 2u)) & vec4<u32>(3u);
    let high = (vec4<u32>(hi) >> idx) & vec4<u32>(1u);
    return bitcast<vec4<f32>>(crumbs | (high << vec4<u32>(2u)) | vec4<u32>(MAGIC));
}

// Four terms (q - z) * x summed in f32, by the prelude's `code_sum`: unscaled with f32 arithmetic (the
// caller's `scaled_sum` scales the group's sum once), each weight scaled and rounded to f16 as the
// emulation's f16 weight with f16 arithmetic (where `scaled_sum` leaves the sum as it is).
fn term(biased: vec4<f32>, bias: f32, s: f32, xv: vec4<f32>) -> f32 {
    return code_sum(biased - vec4<f32>(bias), s, xv);
}

// Group of word i of a tile whose first group is g: the same group unless groups are shorter than a tile.
fn word_group(g: u32, i: u32, codes_per_word: u32) -> u32 {
    if GROUP_LEN == 0u || GROUP_LEN >= 4u * codes_per_word {
        return g;
    }
    return g + i * codes_per_word / max(GROUP_LEN, 1u);
}

// Word i of a tile of 2-, 4- or 8-bit codes against its activations (from vec4 xt of the tile), not yet
// scaled. The lanes are written out (no loop): CPU adapters run shader loops with lane masks, and
// with literal lane numbers the shifts become constants (SwiftShader natively: 3.0x for int4, 4.0x for
// int8; bench/2026-12-04-cpu-adapters-kernels.txt).
fn word_sum(word: u32, xt: u32, i: u32, bias: f32, s: f32) -> f32 {
    let xv = xt + i * (8u / BITS);
    var w = word;
    if !ASYM {
        w = w ^ sign_bits();
    }
    var sum = term(lanes(w, 0u), bias, s, x[xv]);
    if BITS <= 4u {
        sum += term(lanes(w, 1u), bias, s, x[xv + 1u]);
    }
    if BITS == 2u {
        sum += term(lanes(w, 2u), bias, s, x[xv + 2u]) + term(lanes(w, 3u), bias, s, x[xv + 3u]);
    }
    return sum;
}

// A tile of 2-, 4- or 8-bit codes whose first group is g: its scale and zero point read once where the
// tile lies in one group, per word where groups are shorter.
fn tile_dot(w: vec4<u32>, xt: u32, g: u32) -> f32 {
    if GROUP_LEN == 0u || GROUP_LEN >= 4u * (32u / BITS) {
        let s = scale_at(g);
        let bias = bias_at(g);
        return scaled_sum(word_sum(w.x, xt, 0u, bias, s) + word_sum(w.y, xt, 1u, bias, s)
            + word_sum(w.z, xt, 2u, bias, s) + word_sum(w.w, xt, 3u, bias, s), s);
    }
    return word_dot(w.x, xt, g, 0u) + word_dot(w.y, xt, g, 1u) + word_dot(w.z, xt, g, 2u) + word_dot(w.w, xt, g, 3u);
}

// Word i of a tile, scaled by its own group's scale.
fn word_dot(w: u32, xt: u32, g: u32, i: u32) -> f32 {
    let gi = word_group(g, i, 32u / BITS);
    let s = scale_at(gi);
    return scaled_sum(word_sum(w, xt, i, bias_at(gi), s), s);
}

// Block b of a tile of planes3 blocks (words lo0, lo1: crumbs of codes 0-15 and 16-31; hi: high bits).
fn block_dot(lo0: u32, lo1: u32, high: u32, xt: u32, g: u32, b: u32) -> f32 {
    let gi = word_group(g, b, 32u);
    let s = scale_at(gi);
    let bias = bias_at(gi);
    var hi = high;
    if !ASYM {
        hi = hi ^ sign_bits();
    }
    let xv = xt + 8u * b;
    let hi1 = hi >> 16u;
    return scaled_sum(term(lanes3(lo0, hi, 0u), bias, s, x[xv]) + term(lanes3(lo0, hi, 1u), bias, s, x[xv + 1u])
        + term(lanes3(lo0, hi, 2u), bias, s, x[xv + 2u]) + term(lanes3(lo0, hi, 3u), bias, s, x[xv + 3u])
        + term(lanes3(lo1, hi1, 0u), bias, s, x[xv + 4u]) + term(lanes3(lo1, hi1, 1u), bias, s, x[xv + 5u])
        + term(lanes3(lo1, hi1, 2u), bias, s, x[xv + 6u]) + term(lanes3(lo1, hi1, 3u), bias, s, x[xv + 7u]), s);
}

// A tile of eight fp16 weights.
fn half_dot(w: vec4<u32>, xt: u32) -> f32 {
    let a = vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
    let b = vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w));
    return mul_sum(vec4<wt>(a), x[xt]) + mul_sum(vec4<wt>(b), x[xt + 1u]);
}

// Lines that name `_ROW` are written once per row by the shader assembly (ROW_INDEX becomes the row's
// number): the rows live in registers without arrays, which compilers may put in slow local memory.
@compute @workgroup_size(WG_X)
fn gemv_vec(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = lid.x;
    let m = wid.y;
    let row_vecs = params.row_words / 4u;
    let tiles = params.k / tile_codes();
    let xrow = m * params.k / 4u;
    // Rows past N are computed from row N-1 (loads stay in bounds) and never stored.
    let row_ROW = min(wid.x * ROWS + ROW_INDEX, params.n - 1u);
    var acc_ROW = 0.0;
    for (var tile = t; tile < tiles; tile += WG_X) {
        let k0 = tile * tile_codes();
        let xt = xrow + k0 / 4u;
        if BITS == 16u {
            let w_ROW = codes[row_ROW * row_vecs + tile];
            acc_ROW += half_dot(w_ROW, xt);
        } else if BITS == 3u {
            let a_ROW = codes[row_ROW * row_vecs + 3u * tile];
            let b_ROW = codes[row_ROW * row_vecs + 3u * tile + 1u];
            let c_ROW = codes[row_ROW * row_vecs + 3u * tile + 2u];
            let g_ROW = group_index(row_ROW, k0);
            acc_ROW += block_dot(a_ROW.x, a_ROW.y, a_ROW.z, xt, g_ROW, 0u) + block_dot(a_ROW.w, b_ROW.x, b_ROW.y, xt, g_ROW, 1u) + block_dot(b_ROW.z, b_ROW.w, c_ROW.x, xt, g_ROW, 2u) + block_dot(c_ROW.y, c_ROW.z, c_ROW.w, xt, g_ROW, 3u);
        } else {
            let w_ROW = codes[row_ROW * row_vecs + tile];
            let g_ROW = group_index(row_ROW, k0);
            acc_ROW += tile_dot(w_ROW, xt, g_ROW);
        }
    }
    // REDUCE BEGIN: the threads' sums of each row added in workgroup memory, a tree of log2(WG_X)
    // barriers; `gemv-vec-sg` puts reduce_subgroup.wgsl here instead.
    partial[ROW_INDEX * WG_X + t] = acc_ROW;
    workgroupBarrier();
    for (var stride = WG_X / 2u; stride > 0u; stride = stride / 2u) {
        if t < stride {
            partial[ROW_INDEX * WG_X + t] += partial[ROW_INDEX * WG_X + t + stride];
        }
        workgroupBarrier();
    }
    if t < ROWS {
        let n = wid.x * ROWS + t;
        if n < params.n {
            y[m * params.n + n] = partial[t * WG_X];
        }
    }
    // REDUCE END
}
