// Arithmetic type of the shader-f16 variant: activations, dequantized weights and products in f16;
// sums stay in f32.
enable f16;
alias wt = f16;

// Sum of a * x over four lanes: x rounded to f16, products in f16, their sum in f32.
fn mul_sum(a: vec4<f16>, x: vec4<f32>) -> f32 {
    let p = vec4<f32>(a * vec4<f16>(x));
    return p.x + p.y + p.z + p.w;
}
