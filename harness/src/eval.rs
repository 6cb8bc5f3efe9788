//! `webq eval`: the accuracy verdict of whole models, natively on the CPU path. Each precision's
//! model is run end to end on the fixed inputs kept in `harness/data/` and judged against the
//! fp16 model (for SmolLM2: its Q4_1 weights dequantized and rounded to f16; the trained model was
//! already 4-bit, so its "fp16" is that 4-bit model's exact values).
//!
//! Budgets (below, with their evidence) were written before any model was measured and are
//! never loosened to make a precision pass; a broken budget makes the command exit non-zero.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use serde::Serialize;
use webq_engine::models::accuracy::{self, ErrorHistogram};
use webq_engine::models::bert::{Bert, BertConfig};
use webq_engine::models::exec::CpuExec;
use webq_engine::models::gguf::Gguf;
use webq_engine::models::linear::{ModelPrecision, ModelStorage};
use webq_engine::models::llama::Llama;
use webq_engine::models::safetensors::Safetensors;
use webq_engine::platform::selection::Family;
use webq_engine::protocol::Precision;
use webq_engine::quant::{QuantFormat, Quantizer};

use crate::model_verdict::{measures, meets};
use crate::models::{cache_dir, PACKAGES};
use crate::tokenize::{LlmTokenizer, TextTokenizer};
use crate::transcripts::{self, transcribe, WhisperFiles};

/// Version of the records `webq eval` appends.
pub const EVAL_SCHEMA: u32 = 1;

pub const DEFAULT_PRECISIONS: &str = "int8-pc-sym,int4-g32-asym,int4-g128-sym,int3-g32-asym,int2-g32-asym,mixed";

#[derive(Args)]
pub struct EvalArgs {
    /// `text`, `llm`, `audio` or `all`.
    #[arg(long, default_value = "all")]
    pub family: String,
    /// Precisions: format names (`int4-g128-sym`) or `mixed` (4-bit, attention and embeddings 8-bit, norms fp16).
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_PRECISIONS)]
    pub precisions: Vec<String>,
    /// Layers (text) or blocks (llm) to run; all when absent. A cut model is judged by agreement with
    /// the fp16 model cut the same way, never by its text; budgets apply at full depth only.
    #[arg(long)]
    pub depth: Option<usize>,
    /// `search` (per-group scale search) or `rtn` (round to nearest).
    #[arg(long, default_value = "search")]
    pub quantizer: String,
    /// Tokens of the passage the llm is judged on (the passage has more).
    #[arg(long, default_value_t = 256)]
    pub tokens: usize,
    /// Tokens of the greedy continuation.
    #[arg(long, default_value_t = 32)]
    pub continuation: usize,
    /// Sentences of speech.txt the audio model transcribes (spoken by espeak-ng).
    #[arg(long, default_value_t = 6)]
    pub utterances: usize,
    /// Append one JSON record per model and precision to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// A budget: the least a precision must reach at full depth, and why that figure.
pub struct Budget {
    pub precision: &'static str,
    /// text: minimum cosine to fp16 over the sentences, and nearest-neighbour agreement.
    pub text: Option<(f64, f64)>,
    /// llm: top-1 agreement under teacher forcing, and perplexity over fp16's.
    pub llm: Option<(f64, f64)>,
}

