//! The audio family: Whisper's encoder (tiny.en, from a CTranslate2 `model.bin`).
//!
//! `x = gelu(conv1(mel))`, `x = gelu(conv2(x))` (kernel 3, padding 1; conv2 of stride 2), plus the
//! trained positions, then per layer (pre-norm) `x += O(attn(QKV LN1 x))`, `x += W2 gelu(W1 LN2 x)`,
//! then `LN x`. The convolutions are matmuls over each output step's window (the input channels
//! by the 3 taps, as the weight `[out, in, 3]` is laid out). The query, key and value projections
//! are stored fused (`[3 * dim, dim]`) and run as one matmul.
//!
//! Whisper is trained on 30 s windows (3000 frames, 1500 positions); a cell may run fewer frames
//! (the audio it has), with the first positions.

use super::attention::{attend_each, Heads};
use super::bert::add;
use super::ct2::Ct2;
use super::exec::Backend;
use super::linear::{f16_vector, Linear, ModelPrecision, ModelStorage, NormWeights, TensorRecord};
use super::loading::{ready, Loading};
use super::ModelError;
use crate::quant::LayerKind;

/// The encoder's shape (Whisper tiny).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WhisperConfig {
    pub layers: usize,
    pub dim: usize,
    pub heads: usize,
    pub mlp: usize,
    pub mels: usize,
    /// Positions the encoder was trained with (30 s).
    pub positions: usize,
}

pub const WHISPER_TINY: WhisperConfig =
    WhisperConfig { layers: 4, dim: 384, heads: 6, mlp: 1536, mels: 80, positions: 1500 };

/// Whisper's layer norm epsilon (PyTorch's default).
const EPS: f64 = 1e-5;

struct Layer {
    norm1: NormWeights,
    qkv: Linear,
    o: Linear,
    norm2: NormWeights,
    fc1: Linear,
    fc2: Linear,
}

/// Reading a CTranslate2 Whisper file's weights (the encoder's and the decoder's) into a precision.
pub(super) struct Ct2Weights<'a, 'f> {
    file: &'a str,
    m: &'a Ct2<'f>,
    precision: &'a ModelPrecision,
}

impl<'a, 'f> Ct2Weights<'a, 'f> {
    /// Checks that the file is a Whisper model with tiny's head count at `heads_key`.
    pub(super) fn new(
        file: &'a str,
        m: &'a Ct2<'f>,
        precision: &'a ModelPrecision,
        heads_key: &str,
    ) -> Result<Self, ModelError> {
        if m.spec != "WhisperSpec" {
            return Err(ModelError::Format {
                file: file.into(),
                format: "CTranslate2 Whisper",
                why: format!("spec `{}`", m.spec),
            });
        }
        let heads = m.int(heads_key)?;
        if heads != WHISPER_TINY.heads as i64 {
            return Err(ModelError::Tensor {
                file: file.into(),
                tensor: heads_key.into(),
                why: format!("{heads}, not {}", WHISPER_TINY.heads),
            });
        }
        Ok(Ct2Weights { file, m, precision })
    }

    /// `name/weight` (`[n, k]`) with `name/bias`.
    pub(super) fn linear(&self, name: &str, kind: LayerKind, (n, k): (usize, usize)) -> Result<Linear, ModelError> {
        let w = self.m.f32s(&format!("{name}/weight"), &[n, k])?;
        let b = self.m.f32s(&format!("{name}/bias"), &[n])?;
        Linear::new(self.file, name, kind, &w, (n, k), Some(&b), self.precision)
    }

    /// A layer norm's `name/gamma` and `name/beta`.
    pub(super) fn norm(&self, name: &str) -> Result<NormWeights, ModelError> {
        let d = WHISPER_TINY.dim;
        let (g, b) = (self.m.f32s(&format!("{name}/gamma"), &[d])?, self.m.f32s(&format!("{name}/beta"), &[d])?);
        Ok(NormWeights::new(name, &g, Some(&b)))
    }
}

/// Whisper's encoder in one precision.
pub struct WhisperEncoder {
    pub config: WhisperConfig,
    conv1: Linear,
    conv2: Linear,
    positions: Vec<f32>,
    layers: Vec<Layer>,
    norm: NormWeights,
    pub precision: String,
}

