//! Mixed precision: which format each kind of layer gets.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::format::{Group, IntBits, IntFormat, QuantFormat, Scheme};

/// The kinds of layer a model is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    Embedding,
    Attention,
    Mlp,
    Norm,
    Conv,
    LmHead,
}

impl LayerKind {
    pub const ALL: [LayerKind; 6] = [
        LayerKind::Embedding,
        LayerKind::Attention,
        LayerKind::Mlp,
        LayerKind::Norm,
        LayerKind::Conv,
        LayerKind::LmHead,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LayerKind::Embedding => "embedding",
            LayerKind::Attention => "attention",
            LayerKind::Mlp => "mlp",
            LayerKind::Norm => "norm",
            LayerKind::Conv => "conv",
            LayerKind::LmHead => "lm_head",
        }
    }
}

impl fmt::Display for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LayerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        LayerKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown layer kind `{s}` (known: embedding, attention, mlp, norm, conv, lm_head)"))
    }
}

/// A default format and per-kind overrides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MixedPolicy {
    pub name: String,
    pub default: QuantFormat,
    pub overrides: BTreeMap<LayerKind, QuantFormat>,
}

impl MixedPolicy {
    /// The seed's policy: 4-bit by default, attention and embeddings 8-bit, norms 16-bit; and the
    /// output head 8-bit, as the embedding it is tied to in SmolLM2 (then stored once): with the
    /// head at int4-g128 SmolLM2 agreed with fp16 on 0.574 of next tokens (perplexity 1.76x), with
    /// it at int8 on 0.711 (1.33x), in fewer bytes (bench/2026-11-28-models-policy.txt).
    pub fn webq_default() -> Self {
        let int8 = QuantFormat::Int(IntFormat::new(IntBits::B8, Group::PerChannel, Scheme::Symmetric));
        MixedPolicy {
            name: "webq-default".into(),
            default: QuantFormat::Int(IntFormat::new(IntBits::B4, Group::Size(128), Scheme::Symmetric)),
            overrides: BTreeMap::from([
                (LayerKind::Attention, int8),
                (LayerKind::Embedding, int8),
                (LayerKind::LmHead, int8),
                (LayerKind::Norm, QuantFormat::F16),
            ]),
        }
    }

    /// One format for every layer.
    pub fn uniform(format: QuantFormat) -> Self {
        MixedPolicy { name: format.to_string(), default: format, overrides: BTreeMap::new() }
    }

    pub fn format_for(&self, kind: LayerKind) -> QuantFormat {
        self.overrides.get(&kind).copied().unwrap_or(self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_matches_the_seed() {
        let p = MixedPolicy::webq_default();
        assert_eq!(p.format_for(LayerKind::Mlp).to_string(), "int4-g128-sym");
        assert_eq!(p.format_for(LayerKind::LmHead).to_string(), "int8-pc-sym");
        assert_eq!(p.format_for(LayerKind::Attention).to_string(), "int8-pc-sym");
        assert_eq!(p.format_for(LayerKind::Embedding).to_string(), "int8-pc-sym");
        assert_eq!(p.format_for(LayerKind::Norm), QuantFormat::F16);
        assert_eq!("lm_head".parse::<LayerKind>().unwrap(), LayerKind::LmHead);
        assert!("bogus".parse::<LayerKind>().is_err());
    }
}
