// The transformer ops of the model families: one entry point per op, all on the matmul kernels'
// bind group layout (0: parameters, 1-4: inputs, 5: output). Parameters are 16 words; f32
// parameters travel as their bits. Written for clarity first: one invocation a row (norms), an
// element (activations, rotary) or a (query, head) pair (attention).
//
// Assembled after a prelude that sets the arithmetic type `wt` (prelude_f32.wgsl or
// prelude_f16.wgsl): buffers hold f32; element-wise arithmetic (normalizing, activations,
// rotations, products, exponentials) is in `wt`; reductions (means, variances, dot products, the
// softmax sum and the weighted sum of values) accumulate in f32, as the matmul kernels' sums do.

struct Params {
    w: array<vec4<u32>, 4>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read> d: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

fn pu(i: u32) -> u32 {
    return params.w[i / 4u][i % 4u];
}

fn pf(i: u32) -> f32 {
    return bitcast<f32>(pu(i));
}

// Rows of `dim` values: (x - mean) / sqrt(var + eps) * gamma + beta, the variance biased (1/N).
// a: x, b: gamma, c: beta. Params: rows, dim, eps.
@compute @workgroup_size(64)
fn layer_norm(@builtin(global_invocation_id) id: vec3<u32>) {
    let rows = pu(0u);
    let dim = pu(1u);
    let r = id.x;
    if (r >= rows) {
        return;
    }
    let base = r * dim;
    var mean = 0.0;
    for (var i = 0u; i < dim; i++) {
        mean += a[base + i];
    }
    mean /= f32(dim);
    var v = 0.0;
    for (var i = 0u; i < dim; i++) {
        let e = a[base + i] - mean;
        v += e * e;
    }
    let inv = wt(1.0 / sqrt(v / f32(dim) + pf(2u)));
    let m = wt(mean);
    for (var i = 0u; i < dim; i++) {
        out[base + i] = f32((wt(a[base + i]) - m) * inv * wt(b[i]) + wt(c[i]));
    }
}

// Rows of `dim` values: x / sqrt(mean(x^2) + eps) * gamma. a: x, b: gamma. Params: rows, dim, eps.
@compute @workgroup_size(64)
fn rms_norm(@builtin(global_invocation_id) id: vec3<u32>) {
    let rows = pu(0u);
    let dim = pu(1u);
    let r = id.x;
    if (r >= rows) {
        return;
    }
    let base = r * dim;
    var s = 0.0;
    for (var i = 0u; i < dim; i++) {
        s += a[base + i] * a[base + i];
    }
    let inv = wt(1.0 / sqrt(s / f32(dim) + pf(2u)));
    for (var i = 0u; i < dim; i++) {
        out[base + i] = f32(wt(a[base + i]) * inv * wt(b[i]));
    }
}

// BERT's GELU: x/2 * (1 + erf(x / sqrt 2)), with 1 + erf(z) = erfc(-z) from the Numerical Recipes
// Chebyshev fit of erfc (relative error < 1.2e-7, also in the tail where 1 + erf is small; WGSL
// has no erf). a: x. Params: n.
@compute @workgroup_size(64)
fn gelu(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x + id.y * 65535u * 64u;
    if (i >= pu(0u)) {
        return;
    }
    let x = wt(a[i]);
    let z = abs(x) * wt(0.70710678);
    let t = wt(1.0) / (wt(1.0) + wt(0.5) * z);
    let poly = -z * z - wt(1.26551223) + t * (wt(1.00002368) + t * (wt(0.37409196) + t * (wt(0.09678418)
        + t * (wt(-0.18628806) + t * (wt(0.27886807) + t * (wt(-1.13520398) + t * (wt(1.48851587)
        + t * (wt(-0.82215223) + t * wt(0.17087277)))))))));
    let erfc = t * exp(poly);
    let one_plus_erf = select(erfc, wt(2.0) - erfc, x >= wt(0.0));
    out[i] = f32(wt(0.5) * x * one_plus_erf);
}

// SwiGLU's gate: silu(gate) * up. a: gate, b: up. Params: n.
@compute @workgroup_size(64)
fn swiglu(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x + id.y * 65535u * 64u;
    if (i >= pu(0u)) {
        return;
    }
    let g = wt(a[i]);
    out[i] = f32(g / (wt(1.0) + exp(-g)) * wt(b[i]));
}

// Rotary embeddings, adjacent pairs: (x0, x1) -> (x0 c - x1 s, x0 s + x1 c) with the cosines and
// sines of each (row, pair) computed on the host in f64 (WGSL's sin and cos promise 2^-11 absolute).
// a: x (rows x width), b: cos, sin interleaved per (row, pair within a head). Params: rows, width,
// head_dim.
@compute @workgroup_size(64)
fn rope(@builtin(global_invocation_id) id: vec3<u32>) {
    let rows = pu(0u);
    let width = pu(1u);
    let half_dim = pu(2u) / 2u;
    let pairs = width / 2u;
    let p = id.x + id.y * 65535u * 64u;
    if (p >= rows * pairs) {
        return;
    }
    let r = p / pairs;
    let i = (p % pairs) % half_dim;
    let at = r * width + 2u * (p % pairs);
    let cs = (r * half_dim + i) * 2u;
    let x0 = wt(a[at]);
    let x1 = wt(a[at + 1u]);
    let co = wt(b[cs]);
    let si = wt(b[cs + 1u]);
    out[at] = f32(x0 * co - x1 * si);
    out[at + 1u] = f32(x0 * si + x1 * co);
}

// q.k of query row offset `qo` and key `j` (key/value head `kvh`, rows of `kw`), times `scale`.
fn score(qo: u32, j: u32, kvh: u32, hd: u32, kw: u32, scale: f32) -> f32 {
    var s = 0.0;
    for (var e = 0u; e < hd; e++) {
        s += f32(wt(a[qo + e]) * wt(b[j * kw + kvh * hd + e]));
    }
    return s * scale;
}

// Whether query `i` sees key `j`: causal (keys up to offset + i), or the key mask in `d`.
fn visible(i: u32, j: u32) -> bool {
    return select(d[j] > 0.5, j <= pu(6u) + i, pu(5u) == 1u);
}

// Scaled-dot-product attention, one invocation per (query, head): scores, the row's maximum
// subtracted, softmax, the weighted sum of values. a: q (tq x heads*d), b: k (tk x kv_heads*d),
// c: v (tk x kv_heads*d), d: key mask (1 visible, 0 padded; read when `causal` is 0).
// Params: tq, tk, heads, kv_heads, head_dim, causal, offset, scale.
@compute @workgroup_size(64)
fn attention(@builtin(global_invocation_id) id: vec3<u32>) {
    let tq = pu(0u);
    let tk = pu(1u);
    let heads = pu(2u);
    let kv_heads = pu(3u);
    let hd = pu(4u);
    let scale = pf(7u);
    let job = id.x;
    if (job >= tq * heads) {
        return;
    }
    let i = job / heads;
    let h = job % heads;
    let kvh = h / (heads / kv_heads);
    let kw = kv_heads * hd;
    let qo = i * heads * hd + h * hd;
    var mx = -3.0e38;
    var seen = false;
    for (var j = 0u; j < tk; j++) {
        if (visible(i, j)) {
            mx = max(mx, score(qo, j, kvh, hd, kw, scale));
            seen = true;
        }
    }
    for (var e = 0u; e < hd; e++) {
        out[qo + e] = 0.0;
    }
    if (!seen) {
        return;
    }
    var sum = 0.0;
    for (var j = 0u; j < tk; j++) {
        if (visible(i, j)) {
            let p = exp(wt(score(qo, j, kvh, hd, kw, scale) - mx));
            sum += f32(p);
            for (var e = 0u; e < hd; e++) {
                out[qo + e] += f32(p * wt(c[j * kw + kvh * hd + e]));
            }
        }
    }
    for (var e = 0u; e < hd; e++) {
        out[qo + e] /= sum;
    }
}
