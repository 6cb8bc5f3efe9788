// Register-blocked GEMM (many activation rows: prefill, batches). A 16x16 workgroup computes a tile of
// 16 * ROWS activation rows by 64 output channels: each thread ROWS rows by 4 channels (one vec4 per
// row, ROWS in 1, 2, 4, chosen from M by the executor so that short prompts do not compute padding).
// Along K the workgroup steps in tiles of 16: each weight of the tile is dequantized once, by one
// thread, into workgroup memory (as vec4s of four channels), and the activations are staged beside
// them; then every thread reads one vec4 of weights and ROWS activations per k and forms 4 * ROWS
// products. Each product is formed as the CPU emulation forms it (wt(x) * wt(w), w dequantized in wt)
// and summed in f32 in k order, so the result does not depend on the tile.

const TILE: u32 = 16u;     // K per step
const ROWS: u32 = 4u;      // activation rows per thread: written into the source (kernel.rs unroll_rows)
const COLS: u32 = 64u;     // output channels per workgroup: 16 threads x 4

var<workgroup> xs: array<array<wt, 16>, 64>;        // [row in tile][k in step], 16 * ROWS rows used
var<workgroup> ws: array<array<vec4<wt>, 16>, 16>;  // [k in step][channel / 4], channel % 4 in the vector

// Dequantizes weight (n0 + c, k0 + kc) for entry e (0 to 1023) of the step's 64 x 16 weights, or 0 past
// the edges. Consecutive threads take consecutive k of one channel: they share its packed words.
fn stage_weight(e: u32, n0: u32, k0: u32) {
    let c = e / TILE;
    let kc = e % TILE;
    var v = wt(0.0);
    if n0 + c < params.n && k0 + kc < params.k {
        v = dequant(n0 + c, k0 + kc);
    }
    ws[kc][c / 4u][c % 4u] = v;
}

fn stage_x(e: u32, m0: u32, k0: u32) {
    let r = e / TILE;
    let kc = e % TILE;
    var v = wt(0.0);
    if m0 + r < params.m && k0 + kc < params.k {
        v = wt(x[(m0 + r) * params.k + k0 + kc]);
    }
    xs[r][kc] = v;
}

// One k step of a row's four products, formed in wt and summed (by the caller) in f32.
fn products(xv: wt, w: vec4<wt>) -> vec4<f32> {
    return vec4<f32>(xv * w);
}

// Up to four outputs of row `row` from channel `col` on.
fn store(row: u32, col: u32, acc: vec4<f32>) {
    if row >= params.m {
        return;
    }
    for (var c = 0u; c < 4u; c++) {
        if col + c < params.n {
            y[row * params.n + col + c] = f32(acc[c]);
        }
    }
}

// Lines that name `_ROW` or `ROW_INDEX` are written once per row by the shader assembly.
@compute @workgroup_size(16, 16)
fn gemm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tid = lid.y * 16u + lid.x;
    let n0 = wid.x * COLS;
    let m0 = wid.y * 16u * ROWS;
    let r0 = lid.y * ROWS; // this thread's first row in the tile
    var acc_ROW = vec4<f32>(0.0);
    let tiles = (params.k + TILE - 1u) / TILE;
    for (var t = 0u; t < tiles; t++) {
        let k0 = t * TILE;
        stage_weight(tid, n0, k0);
        stage_weight(tid + 256u, n0, k0);
        stage_weight(tid + 512u, n0, k0);
        stage_weight(tid + 768u, n0, k0);
        stage_x(tid + 256u * ROW_INDEX, m0, k0);
        workgroupBarrier();
        // Four k a step, written out: CPU adapters run shader loops with lane masks.
        for (var kk = 0u; kk < TILE; kk += 4u) {
            let w0 = ws[kk][lid.x];
            let w1 = ws[kk + 1u][lid.x];
            let w2 = ws[kk + 2u][lid.x];
            let w3 = ws[kk + 3u][lid.x];
            acc_ROW += products(xs[r0 + ROW_INDEX][kk], w0);
            acc_ROW += products(xs[r0 + ROW_INDEX][kk + 1u], w1);
            acc_ROW += products(xs[r0 + ROW_INDEX][kk + 2u], w2);
            acc_ROW += products(xs[r0 + ROW_INDEX][kk + 3u], w3);
        }
        workgroupBarrier();
    }
    store(m0 + r0 + ROW_INDEX, n0 + 4u * lid.x, acc_ROW);
}
