//! Model cells: the weights file and inputs of each (tokenized here, natively: the page never
//! tokenizes) and the two references every runtime's output is judged against, computed natively
//! once per model, precision and inputs and shared by every runtime:
//! - `exact`: the same quantized model through [`EmulateExec`] (the kernel verdict's yardstick);
//! - `fp16`: the fp16 model through the same (the accuracy verdict's).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use webq_engine::models::ct2::Ct2;
use webq_engine::models::exec::EmulateExec;
use webq_engine::models::gguf::Gguf;
use webq_engine::models::linear::ModelPrecision;
use webq_engine::models::run::{run_model, ModelRun};
use webq_engine::models::whisper::WhisperEncoder;
#[cfg(test)]
use webq_engine::models::whisper_decoder::VOCAB;
use webq_engine::models::whisper_decoder::{Suppress, WhisperDecoder, PROMPT};
use webq_engine::platform::selection::Family;
use webq_engine::protocol::{ModelSpec, Precision};

use crate::cell::{Cell, ModelCell};
use crate::eval::{data_dir, data_lines};
use crate::models::{cache_dir, ModelPackage, PACKAGES};
use crate::tokenize::{LlmTokenizer, TextTokenizer};

/// The package of a family's model.
pub fn package(family: Family) -> Result<&'static ModelPackage, String> {
    PACKAGES
        .iter()
        .find(|p| p.family == family.name())
        .ok_or_else(|| format!("no trained model of the {family:?} family"))
}

/// The photographs a vision cell runs, in order: the files of the `photos` package.
fn photos() -> &'static [&'static str] {
    package_named("photos").map_or(&[], |p| p.files)
}

/// The package of family name `family` (a model's, or the `photos` inputs').
pub fn package_named(family: &str) -> Result<&'static ModelPackage, String> {
    PACKAGES.iter().find(|p| p.family == family).ok_or_else(|| format!("no package of `{family}`"))
}

/// The page server's path of a model file: `/models/PACKAGE-VERSION/FILE`.
pub fn route(p: &ModelPackage, file: &str) -> String {
    format!("/models/{}-{}/{file}", p.package, p.version)
}

/// The weights file (first of the package's files) and, for BERT and Whisper, its config.json.
struct Files {
    weights: PathBuf,
    weights_name: &'static str,
    config: Option<String>,
}

