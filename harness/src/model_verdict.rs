//! Judging a model cell: the kernel verdict (the backend's whole forward pass against the exact
//! emulation of the same quantized model, [`KernelTolerance::model`]), the accuracy verdict (no
//! further from the fp16 model than that emulation is) and, at full depth, the precision's budget
//! on what users look at (cosine and neighbours of embeddings; top-1 agreement and perplexity).

use webq_conformance::{AccuracyVerdict, KernelTolerance, Metrics};
use webq_engine::models::accuracy::{self, ErrorHistogram};
use webq_engine::models::bench::ModelBench;
use webq_engine::models::linear::Digest;
use webq_engine::models::loading::check_progress;
use webq_engine::models::run::ModelRun;
use webq_engine::platform::selection::Family;
use webq_engine::protocol::ErrorClass;

use crate::cell::Cell;
use crate::model_cells::ModelRefs;
use crate::results::{CellRecord, CellTimings, KernelResult, ModelMeasures, ModelResult, Status};
use crate::tokenize::SpeechTokenizer;
use crate::verdict::RawTimings;
use webq_engine::models::whisper_decoder::{END_OF_TEXT, PROMPT, VOCAB};

/// The measures of `y` against the fp16 model's outputs `fp16` (`width` values a row; audio:
/// `inputs` utterances of equal length).
pub fn measures(
    family: Family,
    y: &[f32],
    fp16: &[f32],
    width: usize,
    ids: &[Vec<u32>],
    inputs: usize,
) -> ModelMeasures {
    match family {
        Family::Audio if width == VOCAB => scored_transcripts(y, fp16, ids),
        Family::Llm => {
            let tokens = ids.first().map_or(&[][..], Vec::as_slice);
            ModelMeasures {
                top1_agreement: Some(accuracy::top1_agreement(y, fp16, width)),
                perplexity: Some(accuracy::perplexity(y, width, tokens)),
                fp16_perplexity: Some(accuracy::perplexity(fp16, width, tokens)),
                ..Default::default()
            }
        }
        Family::Audio => {
            let per = (y.len() / inputs.max(1)).max(1);
            let each: Vec<Metrics> =
                y.chunks(per).zip(fp16.chunks(per)).filter_map(|(a, b)| Metrics::compare(a, b, None).ok()).collect();
            ModelMeasures {
                cosine_min: Some(each.iter().map(|m| m.cosine).fold(f64::INFINITY, f64::min)),
                cosine_mean: Some(each.iter().map(|m| m.cosine).sum::<f64>() / each.len().max(1) as f64),
                rel_l2_max: Some(each.iter().map(|m| m.rel_l2).fold(0.0, f64::max)),
                ..Default::default()
            }
        }
        Family::Vision => {
            let tokens = webq_engine::models::vit::VIT_S14.tokens();
            let image = tokens * width;
            let (mut cls, mut patch_cos, mut agree, mut patches) = (Vec::new(), 0.0, 0usize, 0usize);
            for (got, want) in y.chunks_exact(image).zip(fp16.chunks_exact(image)) {
                let rows = |v: &[f32]| v.chunks_exact(width).skip(1).map(<[f32]>::to_vec).collect::<Vec<_>>();
                cls.push(accuracy::cosine(&got[..width], &want[..width]));
                let (g, w) = (rows(got), rows(want));
                patch_cos += g.iter().zip(&w).map(|(a, b)| accuracy::cosine(a, b)).sum::<f64>();
                let (ng, nw) = (accuracy::nearest_neighbours(&g), accuracy::nearest_neighbours(&w));
                agree += ng.iter().zip(&nw).filter(|(a, b)| a == b).count();
                patches += g.len();
            }
            ModelMeasures {
                cosine_min: Some(cls.iter().copied().fold(f64::INFINITY, f64::min)),
                cosine_mean: Some(cls.iter().sum::<f64>() / cls.len().max(1) as f64),
                patch_cosine_mean: Some(patch_cos / patches.max(1) as f64),
                patch_neighbour_agreement: Some(agree as f64 / patches.max(1) as f64),
                ..Default::default()
            }
        }
        _ => {
            let rows = |v: &[f32]| v.chunks_exact(width).map(<[f32]>::to_vec).collect::<Vec<_>>();
            let (got, want) = (rows(y), rows(fp16));
            let cos: Vec<f64> = got.iter().zip(&want).map(|(a, b)| accuracy::cosine(a, b)).collect();
            let (nn, want_nn) = (accuracy::nearest_neighbours(&got), accuracy::nearest_neighbours(&want));
            let agree = nn.iter().zip(&want_nn).filter(|(a, b)| a == b).count();
            ModelMeasures {
                cosine_min: Some(cos.iter().copied().fold(f64::INFINITY, f64::min)),
                cosine_mean: Some(cos.iter().sum::<f64>() / cos.len().max(1) as f64),
                neighbour_agreement: Some(agree as f64 / nn.len().max(1) as f64),
                ..Default::default()
            }
        }
    }
}

