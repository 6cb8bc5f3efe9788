//! The one value that describes a weight format completely.
//!
//! Every kernel, reference and report reads a [`QuantFormat`]; its canonical name
//! (`int4-g128-sym`, `int8-pc-asym-f32s`, `fp16`) is what matrices and results use.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::QuantError;
use super::layout::Layout;

/// Width of an integer weight code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IntBits {
    B2,
    B3,
    B4,
    B8,
}

impl IntBits {
    pub const ALL: [IntBits; 4] = [IntBits::B2, IntBits::B3, IntBits::B4, IntBits::B8];

    pub fn bits(self) -> u32 {
        match self {
            IntBits::B2 => 2,
            IntBits::B3 => 3,
            IntBits::B4 => 4,
            IntBits::B8 => 8,
        }
    }

    pub fn from_bits(bits: u32) -> Result<Self, QuantError> {
        match bits {
            2 => Ok(IntBits::B2),
            3 => Ok(IntBits::B3),
            4 => Ok(IntBits::B4),
            8 => Ok(IntBits::B8),
            other => Err(QuantError::UnsupportedBits(other)),
        }
    }

    /// Bit mask of one code.
    pub fn mask(self) -> u32 {
        (1u32 << self.bits()) - 1
    }
}

/// How many consecutive weights along K share one scale (and zero point).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Group {
    /// A fixed group size along K: 32, 64 or 128.
    Size(u32),
    /// One group per output channel: the whole of K.
    PerChannel,
}

impl Group {
    pub const SIZES: [Group; 4] = [Group::Size(32), Group::Size(64), Group::Size(128), Group::PerChannel];

    /// The group length for a row of `k` weights; errors when the group does not divide K.
    pub fn len_for(self, k: usize) -> Result<usize, QuantError> {
        match self {
            Group::PerChannel => Ok(k),
            Group::Size(g) => {
                let g = g as usize;
                if k % g != 0 {
                    Err(QuantError::GroupDoesNotDivide { k, group: g })
                } else {
                    Ok(g)
                }
            }
        }
    }

    /// The size as a number, `None` for per-channel (reports print "pc").
    pub fn size(self) -> Option<u32> {
        match self {
            Group::Size(g) => Some(g),
            Group::PerChannel => None,
        }
    }
}

/// Whether a zero point is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Signed codes, implicit zero point 0: `w = scale * q`.
    Symmetric,
    /// Unsigned codes with a stored zero point of the weight's own width: `w = scale * (q - z)`.
    Asymmetric,
}

/// Storage type of the scales.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleType {
    F16,
    F32,
}

impl ScaleType {
    pub fn bits(self) -> u32 {
        match self {
            ScaleType::F16 => 16,
            ScaleType::F32 => 32,
        }
    }
}

/// An integer format: width, grouping, scheme and scale storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IntFormat {
    pub bits: IntBits,
    pub group: Group,
    pub scheme: Scheme,
    pub scale: ScaleType,
}

impl IntFormat {
    pub fn new(bits: IntBits, group: Group, scheme: Scheme) -> Self {
        IntFormat { bits, group, scheme, scale: ScaleType::F16 }
    }

    /// Smallest and largest code, as integers (signed for symmetric, unsigned for asymmetric).
    pub fn code_range(&self) -> (i32, i32) {
        let b = self.bits.bits();
        match self.scheme {
            Scheme::Symmetric => (-(1 << (b - 1)), (1 << (b - 1)) - 1),
            Scheme::Asymmetric => (0, (1 << b) - 1),
        }
    }

    pub fn layout(&self) -> Layout {
        Layout::for_bits(self.bits)
    }
}

/// A complete weight format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum QuantFormat {
    /// IEEE half-precision weights, no scales.
    F16,
    Int(IntFormat),
}

