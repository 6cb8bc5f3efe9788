//! A model cell, run end to end: the same code natively (the references, the native runtime) and
//! in the page (the `wasm` backend), from the bytes of the weights file and the cell's token ids.
//!
//! Outputs: text, the sentence embeddings one after another (`sentences x hidden`); llm, the
//! logits of every position (`tokens x vocab`), the first `prefill` tokens run as one forward
//! and the rest decoded one at a time through the KV cache, as a generating application would.

use super::bert::{Bert, BertConfig};
use super::ct2::Ct2;
use super::exec::Backend;
use super::gguf::Gguf;
use super::linear::{ModelPrecision, ModelStorage};
use super::llama::Llama;
use super::onnx::Onnx;
use super::safetensors::Safetensors;
use super::vit::Vit;
use super::whisper::WhisperEncoder;
use super::ModelError;
use crate::platform::selection::Family;
use crate::protocol::ModelSpec;
use web_time::Instant;

/// What a model cell produced, and what its weights cost.
#[derive(Clone, Debug)]
pub struct ModelRun {
    pub y: Vec<f32>,
    /// Outputs per row (hidden size, or vocabulary).
    pub width: usize,
    /// Whether every layer ran (budgets apply only then).
    pub full_depth: bool,
    pub storage: ModelStorage,
    /// Microseconds spent reading and quantizing the weights, and running the model.
    pub load_us: f64,
    pub run_us: f64,
    /// The run's throughput in words: sentences per second, or prefill and decode tokens per second.
    pub speed: String,
}

/// Runs `spec` on `bytes` (its weights file) with weights stored in `precision`.
pub async fn run_model<B: Backend>(
    spec: &ModelSpec,
    bytes: &[u8],
    precision: &ModelPrecision,
    exec: &mut B,
) -> Result<ModelRun, ModelError> {
    let start = Instant::now();
    let us = |t: Instant| t.elapsed().as_secs_f64() * 1e6;
    match spec.family {
        Family::Text => {
            let st = Safetensors::parse(&spec.file, bytes)?;
            let config = spec
                .config
                .as_deref()
                .ok_or_else(|| ModelError::Input { why: "a text model cell needs the model's config.json".into() })?;
            let config = BertConfig::parse(&format!("{} (config.json)", spec.file), config)?;
            let model = Bert::load(&spec.file, &st, config, precision, spec.depth)?;
            model.preload(exec).await?;
            let (load_us, ran) = (us(start), Instant::now());
            let y = model.embed(exec, &spec.ids, &spec.mask).await?.concat();
            let (full_depth, run_us, n) = (model.depth() == model.config.num_hidden_layers, us(ran), spec.ids.len());
            let speed =
                format!("{n} sentences in {:.1} ms: {:.1} sentences/s", run_us / 1e3, n as f64 / (run_us / 1e6));
            Ok(ModelRun {
                y,
                width: model.config.hidden_size,
                full_depth,
                storage: model.storage(),
                load_us,
                run_us,
                speed,
            })
        }
        Family::Llm => {
            let g = Gguf::parse(&spec.file, bytes)?;
            let model = Llama::load(&spec.file, &g, precision, spec.depth)?;
            let [ids] = &spec.ids[..] else {
                return Err(ModelError::Input {
                    why: format!("an llm cell runs one sequence, {} given", spec.ids.len()),
                });
            };
            if spec.prefill == 0 || spec.prefill > ids.len() {
                return Err(ModelError::Input { why: format!("prefill {} of {} tokens", spec.prefill, ids.len()) });
            }
            model.preload(exec).await?;
            let (load_us, ran) = (us(start), Instant::now());
            let mut cache = model.new_cache();
            let mut y = model.forward(exec, &ids[..spec.prefill], &mut cache).await?;
            let (prefill_us, decoding) = (us(ran), Instant::now());
            for &id in &ids[spec.prefill..] {
                y.extend(model.forward(exec, &[id], &mut cache).await?);
            }
            let (decode_us, decoded, p) = (us(decoding), ids.len() - spec.prefill, spec.prefill);
            let mut speed = format!(
                "prefill {p} tokens in {:.1} ms: {:.1} tokens/s",
                prefill_us / 1e3,
                p as f64 / (prefill_us / 1e6)
            );
            if decoded > 0 {
                let rate = decoded as f64 / (decode_us / 1e6);
                speed += &format!("; decode {decoded} tokens in {:.1} ms: {rate:.1} tokens/s", decode_us / 1e3);
            }
            let full_depth = model.depth() == model.config.blocks;
            let run_us = us(ran);
            Ok(ModelRun { y, width: model.config.vocab, full_depth, storage: model.storage(), load_us, run_us, speed })
        }
        Family::Vision => {
            let g = Onnx::parse(&spec.file, bytes)?;
            let model = Vit::load(&spec.file, &g, precision, spec.depth)?;
            drop(g);
            let pixels = spec.features().map_err(|why| ModelError::Input { why })?;
            model.preload(exec).await?;
            let (load_us, ran) = (us(start), Instant::now());
            let y = model.hidden_states(exec, &pixels).await?;
            let (run_us, n) = (us(ran), pixels.len() / model.config.pixels());
            let speed = format!("{n} images in {:.1} ms: {:.2} images/s", run_us / 1e3, n as f64 / (run_us / 1e6));
            Ok(ModelRun {
                y,
                width: model.config.dim,
                full_depth: model.depth() == model.config.layers,
                storage: model.storage(),
                load_us,
                run_us,
                speed,
            })
        }
        Family::Audio => {
            let m = Ct2::parse(&spec.file, bytes)?;
            let model = WhisperEncoder::load(&spec.file, &m, precision, spec.depth)?;
            let mels = spec.features().map_err(|why| ModelError::Input { why })?;
            model.preload(exec).await?;
            let (load_us, ran) = (us(start), Instant::now());
            let y = model.encode(exec, &mels, spec.frames).await?;
            let run_us = us(ran);
            // 100 frames a second of audio.
            let seconds = mels.len() as f64 / model.config.mels as f64 / 100.0;
            let speed = format!(
                "{seconds:.2} s of audio in {:.1} ms: {:.2} s of audio per second",
                run_us / 1e3,
                seconds / (run_us / 1e6)
            );
            Ok(ModelRun {
                y,
                width: model.config.dim,
                full_depth: model.depth() == model.config.layers,
                storage: model.storage(),
                load_us,
                run_us,
                speed,
            })
        }
    }
}