impl WhisperEncoder {
    /// Reads the first `depth` layers (all when `None`) and stores them in `precision`, in one shot.
    pub fn load(file: &str, m: &Ct2, precision: &ModelPrecision, depth: Option<usize>) -> Result<Self, ModelError> {
        ready(Self::load_staged(file, m, precision, depth, &mut Loading::one_shot()))
    }

    /// As [`WhisperEncoder::load`], stage by stage (the two convolutions with the positions,
    /// each layer, the final norm) through `loading`.
    pub async fn load_staged<B: Backend>(
        file: &str,
        m: &Ct2<'_>,
        precision: &ModelPrecision,
        depth: Option<usize>,
        loading: &mut Loading<'_, B>,
    ) -> Result<Self, ModelError> {
        let c = WHISPER_TINY;
        let d = c.dim;
        let r = Ct2Weights::new(file, m, precision, "encoder/num_heads")?;
        let linear = |name: &str, kind: LayerKind, shape: (usize, usize)| r.linear(name, kind, shape);
        let conv = |name: &str, cin: usize| -> Result<Linear, ModelError> {
            let w = m.f32s(&format!("{name}/weight"), &[d, cin, 3])?;
            let b = m.f32s(&format!("{name}/bias"), &[d])?;
            Linear::new(file, name, LayerKind::Conv, &w, (d, cin * 3), Some(&b), precision)
        };
        let norm = |name: &str| r.norm(name);
        let depth = depth.unwrap_or(c.layers).min(c.layers);
        loading.expect("whisper encoder", depth + 2);
        let (conv1, conv2) = (conv("encoder/conv1", c.mels)?, conv("encoder/conv2", d)?);
        let positions = f16_vector(&m.f32s("encoder/position_encodings/encodings", &[c.positions, d])?);
        loading.stage("encoder convolutions".into(), None, &[&conv1, &conv2]).await?;
        let mut layers = Vec::with_capacity(depth);
        for i in 0..depth {
            let p = format!("encoder/layer_{i}");
            let l = Layer {
                norm1: norm(&format!("{p}/self_attention/layer_norm"))?,
                qkv: linear(&format!("{p}/self_attention/linear_0"), LayerKind::Attention, (3 * d, d))?,
                o: linear(&format!("{p}/self_attention/linear_1"), LayerKind::Attention, (d, d))?,
                norm2: norm(&format!("{p}/ffn/layer_norm"))?,
                fc1: linear(&format!("{p}/ffn/linear_0"), LayerKind::Mlp, (c.mlp, d))?,
                fc2: linear(&format!("{p}/ffn/linear_1"), LayerKind::Mlp, (d, c.mlp))?,
            };
            loading.stage(format!("encoder layer {i}"), Some(i), &[&l.qkv, &l.o, &l.fc1, &l.fc2]).await?;
            layers.push(l);
        }
        let norm = norm("encoder/layer_norm")?;
        loading.stage("encoder norm".into(), None, &[]).await?;
        Ok(WhisperEncoder { config: c, conv1, conv2, positions, layers, norm, precision: precision.name().into() })
    }

    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    fn matrices(&self) -> impl Iterator<Item = &Linear> {
        [&self.conv1, &self.conv2].into_iter().chain(self.layers.iter().flat_map(|l| [&l.qkv, &l.o, &l.fc1, &l.fc2]))
    }

    pub async fn preload<B: Backend>(&self, exec: &mut B) -> Result<(), ModelError> {
        for m in self.matrices() {
            exec.preload(m).await?;
        }
        Ok(())
    }

    pub fn storage(&self) -> ModelStorage {
        let positions = TensorRecord::vector("encoder/position_encodings", &[&self.positions]);
        let mut t = vec![self.conv1.record(), self.conv2.record(), positions];
        for l in &self.layers {
            t.push(l.norm1.record());
            t.extend([&l.qkv, &l.o].map(Linear::record));
            t.push(l.norm2.record());
            t.extend([&l.fc1, &l.fc2].map(Linear::record));
        }
        t.push(self.norm.record());
        ModelStorage::new(&self.precision, t)
    }

