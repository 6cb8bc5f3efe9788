//! The audio family's decoder: Whisper's text decoder (tiny.en, from a CTranslate2 `model.bin`)
//! and greedy transcription of an encoder output.
//!
//! `x = E[token] + P[position]`, then per layer (pre-norm) `x += O(causal self-attention(QKV LN1 x))`
//! with the keys and values of earlier tokens in a [`KvCache`], `x += O'(attention(Q' LN2 x, K'V'
//! enc))` over the encoder's output (its keys and values computed once per utterance), `x += W2
//! gelu(W1 LN3 x)`; then `LN x` and logits `x E^T` (the output projection is the embedding: an
//! alias in the file). CTranslate2 stores the self-attention's projections fused (`[3 * dim,
//! dim]`) and the cross-attention's keys and values fused (`[2 * dim, dim]`).

use super::accuracy::argmax;
use super::attention::{Heads, KvCache, Mask};
use super::bert::add;
use super::ct2::Ct2;
use super::exec::Backend;
use super::linear::{f16_vector, Linear, ModelPrecision, ModelStorage, NormWeights, TensorRecord};
use super::loading::{ready, Loading};
use super::whisper::{Ct2Weights, WHISPER_TINY};
use super::ModelError;
use crate::quant::LayerKind;

/// Whisper tiny.en's vocabulary, text positions and the special tokens a transcription uses.
pub const VOCAB: usize = 51864;
pub const TEXT_POSITIONS: usize = 448;
pub const END_OF_TEXT: u32 = 50256;
pub const START_OF_TRANSCRIPT: u32 = 50257;
pub const NO_TIMESTAMPS: u32 = 50362;
/// What a transcription starts from: the start of transcript, without timestamps.
pub const PROMPT: [u32; 2] = [START_OF_TRANSCRIPT, NO_TIMESTAMPS];
/// The longest transcript decoded (a sentence of the harness's speech needs under 20 tokens).
pub const MAX_TOKENS: usize = 64;

const EPS: f64 = 1e-5;

struct Layer {
    norm1: NormWeights,
    qkv: Linear,
    o: Linear,
    norm2: NormWeights,
    cross_q: Linear,
    cross_kv: Linear,
    cross_o: Linear,
    norm3: NormWeights,
    fc1: Linear,
    fc2: Linear,
}

impl Layer {
    fn matrices(&self) -> [&Linear; 7] {
        [&self.qkv, &self.o, &self.cross_q, &self.cross_kv, &self.cross_o, &self.fc1, &self.fc2]
    }
}

/// Tokens greedy decoding never picks (`suppress_ids` of the model's `config.json`), and those it
/// does not pick first (`suppress_ids_begin`: a blank, the end of text).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Suppress {
    pub always: Vec<u32>,
    pub begin: Vec<u32>,
}

impl Suppress {
    /// From the model's `config.json` (`suppress_ids`, `suppress_ids_begin`).
    pub fn from_config(file: &str, json: &str) -> Result<Suppress, ModelError> {
        #[derive(serde::Deserialize)]
        struct Config {
            suppress_ids: Vec<u32>,
            suppress_ids_begin: Vec<u32>,
        }
        let c: Config = serde_json::from_str(json).map_err(|e| ModelError::Metadata {
            file: file.into(),
            key: "suppress_ids".into(),
            why: e.to_string(),
        })?;
        Ok(Suppress { always: c.suppress_ids, begin: c.suppress_ids_begin })
    }
}

/// Whisper's decoder in one precision.
pub struct WhisperDecoder {
    embed: Linear,
    /// The output projection: the embedding itself, or its own copy where the precision stores the
    /// output head in another format than the embedding.
    head: Linear,
    positions: Vec<f32>,
    layers: Vec<Layer>,
    norm: NormWeights,
    pub precision: String,
}

/// The encoder output's keys and values, per layer, for one utterance of `t` positions.
pub struct CrossKv {
    kv: Vec<(Vec<f32>, Vec<f32>)>,
    t: usize,
}

impl WhisperDecoder {
    /// Reads the first `depth` layers (all when `None`) and stores them in `precision`, in one shot.
    pub fn load(file: &str, m: &Ct2, precision: &ModelPrecision, depth: Option<usize>) -> Result<Self, ModelError> {
        ready(Self::load_staged(file, m, precision, depth, &mut Loading::one_shot()))
    }

    /// The stages [`WhisperDecoder::load_staged`] goes through for `depth`, so that a caller
    /// loading the encoder first can announce them (see [`Loading::expect`]).
    pub fn stages(depth: Option<usize>) -> usize {
        depth.unwrap_or(WHISPER_TINY.layers).min(WHISPER_TINY.layers) + 2
    }

