// Arithmetic type of the f32 variant: dequantize and multiply in f32.
alias wt = f32;
