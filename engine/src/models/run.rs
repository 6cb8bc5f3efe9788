//! A model cell, run end to end: the same code natively (the references, the native runtime) and
//! in the page (the `wasm` backend), from the bytes of the weights file and the cell's token ids.
//!
//! Outputs: text, the sentence embeddings one after another (`sentences x hidden`); llm, the
//! logits of every position (`tokens x vocab`), the first `prefill` tokens run as one forward
//! and the rest decoded one at a time through the KV cache, as a generating application would.

use super::bench::{ModelBench, Spread};
use super::bert::{Bert, BertConfig};
use super::ct2::Ct2;
use super::exec::Backend;
use super::gguf::Gguf;
use super::linear::{ModelPrecision, ModelStorage};
use super::llama::Llama;
use super::loading::Loading;
use super::onnx::Onnx;
use super::safetensors::Safetensors;
use super::trace::{Trace, Traced};
use super::vit::Vit;
use super::whisper::WhisperEncoder;
use super::whisper_decoder::{Suppress, WhisperDecoder, MAX_TOKENS, VOCAB};
use super::ModelError;
use crate::platform::selection::Family;
use crate::protocol::ModelSpec;
use web_time::Instant;

/// What a model cell produced, what its weights cost, and its benchmark.
#[derive(Clone, Debug)]
pub struct ModelRun {
    /// The first inference's output.
    pub y: Vec<f32>,
    /// Outputs per row (hidden size, or vocabulary).
    pub width: usize,
    /// Whether every layer ran (budgets apply only then).
    pub full_depth: bool,
    pub storage: ModelStorage,
    /// Microseconds spent reading, quantizing and uploading the weights, and running the model
    /// the first time.
    pub load_us: f64,
    pub run_us: f64,
    /// The first run's throughput in words: sentences per second, or prefill and decode tokens per second.
    pub speed: String,
    pub bench: ModelBench,
    /// audio with the decoder: each utterance's greedy transcript (token ids, the end of text not included).
    pub transcripts: Vec<Vec<u32>>,
}

/// A model read and stored in its precision, with the inputs of its cell.
enum Loaded {
    Text(Bert),
    Llm(Llama),
    Vision(Vit, Vec<f32>),
    /// With the decoder when the cell asks for transcripts (boxed: the decoder is large).
    Audio(WhisperEncoder, Vec<f32>, Option<Box<(WhisperDecoder, Suppress)>>),
}

