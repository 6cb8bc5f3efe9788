//! A model's weights in the precision a [`MixedPolicy`] gives each layer kind.
//!
//! - Matrices (linear layers, embedding tables, the output head) are stored in the format of their
//!   layer kind. Where a group size does not divide K (SmolLM2's 576 by 128), K is padded with zero
//!   weights to whole groups, as onnxruntime's `MatMulNBits` pads its last block; activations are
//!   padded with zeros to match, so the padding adds nothing to any output.
//! - Vectors (norm weights, biases) are never integer-quantized: they are 0.1% of the bytes and
//!   every runtime keeps them in floating point. They are stored as f16 in every precision (the
//!   `norm` kind of the mixed policy, and what the fp16 reference uses too).

use half::f16;
use serde::{Deserialize, Serialize};

use super::ModelError;
use crate::platform::selection::{precision_for, Backend};
use crate::protocol::{CellBackend, Precision};
use crate::quant::{quantize, Group, LayerKind, MixedPolicy, QuantFormat, QuantizedMatrix, Quantizer};

/// A weight matrix `n x k` in its stored form, with an optional bias.
#[derive(Clone, Debug)]
pub struct Linear {
    pub name: String,
    pub kind: LayerKind,
    pub q: QuantizedMatrix,
    /// K before padding (the activations' width).
    pub k: usize,
    pub bias: Option<Vec<f32>>,
}

/// What one stored tensor costs, for the records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorRecord {
    pub name: String,
    pub kind: String,
    pub format: String,
    pub shape: [usize; 2],
    pub bytes: usize,
    pub fp16_bytes: usize,
    /// A second stored copy of weights counted elsewhere (a tied output head): its weights are
    /// not counted again, and its bytes only where its format differs from the first copy's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tied: bool,
    /// The stored bits hashed ([`Digest`], 16 hex digits): which tensor two loads stored apart.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
}

impl TensorRecord {
    /// A vector stored as f16 (norms, layer scales, position tables), the concatenation of
    /// `parts`, counted with the norms.
    pub fn vector(name: &str, parts: &[&[f32]]) -> TensorRecord {
        let len = parts.iter().map(|p| p.len()).sum::<usize>();
        let mut d = Digest::new();
        parts.iter().for_each(|p| d.f32s(p));
        TensorRecord {
            name: name.into(),
            kind: LayerKind::Norm.to_string(),
            format: QuantFormat::F16.to_string(),
            shape: [1, len],
            bytes: 2 * len,
            fp16_bytes: 2 * len,
            tied: false,
            digest: d.hex(),
        }
    }
}

/// A 64-bit FNV-1a-style hash over little-endian 8-byte words (the tail zero-padded, its length
/// mixed in): enough to tell two stored models apart, fast enough to run over every cell's
/// weights in wasm. Not cryptographic.
pub struct Digest(u64);

impl Default for Digest {
    fn default() -> Self {
        Self::new()
    }
}

impl Digest {
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    pub fn new() -> Digest {
        Digest(0xcbf2_9ce4_8422_2325)
    }