    /// The encoder's output for each utterance's log-mel features (`mels x frames`, row-major,
    /// `frames` even and at most 3000), row-major `(utterances * frames / 2) x dim`.
    pub async fn encode<B: Backend>(&self, exec: &mut B, mels: &[f32], frames: usize) -> Result<Vec<f32>, ModelError> {
        let c = self.config;
        let d = c.dim;
        let per = c.mels * frames;
        if frames == 0 || frames % 2 != 0 || frames > 2 * c.positions || mels.is_empty() || mels.len() % per != 0 {
            return Err(ModelError::Input {
                why: format!(
                    "{} feature values for utterances of {} mels x {frames} frames (an even count up to {})",
                    mels.len(),
                    c.mels,
                    2 * c.positions
                ),
            });
        }
        let t = frames / 2;
        let utterances = mels.len() / per;
        let mut x = Vec::with_capacity(utterances * t * d);
        for u in mels.chunks_exact(per) {
            // conv1 over the mel frames (channels first), then conv2 of stride 2 over its output.
            let cols = windows(c.mels, frames, 1, |ch, s| u[ch * frames + s]);
            let h = exec.linear(&cols, frames, &self.conv1).await?;
            let h = exec.gelu(&h).await?;
            let cols = windows(d, frames, 2, |ch, s| h[s * d + ch]);
            let h = exec.linear(&cols, t, &self.conv2).await?;
            let h = exec.gelu(&h).await?;
            x.extend(h.iter().zip(&self.positions[..t * d]).map(|(a, p)| a + p));
        }
        let heads = Heads { heads: c.heads, kv_heads: c.heads, head_dim: d / c.heads };
        let m = utterances * t;
        for l in &self.layers {
            let h = exec.layer_norm(&x, d, &l.norm1, EPS).await?;
            let qkv = exec.linear(&h, m, &l.qkv).await?;
            let split = |part: usize| -> Vec<f32> {
                qkv.chunks_exact(3 * d).flat_map(|r| r[part * d..(part + 1) * d].to_vec()).collect()
            };
            let (q, k, v) = (split(0), split(1), split(2));
            let ctx = attend_each(exec, (&q, &k, &v), t, heads).await?;
            let o = exec.linear(&ctx, m, &l.o).await?;
            x = add(&x, &o);
            let h = exec.layer_norm(&x, d, &l.norm2, EPS).await?;
            let f = exec.linear(&h, m, &l.fc1).await?;
            let f = exec.gelu(&f).await?;
            let f = exec.linear(&f, m, &l.fc2).await?;
            x = add(&x, &f);
        }
        exec.layer_norm(&x, d, &self.norm, EPS).await
    }
}

/// The kernel-3, padding-1 windows of a sequence of `len` steps of `channels` values (`at(ch,
/// step)`), one row per output step at `stride`: `channels x 3` values, zero outside.
fn windows(channels: usize, len: usize, stride: usize, at: impl Fn(usize, usize) -> f32) -> Vec<f32> {
    let out = len / stride;
    let mut cols = Vec::with_capacity(out * channels * 3);
    for o in 0..out {
        for ch in 0..channels {
            for j in 0..3 {
                let s = (o * stride + j) as isize - 1;
                cols.push(if s < 0 || s as usize >= len { 0.0 } else { at(ch, s as usize) });
            }
        }
    }
    cols
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_lay_out_channels_by_taps_with_zero_padding() {
        // 2 channels, 4 steps: channel c, step s holds 10 c + s.
        let at = |c: usize, s: usize| (10 * c + s) as f32;
        let w = windows(2, 4, 1, at);
        assert_eq!(&w[..6], [0.0, 0.0, 1.0, 0.0, 10.0, 11.0], "step 0: padding, steps 0 and 1");
        let w = windows(2, 4, 2, at);
        assert_eq!(w.len(), 2 * 6);
        assert_eq!(&w[6..], [1.0, 2.0, 3.0, 11.0, 12.0, 13.0], "output 1 of stride 2: steps 1, 2, 3");
    }
}
