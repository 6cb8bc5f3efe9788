//! Kernel identities and shader assembly.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::quant::{Group, QuantFormat, ScaleType, Scheme};
use crate::reference::Arith;

const PRELUDE_F32: &str = include_str!("kernels/prelude_f32.wgsl");
const PRELUDE_F16: &str = include_str!("kernels/prelude_f16.wgsl");
pub(crate) const DEQUANT: &str = include_str!("kernels/dequant.wgsl");
pub(crate) const GEMV: &str = include_str!("kernels/gemv.wgsl");
pub(crate) const GEMM: &str = include_str!("kernels/gemm.wgsl");

/// The two kernel shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelKind {
    /// One activation row (LLM decode).
    Gemv,
    /// Many rows, tiled (prefill, batches).
    Gemm,
}

impl KernelKind {
    /// GEMV for a single row, GEMM otherwise.
    pub fn for_rows(m: usize) -> Self {
        if m == 1 {
            KernelKind::Gemv
        } else {
            KernelKind::Gemm
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Gemv => "gemv",
            KernelKind::Gemm => "gemm",
        }
    }

    pub(crate) fn body(self) -> &'static str {
        match self {
            KernelKind::Gemv => GEMV,
            KernelKind::Gemm => GEMM,
        }
    }
}

/// Workgroup size of the GEMV kernel (the GEMM kernel's tile is fixed at 16x16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Workgroup {
    pub x: u32,
    pub y: u32,
}

impl Workgroup {
    /// The variants every GEMV is built and checked in.
    pub const VARIANTS: [Workgroup; 4] =
        [Workgroup { x: 64, y: 1 }, Workgroup { x: 128, y: 1 }, Workgroup { x: 256, y: 1 }, Workgroup { x: 128, y: 2 }];
    pub const GEMM_TILE: Workgroup = Workgroup { x: 16, y: 16 };

    /// Parses `128x2` or `256` (y = 1).
    pub fn parse(s: &str) -> Option<Workgroup> {
        let (x, y) = s.split_once('x').unwrap_or((s, "1"));
        let w = Workgroup { x: x.parse().ok()?, y: y.parse().ok()? };
        // Checked: `65536x65536` overflows u32 and must be refused, not wrap to 0.
        (w.x.is_power_of_two() && w.y >= 1 && w.x.checked_mul(w.y).is_some_and(|t| t <= 256)).then_some(w)
    }
}

impl fmt::Display for Workgroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.x, self.y)
    }
}

/// One compiled kernel variant: shape, arithmetic and workgroup size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KernelVariant {
    pub kind: KernelKind,
    pub arith: Arith,
    pub workgroup: Workgroup,
}

impl KernelVariant {
    pub fn new(kind: KernelKind, arith: Arith, workgroup: Workgroup) -> Self {
        let workgroup = if kind == KernelKind::Gemm { Workgroup::GEMM_TILE } else { workgroup };
        KernelVariant { kind, arith, workgroup }
    }
}

/// The WGSL of a kernel: prelude + decoding + kernel body.
pub fn shader_source(kind: KernelKind, arith: Arith) -> String {
    assemble(arith, DEQUANT, kind.body())
}

/// Prelude of `arith`, then the decoding functions, then a kernel body (planted faults pass patched pieces).
pub(crate) fn assemble(arith: Arith, dequant: &str, body: &str) -> String {
    let prelude = match arith {
        Arith::F32 => PRELUDE_F32,
        Arith::F16 => PRELUDE_F16,
    };
    format!("{prelude}\n{dequant}\n{body}")
}

/// Values of the pipeline-overridable constants for a format and variant.
pub fn pipeline_constants(format: &QuantFormat, variant: &KernelVariant) -> Vec<(&'static str, f64)> {
    let mut c = match format {
        QuantFormat::F16 => vec![("BITS", 16.0), ("GROUP_LEN", 0.0), ("ASYM", 0.0), ("SCALE_F16", 0.0)],
        QuantFormat::Int(f) => vec![
            ("BITS", f.bits.bits() as f64),
            (
                "GROUP_LEN",
                match f.group {
                    Group::Size(g) => g as f64,
                    Group::PerChannel => 0.0,
                },
            ),
            ("ASYM", if f.scheme == Scheme::Asymmetric { 1.0 } else { 0.0 }),
            ("SCALE_F16", if f.scale == ScaleType::F16 { 1.0 } else { 0.0 }),
        ],
    };
    if variant.kind == KernelKind::Gemv {
        c.push(("WG_X", variant.workgroup.x as f64));
        c.push(("WG_Y", variant.workgroup.y as f64));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_assemble() {
        let s = shader_source(KernelKind::Gemv, Arith::F16);
        assert!(s.starts_with("// Arithmetic type of the shader-f16 variant"));
        assert!(s.contains("enable f16;") && s.contains("fn gemv("));
        assert!(!shader_source(KernelKind::Gemm, Arith::F32).contains("enable f16"));
        assert_eq!(Workgroup::parse("128x2"), Some(Workgroup { x: 128, y: 2 }));
        assert_eq!(Workgroup::parse("256"), Some(Workgroup { x: 256, y: 1 }));
        assert_eq!(Workgroup::parse("100x1"), None);
        assert_eq!(Workgroup::parse("65536x65536"), None, "overflowing product");
        assert_eq!(Workgroup::parse("4294967295x2"), None);
    }
}
