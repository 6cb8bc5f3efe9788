//! Model files: the readers of the formats the trained models ship in (`../shared/MODELS.md`).
//!
//! - [`gguf`]: GGUF v2/v3 (header, metadata, tensor infos, alignment) with F32, F16, Q4_0, Q4_1 and
//!   Q8_0 tensors dequantized to f32 (SmolLM2).
//! - [`safetensors`]: safetensors files of F32, F16 and BF16 tensors (all-MiniLM-L6-v2).
//! - [`onnx`]: ONNX files' initializers and nodes, weights found by their node (ViT-S/14).
//! - [`ct2`]: CTranslate2 `model.bin` files, binary version 6 (Whisper tiny.en).
//! - [`ops`]: the CPU reference of the transformer ops (norms, softmax, GELU, SiLU, rotary, pooling);
//!   [`cpu_ops`]: the CPU path's own f32 GELU and attention, where the reference's f64 is slow.
//! - [`attention`]: scaled-dot-product attention (padding and causal masks, grouped-query heads)
//!   and the KV cache.
//! - [`linear`]: weights stored per layer kind in a precision; [`exec`]: the ops' backend trait and
//!   the CPU path; [`gpu`]: the `webgpu` backend (every op in WGSL).
//! - [`bert`] (text), [`vit`] (vision), [`whisper`] and [`whisper_decoder`] (audio: the encoder,
//!   the decoder and greedy transcription) and [`llama`] (llm): the forward passes; [`accuracy`]: the measures that judge a quantized model against the fp16
//!   one; [`run`]: a model cell end to end (with the decoder for an audio cell that transcribes);
//!   [`bench`]: its benchmark protocol (load broken down, first and warm inferences, memory);
//!   [`loading`]: progressive loading, stage by stage; [`trace`]: `webq run --trace`'s op,
//!   error, memory and shader logs.
//! - [`op_cases`]: per-op cells with WPT-style tolerances; `faults` (tests and `webq faults`):
//!   planted bugs in those ops.
//!
//! Readers work on bytes, natively and on wasm32; every error names the file and what is wrong
//! where (offset, tensor, key), and a truncated or corrupt file is an error, never a panic.

pub mod accuracy;
pub mod attention;
pub mod bench;
pub mod bert;
pub mod cpu_ops;
pub mod ct2;
pub mod exec;
#[cfg(any(test, feature = "planted-faults"))]
pub mod faults;
pub mod gguf;
pub mod gpu;
pub mod linear;
pub mod llama;
pub mod loading;
pub mod onnx;
pub mod op_cases;
pub mod ops;
pub mod run;
pub mod safetensors;
pub mod trace;
pub mod vit;
pub mod whisper;
pub mod whisper_decoder;

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum ModelError {
    #[error("{file}: truncated: {what} needs {need} bytes at offset {offset}, the file has {len}")]
    Truncated { file: String, what: String, offset: u64, need: u64, len: u64 },
    #[error("{file}: not a {format} file: {why}")]
    Format { file: String, format: &'static str, why: String },
    #[error("{file}: tensor `{tensor}`: {why}")]
    Tensor { file: String, tensor: String, why: String },
    #[error("{file}: no tensor `{tensor}`")]
    NoTensor { file: String, tensor: String },
    #[error("{file}: metadata `{key}`: {why}")]
    Metadata { file: String, key: String, why: String },
    #[error("model input: {why}")]
    Input { why: String },
    #[error("{op} on {backend}: {why}")]
    Backend { backend: String, op: String, why: String },
}
