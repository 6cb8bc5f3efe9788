// The read-bandwidth anchor of the benchmarks: every thread reads vec4s of the buffer at a stride of
// the whole grid (adjacent threads, adjacent 16 bytes) and folds them, so the bytes are read once, as a
// GEMV reads its weights; one word per workgroup is written so the reads cannot be dropped.

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> sink: array<u32>;

@compute @workgroup_size(256)
fn stream(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let threads = groups.x * 256u;
    var fold = vec4<u32>(0u);
    for (var i = gid.x; i < arrayLength(&src); i += threads) {
        fold ^= src[i];
    }
    let v = fold.x ^ fold.y ^ fold.z ^ fold.w;
    if v == 0x9E3779B9u || li == 0u {
        sink[wid.x] = v;
    }
}