impl QuantFormat {
    /// Every format `webq formats` lists: fp16, then each width x group x scheme with f16 scales,
    /// then the f32-scale variants of the two most used formats.
    pub fn catalogue() -> Vec<QuantFormat> {
        let mut all = vec![QuantFormat::F16];
        for bits in IntBits::ALL {
            for group in Group::SIZES {
                for scheme in [Scheme::Symmetric, Scheme::Asymmetric] {
                    all.push(QuantFormat::Int(IntFormat::new(bits, group, scheme)));
                }
            }
        }
        for (bits, group) in [(IntBits::B4, Group::Size(128)), (IntBits::B8, Group::PerChannel)] {
            all.push(QuantFormat::Int(IntFormat {
                scale: ScaleType::F32,
                ..IntFormat::new(bits, group, Scheme::Symmetric)
            }));
        }
        all
    }

    pub fn as_int(&self) -> Option<&IntFormat> {
        match self {
            QuantFormat::F16 => None,
            QuantFormat::Int(f) => Some(f),
        }
    }

    /// Width of one stored weight in bits (16 for fp16).
    pub fn weight_bits(&self) -> u32 {
        match self {
            QuantFormat::F16 => 16,
            QuantFormat::Int(f) => f.bits.bits(),
        }
    }

    pub fn layout(&self) -> Layout {
        match self {
            QuantFormat::F16 => Layout::Half,
            QuantFormat::Int(f) => f.layout(),
        }
    }

    /// Checks that a `n x k` matrix can be stored in this format.
    pub fn check_shape(&self, n: usize, k: usize) -> Result<(), QuantError> {
        if n == 0 || k == 0 {
            return Err(QuantError::Empty { what: format!("weight matrix {n}x{k}") });
        }
        if let QuantFormat::Int(f) = self {
            f.group.len_for(k)?;
        }
        Ok(())
    }

    /// Bytes one `n x k` matrix takes in this format: codes (rows padded to whole 32-bit words),
    /// scales and zero points (each packed flat over the tensor, padded to a whole word at the end).
    pub fn storage_bytes(&self, n: usize, k: usize) -> Result<StorageBytes, QuantError> {
        self.check_shape(n, k)?;
        Ok(match self {
            QuantFormat::F16 => StorageBytes { codes: n * Layout::Half.row_stride_bytes(k), scales: 0, zeros: 0 },
            QuantFormat::Int(f) => {
                let groups = n * (k / f.group.len_for(k)?);
                let scales = words(groups * f.scale.bits() as usize) * 4;
                let zeros = match f.scheme {
                    Scheme::Symmetric => 0,
                    Scheme::Asymmetric => f.layout().packed_bytes(groups).div_ceil(4) * 4,
                };
                StorageBytes { codes: n * f.layout().row_stride_bytes(k), scales, zeros }
            }
        })
    }

    /// Bits per weight of a `n x k` matrix, everything stored counted (codes, scales, zero points, padding).
    pub fn bits_per_weight(&self, n: usize, k: usize) -> Result<f64, QuantError> {
        let bytes = self.storage_bytes(n, k)?;
        Ok(bytes.total() as f64 * 8.0 / (n * k) as f64)
    }
}

/// Bytes of one stored matrix, by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StorageBytes {
    pub codes: usize,
    pub scales: usize,
    pub zeros: usize,
}

impl StorageBytes {
    pub fn total(&self) -> usize {
        self.codes + self.scales + self.zeros
    }
}

fn words(bits: usize) -> usize {
    bits.div_ceil(32)
}

impl fmt::Display for QuantFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantFormat::F16 => write!(f, "fp16"),
            QuantFormat::Int(q) => {
                write!(f, "int{}-", q.bits.bits())?;
                match q.group {
                    Group::Size(g) => write!(f, "g{g}")?,
                    Group::PerChannel => write!(f, "pc")?,
                }
                match q.scheme {
                    Scheme::Symmetric => write!(f, "-sym")?,
                    Scheme::Asymmetric => write!(f, "-asym")?,
                }
                if q.scale == ScaleType::F32 {
                    write!(f, "-f32s")?;
                }
                Ok(())
            }
        }
    }
}