    /// As [`WhisperDecoder::load`], stage by stage (the embedding with the positions, each layer,
    /// the final norm with the output head) through `loading`.
    pub async fn load_staged<B: Backend>(
        file: &str,
        m: &Ct2<'_>,
        precision: &ModelPrecision,
        depth: Option<usize>,
        loading: &mut Loading<'_, B>,
    ) -> Result<Self, ModelError> {
        let c = WHISPER_TINY;
        let d = c.dim;
        let r = Ct2Weights::new(file, m, precision, "decoder/num_heads")?;
        let linear = |name: &str, kind: LayerKind, shape: (usize, usize)| r.linear(name, kind, shape);
        let norm = |name: &str| r.norm(name);
        loading.expect("whisper decoder", Self::stages(depth));
        let name = "decoder/embeddings/weight";
        let w = m.f32s(name, &[VOCAB, d])?;
        let embed = Linear::new(file, name, LayerKind::Embedding, &w, (VOCAB, d), None, precision)?;
        let positions = f16_vector(&m.f32s("decoder/position_encodings/encodings", &[TEXT_POSITIONS, d])?);
        // The embedding is looked up on the CPU: nothing of it goes to the device.
        loading.stage("decoder embedding".into(), None, &[]).await?;
        let depth = depth.unwrap_or(c.layers).min(c.layers);
        let mut layers = Vec::with_capacity(depth);
        for i in 0..depth {
            let p = format!("decoder/layer_{i}");
            let attn = |s: &str, n: usize| linear(&format!("{p}/{s}"), LayerKind::Attention, (n, d));
            let l = Layer {
                norm1: norm(&format!("{p}/self_attention/layer_norm"))?,
                qkv: attn("self_attention/linear_0", 3 * d)?,
                o: attn("self_attention/linear_1", d)?,
                norm2: norm(&format!("{p}/attention/layer_norm"))?,
                cross_q: attn("attention/linear_0", d)?,
                cross_kv: attn("attention/linear_1", 2 * d)?,
                cross_o: attn("attention/linear_2", d)?,
                norm3: norm(&format!("{p}/ffn/layer_norm"))?,
                fc1: linear(&format!("{p}/ffn/linear_0"), LayerKind::Mlp, (c.mlp, d))?,
                fc2: linear(&format!("{p}/ffn/linear_1"), LayerKind::Mlp, (d, c.mlp))?,
            };
            loading.stage(format!("decoder layer {i}"), None, &l.matrices()).await?;
            layers.push(l);
        }
        let policy = &precision.policy;
        let head = if policy.format_for(LayerKind::LmHead) == policy.format_for(LayerKind::Embedding) {
            Linear { name: "decoder/projection/weight".into(), kind: LayerKind::LmHead, ..embed.clone() }
        } else {
            Linear::new(file, "decoder/projection/weight", LayerKind::LmHead, &w, (VOCAB, d), None, precision)?
        };
        let norm = norm("decoder/layer_norm")?;
        loading.stage("decoder norm and output head".into(), None, &[&head]).await?;
        Ok(WhisperDecoder { embed, head, positions, layers, norm, precision: precision.name().into() })
    }

    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    fn matrices(&self) -> impl Iterator<Item = &Linear> {
        self.layers.iter().flat_map(Layer::matrices).chain([&self.head])
    }

    pub async fn preload<B: Backend>(&self, exec: &mut B) -> Result<(), ModelError> {
        for m in self.matrices() {
            exec.preload(m).await?;
        }
        Ok(())
    }

    /// What the decoder stores; the output head counts once where it is the embedding.
    pub fn storage(&self) -> ModelStorage {
        let mut t = vec![self.embed.record(), TensorRecord::vector("decoder/position_encodings", &[&self.positions])];
        for l in &self.layers {
            t.push(l.norm1.record());
            t.extend([&l.qkv, &l.o].map(Linear::record));
            t.push(l.norm2.record());
            t.extend([&l.cross_q, &l.cross_kv, &l.cross_o].map(Linear::record));
            t.push(l.norm3.record());
            t.extend([&l.fc1, &l.fc2].map(Linear::record));
        }
        t.push(self.norm.record());
        t.push(self.head.tied_record(&self.embed));
        ModelStorage::new(&self.precision, t)
    }

    fn heads() -> Heads {
        let c = WHISPER_TINY;
        Heads { heads: c.heads, kv_heads: c.heads, head_dim: c.dim / c.heads }
    }

