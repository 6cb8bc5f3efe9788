// GEMV (one activation row per workgroup row of the grid: LLM decode).
// A workgroup computes WG_Y outputs; the WG_X threads of each split K (adjacent threads read adjacent
// codes, so loads coalesce) and reduce their partial sums in workgroup memory.

override WG_X: u32 = 128u; // a power of two
override WG_Y: u32 = 2u;   // WG_X * WG_Y <= 256

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(WG_X, WG_Y)
fn gemv(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = wid.x * WG_Y + lid.y;
    let m = wid.y;
    var acc: f32 = 0.0;
    if n < params.n {
        let xrow = m * params.k;
        for (var k = lid.x; k < params.k; k += WG_X) {
            acc += f32(wt(x[xrow + k]) * dequant(n, k));
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
