//! Tokenization, natively (the page never tokenizes: it receives token ids).
//!
//! - text (all-MiniLM-L6-v2): the model's own `tokenizer.json` through the `tokenizers` crate, its
//!   128-token padding turned off (a batch is padded to its longest sentence, with a mask) and
//!   truncation at 256 tokens, as sentence-transformers does.
//! - llm (SmolLM2): the byte-level BPE whose vocabulary and merges are in the GGUF metadata, split
//!   first as llama.cpp's `smollm` pre-tokenizer does: every digit alone, then GPT-2's pattern
//!   (contractions, optionally space-led letters, numbers, other symbols, whitespace).
//! - audio (Whisper tiny.en): only decoding, the transcript's ids to text, through the model's
//!   `tokenizer.json` (byte-level BPE), special tokens left out.

use std::path::Path;

use thiserror::Error;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};
use webq_engine::models::gguf::Gguf;
use webq_engine::models::ModelError;

/// sentence-transformers' limit for all-MiniLM-L6-v2.
pub const TEXT_MAX_TOKENS: usize = 256;

#[derive(Debug, Error)]
pub enum TokenizeError {
    #[error("{file}: {why}")]
    Load { file: String, why: String },
    #[error("{0}")]
    Model(#[from] ModelError),
    #[error("{file}: the tokenizer is `{found}`, webq reads `{want}`")]
    Unsupported { file: String, found: String, want: &'static str },
    #[error("tokenizing {text:?}: {why}")]
    Encode { text: String, why: String },
}

/// A batch of sentences as token ids, padded to the longest, with the attention mask.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub ids: Vec<Vec<u32>>,
    pub mask: Vec<Vec<u32>>,
}

/// The text model's WordPiece tokenizer.
pub struct TextTokenizer(Tokenizer);

impl TextTokenizer {
    pub fn load(path: &Path) -> Result<TextTokenizer, TokenizeError> {
        let file = path.display().to_string();
        let mut t = Tokenizer::from_file(path).map_err(|e| TokenizeError::Load { file, why: e.to_string() })?;
        t.with_padding(Some(PaddingParams::default()));
        t.with_truncation(Some(TruncationParams { max_length: TEXT_MAX_TOKENS, ..Default::default() }))
            .map_err(|e| TokenizeError::Load { file: path.display().to_string(), why: e.to_string() })?;
        Ok(TextTokenizer(t))
    }