    /// The keys and values every layer's cross-attention reads, from one utterance's encoder output
    /// (`t x dim`).
    pub async fn cross_kv<B: Backend>(&self, exec: &mut B, enc: &[f32]) -> Result<CrossKv, ModelError> {
        let d = WHISPER_TINY.dim;
        let t = enc.len() / d;
        if t == 0 || enc.len() % d != 0 {
            return Err(ModelError::Input {
                why: format!("an encoder output of {} values, not rows of {d}", enc.len()),
            });
        }
        let mut kv = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let both = exec.linear(enc, t, &l.cross_kv).await?;
            let (k, v): (Vec<f32>, Vec<f32>) = both.chunks_exact(2 * d).fold((vec![], vec![]), |(mut k, mut v), r| {
                k.extend_from_slice(&r[..d]);
                v.extend_from_slice(&r[d..]);
                (k, v)
            });
            kv.push((k, v));
        }
        Ok(CrossKv { kv, t })
    }

    /// Runs `tokens` after those in `cache` (appending theirs) and returns the logits of the last.
    pub async fn step<B: Backend>(
        &self,
        exec: &mut B,
        tokens: &[u32],
        cache: &mut KvCache,
        cross: &CrossKv,
    ) -> Result<Vec<f32>, ModelError> {
        let d = WHISPER_TINY.dim;
        let (t, pos0, h) = (tokens.len(), cache.len(), Self::heads());
        if t == 0 || pos0 + t > TEXT_POSITIONS {
            return Err(ModelError::Input {
                why: format!("{t} tokens after {pos0}: the decoder has {TEXT_POSITIONS} positions"),
            });
        }
        let mut x = Vec::with_capacity(t * d);
        for (i, &id) in tokens.iter().enumerate() {
            if id as usize >= VOCAB {
                return Err(ModelError::Input { why: format!("token id {id} is outside the vocabulary of {VOCAB}") });
            }
            let p = &self.positions[(pos0 + i) * d..][..d];
            x.extend(self.embed.row(id as usize).iter().zip(p).map(|(e, p)| e + p));
        }
        let all = vec![1u32; cross.t];
        for (i, l) in self.layers.iter().enumerate() {
            let n = exec.layer_norm(&x, d, &l.norm1, EPS).await?;
            let qkv = exec.linear(&n, t, &l.qkv).await?;
            let part =
                |p: usize| -> Vec<f32> { qkv.chunks_exact(3 * d).flat_map(|r| r[p * d..][..d].to_vec()).collect() };
            exec.cache_append(cache, i, &part(1), &part(2));
            let (ks, vs) = cache.layer(i);
            let a = exec.attention(&part(0), ks, vs, t, pos0 + t, h, Mask::Causal { offset: pos0 }).await?;
            x = add(&x, &exec.linear(&a, t, &l.o).await?);
            let n = exec.layer_norm(&x, d, &l.norm2, EPS).await?;
            let q = exec.linear(&n, t, &l.cross_q).await?;
            let (ck, cv) = &cross.kv[i];
            let a = exec.attention(&q, ck, cv, t, cross.t, h, Mask::Padding(&all)).await?;
            x = add(&x, &exec.linear(&a, t, &l.cross_o).await?);
            let n = exec.layer_norm(&x, d, &l.norm3, EPS).await?;
            let f = exec.linear(&n, t, &l.fc1).await?;
            let f = exec.gelu(&f).await?;
            x = add(&x, &exec.linear(&f, t, &l.fc2).await?);
        }
        let last = exec.layer_norm(&x[(t - 1) * d..], d, &self.norm, EPS).await?;
        exec.linear(&last, 1, &self.head).await
    }

    /// Teacher forcing: the logits after each token of `tokens` from the last of the prompt on
    /// (`tokens` = [`PROMPT`] then a transcript; `tokens.len() - PROMPT.len() + 1` rows of
    /// [`VOCAB`]), the prompt as one step and every later token one step at a time through the
    /// cache, as greedy decoding runs them.
    pub async fn score<B: Backend>(
        &self,
        exec: &mut B,
        cross: &CrossKv,
        tokens: &[u32],
    ) -> Result<Vec<f32>, ModelError> {
        if tokens.len() < PROMPT.len() || tokens[..PROMPT.len()] != PROMPT {
            return Err(ModelError::Input { why: format!("a transcript to score starts with {PROMPT:?}: {tokens:?}") });
        }
        let mut cache = KvCache::new(self.layers.len(), WHISPER_TINY.dim);
        let mut y = self.step(exec, &PROMPT, &mut cache, cross).await?;
        for &id in &tokens[PROMPT.len()..] {
            y.extend(self.step(exec, &[id], &mut cache, cross).await?);
        }
        Ok(y)
    }

    /// Greedy transcription of one utterance's encoder output (`t x dim`): the prompt is the start
    /// of transcript without timestamps; at most `max_tokens` tokens, the end of text not included.
    pub async fn transcribe<B: Backend>(
        &self,
        exec: &mut B,
        enc: &[f32],
        suppress: &Suppress,
        max_tokens: usize,
    ) -> Result<Vec<u32>, ModelError> {
        let cross = self.cross_kv(exec, enc).await?;
        self.greedy(exec, &cross, suppress, max_tokens).await
    }

    /// Greedy transcription over computed cross-attention keys and values.
    pub async fn greedy<B: Backend>(
        &self,
        exec: &mut B,
        cross: &CrossKv,
        suppress: &Suppress,
        max_tokens: usize,
    ) -> Result<Vec<u32>, ModelError> {
        let mut cache = KvCache::new(self.layers.len(), WHISPER_TINY.dim);
        let mut input = PROMPT.to_vec();
        let mut out = Vec::new();
        while out.len() < max_tokens && cache.len() + input.len() <= TEXT_POSITIONS {
            let mut logits = self.step(exec, &input, &mut cache, cross).await?;
            let banned = suppress.always.iter().chain(if out.is_empty() { &suppress.begin[..] } else { &[] });
            for &b in banned {
                if let Some(l) = logits.get_mut(b as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
            let next = argmax(&logits) as u32;
            if next == END_OF_TEXT {
                break;
            }
            out.push(next);
            input = vec![next];
        }
        Ok(out)
    }
}
