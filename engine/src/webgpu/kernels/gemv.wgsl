// GEMV (one activation row per workgroup row of the grid: LLM decode).
// A workgroup computes WG_Y outputs; the WG_X threads of each take chunks of K in turn (one packed
// word each, so adjacent threads read adjacent words), decode a chunk with one read of its word,
// scale and zero point, and reduce their partial sums in workgroup memory.

override WG_X: u32 = 128u; // a power of two
override WG_Y: u32 = 2u;   // WG_X * WG_Y <= 256

var<workgroup> partial: array<f32, 256>;

// Sum over one chunk of x[k] * w[n, k].
fn chunk_dot(n: u32, c: u32, xrow: u32) -> f32 {
    let clen = chunk_len();
    let k0 = c * clen;
    let row_base = n * params.row_words;
    let word = codes[row_base + word_of(k0)];
    let kend = min(k0 + clen, params.k);
    var sum: f32 = 0.0;
    if BITS == 16u {
        let pair = unpack2x16float(word);
        sum += f32(wt(x[xrow + k0]) * wt(pair.x));
        if k0 + 1u < kend {
            sum += f32(wt(x[xrow + k0 + 1u]) * wt(pair.y));
        }
        return sum;
    }
    let plane = codes[row_base + plane_word_of(k0)];
    let gi = n * params.groups_per_row + group_of(k0);
    let z = group_zero(gi);
    let s = scale_at(gi);
    for (var k = k0; k < kend; k++) {
        sum += f32(wt(x[xrow + k]) * decode(unpack_code(word, plane, k), z, s));
    }
    return sum;
}

@compute @workgroup_size(WG_X, WG_Y)
fn gemv(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = wid.x * WG_Y + lid.y;
    let m = wid.y;
    var acc: f32 = 0.0;
    if n < params.n {
        let chunks = (params.k + chunk_len() - 1u) / chunk_len();
        for (var c = lid.x; c < chunks; c += WG_X) {
            acc += chunk_dot(n, c, m * params.k);
        }
    }
    let slot = lid.y * WG_X + lid.x;
    partial[slot] = f32(acc);
    workgroupBarrier();
    for (var stride = WG_X / 2u; stride > 0u; stride = stride / 2u) {
        if lid.x < stride {
            partial[slot] += partial[slot + stride];
        }
        workgroupBarrier();
    }
    if lid.x == 0u && n < params.n {
        y[m * params.n + n] = partial[slot];
    }
}
