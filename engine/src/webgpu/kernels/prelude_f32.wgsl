// Arithmetic type of the f32 variant: dequantize and multiply in f32.
alias wt = f32;

// Sum of a * x over four lanes, as this arithmetic forms products (kernels with vector loads).
fn mul_sum(a: vec4<f32>, x: vec4<f32>) -> f32 {
    return dot(a, x);
}