/// Parses `fp16`, `int8`, `int4-g128-sym`, `int3-g64-asym`, `int8-pc-sym-f32s`.
///
/// A bare width takes its usual default: int8 per-channel symmetric (WebNN's standard mode),
/// int4 group 128 symmetric (Q4-style), int3 and int2 group 32 asymmetric (the low widths need both).
impl FromStr for QuantFormat {
    type Err = QuantError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| QuantError::BadFormatName { name: s.to_string(), reason: reason.to_string() };
        if s == "fp16" || s == "f16" {
            return Ok(QuantFormat::F16);
        }
        let mut parts = s.split('-');
        let head = parts.next().unwrap_or_default();
        let bits: u32 = head
            .strip_prefix("int")
            .ok_or_else(|| bad("expected `fp16` or a name starting with `int2`, `int3`, `int4` or `int8`"))?
            .parse()
            .map_err(|_| bad("the width after `int` is not a number"))?;
        let bits = IntBits::from_bits(bits).map_err(|_| bad("supported widths are 2, 3, 4 and 8 bits"))?;
        let rest: Vec<&str> = parts.collect();
        if rest.is_empty() {
            let (group, scheme) = match bits {
                IntBits::B8 => (Group::PerChannel, Scheme::Symmetric),
                IntBits::B4 => (Group::Size(128), Scheme::Symmetric),
                IntBits::B3 | IntBits::B2 => (Group::Size(32), Scheme::Asymmetric),
            };
            return Ok(QuantFormat::Int(IntFormat::new(bits, group, scheme)));
        }
        if rest.len() < 2 || rest.len() > 3 {
            return Err(bad("expected intB-GROUP-SCHEME[-f32s], e.g. int4-g128-sym"));
        }
        let group = match rest[0] {
            "pc" => Group::PerChannel,
            g => {
                let size: u32 = g
                    .strip_prefix('g')
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| bad("group must be g32, g64, g128 or pc"))?;
                if !matches!(size, 32 | 64 | 128) {
                    return Err(bad("group sizes are 32, 64 and 128 (or pc for per-channel)"));
                }
                Group::Size(size)
            }
        };
        let scheme = match rest[1] {
            "sym" => Scheme::Symmetric,
            "asym" => Scheme::Asymmetric,
            _ => return Err(bad("scheme must be sym or asym")),
        };
        let scale = match rest.get(2) {
            None | Some(&"f16s") => ScaleType::F16,
            Some(&"f32s") => ScaleType::F32,
            Some(_) => return Err(bad("scale storage suffix must be f16s or f32s")),
        };
        Ok(QuantFormat::Int(IntFormat { bits, group, scheme, scale }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in QuantFormat::catalogue() {
            let name = f.to_string();
            assert_eq!(name.parse::<QuantFormat>().unwrap(), f, "{name}");
        }
    }

    #[test]
    fn int4_g128_f16_sym_is_4_125_bits() {
        let f: QuantFormat = "int4-g128-sym".parse().unwrap();
        assert_eq!(f.bits_per_weight(4096, 4096).unwrap(), 4.125);
        let a: QuantFormat = "int4-g128-asym".parse().unwrap();
        assert_eq!(a.bits_per_weight(4096, 4096).unwrap(), 4.0 + 20.0 / 128.0);
        let q3: QuantFormat = "int3-g32-sym".parse().unwrap();
        assert_eq!(q3.bits_per_weight(4096, 4096).unwrap(), 3.5);
        assert_eq!(QuantFormat::F16.bits_per_weight(10, 4096).unwrap(), 16.0);
    }

    #[test]
    fn bad_names_say_why() {
        for (name, needle) in [
            ("int5-g32-sym", "widths"),
            ("int4-g48-sym", "group sizes"),
            ("int4-g128-xyz", "scheme"),
            ("bf16", "expected"),
            ("int4-g128", "expected intB"),
        ] {
            let err = name.parse::<QuantFormat>().unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(needle), "{name}: {err}");
        }
    }

    #[test]
    fn group_must_divide_k() {
        let f: QuantFormat = "int4-g128-sym".parse().unwrap();
        let err = f.check_shape(8, 100).unwrap_err();
        assert_eq!(err, QuantError::GroupDoesNotDivide { k: 100, group: 128 });
        assert!(f.check_shape(0, 128).is_err());
    }
}