/// The decoder's measures: `y` and `fp16` hold, per utterance, the logits after each token of
/// `ids` from the prompt's last on; each row predicts the next token of fp16's transcript, the
/// last the end of text.
fn scored_transcripts(y: &[f32], fp16: &[f32], ids: &[Vec<u32>]) -> ModelMeasures {
    let (mut at, mut same, mut rows, mut nll, mut fp16_nll) = (0, 0, 0, 0.0, 0.0);
    for u in ids {
        let targets: Vec<u32> = u[PROMPT.len().min(u.len())..].iter().copied().chain([END_OF_TEXT]).collect();
        for &t in &targets {
            let (Some(a), Some(b)) = (y.get(at..at + VOCAB), fp16.get(at..at + VOCAB)) else { break };
            same += usize::from(accuracy::argmax(a) == accuracy::argmax(b));
            nll += accuracy::nll(a, t as usize);
            fp16_nll += accuracy::nll(b, t as usize);
            rows += 1;
            at += VOCAB;
        }
    }
    let n = rows.max(1) as f64;
    ModelMeasures {
        top1_agreement: Some(same as f64 / n),
        perplexity: Some((nll / n).exp()),
        fp16_perplexity: Some((fp16_nll / n).exp()),
        ..Default::default()
    }
}

/// An audio cell's greedy transcripts (with the decoder), read as text and judged by their word
/// error rate against fp16's and against the sentences spoken: recorded, no budget yet. Missing
/// or extra transcripts make the cell an `error`.
pub fn judge_transcripts(cell: &Cell, refs: &ModelRefs, transcripts: &[Vec<u32>], rec: &mut CellRecord) {
    if !cell.model.as_ref().is_some_and(|m| m.transcribe) {
        return;
    }
    let texts = |ids: &[Vec<u32>]| -> Result<Vec<String>, String> {
        let tok = speech_tokenizer()?;
        ids.iter().map(|i| tok.decode(i).map(|t| t.trim().to_string()).map_err(|e| e.to_string())).collect()
    };
    let judged = (|| {
        if transcripts.len() != refs.ids.len() {
            return Err(format!("{} transcripts returned, {} expected", transcripts.len(), refs.ids.len()));
        }
        let spoken = crate::transcripts::sentences(transcripts.len())?;
        Ok((texts(transcripts)?, texts(&refs.fp16.transcripts)?, spoken))
    })();
    let (got, fp16, spoken) = match judged {
        Ok(j) => j,
        Err(why) => {
            rec.status = Status::Error;
            rec.error_class = Some(ErrorClass::BadOutput);
            rec.reason = Some(format!("transcripts: {why}"));
            return;
        }
    };
    let mean = |other: &[String]| {
        got.iter().zip(other).map(|(h, r)| accuracy::word_error_rate(h, r)).sum::<f64>() / got.len().max(1) as f64
    };
    if let Some(m) = rec.model.as_mut() {
        m.measures.wer_vs_fp16 = Some(mean(&fp16));
        m.measures.wer_vs_spoken = Some(mean(&spoken));
        m.transcripts = got;
    }
}

