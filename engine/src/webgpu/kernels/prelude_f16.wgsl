// Arithmetic type of the shader-f16 variant: activations, dequantized weights and products in f16;
// sums stay in f32.
enable f16;
alias wt = f16;
