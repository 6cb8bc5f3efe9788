// Arithmetic type of the f32 variant: dequantize and multiply in f32.
alias wt = f32;

// Sum of a * x over four lanes, as this arithmetic forms products (kernels with vector loads).
fn mul_sum(a: vec4<f32>, x: vec4<f32>) -> f32 {
    return dot(a, x);
}

// Sum of (q - z) * x over four lanes, and a group's scale applied to a sum of them: f32 factors the
// scale out of the sum (one multiply per group or word instead of one per weight).
fn code_sum(qz: vec4<f32>, s: f32, x: vec4<f32>) -> f32 {
    return dot(qz, x);
}

fn scaled_sum(sum: f32, s: f32) -> f32 {
    return sum * s;
}
