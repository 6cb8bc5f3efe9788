    // The reduction of `gemv-vec-sg` (in gemv_vec.wgsl's REDUCE block): each row's sum over a subgroup
    // in registers (subgroupAdd), one slot a subgroup in workgroup memory, one barrier, then a thread
    // a row adds its row's subgroup sums in subgroup order. The tree above it takes log2(WG_X)
    // barriers, which CPU adapters run as context switches and GPUs as stalls.
    let sum_ROW = subgroupAdd(acc_ROW);
    if sg_lane == 0u {
        partial[ROW_INDEX * WG_X + sg_id] = sum_ROW;
    }
    workgroupBarrier();
    if t < ROWS {
        var total = 0.0;
        for (var s = 0u; s < n_sg; s++) {
            total += partial[t * WG_X + s];
        }
        let n = wid.x * ROWS + t;
        if n < params.n {
            y[m * params.n + n] = total;
        }
    }