/// Budgets. Evidence: llama.cpp's published perplexity deltas on Llama-3-8B (Q8_0 +0.003 = +0.05%,
/// Q4_0 +0.47 = +7.6%, Q2_K +3.5 = +56%), widened for models 60x smaller, which lose more to the
/// same bits; webq's per-matrix error on seeded weights (`webq formats`: int8 0.4%, int4-g32 7%,
/// int4-g128 9%, int3-g32 16% relative L2), which sets the order. Plain 2-bit round-to-nearest or
/// scale search without importance weighting is known to break models (llama.cpp's 2-bit formats
/// need k-quants and an importance matrix): int2 has no budget and is reported only.
pub const BUDGETS: &[Budget] = &[
    Budget { precision: "int8-pc-sym", text: Some((0.995, 1.0)), llm: Some((0.95, 1.01)) },
    Budget { precision: "int4-g32-asym", text: Some((0.97, 0.9)), llm: Some((0.85, 1.10)) },
    Budget { precision: "int4-g128-sym", text: Some((0.95, 0.9)), llm: Some((0.75, 1.30)) },
    Budget { precision: "mixed", text: Some((0.95, 0.9)), llm: Some((0.75, 1.30)) },
    Budget { precision: "int3-g32-asym", text: Some((0.90, 0.75)), llm: Some((0.60, 1.60)) },
];

pub fn budget(precision: &str) -> Option<&'static Budget> {
    BUDGETS.iter().find(|b| b.precision == precision)
}

/// The precision a name gives: `mixed`, `fp16` or any catalogued format.
/// `mixed`, a format, or either with per-kind overrides: `int4-g128-sym+lm_head=int8-pc-sym`
/// (an experiment's policy; only the plain names have budgets).
pub fn precision(name: &str, quantizer: Quantizer) -> Result<ModelPrecision, String> {
    let mut parts = name.split('+');
    let base = parts.next().unwrap_or_default();
    let format = |f: &str| f.parse::<QuantFormat>().map_err(|e| format!("precision `{name}`: {e}"));
    let mut policy = base
        .parse::<Precision>()
        .ok()
        .and_then(Precision::policy)
        .ok_or_else(|| format!("precision `{name}`: `{base}` is neither a format nor `mixed`"))?;
    for part in parts {
        let (kind, f) =
            part.split_once('=').ok_or_else(|| format!("precision `{name}`: `{part}` is not KIND=FORMAT"))?;
        policy.overrides.insert(kind.parse().map_err(|e| format!("precision `{name}`: {e}"))?, format(f)?);
    }
    policy.name = name.into();
    Ok(ModelPrecision { policy, quantizer })
}

/// One model at one precision, judged.
#[derive(Serialize)]
pub struct EvalRecord {
    pub schema: u32,
    #[serde(flatten)]
    pub what: Evaluated,
    pub storage: ModelStorage,
    pub measures: Measures,
    pub histogram: ErrorHistogram,
    /// `pass`, `fail` or `none` (no budget: int2, or a cut model).
    pub verdict: &'static str,
    pub budget: Option<(f64, f64)>,
    pub seconds: f64,
}

/// Which model ran, how deep, in which precision.
#[derive(Serialize)]
pub struct Evaluated {
    pub family: &'static str,
    pub model: &'static str,
    pub precision: String,
    pub quantizer: String,
    pub depth: usize,
    pub full_depth: bool,
    pub backend: &'static str,
}

