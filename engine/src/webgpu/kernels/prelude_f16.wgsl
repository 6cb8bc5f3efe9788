// Arithmetic type of the shader-f16 variant: activations, dequantized weights and products in f16;
// sums stay in f32.
enable f16;
alias wt = f16;

// Sum of a * x over four lanes: x rounded to f16, products in f16, their sum in f32.
fn mul_sum(a: vec4<f16>, x: vec4<f32>) -> f32 {
    let p = vec4<f32>(a * vec4<f16>(x));
    return p.x + p.y + p.z + p.w;
}

// Sum of wt(q - z) * wt(s) * x over four lanes: each weight rounded to f16 as the emulation rounds it, so
// the scale is applied per weight and `scaled_sum` leaves the sum as it is.
fn code_sum(qz: vec4<f32>, s: f32, x: vec4<f32>) -> f32 {
    return mul_sum(vec4<f16>(qz) * f16(s), x);
}

fn scaled_sum(sum: f32, s: f32) -> f32 {
    return sum;
}