/// One inference: its output, and for llm the prefill's and the decode's microseconds and the
/// KV cache's bytes at the end.
struct Inference {
    y: Vec<f32>,
    llm: Option<(f64, f64, usize)>,
    transcripts: Vec<Vec<u32>>,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

impl Loaded {
    /// Parses the container (timed apart: `parse_ms`) and stores every tensor in `precision`,
    /// stage by stage through `loading`.
    async fn read<B: Backend>(
        spec: &ModelSpec,
        bytes: &[u8],
        precision: &ModelPrecision,
        loading: &mut Loading<'_, B>,
    ) -> Result<(Loaded, f64), ModelError> {
        let start = Instant::now();
        let input = |why: String| ModelError::Input { why };
        Ok(match spec.family {
            Family::Text => {
                let st = Safetensors::parse(&spec.file, bytes)?;
                let parse_ms = ms(start);
                let config = spec
                    .config
                    .as_deref()
                    .ok_or_else(|| input("a text model cell needs the model's config.json".into()))?;
                let config = BertConfig::parse(&format!("{} (config.json)", spec.file), config)?;
                (
                    Loaded::Text(Bert::load_staged(&spec.file, &st, config, precision, spec.depth, loading).await?),
                    parse_ms,
                )
            }
            Family::Llm => {
                let g = Gguf::parse(&spec.file, bytes)?;
                let parse_ms = ms(start);
                let [ids] = &spec.ids[..] else {
                    return Err(input(format!("an llm cell runs one sequence, {} given", spec.ids.len())));
                };
                if spec.prefill == 0 || spec.prefill > ids.len() {
                    return Err(input(format!("prefill {} of {} tokens", spec.prefill, ids.len())));
                }
                (Loaded::Llm(Llama::load_staged(&spec.file, &g, precision, spec.depth, loading).await?), parse_ms)
            }
            Family::Vision => {
                let g = Onnx::parse(&spec.file, bytes)?;
                let parse_ms = ms(start);
                let model = Vit::load_staged(&spec.file, &g, precision, spec.depth, loading).await?;
                (Loaded::Vision(model, spec.features().map_err(input)?), parse_ms)
            }
            Family::Audio => {
                let m = Ct2::parse(&spec.file, bytes)?;
                let parse_ms = ms(start);
                if !spec.ids.is_empty() {
                    // The decoder's stages are announced first, so the fraction never goes back.
                    loading.expect("whisper decoder", WhisperDecoder::stages(None));
                }
                let model = WhisperEncoder::load_staged(&spec.file, &m, precision, spec.depth, loading).await?;
                let mels = spec.features().map_err(input)?;
                // Token ids ask for the decoder: each utterance's transcript to score, and its own
                // greedy transcript (the suppressed tokens come from the model's config.json).
                let decoder = if spec.ids.is_empty() {
                    None
                } else {
                    let utterances = mels.len() / (model.config.mels * spec.frames).max(1);
                    if utterances != spec.ids.len() {
                        return Err(input(format!("{} transcripts for {utterances} utterances", spec.ids.len())));
                    }
                    let config = spec
                        .config
                        .as_deref()
                        .ok_or_else(|| input("an audio cell with transcripts needs the model's config.json".into()))?;
                    let suppress = Suppress::from_config(&format!("{} (config.json)", spec.file), config)?;
                    let decoder = WhisperDecoder::load_staged(&spec.file, &m, precision, None, loading).await?;
                    Some(Box::new((decoder, suppress)))
                };
                (Loaded::Audio(model, mels, decoder), parse_ms)
            }
        })
    }

    async fn preload<B: Backend>(&self, exec: &mut B) -> Result<(), ModelError> {
        match self {
            Loaded::Text(m) => m.preload(exec).await,
            Loaded::Llm(m) => m.preload(exec).await,
            Loaded::Vision(m, _) => m.preload(exec).await,
            Loaded::Audio(m, _, d) => {
                m.preload(exec).await?;
                match d {
                    Some(d) => d.0.preload(exec).await,
                    None => Ok(()),
                }
            }
        }
    }

    /// One inference over the cell's inputs; llm: the first `prefill` ids as one forward, the
    /// rest decoded one at a time through a fresh KV cache.
    async fn infer<B: Backend>(&self, exec: &mut B, spec: &ModelSpec) -> Result<Inference, ModelError> {
        let y = match self {
            Loaded::Text(m) => m.embed(exec, &spec.ids, &spec.mask).await?.concat(),
            Loaded::Vision(m, pixels) => m.hidden_states(exec, pixels).await?,
            Loaded::Audio(m, mels, None) => m.encode(exec, mels, spec.frames).await?,
            Loaded::Audio(m, mels, Some(decoder)) => {
                let (d, suppress) = &**decoder;
                let enc = m.encode(exec, mels, spec.frames).await?;
                let per = enc.len() / spec.ids.len();
                let (mut y, mut transcripts) = (Vec::new(), Vec::new());
                for (u, ids) in enc.chunks_exact(per).zip(&spec.ids) {
                    let cross = d.cross_kv(exec, u).await?;
                    y.extend(d.score(exec, &cross, ids).await?);
                    let most = if spec.max_tokens == 0 { MAX_TOKENS } else { spec.max_tokens.min(MAX_TOKENS) };
                    transcripts.push(d.greedy(exec, &cross, suppress, most).await?);
                }
                return Ok(Inference { y, llm: None, transcripts });
            }
            Loaded::Llm(m) => {
                let ids = &spec.ids[0];
                let mut cache = m.new_cache();
                let start = Instant::now();
                let mut y = m.forward(exec, &ids[..spec.prefill], &mut cache).await?;
                let (prefill_us, decoding) = (ms(start) * 1e3, Instant::now());
                for &id in &ids[spec.prefill..] {
                    y.extend(m.forward(exec, &[id], &mut cache).await?);
                }
                let llm = Some((prefill_us, ms(decoding) * 1e3, cache.bytes()));
                return Ok(Inference { y, llm, transcripts: Vec::new() });
            }
        };
        Ok(Inference { y, llm: None, transcripts: Vec::new() })
    }