fn files(family: Family) -> Result<Files, String> {
    let p = package(family)?;
    let cache = cache_dir();
    let weights = p.path(&cache, p.files[0]).map_err(|e| e.to_string())?;
    let config = match family {
        Family::Text | Family::Audio => {
            let at = if family == Family::Text { 1 } else { 2 };
            let path = p.path(&cache, p.files[at]).map_err(|e| e.to_string())?;
            Some(std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        _ => None,
    };
    Ok(Files { weights, weights_name: p.files[0], config })
}

/// The bytes of a weights file, read once per process.
fn bytes(path: &PathBuf) -> Result<Arc<Vec<u8>>, String> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<Vec<u8>>>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().expect("bytes cache");
    if let Some(b) = cache.get(path) {
        return Ok(b.clone());
    }
    let b = Arc::new(std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?);
    cache.insert(path.clone(), b.clone());
    Ok(b)
}

/// A model cell's inputs: rows of token ids and (text) their attention masks, or (vision) the
/// prepared images.
#[derive(Clone, Default)]
struct Ids {
    ids: Vec<Vec<u32>>,
    mask: Vec<Vec<u32>>,
    features: Vec<f32>,
    /// audio: log-mel frames per utterance.
    frames: usize,
}

/// Token ids of a model cell's inputs, tokenized once per process (the references and every
/// runtime's cell ask for the same ones).
fn inputs(m: &ModelCell, files: &Files) -> Result<Arc<Ids>, String> {
    static CACHE: OnceLock<Mutex<HashMap<ModelCell, Arc<Ids>>>> = OnceLock::new();
    if let Some(ids) = CACHE.get_or_init(Default::default).lock().expect("inputs cache").get(m) {
        return Ok(ids.clone());
    }
    let ids = Arc::new(tokenize(m, files)?);
    CACHE.get_or_init(Default::default).lock().expect("inputs cache").insert(m.clone(), ids.clone());
    Ok(ids)
}

/// How many items a model cell runs: sentences (text) or tokens (llm); the unit of its throughput.
pub fn items(m: &ModelCell) -> (usize, &'static str) {
    match m.family {
        Family::Llm => (m.tokens, "tokens"),
        Family::Vision => (m.inputs.map_or(photos().len(), |n| n.min(photos().len())), "images"),
        Family::Audio => {
            static ALL: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
            let all = *ALL.get_or_init(|| data_lines(&data_dir().join("speech.txt")).map_or(0, |l| l.len()));
            (m.inputs.map_or(all, |n| n.min(all)), "utterances")
        }
        _ => {
            static ALL: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
            let all = *ALL.get_or_init(|| data_lines(&data_dir().join("sentences.txt")).map_or(0, |l| l.len()));
            (m.sentences.map_or(all, |n| n.min(all)), "sentences")
        }
    }
}

fn tokenize(m: &ModelCell, files: &Files) -> Result<Ids, String> {
    match m.family {
        Family::Text => {
            let p = package(Family::Text)?;
            let tok = p.path(&cache_dir(), p.files[2]).map_err(|e| e.to_string())?;
            let mut sentences = data_lines(&data_dir().join("sentences.txt"))?;
            sentences.truncate(m.sentences.unwrap_or(usize::MAX));
            let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
            let b = TextTokenizer::load(&tok).map_err(|e| e.to_string())?.batch(&refs).map_err(|e| e.to_string())?;
            Ok(Ids { ids: b.ids, mask: b.mask, ..Default::default() })
        }
        Family::Llm => {
            let bytes = bytes(&files.weights)?;
            let name = files.weights.display().to_string();
            let g = Gguf::parse(&name, &bytes).map_err(|e| e.to_string())?;
            let tok = LlmTokenizer::from_gguf(&name, &g).map_err(|e| e.to_string())?;
            let passage = data_lines(&data_dir().join("passage.txt"))?.join("\n");
            let mut ids = tok.encode(&passage).map_err(|e| e.to_string())?;
            if ids.len() < m.tokens {
                return Err(format!("the passage has {} tokens, the cell asks for {}", ids.len(), m.tokens));
            }
            ids.truncate(m.tokens);
            Ok(Ids { ids: vec![ids], ..Default::default() })
        }
        Family::Vision => {
            let (n, _) = items(m);
            let (photos, cache) = (package_named("photos")?, cache_dir());
            let mut features = Vec::new();
            for file in &photos.files[..n] {
                let path = photos.path(&cache, file).map_err(|e| e.to_string())?;
                let img = crate::photos::read(&path).map_err(|e| e.to_string())?;
                features.extend(crate::photos::prepare(&img, webq_engine::models::vit::VIT_S14.image));
            }
            Ok(Ids { features, ..Default::default() })
        }
        Family::Audio => {
            let (n, _) = items(m);
            let sentences = data_lines(&data_dir().join("speech.txt"))?;
            let audio = sentences[..n]
                .iter()
                .map(|s| crate::speech::speak(s).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            // The frames the longest utterance needs, for all (a shorter one ends in silence, as
            // in Whisper's 30 s window).
            let needed = audio.iter().map(|a| crate::speech::frames_for(a.len())).max().unwrap_or(2);
            let frames = if m.full_window { crate::transcripts::WINDOW_FRAMES } else { needed };
            let features: Vec<f32> = audio.iter().flat_map(|a| crate::speech::log_mel(a, frames)).collect();
            let ids = if m.transcribe { fp16_transcripts(m, files, &features, frames)? } else { Vec::new() };
            Ok(Ids { ids, features, frames, ..Default::default() })
        }
    }
}

/// What an audio cell with the decoder scores: the fp16 model's greedy transcript of each
/// utterance (the encoder at the cell's depth, through the same emulation as the references),
/// after the prompt.
fn fp16_transcripts(m: &ModelCell, files: &Files, features: &[f32], frames: usize) -> Result<Vec<Vec<u32>>, String> {
    let name = files.weights.display().to_string();
    let bytes = bytes(&files.weights)?;
    let model = Ct2::parse(&name, &bytes).map_err(|e| e.to_string())?;
    let fp16 = ModelPrecision::fp16();
    let encoder = WhisperEncoder::load(&name, &model, &fp16, m.depth).map_err(|e| e.to_string())?;
    let decoder = WhisperDecoder::load(&name, &model, &fp16, None).map_err(|e| e.to_string())?;
    let config = files.config.as_deref().ok_or("Whisper's config.json")?;
    let suppress = Suppress::from_config(&name, config).map_err(|e| e.to_string())?;
    let per = encoder.config.mels * frames;
    features
        .chunks_exact(per)
        .map(|u| {
            let enc = pollster::block_on(encoder.encode(&mut EmulateExec, u, frames)).map_err(|e| e.to_string())?;
            let ids = pollster::block_on(decoder.transcribe(&mut EmulateExec, &enc, &suppress, m.tokens))
                .map_err(|e| e.to_string())?;
            Ok(PROMPT.iter().copied().chain(ids).collect())
        })
        .collect()
}

/// Where the spec's weights file is: the page server's path, or natively the file itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileAt {
    Page,
    Native,
}

/// What the page (or the native runner) is asked to run for a model cell.
pub fn spec(cell: &Cell, at: FileAt) -> Result<ModelSpec, String> {
    let m = cell.model.as_ref().ok_or("not a model cell")?;
    let f = files(m.family)?;
    let Ids { ids, mask, features, frames } = (*inputs(m, &f)?).clone();
    let file = match at {
        FileAt::Page => route(package(m.family)?, f.weights_name),
        FileAt::Native => f.weights.display().to_string(),
    };
    let prefill = m.tokens - m.decode;
    let mut spec = ModelSpec {
        family: m.family,
        file,
        config: f.config,
        depth: m.depth,
        ids,
        mask,
        prefill,
        features_b64: None,
        frames,
        max_tokens: m.tokens,
        bench: Default::default(),
        progressive: false,
        trace: false,
    };
    if !features.is_empty() {
        spec.set_features(&features);
    }
    Ok(spec)
}

/// A model cell's weights file, read once per process (natively).
pub fn weights(cell: &Cell) -> Result<Arc<Vec<u8>>, String> {
    let m = cell.model.as_ref().ok_or("not a model cell")?;
    bytes(&files(m.family)?.weights)
}

/// The weights as a model cell stores them on its backend, and the precision that then runs
/// (WebNN's standard mode stores 8-bit: [`ModelPrecision::on_backend`], which the page calls too).
pub fn precision(cell: &Cell) -> Result<(ModelPrecision, Precision), String> {
    let (p, ran, _) = ModelPrecision::on_backend(cell.precision, cell.quantizer, cell.backend)
        .ok_or("a model cell needs a named precision")?;
    Ok((p, ran))
}

/// Both references of a model cell.
pub struct ModelRefs {
    pub exact: ModelRun,
    pub fp16: Arc<ModelRun>,
    /// llm: the sequence (for perplexity).
    pub ids: Vec<Vec<u32>>,
}

/// The references of `cell`, computed once per process and shared by every runtime.
pub fn references(cell: &Cell) -> Result<Arc<ModelRefs>, String> {
    type Cache<T> = OnceLock<Mutex<HashMap<String, Arc<T>>>>;
    static EXACT: Cache<ModelRefs> = OnceLock::new();
    static FP16: Cache<ModelRun> = OnceLock::new();
    let m = cell.model.as_ref().ok_or("not a model cell")?;
    let inputs_key = format!("{:?}", m);
    let (stored, _) = precision(cell)?;
    let key = format!("{inputs_key}:{:?}", stored);
    if let Some(r) = EXACT.get_or_init(Default::default).lock().expect("refs cache").get(&key) {
        return Ok(r.clone());
    }
    let spec = spec(cell, FileAt::Native)?;
    let bytes = weights(cell)?;
    let fp16 = {
        let cached = FP16.get_or_init(Default::default).lock().expect("fp16 cache").get(&inputs_key).cloned();
        match cached {
            Some(r) => r,
            None => {
                let r = Arc::new(
                    pollster::block_on(run_model(&spec, &bytes, &ModelPrecision::fp16(), &mut EmulateExec))
                        .map_err(|e| e.to_string())?,
                );
                FP16.get_or_init(Default::default).lock().expect("fp16 cache").insert(inputs_key, r.clone());
                r
            }
        }
    };
    let exact = if cell.precision == Precision::Format(webq_engine::quant::QuantFormat::F16) {
        (*fp16).clone()
    } else {
        pollster::block_on(run_model(&spec, &bytes, &stored, &mut EmulateExec)).map_err(|e| e.to_string())?
    };
    let r = Arc::new(ModelRefs { exact, fp16, ids: spec.ids });
    EXACT.get_or_init(Default::default).lock().expect("refs cache").insert(key, r.clone());
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use webq_engine::models::exec::CpuExec;
    use webq_engine::protocol::{CellBackend, Runtime};

    fn model_cell(
        family: Family,
        depth: Option<usize>,
        sentences: Option<usize>,
        tokens: usize,
        decode: usize,
    ) -> Cell {
        let mut c = crate::cell::test_cell(Runtime::Native, CellBackend::Wasm, "fp16", 0, 0);
        c.model = Some(ModelCell::new(family, depth, sentences, tokens, decode));
        c
    }

    /// The fp16 model, run end to end, finds each sentence's paraphrase (the sentences come in pairs).
    #[test]
    fn minilm_pairs_each_sentence_with_its_paraphrase() {
        if crate::models::cached_file(&PACKAGES[0], 0).is_none() {
            return;
        }
        let cell = model_cell(Family::Text, None, None, 0, 0);
        let spec = spec(&cell, FileAt::Native).unwrap();
        let run = pollster::block_on(run_model(
            &spec,
            &weights(&cell).unwrap(),
            &precision(&cell).unwrap().0,
            &mut CpuExec::default(),
        ))
        .unwrap();
        let rows: Vec<Vec<f32>> = run.y.chunks_exact(run.width).map(<[f32]>::to_vec).collect();
        assert_eq!(rows.len(), 20);
        let nn = webq_engine::models::accuracy::nearest_neighbours(&rows);
        assert_eq!(nn, (0..20).map(|i| i ^ 1).collect::<Vec<_>>());
        assert!(run.full_depth && run.storage.bits_per_weight > 15.9);
    }

    /// Decoding through the KV cache gives the logits a single prefill gives, and the cell's output
    /// reaches the references.
    #[test]
    fn smollm2_decode_through_the_cache_matches_one_prefill() {
        if crate::models::cached_file(&PACKAGES[1], 0).is_none() {
            return;
        }
        let run = |decode| {
            let cell = model_cell(Family::Llm, Some(2), None, 10, decode);
            let spec = spec(&cell, FileAt::Native).unwrap();
            pollster::block_on(run_model(
                &spec,
                &weights(&cell).unwrap(),
                &precision(&cell).unwrap().0,
                &mut CpuExec::default(),
            ))
            .unwrap()
        };
        let (whole, decoded) = (run(0), run(6));
        assert_eq!(whole.y.len(), 10 * 49152);
        let scale = webq_engine::models::accuracy::rms(&whole.y);
        let worst = whole.y.iter().zip(&decoded.y).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max);
        assert!(worst <= 1e-4 * scale, "decode differs from prefill by {worst} (rms {scale})");
        assert!(!whole.full_depth);
        let refs = references(&model_cell(Family::Llm, Some(2), None, 10, 6)).unwrap();
        assert_eq!(refs.exact.y.len(), decoded.y.len());
    }

    /// An audio cell with the decoder: its spec scores fp16's greedy transcript (after the
    /// prompt), the fp16 model run the same way transcribes exactly that, and the output holds a
    /// row of logits per transcript token and one for the end of text.
    #[test]
    fn a_transcribing_audio_cell_scores_fp16s_transcript() {
        if crate::models::cached_file(&PACKAGES[3], 0).is_none() {
            return;
        }
        let mut cell = model_cell(Family::Audio, Some(2), None, 8, 0);
        let m = cell.model.as_mut().unwrap();
        (m.inputs, m.transcribe) = (Some(1), true);
        let spec = spec(&cell, FileAt::Native).unwrap();
        assert_eq!(spec.ids.len(), 1);
        let ids = &spec.ids[0];
        assert!(ids.starts_with(&PROMPT) && ids.len() > PROMPT.len() && ids.len() <= PROMPT.len() + 8, "{ids:?}");
        let run =
            pollster::block_on(run_model(&spec, &weights(&cell).unwrap(), &ModelPrecision::fp16(), &mut EmulateExec))
                .unwrap();
        assert_eq!(run.transcripts, vec![ids[PROMPT.len()..].to_vec()]);
        assert_eq!((run.width, run.y.len()), (VOCAB, (ids.len() - PROMPT.len() + 1) * VOCAB));
        assert!(run.y.iter().all(|v| v.is_finite()));
    }

    /// The benchmark protocol on SmolLM2 cut to one block: the warm runs asked for, each
    /// bit-identical to the first on the CPU path, the prefill and decode timed apart, the KV
    /// cache's bytes (1 block x keys and values x 6 positions x 3 heads of 64 x 4 bytes), and on
    /// the GPU the weights uploaded and the pipelines the first inference compiled.
    #[test]
    fn the_benchmark_protocol_times_warm_runs_and_measures_what_the_model_holds() {
        if crate::models::cached_file(&PACKAGES[1], 0).is_none() {
            return;
        }
        let cell = model_cell(Family::Llm, Some(1), None, 6, 2);
        let mut spec = spec(&cell, FileAt::Native).unwrap();
        spec.bench = webq_engine::models::bench::BenchRequest { warm_ms: 0.0, min_warm: 2 };
        let (bytes, precision) = (weights(&cell).unwrap(), precision(&cell).unwrap().0);
        let b = pollster::block_on(run_model(&spec, &bytes, &precision, &mut CpuExec::default())).unwrap().bench;
        assert_eq!(b.warm.map(|s| s.runs), Some(2), "{b:?}");
        assert_eq!((b.warm_prefill.map(|s| s.runs), b.warm_decode.map(|s| s.runs)), (Some(2), Some(2)));
        assert!(b.repeatable && b.rate > 0.0 && b.decode_rate.is_some_and(|r| r > 0.0), "{b:?}");
        assert_eq!(b.kv_cache_bytes, Some(2 * 6 * 3 * 64 * 4));
        assert_eq!(b.unit, "prefill tokens/s");
        assert!(b.first_ms > 0.0 && b.weight_bytes > 0 && b.device_weight_bytes.is_none() && b.compiled.is_none());

        let Some(exec) = webq_engine::webgpu::executor_for_tests() else { return };
        let mut gpu = webq_engine::models::gpu::GpuBackend::new(&exec, webq_engine::webgpu::GemvKernel::PORTABLE);
        spec.bench.min_warm = 1;
        let b = pollster::block_on(run_model(&spec, &bytes, &precision, &mut gpu)).unwrap().bench;
        let (compiled, _) = b.compiled.expect("the GPU counts what it compiles");
        assert!(compiled >= 2, "a GEMM and a GEMV at least, {compiled}");
        let uploaded = b.device_weight_bytes.expect("the GPU counts what it holds");
        assert!(uploaded > 0 && uploaded <= b.weight_bytes, "{uploaded} of {}", b.weight_bytes);
        assert!(b.activation_peak_bytes.is_some_and(|a| a > 0));
    }

    /// Progressive loading (the seed's): every family, cut to 2 layers, loads stage by stage in
    /// the order it runs (embeddings first, then each layer, the head last), on the GPU where
    /// there is one (each stage uploaded as it is stored), with progress a bar can show, the first
    /// layer ready before the load ends, and stored weights bit-identical to the references'
    /// one-shot load. Another precision stores other bits, so the digest can tell.
    #[test]
    fn progressive_loading_stores_the_one_shot_models_bits_stage_by_stage() {
        let exec = webq_engine::webgpu::executor_for_tests();
        // (family, package, on the GPU (lavapipe is slow on ViT's 257 tokens and SmolLM2's head), stages);
        // SmolLM2 as the decode test runs it (fp16), so its references are computed once.
        let cases = [
            (Family::Text, 0, true, vec!["embeddings", "layer 0", "layer 1"]),
            (Family::Llm, 1, false, vec!["token embedding", "block 0", "block 1", "final norm and output head"]),
            (Family::Vision, 2, false, vec!["patch embedding", "layer 0", "layer 1", "final norm"]),
            (
                Family::Audio,
                3,
                true,
                vec!["encoder convolutions", "encoder layer 0", "encoder layer 1", "encoder norm"],
            ),
        ];
        for (family, package, gpu, stages) in cases {
            if crate::models::cached_file(&PACKAGES[package], 0).is_none() {
                continue;
            }
            let mut cell = model_cell(family, Some(2), (family == Family::Text).then_some(2), 10, 6);
            if family != Family::Llm {
                cell.precision = "int4-g32-asym".parse().unwrap();
            }
            if matches!(family, Family::Vision | Family::Audio) {
                cell.model.as_mut().unwrap().inputs = Some(1);
            }
            let mut spec = spec(&cell, FileAt::Native).unwrap();
            spec.progressive = true;
            let (bytes, stored) = (weights(&cell).unwrap(), precision(&cell).unwrap().0);
            let b = match exec.as_ref().filter(|_| gpu) {
                Some(e) => {
                    let mut gpu =
                        webq_engine::models::gpu::GpuBackend::new(e, webq_engine::webgpu::GemvKernel::PORTABLE);
                    pollster::block_on(run_model(&spec, &bytes, &stored, &mut gpu)).unwrap().bench
                }
                None => pollster::block_on(run_model(&spec, &bytes, &stored, &mut CpuExec::default())).unwrap().bench,
            };
            let names: Vec<&str> = b.progress.iter().map(|e| e.stage.as_str()).collect();
            assert_eq!(names, stages, "{family:?}");
            assert_eq!(webq_engine::models::loading::check_progress(&b.progress), Ok(()), "{family:?}");
            let first = b.first_layer_ms.expect("a first layer");
            assert!(b.progressive && first <= b.progress.last().unwrap().ms, "{family:?}: {b:?}");
            let refs = references(&cell).unwrap();
            assert_eq!(b.weights_digest.as_deref(), Some(refs.exact.storage.digest.as_str()), "{family:?}");
            if family != Family::Llm {
                assert_ne!(refs.exact.storage.digest, refs.fp16.storage.digest, "{family:?}: fp16 stores other bits");
            }
            if gpu && exec.is_some() {
                assert!(b.upload_ms > 0.0 && b.device_weight_bytes.is_some_and(|d| d > 0), "{family:?}: {b:?}");
            }
        }
    }

    /// The ViT read from the ONNX file, in fp16, gives onnxruntime's fp32 hidden states for the
    /// same prepared photograph (`data/vit-astronaut-ort.txt`): the class token and a patch token at
    /// cosine >= 0.9999 (fp16 weights cost ~1e-3 of rel L2). Weights of one shape mapped to the
    /// wrong place (query for key, one layer's for another's) would fail here; of another shape,
    /// at load. Every encoder MatMul of the graph is mapped, each to a different weight. The
    /// photograph is prepared as OpenCV's area resize gives it (pixels hand-checked in
    /// `cv2.resize(..., INTER_AREA)`, within its fixed-point rounding of 1).
    #[test]
    fn vit_matches_onnxruntime_on_a_photograph() {
        if crate::models::cached_file(&PACKAGES[2], 0).is_none() {
            return;
        }
        let mut cell = model_cell(Family::Vision, None, None, 0, 0);
        cell.model.as_mut().unwrap().inputs = Some(1);
        let spec = spec(&cell, FileAt::Native).unwrap();
        let x = spec.features().unwrap();
        let px = |ch: usize, y: usize, xx: usize| {
            let v = x[ch * 224 * 224 + y * 224 + xx];
            ((v * crate::photos::STD[ch] + crate::photos::MEAN[ch]) * 255.0).round()
        };
        for ((y, xx), want) in [((0, 0), [145.0, 140.0, 148.0]), ((100, 50), [231.0, 125.0, 86.0])] {
            let got = [px(0, y, xx), px(1, y, xx), px(2, y, xx)];
            assert!(
                got.iter().zip(want).all(|(a, b)| (a - b).abs() <= 1.0),
                "pixel ({y}, {xx}): {got:?}, cv2 {want:?}"
            );
        }
        let bytes = weights(&cell).unwrap();
        let run = pollster::block_on(run_model(&spec, &bytes, &precision(&cell).unwrap().0, &mut CpuExec::default()))
            .unwrap();
        let want: Vec<f32> =
            data_lines(&data_dir().join("vit-astronaut-ort.txt")).unwrap().iter().map(|l| l.parse().unwrap()).collect();
        assert_eq!((run.y.len(), want.len(), run.full_depth), (257 * 384, 768, true));
        for (token, w) in [(0, &want[..384]), (101, &want[384..])] {
            let c = webq_engine::models::accuracy::cosine(&run.y[token * 384..][..384], w);
            assert!(c >= 0.9999, "token {token}: cosine {c} to onnxruntime's");
        }
        let g = webq_engine::models::onnx::Onnx::parse("vit", &bytes).unwrap();
        let matmuls: Vec<&str> = g
            .nodes()
            .iter()
            .filter(|n| n.op_type == "MatMul" && n.name.starts_with("/backbone/encoder/"))
            .filter_map(|n| n.input.iter().find(|i| g.is_initializer(i)).map(String::as_str))
            .collect();
        let distinct: std::collections::HashSet<_> = matmuls.iter().collect();
        assert_eq!((matmuls.len(), distinct.len()), (72, 72), "12 layers of 6 weights, each its own");
        let mapped = run.storage.tensors.iter().filter(|t| t.kind == "attention" || t.kind == "mlp").count();
        assert_eq!(mapped, 72, "the model stores the 72 encoder matrices");
    }

    /// Two tones, 0.5 s: 50 frames of Whisper's features (`speech::log_mel`), deterministic.
    fn tones() -> Vec<f32> {
        let audio: Vec<f32> = (0..8000)
            .map(|n| {
                let t = n as f64 / 16000.0;
                (0.3 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                    + 0.2 * (2.0 * std::f64::consts::PI * 1800.0 * t * (1.0 + t)).sin()) as f32
            })
            .collect();
        crate::speech::log_mel(&audio, 50)
    }

    /// Whisper's encoder read from the CTranslate2 file gives CTranslate2's own encoder output
    /// (`ctranslate2` 4.8.5, `Whisper.encode`, float32, on the same features): positions 0 and 12,
    /// `data/whisper-tones-ct2.txt`. The file's weights are f16, so the fp16 model is the same model.
    #[test]
    fn whisper_encoder_matches_ctranslate2() {
        if crate::models::cached_file(&PACKAGES[3], 0).is_none() {
            return;
        }
        let mut cell = model_cell(Family::Audio, None, None, 0, 0);
        cell.model.as_mut().unwrap().inputs = Some(1);
        let mut spec = spec(&cell, FileAt::Native).unwrap();
        spec.set_features(&tones());
        spec.frames = 50;
        let run = pollster::block_on(run_model(
            &spec,
            &weights(&cell).unwrap(),
            &precision(&cell).unwrap().0,
            &mut CpuExec::default(),
        ))
        .unwrap();
        assert_eq!((run.y.len(), run.full_depth), (25 * 384, true));
        let want: Vec<f32> =
            data_lines(&data_dir().join("whisper-tones-ct2.txt")).unwrap().iter().map(|l| l.parse().unwrap()).collect();
        for (pos, w) in [(0, &want[..384]), (12, &want[384..])] {
            let c = webq_engine::models::accuracy::cosine(&run.y[pos * 384..][..384], w);
            assert!(c >= 0.99999, "position {pos}: cosine {c} to CTranslate2's");
        }
    }
}