    /// `[CLS] ... [SEP]` ids of each sentence, padded (id 0, mask 0) to the longest.
    pub fn batch(&self, sentences: &[&str]) -> Result<Batch, TokenizeError> {
        let enc = self
            .0
            .encode_batch(sentences.to_vec(), true)
            .map_err(|e| TokenizeError::Encode { text: sentences.join(" | "), why: e.to_string() })?;
        Ok(Batch {
            ids: enc.iter().map(|e| e.get_ids().to_vec()).collect(),
            mask: enc.iter().map(|e| e.get_attention_mask().to_vec()).collect(),
        })
    }
}

/// The llm's byte-level BPE, built from the GGUF's metadata.
pub struct LlmTokenizer {
    inner: Tokenizer,
    pub bos: u32,
    pub eos: u32,
}

impl LlmTokenizer {
    pub fn from_gguf(file: &str, g: &Gguf) -> Result<LlmTokenizer, TokenizeError> {
        for (key, want) in [("tokenizer.ggml.model", "gpt2"), ("tokenizer.ggml.pre", "smollm")] {
            let found = g.meta(key)?.as_str().unwrap_or("?");
            if found != want {
                return Err(TokenizeError::Unsupported { file: file.into(), found: format!("{key} = {found}"), want });
            }
        }
        let strings = |key: &str| -> Result<Vec<String>, TokenizeError> {
            let bad = |why: &str| ModelError::Metadata { file: file.into(), key: key.into(), why: why.into() };
            let items = g.meta(key)?.as_array().ok_or_else(|| bad("not an array"))?;
            items.iter().map(|v| v.as_str().map(str::to_string).ok_or_else(|| bad("not strings").into())).collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let merges = strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| TokenizeError::Load {
                    file: file.into(),
                    why: format!("merge `{m}` is not two tokens"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| TokenizeError::Load { file: file.into(), why: e.to_string() })?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let id = |key: &str| g.meta_f64(key).map(|v| v as u32);
        Ok(LlmTokenizer { inner, bos: id("tokenizer.ggml.bos_token_id")?, eos: id("tokenizer.ggml.eos_token_id")? })
    }

    /// Token ids of `text` (no BOS: SmolLM2 adds none by default).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizeError> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| TokenizeError::Encode { text: text.into(), why: e.to_string() })?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn tokens(&self, ids: &[u32]) -> Vec<String> {
        ids.iter().map(|&i| self.inner.id_to_token(i).unwrap_or_default()).collect()
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizeError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| TokenizeError::Encode { text: format!("{ids:?}"), why: e.to_string() })
    }
}

/// Whisper's tokenizer, for reading transcripts.
pub struct SpeechTokenizer(Tokenizer);

impl SpeechTokenizer {
    pub fn load(path: &Path) -> Result<SpeechTokenizer, TokenizeError> {
        let file = path.display().to_string();
        Tokenizer::from_file(path).map(SpeechTokenizer).map_err(|e| TokenizeError::Load { file, why: e.to_string() })
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizeError> {
        self.0.decode(ids, true).map_err(|e| TokenizeError::Encode { text: format!("{ids:?}"), why: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{cached_file, PACKAGES};

    fn model_file(package: usize, file: usize) -> Option<std::path::PathBuf> {
        cached_file(&PACKAGES[package], file)
    }

    /// Ids from the `tokenizers` Python package on the same tokenizer.json (padding off).
    #[test]
    fn minilm_sentences_tokenize_as_the_reference_and_pad_to_the_longest() {
        let Some(path) = model_file(0, 2) else { return };
        let t = TextTokenizer::load(&path).unwrap();
        let b = t.batch(&["A man is eating food.", "Héllo, WORLD! It's 2026-11-27; naïve café."]).unwrap();
        assert_eq!(b.ids[0][..8], [101, 1037, 2158, 2003, 5983, 2833, 1012, 102]);
        // Lowercased, accents stripped, punctuation and digits split: the reference's 19 ids.
        let second = [
            101, 7592, 1010, 2088, 999, 2009, 1005, 1055, 16798, 2575, 1011, 2340, 1011, 2676, 1025, 15743, 7668, 1012,
            102,
        ];
        assert_eq!(b.ids[1], second);
        assert_eq!(b.ids[0].len(), second.len(), "padded to the longest");
        assert_eq!(b.ids[0][8..], [0; 11]);
        assert_eq!(b.mask[0].iter().filter(|&&m| m == 1).count(), 8);
        assert!(b.mask[1].iter().all(|&m| m == 1));
        let long = "word ".repeat(600);
        assert_eq!(t.batch(&[&long]).unwrap().ids[0].len(), TEXT_MAX_TOKENS, "truncated");
        let e = TextTokenizer::load(Path::new("/nonexistent/tokenizer.json")).err().unwrap().to_string();
        assert!(e.starts_with("/nonexistent/tokenizer.json:"), "{e}");
    }

    #[test]
    fn smollm2_text_round_trips_and_digits_split_as_llama_cpp_does() {
        let Some(path) = model_file(1, 0) else { return };
        let bytes = std::fs::read(&path).unwrap();
        let name = path.display().to_string();
        let g = Gguf::parse(&name, &bytes).unwrap();
        let t = LlmTokenizer::from_gguf(&name, &g).unwrap();
        assert_eq!((t.bos, t.eos), (1, 2));
        let ids = t.encode("The quick brown fox jumps over the lazy dog.").unwrap();
        assert_eq!(
            t.tokens(&ids),
            ["The", "Ġquick", "Ġbrown", "Ġfox", "Ġjumps", "Ġover", "Ġthe", "Ġlazy", "Ġdog", "."]
        );
        let ids = t.encode("In 2026 we ran 12 tests").unwrap();
        assert_eq!(t.tokens(&ids), ["In", "Ġ", "2", "0", "2", "6", "Ġwe", "Ġran", "Ġ", "1", "2", "Ġtests"]);
        for text in ["Hello, world! It's a test:  two  spaces\nnew line", " naïve café — ok ✓", "x\t\ty"] {
            assert_eq!(t.decode(&t.encode(text).unwrap()).unwrap(), text);
        }
    }
}