    pub fn bytes(&mut self, b: &[u8]) {
        let mut words = b.chunks_exact(8);
        for w in &mut words {
            self.word(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        let mut tail = [0u8; 8];
        tail[..rest.len()].copy_from_slice(rest);
        self.word(u64::from_le_bytes(tail));
        self.word(b.len() as u64);
    }

    pub fn f32s(&mut self, v: &[f32]) {
        self.bytes(bytemuck::cast_slice(v));
    }

    pub fn word(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(Self::PRIME);
    }

    pub fn finish(&self) -> u64 {
        self.0
    }

    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// Rounds a vector to f16 (how norm weights and biases are stored in every precision).
pub fn f16_vector(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| f16::from_f32(x).to_f32()).collect()
}

/// The K a format stores a row of `k` weights in: whole groups.
pub fn padded_k(format: QuantFormat, k: usize) -> usize {
    match format {
        QuantFormat::Int(f) => match f.group {
            Group::Size(g) => k.div_ceil(g as usize) * g as usize,
            Group::PerChannel => k,
        },
        QuantFormat::F16 => k,
    }
}

/// How a model's weights are to be stored.
#[derive(Clone, Debug)]
pub struct ModelPrecision {
    pub policy: MixedPolicy,
    pub quantizer: Quantizer,
}

impl ModelPrecision {
    pub fn fp16() -> ModelPrecision {
        ModelPrecision { policy: MixedPolicy::uniform(QuantFormat::F16), quantizer: Quantizer::RoundToNearest }
    }

    pub fn name(&self) -> &str {
        &self.policy.name
    }

    /// What a model cell of `precision` stores on `backend`, the precision that then ran (what the
    /// page reports and `ran` expectations match), and a note per upgrade. WebNN's standard mode
    /// runs 8-bit: each narrower integer format is upgraded with the same grouping and scheme, as
    /// for a matmul cell ([`precision_for`]). The page and the harness both call this, so the
    /// harness judges against the model the page really ran. `None` for `auto`.
    pub fn on_backend(
        precision: Precision,
        quantizer: Quantizer,
        backend: CellBackend,
    ) -> Option<(ModelPrecision, Precision, Vec<String>)> {
        let mut policy = precision.policy()?;
        let mut notes = Vec::new();
        if backend == CellBackend::Webnn {
            let mut up = |f: &mut QuantFormat| {
                let (to, note) = precision_for(Backend::Webnn, *f);
                if let Some(n) = note.filter(|n| !notes.contains(n)) {
                    notes.push(n);
                }
                *f = to;
            };
            up(&mut policy.default);
            policy.overrides.values_mut().for_each(&mut up);
        }
        let ran = match precision {
            Precision::Format(_) => Precision::Format(policy.default),
            other => other,
        };
        if let Precision::Format(f) = ran {
            policy.name = f.to_string();
        } else if !notes.is_empty() {
            policy.name = format!("{} (8-bit on WebNN)", policy.name);
        }
        Some((ModelPrecision { policy, quantizer }, ran, notes))
    }
}

impl Linear {
    /// Stores `w` (`n x k`, row-major, output channels by input channels) in the format of `kind`.
    pub fn new(
        file: &str,
        name: &str,
        kind: LayerKind,
        w: &[f32],
        (n, k): (usize, usize),
        bias: Option<&[f32]>,
        precision: &ModelPrecision,
    ) -> Result<Linear, ModelError> {
        let bad = |why: String| ModelError::Tensor { file: file.into(), tensor: name.into(), why };
        if w.len() != n * k || bias.is_some_and(|b| b.len() != n) {
            return Err(bad(format!("{} weights and a bias of {:?} for {n}x{k}", w.len(), bias.map(|b| b.len()))));
        }
        let format = precision.policy.format_for(kind);
        let kp = padded_k(format, k);
        let padded;
        let w = if kp == k {
            w
        } else {
            padded = w
                .chunks_exact(k)
                .flat_map(|row| row.iter().copied().chain(std::iter::repeat_n(0.0, kp - k)))
                .collect::<Vec<_>>();
            &padded
        };
        let q = quantize(w, n, kp, format, precision.quantizer).map_err(|e| bad(e.to_string()))?;
        Ok(Linear { name: name.into(), kind, q, k, bias: bias.map(f16_vector) })
    }

    pub fn n(&self) -> usize {
        self.q.n
    }

    /// Row `r` of the stored matrix as f32 (an embedding lookup), without the padding.
    pub fn row(&self, r: usize) -> Vec<f32> {
        (0..self.k).map(|c| self.q.weight(r, c)).collect()
    }

    /// The record of an output head tied to `embed`: its weights counted once (the embedding's),
    /// its bytes too where it is stored in the embedding's format.
    pub fn tied_record(&self, embed: &Linear) -> TensorRecord {
        let mut r = self.record();
        r.tied = true;
        r.fp16_bytes = 0;
        if self.q.format == embed.q.format {
            r.bytes = 0;
        }
        r
    }

    /// The bytes the matrix and its bias are stored in.
    pub fn stored_bytes(&self) -> usize {
        self.q.format.storage_bytes(self.q.n, self.q.k).map(|b| b.total()).unwrap_or(0)
            + self.bias.as_ref().map_or(0, |b| 2 * b.len())
    }

    pub fn record(&self) -> TensorRecord {
        let (n, k) = (self.q.n, self.k);
        let bytes = self.stored_bytes();
        let mut d = Digest::new();
        d.bytes(&self.q.codes);
        d.f32s(&self.q.scales);
        d.bytes(&self.q.zeros);
        d.f32s(self.bias.as_deref().unwrap_or(&[]));
        TensorRecord {
            name: self.name.clone(),
            kind: self.kind.to_string(),
            format: self.q.format.to_string(),
            shape: [n, k],
            bytes,
            fp16_bytes: 2 * n * k + self.bias.as_ref().map_or(0, |b| 2 * b.len()),
            tied: false,
            digest: d.hex(),
        }
    }
}

/// A norm's weight (and bias, for layer norm), stored as f16.
#[derive(Clone, Debug)]
pub struct NormWeights {
    pub name: String,
    pub gamma: Vec<f32>,
    pub beta: Option<Vec<f32>>,
}

impl NormWeights {
    pub fn new(name: &str, gamma: &[f32], beta: Option<&[f32]>) -> NormWeights {
        NormWeights { name: name.into(), gamma: f16_vector(gamma), beta: beta.map(f16_vector) }
    }

    pub fn record(&self) -> TensorRecord {
        TensorRecord::vector(&self.name, &[&self.gamma, self.beta.as_deref().unwrap_or(&[])])
    }
}

/// The records of a whole model, summed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelStorage {
    pub precision: String,
    pub tensors: Vec<TensorRecord>,
    pub weights: usize,
    pub bytes: usize,
    pub fp16_bytes: usize,
    pub bits_per_weight: f64,
    /// Every stored tensor's bits and name hashed in order (16 hex digits): equal for two loads
    /// that stored the same model (a progressive load in the page and a one-shot load natively).
    #[serde(default)]
    pub digest: String,
}

impl ModelStorage {
    pub fn new(precision: &str, tensors: Vec<TensorRecord>) -> ModelStorage {
        let mut d = Digest::new();
        for t in &tensors {
            d.bytes(t.name.as_bytes());
            d.bytes(t.format.as_bytes());
            d.bytes(t.digest.as_bytes());
        }
        let weights = tensors.iter().filter(|t| !t.tied).map(|t| t.shape[0] * t.shape[1]).sum::<usize>();
        let bytes = tensors.iter().map(|t| t.bytes).sum::<usize>();
        let fp16_bytes = tensors.iter().map(|t| t.fp16_bytes).sum();
        ModelStorage {
            precision: precision.into(),
            tensors,
            weights,
            bytes,
            fp16_bytes,
            bits_per_weight: bytes as f64 * 8.0 / weights.max(1) as f64,
            digest: d.hex(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webnn_standard_mode_stores_every_narrow_format_at_8_bits() {
        let rtn = Quantizer::RoundToNearest;
        let (p, ran, notes) = ModelPrecision::on_backend(Precision::Mixed, rtn, CellBackend::Webnn).unwrap();
        assert_eq!(p.policy.format_for(LayerKind::Mlp).to_string(), "int8-g128-sym");
        assert_eq!(p.policy.format_for(LayerKind::Attention).to_string(), "int8-pc-sym");
        assert_eq!(p.policy.format_for(LayerKind::Norm), QuantFormat::F16);
        assert_eq!((ran, notes.len()), (Precision::Mixed, 1));
        assert_eq!(p.name(), "mixed (8-bit on WebNN)");
        let int4: Precision = "int4-g128-sym".parse().unwrap();
        let (p, ran, _) = ModelPrecision::on_backend(int4, rtn, CellBackend::Webnn).unwrap();
        assert_eq!((ran.to_string(), p.name()), ("int8-g128-sym".to_string(), "int8-g128-sym"));
        for b in [CellBackend::WebnnExperimental, CellBackend::Wasm, CellBackend::Webgpu] {
            let (p, ran, notes) = ModelPrecision::on_backend(int4, rtn, b).unwrap();
            assert_eq!((ran, p.name(), notes.len()), (int4, "int4-g128-sym", 0), "{b}");
        }
        assert!(ModelPrecision::on_backend(Precision::Auto, rtn, CellBackend::Webnn).is_none());
    }

    #[test]
    fn padding_to_whole_groups_changes_no_weight() {
        let (n, k) = (3, 40);
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect();
        let p = ModelPrecision {
            policy: MixedPolicy::uniform("int4-g32-sym".parse().unwrap()),
            quantizer: Quantizer::RoundToNearest,
        };
        let l = Linear::new("f", "w", LayerKind::Mlp, &w, (n, k), None, &p).unwrap();
        assert_eq!((l.q.k, l.k), (64, 40));
        for r in 0..n {
            assert!((40..64).all(|c| l.q.weight(r, c) == 0.0), "padding decodes to zero");
            let max = w[r * k..(r + 1) * k].iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(l.row(r).iter().zip(&w[r * k..]).all(|(a, b)| (a - b).abs() <= max / 7.0 * 0.51 + 1e-6));
        }
        let e = Linear::new("m.safetensors", "fc", LayerKind::Mlp, &w, (n, 41), None, &p).unwrap_err().to_string();
        assert!(e.starts_with("m.safetensors: tensor `fc`"), "{e}");
    }
}