    fn width(&self) -> usize {
        match self {
            Loaded::Text(m) => m.config.hidden_size,
            Loaded::Llm(m) => m.config.vocab,
            Loaded::Vision(m, _) => m.config.dim,
            Loaded::Audio(_, _, Some(_)) => VOCAB,
            Loaded::Audio(m, _, None) => m.config.dim,
        }
    }

    fn full_depth(&self) -> bool {
        match self {
            Loaded::Text(m) => m.depth() == m.config.num_hidden_layers,
            Loaded::Llm(m) => m.depth() == m.config.blocks,
            Loaded::Vision(m, _) => m.depth() == m.config.layers,
            Loaded::Audio(m, _, _) => m.depth() == m.config.layers,
        }
    }

    fn storage(&self) -> ModelStorage {
        match self {
            Loaded::Text(m) => m.storage(),
            Loaded::Llm(m) => m.storage(),
            Loaded::Vision(m, _) => m.storage(),
            Loaded::Audio(m, _, None) => m.storage(),
            Loaded::Audio(m, _, Some(d)) => {
                let (e, d) = (m.storage(), d.0.storage());
                ModelStorage::new(&e.precision, e.tensors.into_iter().chain(d.tensors).collect())
            }
        }
    }

    /// What one inference processes, in the family's unit: sentences, images, seconds of audio
    /// (100 log-mel frames a second), or prefill tokens (decode tokens apart).
    fn work(&self, spec: &ModelSpec) -> (f64, &'static str) {
        match self {
            Loaded::Text(_) => (spec.ids.len() as f64, "sentences/s"),
            Loaded::Vision(m, pixels) => ((pixels.len() / m.config.pixels()) as f64, "images/s"),
            Loaded::Audio(m, mels, _) => (mels.len() as f64 / m.config.mels as f64 / 100.0, "s of audio/s"),
            Loaded::Llm(_) => (spec.prefill as f64, "prefill tokens/s"),
        }
    }
}

/// [`run_model`], traced when `spec.trace` asks (every op through [`Traced`], the shaders the run
/// compiled from the backend): the trace comes back whether the run succeeded or not.
pub async fn run_model_traced<B: Backend>(
    spec: &ModelSpec,
    bytes: &[u8],
    precision: &ModelPrecision,
    exec: &mut B,
) -> (Result<ModelRun, ModelError>, Option<Trace>) {
    if !spec.trace {
        return (run_model(spec, bytes, precision, exec).await, None);
    }
    let from = exec.footprint().compiled.map_or(0, |c| c.0);
    let mut traced = Traced::new(&mut *exec);
    let run = run_model(spec, bytes, precision, &mut traced).await;
    let mut trace = traced.trace;
    trace.shaders = exec.shaders_since(from);
    (run, Some(trace))
}

/// Runs `spec` on `bytes` (its weights file) with weights stored in `precision`: load, the first
/// inference, then the warm inferences `spec.bench` asks for.
pub async fn run_model<B: Backend>(
    spec: &ModelSpec,
    bytes: &[u8],
    precision: &ModelPrecision,
    exec: &mut B,
) -> Result<ModelRun, ModelError> {
    let start = Instant::now();
    let mut loading = Loading::new(spec.progressive.then_some(&mut *exec));
    let (model, parse_ms) = Loaded::read(spec, bytes, precision, &mut loading).await?;
    let (mut upload_ms, first_layer_ms, progress) = loading.finish();
    // What a progressive load did not upload as it went (nothing), or a one-shot load's upload.
    let uploading = Instant::now();
    model.preload(exec).await?;
    upload_ms += ms(uploading);
    let quantize_ms = ms(start) - parse_ms - upload_ms;
    let before = exec.footprint().compiled;
    let first_at = Instant::now();
    let first = model.infer(exec, spec).await?;
    let first_ms = ms(first_at);
    let compiled = match (before, exec.footprint().compiled) {
        (Some((n0, ms0)), Some((n1, ms1))) => Some((n1 - n0, ms1 - ms0)),
        _ => None,
    };
    let (mut warm, mut prefill, mut decode, mut repeatable) = (Vec::new(), Vec::new(), Vec::new(), true);
    while spec.bench.more(warm.len(), warm.iter().sum()) {
        let t = Instant::now();
        let run = model.infer(exec, spec).await?;
        warm.push(ms(t));
        repeatable &= bits_equal(&run.y, &first.y) && run.transcripts == first.transcripts;
        if let Some((p, d, _)) = run.llm {
            prefill.push(p / 1e3);
            decode.push(d / 1e3);
        }
    }
    let (work, unit) = model.work(spec);
    let warm = Spread::of(&warm);
    let (warm_prefill, warm_decode) = (Spread::of(&prefill), Spread::of(&decode));
    let decoded = spec.ids.first().map_or(0, |ids| ids.len().saturating_sub(spec.prefill)) as f64;
    let (rate, decode_rate, speed) = match first.llm {
        Some((p_us, d_us, _)) => {
            let p_ms = warm_prefill.map_or(p_us / 1e3, |s| s.median_ms);
            let d_ms = warm_decode.map_or(d_us / 1e3, |s| s.median_ms);
            let mut speed =
                format!("prefill {} tokens in {:.1} ms: {:.1} tokens/s", count(work), p_us / 1e3, work / (p_us / 1e6));
            if decoded > 0.0 {
                let rate = decoded / (d_us / 1e6);
                speed += &format!("; decode {decoded} tokens in {:.1} ms: {rate:.1} tokens/s", d_us / 1e3);
            }
            (work / (p_ms / 1e3), (decoded > 0.0).then(|| decoded / (d_ms / 1e3)), speed)
        }
        None => {
            let at = warm.map_or(first_ms, |s| s.median_ms);
            let items = unit.split_once('/').map_or(unit, |(items, _)| items);
            let speed = format!("{} {items} in {first_ms:.1} ms: {:.2} {unit}", count(work), work / (first_ms / 1e3));
            (work / (at / 1e3), None, speed)
        }
    };
    let storage = model.storage();
    let footprint = exec.footprint();
    let bench = ModelBench {
        parse_ms,
        quantize_ms,
        upload_ms,
        first_ms,
        compiled,
        warm,
        warm_prefill,
        warm_decode,
        rate,
        unit: unit.into(),
        decode_rate,
        repeatable,
        weight_bytes: storage.bytes as u64,
        device_weight_bytes: footprint.device_weight_bytes,
        activation_peak_bytes: footprint.activation_peak_bytes,
        kv_cache_bytes: first.llm.map(|(_, _, b)| b as u64),
        progressive: spec.progressive,
        first_layer_ms,
        progress,
        weights_digest: Some(storage.digest.clone()),
        ..ModelBench::default()
    };
    Ok(ModelRun {
        y: first.y,
        width: model.width(),
        full_depth: model.full_depth(),
        storage,
        load_us: (parse_ms + quantize_ms + upload_ms) * 1e3,
        run_us: first_ms * 1e3,
        speed,
        bench,
        transcripts: first.transcripts,
    })
}

/// `8` for 8 sentences, `2.35` for seconds of audio.
fn count(work: f64) -> String {
    if work.fract() == 0.0 {
        format!("{work}")
    } else {
        format!("{work:.2}")
    }
}

/// Whether two outputs are the same bits (NaNs included).
fn bits_equal(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}
