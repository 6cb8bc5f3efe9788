//! Whisper tiny.en's transcripts, natively: the spoken sentences' features over the whole 30 s
//! window the model was trained on (3000 frames), the encoder and the decoder in one precision,
//! greedy decoding as CTranslate2 does it (the model's `config.json` says which tokens are never
//! picked, and which not first), and the ids read back as text.

use std::path::Path;

use webq_engine::models::ct2::Ct2;
use webq_engine::models::exec::CpuExec;
use webq_engine::models::linear::{ModelPrecision, ModelStorage};
use webq_engine::models::whisper::WhisperEncoder;
use webq_engine::models::whisper_decoder::{Suppress, WhisperDecoder, MAX_TOKENS};

use crate::eval::{data_dir, data_lines};
use crate::models::{cache_dir, PACKAGES};
use crate::speech::{log_mel, speak};
use crate::tokenize::SpeechTokenizer;

/// Whisper's 30 s window in mel frames.
pub const WINDOW_FRAMES: usize = 3000;

/// The audio package's files, read once.
pub struct WhisperFiles {
    pub file: String,
    bytes: Vec<u8>,
    pub tokenizer: SpeechTokenizer,
    pub suppress: Suppress,
}

/// The tokens greedy decoding suppresses, from the model's `config.json`.
pub fn suppress_of(file: &str, json: &str) -> Result<Suppress, String> {
    Suppress::from_config(file, json).map_err(|e| e.to_string())
}

impl WhisperFiles {
    /// From the cache (`webq fetch` fills it).
    pub fn load() -> Result<WhisperFiles, String> {
        let pkg = &PACKAGES[3];
        let path = |i: usize| pkg.path(&cache_dir(), pkg.files[i]).map_err(|e| e.to_string());
        let (bin, tok, cfg) = (path(0)?, path(1)?, path(2)?);
        let file = bin.display().to_string();
        let bytes = std::fs::read(&bin).map_err(|e| format!("{file}: {e}"))?;
        let tokenizer = SpeechTokenizer::load(&tok).map_err(|e| e.to_string())?;
        let json = std::fs::read_to_string(&cfg).map_err(|e| format!("{}: {e}", cfg.display()))?;
        let suppress = suppress_of(&cfg.display().to_string(), &json)?;
        Ok(WhisperFiles { file, bytes, tokenizer, suppress })
    }

    pub fn model(&self) -> Result<Ct2<'_>, String> {
        Ct2::parse(&self.file, &self.bytes).map_err(|e| e.to_string())
    }
}

/// The sentences of `speech.txt`, the first `n`.
pub fn sentences(n: usize) -> Result<Vec<String>, String> {
    let mut s = data_lines(&data_dir().join("speech.txt"))?;
    s.truncate(n);
    Ok(s)
}

/// Each sentence spoken and turned into its 30 s window of features, one after another.
pub fn window_features(sentences: &[String]) -> Result<Vec<f32>, String> {
    let mut f = Vec::new();
    for s in sentences {
        f.extend(log_mel(&speak(s).map_err(|e| e.to_string())?, WINDOW_FRAMES));
    }
    Ok(f)
}

/// One precision's encoder outputs (every utterance's, one after another) and transcripts.
pub struct Transcribed {
    /// The encoder's and the decoder's weights as stored.
    pub storage: ModelStorage,
    pub encoded: Vec<f32>,
    pub ids: Vec<Vec<u32>>,
    pub texts: Vec<String>,
}

/// Encodes and transcribes each utterance's window in `precision` on the CPU path.
pub fn transcribe(files: &WhisperFiles, precision: &ModelPrecision, features: &[f32]) -> Result<Transcribed, String> {
    let m = files.model()?;
    let encoder = WhisperEncoder::load(&files.file, &m, precision, None).map_err(|e| e.to_string())?;
    let decoder = WhisperDecoder::load(&files.file, &m, precision, None).map_err(|e| e.to_string())?;
    let mut exec = CpuExec::default();
    let per = encoder.config.mels * WINDOW_FRAMES;
    let tensors = encoder.storage().tensors.into_iter().chain(decoder.storage().tensors).collect();
    let storage = ModelStorage::new(precision.name(), tensors);
    let mut out = Transcribed { storage, encoded: Vec::new(), ids: Vec::new(), texts: Vec::new() };
    for u in features.chunks(per) {
        let enc = pollster::block_on(encoder.encode(&mut exec, u, WINDOW_FRAMES)).map_err(|e| e.to_string())?;
        let ids = pollster::block_on(decoder.transcribe(&mut exec, &enc, &files.suppress, MAX_TOKENS))
            .map_err(|e| e.to_string())?;
        out.texts.push(files.tokenizer.decode(&ids).map_err(|e| e.to_string())?.trim().to_string());
        out.ids.push(ids);
        out.encoded.extend(enc);
    }
    Ok(out)
}

/// CTranslate2's transcripts kept in `data/whisper-transcripts-ct2.txt`: one line of ids per
/// sentence.
pub fn ctranslate2_ids(path: &Path) -> Result<Vec<Vec<u32>>, String> {
    data_lines(path)?
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l.split_whitespace()
                .map(|t| t.parse().map_err(|e| format!("{} line {}: `{t}`: {e}", path.display(), i + 1)))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::cached_file;

    #[test]
    fn suppressed_tokens_come_from_the_config_and_a_missing_list_is_named() {
        let s =
            suppress_of("c.json", r#"{"suppress_ids": [1, 2], "suppress_ids_begin": [220, 50256], "x": 0}"#).unwrap();
        assert_eq!(s, Suppress { always: vec![1, 2], begin: vec![220, 50256] });
        let e = suppress_of("c.json", r#"{"suppress_ids": [1]}"#).unwrap_err();
        assert!(e.contains("c.json") && e.contains("suppress_ids_begin"), "{e}");
    }

    /// The decoder, the cross-attention and greedy decoding as CTranslate2 runs them: fp16 on the
    /// first sentence transcribes to CTranslate2's ids exactly.
    #[test]
    fn whisper_transcribes_the_first_sentence_as_ctranslate2_does() {
        if cached_file(&PACKAGES[3], 0).is_none() {
            return;
        }
        let files = WhisperFiles::load().unwrap();
        let want = ctranslate2_ids(&data_dir().join("whisper-transcripts-ct2.txt")).unwrap();
        let features = window_features(&sentences(1).unwrap()).unwrap();
        let got = transcribe(&files, &ModelPrecision::fp16(), &features).unwrap();
        assert_eq!(got.ids[0], want[0], "transcript {:?}", got.texts[0]);
        assert_eq!(got.texts[0], "Please call settler.");
    }
}
