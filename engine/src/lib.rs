//! webq-engine: everything that computes, natively and on wasm32.
//!
//! - [`quant`]: the formats (2/3/4/8-bit integers and fp16), their packed layouts, quantizers and
//!   mixed-precision policies.
//! - [`seeded`]: inputs and weights generated from a seed, bit-identical on every platform.
//! - [`reference`]: the CPU oracles: the fp16 reference and the exact emulation of every quantized kernel.
//! - [`webgpu`]: the WGSL kernels and the wgpu executor that runs them.
//! - [`models`]: readers of the trained models' files (GGUF, safetensors).
//! - [`platform`]: policy when the device says no (out-of-memory fallback to narrower formats).
//! - [`protocol`]: what the harness asks a page to run and what the page answers (both sides' types).

pub mod cpu;
pub mod models;
pub mod platform;
pub mod protocol;
pub mod quant;
pub mod reference;
pub mod seeded;
pub mod webgpu;

#[cfg(target_arch = "wasm32")]
pub mod web;
