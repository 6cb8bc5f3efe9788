// Tiled GEMM (many activation rows: prefill, batches). A 16x16 workgroup computes a 16x16 tile of
// outputs, stepping along K in tiles of 16: activations and dequantized weights are staged in
// workgroup memory once per tile and read 16 times each.

const TILE: u32 = 16u;

var<workgroup> xs: array<array<wt, 16>, 16>;
var<workgroup> ws: array<array<wt, 16>, 16>;

@compute @workgroup_size(16, 16)
fn gemm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let col = wid.x * TILE + lid.x; // output channel n
    let row = wid.y * TILE + lid.y; // activation row m
    let wn = wid.x * TILE + lid.y;  // weight row this thread stages
    var acc: f32 = 0.0;
    let tiles = (params.k + TILE - 1u) / TILE;
    for (var t = 0u; t < tiles; t++) {
        let k = t * TILE + lid.x;
        var xv = wt(0.0);
        if row < params.m && k < params.k {
            xv = wt(x[row * params.k + k]);
        }
        xs[lid.y][lid.x] = xv;
        var wv = wt(0.0);
        if wn < params.n && k < params.k {
            wv = dequant(wn, k);
        }
        ws[lid.y][lid.x] = wv;
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            acc += f32(xs[lid.y][kk] * ws[lid.x][kk]);
        }
        workgroupBarrier();
    }
    if row < params.m && col < params.n {
        y[row * params.n + col] = f32(acc);
    }
}