/// Whisper's tokenizer (the audio package's `tokenizer.json`), read once.
fn speech_tokenizer() -> Result<&'static SpeechTokenizer, String> {
    static TOK: std::sync::OnceLock<Result<SpeechTokenizer, String>> = std::sync::OnceLock::new();
    TOK.get_or_init(|| {
        let p = &crate::models::PACKAGES[3];
        let path = p.path(&crate::models::cache_dir(), p.files[1]).map_err(|e| e.to_string())?;
        SpeechTokenizer::load(&path).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Whether the measures meet `budget` (text: min cosine, agreement; llm: top-1, perplexity ratio),
/// and what fell short. The comparisons are written so that NaN never meets a budget.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
pub fn meets(m: &ModelMeasures, budget: (f64, f64)) -> Result<(), String> {
    let mut short = Vec::new();
    if let (Some(c), Some(a)) = (m.cosine_min, m.neighbour_agreement) {
        if !(c >= budget.0) {
            short.push(format!("cosine min {c:.5} < {}", budget.0));
        }
        if !(a >= budget.1) {
            short.push(format!("neighbour agreement {a:.3} < {}", budget.1));
        }
    }
    if let (Some(t), Some(p), Some(f)) = (m.top1_agreement, m.perplexity, m.fp16_perplexity) {
        if !(t >= budget.0) {
            short.push(format!("top-1 agreement {t:.3} < {}", budget.0));
        }
        if !(p / f <= budget.1) {
            short.push(format!("perplexity {p:.3} is {:.3}x fp16's {f:.3} > {}x", p / f, budget.1));
        }
    }
    if short.is_empty() {
        Ok(())
    } else {
        Err(short.join(", "))
    }
}

/// Fills in the verdicts, the status, the timings and the model result of `rec`.
pub fn judge_model(cell: &Cell, refs: &ModelRefs, y: &[f32], t: RawTimings, rec: &mut CellRecord) {
    let (exact, fp16) = (&refs.exact, &refs.fp16);
    let bytes = exact.storage.bytes as u64;
    rec.timings = Some(CellTimings {
        compile_ms: None,
        upload_ms: t.upload_ms,
        dispatches: t.dispatches,
        wall_us: t.wall_us,
        gpu_us: None,
        weight_bytes: bytes,
        weight_gbps: bytes as f64 * t.dispatches as f64 / (t.wall_us * 1e3),
    });
    if y.len() != exact.y.len() {
        rec.status = Status::Error;
        rec.error_class = Some(ErrorClass::BadOutput);
        rec.reason = Some(format!("{} outputs returned, {} expected", y.len(), exact.y.len()));
        return;
    }
    let family = cell.model.as_ref().map_or(Family::Text, |m| m.family);
    let transcribes = cell.model.as_ref().is_some_and(|m| m.transcribe);
    let tolerance = KernelTolerance::model(match family {
        Family::Audio if transcribes => "model:audio-decoder",
        Family::Llm => "model:llm",
        Family::Vision => "model:vision",
        Family::Audio => "model:audio",
        Family::Text => "model:text",
    });
    let rms = accuracy::rms(&exact.y) as f32;
    let verdict = tolerance.judge(y, &exact.y, &vec![rms; y.len()], 1);
    let accuracy =
        AccuracyVerdict::judge_model(y, &fp16.y, &exact.y, Some(exact.width)).expect("lengths checked above");
    let inputs = cell.model.as_ref().map_or(1, |m| crate::model_cells::items(m).0);
    let measures = measures(family, y, &fp16.y, exact.width, &refs.ids, inputs);
    let budget = crate::eval::budget(&cell.precision.to_string())
        .and_then(|b| match family {
            Family::Llm => b.llm,
            Family::Text => b.text,
            // No budget yet: judged by both verdicts, the measures recorded.
            Family::Vision | Family::Audio => None,
        })
        .filter(|_| exact.full_depth);
    let met = budget.map(|b| meets(&measures, b));
    let mut reasons = Vec::new();
    if verdict.non_finite > 0 {
        reasons.push(format!("{} of {} outputs are NaN or infinite", verdict.non_finite, y.len()));
    }
    if !verdict.pass {
        reasons.push(format!(
            "kernel: {} of {} outputs beyond {} x rms of the emulated model (worst {:.3e}x, max abs err {:.3e})",
            verdict.failures,
            y.len(),
            tolerance.rel_rms,
            verdict.worst_ratio,
            verdict.max_abs_err
        ));
    }
    if !accuracy.pass {
        reasons.push(format!(
            "accuracy: rel L2 to fp16 {:.3e}, the exact quantized model's {:.3e} (budget {:.3e})",
            accuracy.metrics.rel_l2,
            accuracy.exact_rel_l2.unwrap_or(f64::NAN),
            accuracy.budget_rel_l2
        ));
    }
    if let Some(Err(short)) = &met {
        reasons.push(format!("budget: {short}"));
    }
    if let Some(why) = rec.bench.as_ref().and_then(|b| load_problem(b, exact)) {
        reasons.push(format!("load: {why}"));
    }
    rec.status = if reasons.is_empty() { Status::Pass } else { Status::Fail };
    rec.reason = (!reasons.is_empty()).then(|| reasons.join("; "));
    rec.kernel = Some(KernelResult { tolerance, verdict });
    rec.accuracy = Some(accuracy);
    rec.model = Some(ModelResult {
        full_depth: exact.full_depth,
        measures,
        budget,
        budget_pass: met.map(|m| m.is_ok()),
        histogram: ErrorHistogram::of(y, &fp16.y, accuracy::rms(&fp16.y)),
        storage: exact.storage.clone(),
        transcripts: Vec::new(),
        output_digest: output_digest(y),
        fused_output_digest: String::new(),
    });
}

/// The bits of a model's output, hashed.
pub fn output_digest(y: &[f32]) -> String {
    let mut d = Digest::new();
    d.f32s(y);
    d.hex()
}

/// Model cells on the `wasm` backend whose output is not bit-identical to the `native` runtime's
/// for the same cell, one line each. The CPU path is the same code in every engine, compiled once
/// to wasm32 (simd128) and once natively (scalar, summing in the same order), and wasm's float
/// arithmetic is deterministic: two engines that disagree on a bit computed something else, a
/// fault of the engine (a JIT tier, say) that an accuracy budget may well let through. A cell
/// whose dot path fused its multiply-adds (the relaxed-simd bundle) is held to native's fused twin.
pub fn wasm_divergences(records: &[CellRecord]) -> Vec<String> {
    use webq_engine::cpu::Summation;
    use webq_engine::protocol::{CellBackend, Runtime};
    /// A record's model result, where it holds an output digest.
    fn digested(r: &CellRecord) -> Option<&ModelResult> {
        r.model.as_ref().filter(|m| !m.output_digest.is_empty())
    }
    let wasm = |r: &&CellRecord| r.cell.backend == CellBackend::Wasm && r.cell.model.is_some();
    let native: std::collections::HashMap<&str, &ModelResult> = records
        .iter()
        .filter(wasm)
        .filter(|r| r.cell.runtime == Runtime::Native)
        .filter_map(|r| Some((r.id.split_once('/')?.1, digested(r)?)))
        .collect();
    records
        .iter()
        .filter(wasm)
        .filter(|r| r.cell.runtime != Runtime::Native)
        .filter_map(|r| {
            let rest = r.id.split_once('/')?.1;
            let got = digested(r)?.output_digest.as_str();
            let twin = native.get(rest)?;
            let path = r.detail.as_ref().and_then(|d| d.dot_path.as_deref()).unwrap_or("");
            let (want, whose) = match Summation::of_dot_path(path) {
                Summation::Fused => (twin.fused_output_digest.as_str(), "fused twin's"),
                Summation::Rounded => (twin.output_digest.as_str(), "output"),
            };
            (got != want).then(|| {
                let want = if want.is_empty() { "none recorded" } else { want };
                format!(
                    "{}: its output ({path}) differs from native/{rest}'s {whose} (digest {got} against {want}): \
                     the same wasm, another result",
                    r.id
                )
            })
        })
        .collect()
}

/// What is wrong with how a cell loaded its model: stored weights that are not bit-identical to
/// the references' one-shot load (a progressive load, or the page's quantizer, that stored
/// something else), or progress events a progress bar could not show.
fn load_problem(bench: &ModelBench, exact: &ModelRun) -> Option<String> {
    match &bench.weights_digest {
        None => return Some("the cell sent no digest of the weights it stored".into()),
        Some(d) if *d != exact.storage.digest => {
            return Some(format!(
                "the stored weights (digest {d}) differ from a one-shot load's (digest {})",
                exact.storage.digest
            ))
        }
        Some(_) => {}
    }
    if bench.progressive {
        if let Err(why) = check_progress(&bench.progress) {
            return Some(format!("progress events: {why}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A browser's wasm model cell whose output bits differ from native's is named, whatever its
    /// status; agreeing cells, other backends and cells native did not run are not.
    #[test]
    fn wasm_cells_must_compute_natives_bits() {
        use webq_engine::protocol::{CellBackend, Runtime};
        let record = |runtime, backend, digest: &str, fused: &str, path: &str| {
            let mut cell = crate::cell::test_cell(runtime, backend, "int8-pc-sym", 0, 0);
            cell.model = Some(crate::cell::ModelCell::new(Family::Text, None, Some(8), 0, 0));
            let mut r = crate::verdict::blank_record(&cell, "t", "t", Default::default());
            r.model = Some(ModelResult {
                full_depth: true,
                measures: Default::default(),
                budget: None,
                budget_pass: None,
                histogram: ErrorHistogram::of(&[1.0], &[1.0], 1.0),
                storage: webq_engine::models::linear::ModelStorage::new("int8-pc-sym", Vec::new()),
                transcripts: Vec::new(),
                output_digest: digest.into(),
                fused_output_digest: fused.into(),
            });
            r.detail = Some(crate::results::RunDetail { dot_path: Some(path.into()), ..Default::default() });
            r
        };
        let same = output_digest(&[1.0, 2.0]);
        let other = output_digest(&[1.0, f32::from_bits(2.0f32.to_bits() + 1)]);
        assert_ne!(same, other, "one bit apart");
        let records = [
            record(Runtime::Native, CellBackend::Wasm, &same, &other, "scalar"),
            record(Runtime::Chromium, CellBackend::Wasm, &same, "", "simd128"),
            record(Runtime::WebKitGtk, CellBackend::Wasm, &other, "", "simd128"),
            record(Runtime::Firefox, CellBackend::Webgpu, &other, "", ""),
            // Fused cells are held to the fused twin: `other` here is right, `same` wrong.
            record(Runtime::ChromeShell, CellBackend::Wasm, &other, "", "simd128-fma"),
            record(Runtime::Firefox, CellBackend::Wasm, &same, "", "simd128-fma"),
        ];
        let found = wasm_divergences(&records);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("webkitgtk/wasm/") && found[0].contains(&other), "{found:?}");
        assert!(found[1].starts_with("firefox/wasm/") && found[1].contains("fused twin's"), "{found:?}");
        // A native record with no fused twin (an older webq's) cannot vouch for a fused cell.
        let mut old = records.clone();
        old[0].model.as_mut().unwrap().fused_output_digest.clear();
        let found = wasm_divergences(&old);
        assert!(found.iter().any(|f| f.starts_with("chrome-shell/") && f.contains("none recorded")), "{found:?}");
        assert!(wasm_divergences(&records[1..]).is_empty(), "no native cell to hold them to");
    }

    /// Teacher-forced decoder rows: one row per transcript token and one for the end of text,
    /// judged against fp16's argmax and scored on fp16's tokens.
    #[test]
    fn scored_transcripts_agree_row_by_row_and_score_the_targets() {
        let row = |hot: u32| {
            let mut r = vec![0.0f32; VOCAB];
            r[hot as usize] = 20.0;
            r
        };
        let ids = vec![PROMPT.iter().copied().chain([7]).collect::<Vec<u32>>()];
        let fp16 = [row(7), row(END_OF_TEXT)].concat();
        let m = measures(Family::Audio, &fp16, &fp16, VOCAB, &ids, 1);
        assert_eq!(m.top1_agreement, Some(1.0));
        assert_eq!(m.perplexity, m.fp16_perplexity);
        assert!(m.perplexity.unwrap() < 1.01, "{m:?}");
        let wrong = [row(7), row(3)].concat();
        let m = measures(Family::Audio, &wrong, &fp16, VOCAB, &ids, 1);
        assert_eq!(m.top1_agreement, Some(0.5));
        assert!(m.perplexity.unwrap() > 100.0 * m.fp16_perplexity.unwrap(), "{m:?}");
    }

    #[test]
    fn measures_and_budgets_of_known_outputs() {
        // Two sentences of width 2: the first identical to fp16, the second turned by 90 degrees.
        let fp16 = [1.0, 0.0, 0.0, 1.0];
        let m = measures(Family::Text, &[1.0, 0.0, 1.0, 0.0], &fp16, 2, &[], 2);
        assert_eq!((m.cosine_min, m.cosine_mean), (Some(0.0), Some(0.5)));
        assert_eq!(m.neighbour_agreement, Some(1.0), "two sentences are each other's neighbour");
        assert_eq!(meets(&m, (0.9, 1.0)).unwrap_err(), "cosine min 0.00000 < 0.9");
        // Three positions of a 2-token vocabulary; the sequence is 0, 1, 1.
        let (want, got) = ([0.0f32, 5.0, 0.0, 5.0, 5.0, 0.0], [0.0f32, 5.0, 5.0, 0.0, 5.0, 0.0]);
        let m = measures(Family::Llm, &got, &want, 2, &[vec![0, 1, 1]], 1);
        assert!((m.top1_agreement.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!(m.perplexity.unwrap() > m.fp16_perplexity.unwrap());
        let why = meets(&m, (0.9, 1.5)).unwrap_err();
        assert!(why.starts_with("top-1 agreement 0.667 < 0.9, perplexity"), "{why}");
        assert!(meets(&m, (0.5, 1e6)).is_ok());
        let nan = ModelMeasures { cosine_min: Some(f64::NAN), neighbour_agreement: Some(1.0), ..Default::default() };
        assert!(meets(&nan, (0.5, 0.5)).is_err(), "NaN never meets a budget");
    }
}
