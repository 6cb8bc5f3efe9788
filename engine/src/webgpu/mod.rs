//! WGSL kernels and the wgpu executor.