impl Evaluated {
    fn new(family: &'static str, model: &'static str, p: &ModelPrecision, depth: usize, full_depth: bool) -> Self {
        let (precision, quantizer) = (p.name().to_string(), p.quantizer.name().to_string());
        Evaluated { family, model, precision, quantizer, depth, full_depth, backend: "cpu" }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum Measures {
    Text {
        sentences: usize,
        cosine_min: f64,
        cosine_mean: f64,
        neighbour_agreement: f64,
    },
    Llm {
        tokens: usize,
        top1_agreement: f64,
        perplexity: f64,
        fp16_perplexity: f64,
        ppl_ratio: f64,
        continuation: Vec<u32>,
        first_divergence: Option<usize>,
    },
    Audio {
        utterances: usize,
        /// The encoder output's cosine to fp16's, per utterance: least and mean.
        cosine_min: f64,
        cosine_mean: f64,
        transcripts: Vec<String>,
        /// Mean word error rate over the utterances against fp16's transcripts, and against the
        /// sentences spoken (fp16's own is in the header line).
        wer_vs_fp16: f64,
        wer_vs_spoken: f64,
    },
}

/// Lines of a data file, skipping blanks and `#` comments.
pub fn data_lines(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect())
}

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

pub fn run(args: &EvalArgs) -> Result<(), Box<dyn std::error::Error>> {
    let quantizer = match args.quantizer.as_str() {
        "search" => Quantizer::ScaleSearch,
        "rtn" => Quantizer::RoundToNearest,
        q => return Err(format!("--quantizer `{q}`: search or rtn").into()),
    };
    let precisions = args.precisions.iter().map(|p| precision(p, quantizer)).collect::<Result<Vec<_>, _>>()?;
    let mut records = Vec::new();
    if matches!(args.family.as_str(), "text" | "all") {
        records.extend(eval_text(&precisions, args.depth)?);
    }
    if matches!(args.family.as_str(), "llm" | "all") {
        records.extend(eval_llm(&precisions, args)?);
    }
    if matches!(args.family.as_str(), "audio" | "all") {
        records.extend(eval_audio(&precisions, args.utterances)?);
    }
    if records.is_empty() {
        return Err(format!("--family `{}`: text, llm, audio or all", args.family).into());
    }
    if let Some(out) = &args.out {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .map_err(|e| format!("{}: {e}", out.display()))?;
        let mut lines = String::new();
        for r in &records {
            lines += &(serde_json::to_string(r)? + "\n");
        }
        f.write_all(lines.as_bytes())?;
    }
    let failed: Vec<String> = records
        .iter()
        .filter(|r| r.verdict == "fail")
        .map(|r| format!("{} {}", r.what.family, r.what.precision))
        .collect();
    if !failed.is_empty() {
        return Err(format!("over budget (or not a number): {}", failed.join(", ")).into());
    }
    Ok(())
}

fn verdict(full: bool, budget: Option<(f64, f64)>, ok: impl Fn((f64, f64)) -> bool) -> &'static str {
    match budget {
        Some(b) if full => {
            if ok(b) {
                "pass"
            } else {
                "fail"
            }
        }
        _ => "none",
    }
}

fn storage_line(s: &ModelStorage) -> String {
    format!(
        "{:.2} bpw, {:.1} MB ({:.2}x fp16)",
        s.bits_per_weight,
        s.bytes as f64 / 1e6,
        s.bytes as f64 / s.fp16_bytes as f64
    )
}

