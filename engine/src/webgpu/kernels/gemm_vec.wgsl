// GEMM for CPU adapters (lavapipe, SwiftShader): no workgroup memory, no barriers. Each thread computes
// CHANNELS output channels (blocks of four, one vec4 each) for ROWS activation rows. It reads its
// channels' packed words itself and decodes a block's codes at once as vectors (one shift pair and one
// conversion for four weights); the activations are read as vec4<f32> straight from the storage buffer,
// one load per row for four k. On these adapters every load of a varying address costs a loop over the
// SIMD lanes (lavapipe) or a gather (SwiftShader), far more than arithmetic, so the kernel is built to
// issue few loads per product: a row's vec4 of activations serves 4 x CHANNELS products, a channel's
// word ROWS rows. Both numbers are the adapter's, from the tuning table.
// The products are formed as the CPU emulation forms them (wt(x) * wt(w), w = wt(q - z) * wt(scale))
// and summed in f32 in k order, as in the tiled `gemm`.
//
// Needs 2-, 4- or 8-bit weights, K a multiple of 32 and groups of a multiple of 32 (every group size of
// the catalogue) or one per row: a step of 32 k then lies in one group, so its scales and zero points
// are read once. The executor refuses other formats and shapes, where the tiled `gemm` runs instead.

override BITS: u32 = 4u;
override GROUP_LEN: u32 = 128u;
override ASYM: bool = false;
override SCALE_F16: bool = true;
const ROWS: u32 = 8u; // rows a thread computes: written into the source (kernel.rs unroll_rows)
const CHANNELS: u32 = 4u; // channels a thread computes: written into the source (kernel.rs unroll_channel_blocks)
const STEP: u32 = 32u; // k a step: one group's scale and zero point

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
@group(0) @binding(4) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

fn zero_at(gi: u32) -> i32 {
    if !ASYM {
        return 0;
    }
    let per_word = 32u / BITS;
    return i32((zeros[gi / per_word] >> (BITS * (gi % per_word))) & ((1u << BITS) - 1u));
}

// Word `wi` of the rows of four channels, the first at word `b`.
fn words4(b: u32, rw: u32, wi: u32) -> vec4<u32> {
    return vec4<u32>(codes[b + wi], codes[b + rw + wi], codes[b + 2u * rw + wi], codes[b + 3u * rw + wi]);
}

// The weights of code c of a step (0 to 31) for four channels, from their words: wt(q - z) * wt(s).
fn weights(w: vec4<u32>, c: u32, z: vec4<i32>, s: vec4<f32>) -> vec4<wt> {
    let o = c % (32u / BITS); // the code's place in its word
    var q: vec4<i32>;
    if ASYM {
        q = bitcast<vec4<i32>>((w >> vec4<u32>(BITS * o)) & vec4<u32>((1u << BITS) - 1u));
    } else {
        q = bitcast<vec4<i32>>(w << vec4<u32>(32u - BITS * (o + 1u))) >> vec4<u32>(32u - BITS);
    }
    return vec4<wt>(vec4<f32>(q - z)) * vec4<wt>(s);
}

// Four outputs of row `row` from channel `col` on. A thread whose channels run past N has read their
// words and scales out of bounds (WebGPU's robust access bounds such reads) and stores none of them.
fn store(row: u32, col: u32, acc: vec4<f32>) {
    if row >= params.m {
        return;
    }
    let o = row * params.n + col;
    if col < params.n { y[o] = acc.x; }
    if col + 1u < params.n { y[o + 1u] = acc.y; }
    if col + 2u < params.n { y[o + 2u] = acc.z; }
    if col + 3u < params.n { y[o + 3u] = acc.w; }
}

// Lines that name `_ROW` or `ROW_INDEX` are written once per row by the shader assembly, lines that name
// `_CB` or `CB_INDEX` once per block of four channels, and a step's eight quads of codes are written out
// rather than looped over: CPU adapters run shader loops with lane masks, and constant code numbers
// make every shift a constant.
@compute @workgroup_size(64)
fn gemm_vec(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let n0 = (wid.x * 64u + lid.x) * CHANNELS;
    let m0 = wid.y * ROWS;
    let rw = params.row_words;
    let b = n0 * rw;
    let gpr = params.groups_per_row;
    let xr_ROW = min(m0 + ROW_INDEX, params.m - 1u) * (params.k / 4u);
    var acc_ROW_CB = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < params.k; k0 += STEP) {
        var gi = n0 * gpr;
        if GROUP_LEN != 0u {
            gi += k0 / max(GROUP_LEN, 1u); // max: no division by a constant zero
        }
        let g_CB = gi + CB_INDEX * 4u * gpr; // the block's first channel's group
        let s_CB = vec4<f32>(scale_at(g_CB), scale_at(g_CB + gpr), scale_at(g_CB + 2u * gpr), scale_at(g_CB + 3u * gpr));
        let z_CB = vec4<i32>(zero_at(g_CB), zero_at(g_CB + gpr), zero_at(g_CB + 2u * gpr), zero_at(g_CB + 3u * gpr));
        let w0 = k0 * BITS / 32u; // the step's first word
        let xq = k0 / 4u;
        // The block below is written out once per quad of the step by the shader assembly, QUAD
        // becoming 0 to 7 (kernel.rs unroll_quads).
        // QUADS BEGIN
        {
            let w_CB = words4(b + CB_INDEX * 4u * rw, rw, w0 + QUAD * BITS / 8u);
            let v0_CB = weights(w_CB, 4u * QUAD, z_CB, s_CB);
            let v1_CB = weights(w_CB, 4u * QUAD + 1u, z_CB, s_CB);
            let v2_CB = weights(w_CB, 4u * QUAD + 2u, z_CB, s_CB);
            let v3_CB = weights(w_CB, 4u * QUAD + 3u, z_CB, s_CB);
            let x_ROW = x[xr_ROW + xq + QUAD];
            acc_ROW_CB += vec4<f32>(wt(x_ROW.x) * v0_CB);
            acc_ROW_CB += vec4<f32>(wt(x_ROW.y) * v1_CB);
            acc_ROW_CB += vec4<f32>(wt(x_ROW.z) * v2_CB);
            acc_ROW_CB += vec4<f32>(wt(x_ROW.w) * v3_CB);
        }
        // QUADS END
    }
    store(m0 + ROW_INDEX, n0 + CB_INDEX * 4u, acc_ROW_CB);
}