/// MiniLM's sentence embeddings at each precision against fp16's.
pub fn eval_text(
    precisions: &[ModelPrecision],
    depth: Option<usize>,
) -> Result<Vec<EvalRecord>, Box<dyn std::error::Error>> {
    let pkg = &PACKAGES[0];
    let cache = cache_dir();
    let (st_path, cfg_path, tok_path) =
        (pkg.path(&cache, pkg.files[0])?, pkg.path(&cache, pkg.files[1])?, pkg.path(&cache, pkg.files[2])?);
    let file = st_path.display().to_string();
    let bytes = std::fs::read(&st_path).map_err(|e| format!("{file}: {e}"))?;
    let st = Safetensors::parse(&file, &bytes)?;
    let config = BertConfig::parse(&cfg_path.display().to_string(), &std::fs::read_to_string(&cfg_path)?)?;
    let sentences = data_lines(&data_dir().join("sentences.txt"))?;
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let batch = TextTokenizer::load(&tok_path)?.batch(&refs)?;
    let mut exec = CpuExec::default();
    let t0 = Instant::now();
    let fp16 = Bert::load(&file, &st, config.clone(), &ModelPrecision::fp16(), depth)?;
    let full = fp16.depth() == config.num_hidden_layers;
    let want = pollster::block_on(fp16.embed(&mut exec, &batch.ids, &batch.mask))?.concat();
    println!(
        "text: {} ({} of {} layers), {} sentences of {} tokens (padded), fp16 {} in {:.1} s",
        pkg.model,
        fp16.depth(),
        config.num_hidden_layers,
        refs.len(),
        batch.ids[0].len(),
        storage_line(&fp16.storage()),
        t0.elapsed().as_secs_f64()
    );
    println!("{:<16} {:>10} {:>10} {:>9} {:>8}  storage", "precision", "cos min", "cos mean", "nn agree", "verdict");
    let mut out = Vec::new();
    for p in precisions {
        let t0 = Instant::now();
        let model = Bert::load(&file, &st, config.clone(), p, depth)?;
        let got = pollster::block_on(model.embed(&mut exec, &batch.ids, &batch.mask))?.concat();
        let m = measures(Family::Text, &got, &want, config.hidden_size, &[], got.len() / config.hidden_size);
        let (min, mean, agree) = (
            m.cosine_min.unwrap_or(f64::NAN),
            m.cosine_mean.unwrap_or(f64::NAN),
            m.neighbour_agreement.unwrap_or(f64::NAN),
        );
        let b = budget(p.name()).and_then(|b| b.text);
        let v = verdict(full, b, |b| meets(&m, b).is_ok());
        let storage = model.storage();
        println!("{:<16} {:>10.5} {:>10.5} {:>9.3} {:>8}  {}", p.name(), min, mean, agree, v, storage_line(&storage));
        out.push(EvalRecord {
            schema: EVAL_SCHEMA,
            what: Evaluated::new("text", pkg.model, p, model.depth(), full),
            storage,
            histogram: ErrorHistogram::of(&got, &want, accuracy::rms(&want)),
            measures: Measures::Text {
                sentences: refs.len(),
                cosine_min: min,
                cosine_mean: mean,
                neighbour_agreement: agree,
            },
            verdict: v,
            budget: b,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    Ok(out)
}

/// Greedy decoding of `n` tokens after `prompt`, through the KV cache one token at a time.
pub fn greedy(
    model: &Llama,
    exec: &mut CpuExec,
    prompt: &[u32],
    n: usize,
) -> Result<Vec<u32>, Box<dyn std::error::Error>> {
    let vocab = model.config.vocab;
    let mut cache = model.new_cache();
    let logits = pollster::block_on(model.forward(exec, prompt, &mut cache))?;
    let mut next = accuracy::argmax(&logits[logits.len() - vocab..]) as u32;
    let mut out = vec![next];
    while out.len() < n {
        let logits = pollster::block_on(model.forward(exec, &[next], &mut cache))?;
        next = accuracy::argmax(&logits) as u32;
        out.push(next);
    }
    Ok(out)
}

/// SmolLM2 under teacher forcing and greedy decoding at each precision against fp16's.
pub fn eval_llm(precisions: &[ModelPrecision], args: &EvalArgs) -> Result<Vec<EvalRecord>, Box<dyn std::error::Error>> {
    let pkg = &PACKAGES[1];
    let path = pkg.path(&cache_dir(), pkg.files[0])?;
    let file = path.display().to_string();
    let bytes = std::fs::read(&path).map_err(|e| format!("{file}: {e}"))?;
    let g = Gguf::parse(&file, &bytes)?;
    let tok = LlmTokenizer::from_gguf(&file, &g)?;
    let passage = data_lines(&data_dir().join("passage.txt"))?.join("\n");
    let mut ids = tok.encode(&passage)?;
    if ids.len() < args.tokens {
        return Err(format!("the passage has {} tokens, --tokens asks for {}", ids.len(), args.tokens).into());
    }
    ids.truncate(args.tokens);
    let prompt = &ids[..ids.len().min(64)];
    let mut exec = CpuExec::default();
    let t0 = Instant::now();
    let fp16 = Llama::load(&file, &g, &ModelPrecision::fp16(), args.depth)?;
    let vocab = fp16.config.vocab;
    let full = fp16.depth() == fp16.config.blocks;
    let want = pollster::block_on(fp16.forward(&mut exec, &ids, &mut fp16.new_cache()))?;
    let want_ppl = accuracy::perplexity(&want, vocab, &ids);
    let want_cont = greedy(&fp16, &mut exec, prompt, args.continuation)?;
    println!(
        "llm: {} ({} of {} blocks; its fp16 is its Q4_1 weights dequantized), {} tokens, fp16 perplexity {:.3}, {} in {:.1} s",
        pkg.model, fp16.depth(), fp16.config.blocks, ids.len(), want_ppl, storage_line(&fp16.storage()), t0.elapsed().as_secs_f64()
    );
    println!("  fp16 continuation after {} tokens: {:?}", prompt.len(), tok.decode(&want_cont)?);
    println!(
        "{:<16} {:>8} {:>10} {:>9} {:>9} {:>8}  storage",
        "precision", "top-1", "ppl", "ppl/fp16", "diverges", "verdict"
    );
    let mut out = Vec::new();
    for p in precisions {
        let t0 = Instant::now();
        let model = Llama::load(&file, &g, p, args.depth)?;
        let got = pollster::block_on(model.forward(&mut exec, &ids, &mut model.new_cache()))?;
        let m = measures(Family::Llm, &got, &want, vocab, std::slice::from_ref(&ids), 1);
        let (top1, ppl) = (m.top1_agreement.unwrap_or(f64::NAN), m.perplexity.unwrap_or(f64::NAN));
        let cont = greedy(&model, &mut exec, prompt, args.continuation)?;
        let div = accuracy::first_divergence(&cont, &want_cont);
        let b = budget(p.name()).and_then(|b| b.llm);
        let ratio = ppl / want_ppl;
        let v = verdict(full, b, |b| meets(&m, b).is_ok());
        let storage = model.storage();
        let div_s = div.map_or("never".to_string(), |d| d.to_string());
        println!(
            "{:<16} {:>8.3} {:>10.3} {:>9.3} {:>9} {:>8}  {}",
            p.name(),
            top1,
            ppl,
            ratio,
            div_s,
            v,
            storage_line(&storage)
        );
        out.push(EvalRecord {
            schema: EVAL_SCHEMA,
            what: Evaluated::new("llm", pkg.model, p, model.depth(), full),
            storage,
            histogram: ErrorHistogram::of(&got, &want, accuracy::rms(&want)),
            measures: Measures::Llm {
                tokens: ids.len(),
                top1_agreement: top1,
                perplexity: ppl,
                fp16_perplexity: want_ppl,
                ppl_ratio: ratio,
                continuation: cont,
                first_divergence: div,
            },
            verdict: v,
            budget: b,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    Ok(out)
}

/// The mean word error rate of each transcript against its reference.
fn mean_wer(got: &[String], refs: &[String]) -> f64 {
    got.iter().zip(refs).map(|(g, r)| accuracy::word_error_rate(g, r)).sum::<f64>() / refs.len().max(1) as f64
}

/// Whisper tiny.en at each precision against fp16: the encoder output's cosine, and the greedy
/// transcripts against fp16's and against the sentences spoken. Always the whole model (a cut
/// decoder does not transcribe); no budget yet (none was set before measuring).
pub fn eval_audio(
    precisions: &[ModelPrecision],
    utterances: usize,
) -> Result<Vec<EvalRecord>, Box<dyn std::error::Error>> {
    let files = WhisperFiles::load()?;
    let spoken = transcripts::sentences(utterances)?;
    let features = transcripts::window_features(&spoken)?;
    let t0 = Instant::now();
    let want = transcribe(&files, &ModelPrecision::fp16(), &features)?;
    println!(
        "audio: {} on {} sentences spoken by espeak-ng, 30 s windows; fp16 word error rate {:.3} against the sentences, in {:.1} s",
        PACKAGES[3].model,
        spoken.len(),
        mean_wer(&want.texts, &spoken),
        t0.elapsed().as_secs_f64()
    );
    for (s, t) in spoken.iter().zip(&want.texts) {
        println!("  fp16: {t:?} (spoken: {s:?})");
    }
    // The fp16 model is checked, not trusted: its ids must be CTranslate2's.
    let ct2 = transcripts::ctranslate2_ids(&data_dir().join("whisper-transcripts-ct2.txt"))?;
    let same = want.ids.iter().zip(&ct2).filter(|(a, b)| a == b).count();
    println!("  fp16 transcripts identical to CTranslate2's: {same} of {}", want.ids.len().min(ct2.len()));
    if same < want.ids.len().min(ct2.len()) {
        return Err("the fp16 transcripts differ from CTranslate2's: the decoder is wrong".into());
    }
    println!(
        "{:<16} {:>10} {:>10} {:>9} {:>9}  transcripts that differ from fp16's, storage",
        "precision", "cos min", "cos mean", "WER fp16", "WER said"
    );
    let per = want.encoded.len() / spoken.len().max(1);
    let mut out = Vec::new();
    for p in precisions {
        let t0 = Instant::now();
        let got = transcribe(&files, p, &features)?;
        let cos: Vec<f64> =
            got.encoded.chunks(per).zip(want.encoded.chunks(per)).map(|(g, w)| accuracy::cosine(g, w)).collect();
        // A NaN anywhere is the least cosine (f64::min would skip it).
        let least = |a: f64, c: f64| if a.is_nan() || c.is_nan() { f64::NAN } else { a.min(c) };
        let (min, mean) = (cos.iter().copied().fold(f64::INFINITY, least), cos.iter().sum::<f64>() / cos.len() as f64);
        let (vs_fp16, vs_spoken) = (mean_wer(&got.texts, &want.texts), mean_wer(&got.texts, &spoken));
        let differ: Vec<&String> = got.texts.iter().zip(&want.texts).filter(|(g, w)| g != w).map(|(g, _)| g).collect();
        println!(
            "{:<16} {:>10.5} {:>10.5} {:>9.3} {:>9.3}  {:?}, {}",
            p.name(),
            min,
            mean,
            vs_fp16,
            vs_spoken,
            differ,
            storage_line(&got.storage)
        );
        out.push(EvalRecord {
            schema: EVAL_SCHEMA,
            what: Evaluated::new("audio", PACKAGES[3].model, p, 8, true),
            storage: got.storage,
            histogram: ErrorHistogram::of(&got.encoded, &want.encoded, accuracy::rms(&want.encoded)),
            measures: Measures::Audio {
                utterances: spoken.len(),
                cosine_min: min,
                cosine_mean: mean,
                transcripts: got.texts,
                wer_vs_fp16: vs_fp16,
                wer_vs_spoken: vs_spoken,
            },
            // No budget: only an output that is not a number fails.
            verdict: if min.is_finite() { "none" } else { "fail" },
            budget: None,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use webq_engine::quant::LayerKind;

    #[test]
    fn precisions_name_formats_mixed_and_overrides() {
        let p =
            precision("int4-g128-sym+lm_head=int8-pc-sym+embedding=int8-pc-sym", Quantizer::RoundToNearest).unwrap();
        assert_eq!(p.policy.format_for(LayerKind::Mlp).to_string(), "int4-g128-sym");
        assert_eq!(p.policy.format_for(LayerKind::LmHead).to_string(), "int8-pc-sym");
        assert_eq!(p.name(), "int4-g128-sym+lm_head=int8-pc-sym+embedding=int8-pc-sym");
        assert!(budget(p.name()).is_none(), "an experiment has no budget");
        let m = precision("mixed", Quantizer::ScaleSearch).unwrap();
        assert_eq!((m.name(), m.policy.format_for(LayerKind::Attention).to_string()), ("mixed", "int8-pc-sym".into()));
        assert!(budget("mixed").is_some());
        for bad in ["int5", "int4+lm_head", "int4+wings=int8", "int4+lm_head=int9"] {
            assert!(precision(bad, Quantizer::ScaleSearch).unwrap_err().contains(bad), "{bad}");
        }
    }
}
