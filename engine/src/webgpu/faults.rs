//! Planted faults: deliberately broken kernel variants, to show that the kernel verdict catches real
//! bugs rather than blessing them. Only tests and `webq faults` can turn them on (cargo feature
//! `planted-faults`); matrices cannot name them.
//!
//! Each fault is a textual patch of the real shader source, the way such bugs are written: a wrong
//! shift, a dropped barrier, a floor instead of a ceiling. A fault applies to the cells where it
//! can show (the zero-point fault needs an asymmetric format); it is caught when at least one of
//! those cells fails kernel conformance.

use crate::quant::{IntBits, QuantFormat, ScaleType, Scheme};
use crate::reference::Arith;

use super::kernel::{
    variant_source, KernelKind, KernelVariant, Pieces, DEQUANT, GEMM, GEMM_VEC, GEMV, GEMV_VEC, REDUCE_SUBGROUP, SCALES,
};

/// Which piece of the shader a patch edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    Dequant,
    /// `scales.wgsl`, joined into every matmul kernel.
    Scales,
    Gemv,
    Gemm,
    GemvVec,
    GemmVec,
    /// The subgroup reduction `gemv-vec-sg` puts in `gemv_vec.wgsl`'s place.
    ReduceSubgroup,
}

impl Piece {
    fn text(self) -> &'static str {
        match self {
            Piece::Dequant => DEQUANT,
            Piece::Scales => SCALES,
            Piece::Gemv => GEMV,
            Piece::Gemm => GEMM,
            Piece::GemvVec => GEMV_VEC,
            Piece::GemmVec => GEMM_VEC,
            Piece::ReduceSubgroup => REDUCE_SUBGROUP,
        }
    }
}

/// Where a fault can show.
#[derive(Clone, Copy, Debug)]
pub struct Scope {
    pub kinds: &'static [KernelKind],
    pub arith: Option<Arith>,
    pub formats: fn(&QuantFormat) -> bool,
    /// Needs a K that is not a multiple of the GEMM tile, M > 1, or large same-signed sums.
    pub needs: Needs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    OddK,
    ManyRows,
    LargeSums,
}

#[derive(Clone, Copy, Debug)]
pub struct Fault {
    pub id: &'static str,
    pub description: &'static str,
    pub patches: &'static [(Piece, &'static str, &'static str)],
    pub scope: Scope,
}

const BOTH: &[KernelKind] = &[KernelKind::Gemv, KernelKind::Gemm];
/// Every matmul kernel: faults in what they all join in (`scales.wgsl`).
const MATMUL: &[KernelKind] =
    &[KernelKind::Gemv, KernelKind::Gemm, KernelKind::GemvVec, KernelKind::GemvVecSg, KernelKind::GemmVec];
const GEMM_VEC_KIND: &[KernelKind] = &[KernelKind::GemmVec];

fn any_int(f: &QuantFormat) -> bool {
    f.as_int().is_some()
}
fn bits(f: &QuantFormat, b: IntBits) -> bool {
    f.as_int().is_some_and(|i| i.bits == b)
}
fn int4(f: &QuantFormat) -> bool {
    bits(f, IntBits::B4)
}
fn int2(f: &QuantFormat) -> bool {
    bits(f, IntBits::B2)
}
fn int3(f: &QuantFormat) -> bool {
    bits(f, IntBits::B3)
}
fn asym(f: &QuantFormat) -> bool {
    f.as_int().is_some_and(|i| i.scheme == Scheme::Asymmetric)
}
fn sym(f: &QuantFormat) -> bool {
    f.as_int().is_some_and(|i| i.scheme == Scheme::Symmetric)
}
fn grouped(f: &QuantFormat) -> bool {
    f.as_int().is_some_and(|i| i.group.size().is_some())
}
fn f16_scales(f: &QuantFormat) -> bool {
    f.as_int().is_some_and(|i| i.scale == ScaleType::F16)
}
fn all(_: &QuantFormat) -> bool {
    true
}
/// Codes packed whole in words (2, 4, 8 bits): the vector kernel's `lanes` decodes them.
fn word_codes(f: &QuantFormat) -> bool {
    f.as_int().is_some_and(|i| i.bits != IntBits::B3)
}
fn word_codes_sym(f: &QuantFormat) -> bool {
    word_codes(f) && sym(f)
}
/// Groups shorter than a tile of the vector kernel (64 codes of 2 bits, 128 of 3 bits).
fn groups_shorter_than_a_tile(f: &QuantFormat) -> bool {
    f.as_int().is_some_and(|i| match (i.bits, i.group.size()) {
        (IntBits::B2, Some(g)) => g < 64,
        (IntBits::B3, Some(g)) => g < 128,
        _ => false,
    })
}

/// The vector GEMV with either reduction (its decode and loads are the same text).
const VEC: &[KernelKind] = &[KernelKind::GemvVec, KernelKind::GemvVecSg];

const fn scope(kinds: &'static [KernelKind], formats: fn(&QuantFormat) -> bool) -> Scope {
    Scope { kinds, arith: None, formats, needs: Needs::Nothing }
}

/// The catalogue.
pub const FAULTS: &[Fault] = &[
    Fault {
        id: "nibble-order",
        description: "4-bit codes read high nibble first (not WebNN's low-nibble-first order)",
        patches: &[(Piece::Dequant, "(word >> (4u * (i % 8u)))", "(word >> (4u * ((i % 8u) ^ 1u)))")],
        scope: scope(BOTH, int4),
    },
    Fault {
        id: "crumb-order",
        description: "2-bit codes read from the top of each word down",
        patches: &[(Piece::Dequant, "(word >> (2u * (i % 16u)))", "(word >> (2u * (15u - i % 16u)))")],
        scope: scope(BOTH, int2),
    },
    Fault {
        id: "planes3-high-bit-lost",
        description: "3-bit codes lose their high bit plane",
        patches: &[(Piece::Dequant, "return lo | (hi << 2u);", "return lo;")],
        scope: scope(BOTH, int3),
    },
    Fault {
        id: "group-off-by-one",
        description: "group index computed from k + 1: the last weight of each group takes the next group's scale",
        patches: &[(Piece::Dequant, "return k / max(GROUP_LEN, 1u);", "return (k + 1u) / max(GROUP_LEN, 1u);")],
        scope: scope(BOTH, grouped),
    },
    Fault {
        id: "zero-point-ignored",
        description: "asymmetric zero point never subtracted",
        patches: &[(Piece::Dequant, "return i32(zero_code(gi));", "return 0;")],
        scope: scope(BOTH, asym),
    },
    Fault {
        id: "per-tensor-scale",
        description: "one scale for the whole tensor instead of one per group",
        patches: &[(
            Piece::Scales,
            "fn scale_at(gi: u32) -> f32 {",
            "fn scale_at(group: u32) -> f32 {\n    let gi = 0u;",
        )],
        scope: scope(MATMUL, any_int),
    },
    Fault {
        id: "scale-halves-swapped",
        description: "f16 scales read from the wrong half of their word",
        patches: &[(
            Piece::Scales,
            "return select(pair.x, pair.y, gi % 2u == 1u);",
            "return select(pair.y, pair.x, gi % 2u == 1u);",
        )],
        scope: scope(MATMUL, f16_scales),
    },
    Fault {
        id: "code-rounding",
        description: "codes decoded as bin centres (q - z + 0.5) instead of integers",
        patches: &[(Piece::Dequant, "return wt(f32(q - z)) * wt(s);", "return wt(f32(q - z) + 0.5) * wt(s);")],
        scope: scope(BOTH, any_int),
    },
    Fault {
        id: "sign-extension-lost",
        description: "signed codes read as unsigned (no sign extension)",
        patches: &[(Piece::Dequant, "return bitcast<i32>(p << shift) >> shift;", "return i32(p);")],
        scope: scope(BOTH, sym),
    },
    Fault {
        id: "f16-accumulation",
        description: "the f16 variant accumulates in f16, which overflows on large sums",
        patches: &[
            (Piece::Gemv, "var acc: f32 = 0.0;", "var acc: wt = wt(0.0);"),
            (Piece::Gemv, "acc += chunk_dot(n, c, m * params.k);", "acc += wt(chunk_dot(n, c, m * params.k));"),
            (Piece::Gemm, "var acc_ROW = vec4<f32>(0.0);", "var acc_ROW = vec4<wt>(wt(0.0));"),
            (Piece::Gemm, "-> vec4<f32> {\n    return vec4<f32>(xv * w);", "-> vec4<wt> {\n    return xv * w;"),
            (Piece::Gemm, "4u * lid.x, acc_ROW);", "4u * lid.x, vec4<f32>(acc_ROW));"),
        ],
        scope: Scope { kinds: BOTH, arith: Some(Arith::F16), formats: all, needs: Needs::LargeSums },
    },
    Fault {
        id: "missing-barrier",
        description: "GEMM reads its staged tile without the workgroup barrier after loading it",
        patches: &[(
            Piece::Gemm,
            "stage_x(tid + 256u * ROW_INDEX, m0, k0);\n        workgroupBarrier();",
            "stage_x(tid + 256u * ROW_INDEX, m0, k0);",
        )],
        scope: Scope { kinds: &[KernelKind::Gemm], arith: None, formats: all, needs: Needs::ManyRows },
    },
    Fault {
        id: "reduction-drops-half",
        description: "GEMV tree reduction starts at a quarter of the workgroup, dropping half the partial sums",
        patches: &[(Piece::Gemv, "var stride = WG_X / 2u;", "var stride = WG_X / 4u;")],
        scope: scope(&[KernelKind::Gemv], all),
    },
    Fault {
        id: "last-partial-tile-dropped",
        description: "GEMM loops over floor(K / 16) tiles, dropping the last partial tile",
        patches: &[(Piece::Gemm, "let tiles = (params.k + TILE - 1u) / TILE;", "let tiles = params.k / TILE;")],
        scope: Scope { kinds: &[KernelKind::Gemm], arith: None, formats: all, needs: Needs::OddK },
    },
    Fault {
        id: "k-n-swapped",
        description: "GEMM writes its output transposed (N and M strides swapped)",
        patches: &[(
            Piece::Gemm,
            "y[row * params.n + col + c] = f32(acc[c]);",
            "y[(col + c) * params.m + row] = f32(acc[c]);",
        )],
        scope: Scope { kinds: &[KernelKind::Gemm], arith: None, formats: all, needs: Needs::ManyRows },
    },
    Fault {
        id: "gemm-vec-first-group-only",
        description: "CPU adapters' GEMM applies each channel's first scale (and zero point) to every step of K",
        patches: &[(Piece::GemmVec, "gi += k0 / max(GROUP_LEN, 1u);", "gi += 0u * k0;")],
        scope: Scope { kinds: GEMM_VEC_KIND, arith: None, formats: grouped, needs: Needs::ManyRows },
    },
    Fault {
        id: "gemm-vec-sign-lost",
        description: "CPU adapters' GEMM shifts symmetric codes down logically (no sign extension)",
        patches: &[(
            Piece::GemmVec,
            "q = bitcast<vec4<i32>>(w << vec4<u32>(32u - BITS * (o + 1u))) >> vec4<u32>(32u - BITS);",
            "q = bitcast<vec4<i32>>((w << vec4<u32>(32u - BITS * (o + 1u))) >> vec4<u32>(32u - BITS));",
        )],
        scope: Scope { kinds: GEMM_VEC_KIND, arith: None, formats: sym, needs: Needs::ManyRows },
    },
    Fault {
        id: "gemm-vec-first-block-only",
        description: "CPU adapters' GEMM reads every block of four of a thread's channels from its first block's words",
        patches: &[(
            Piece::GemmVec,
            "let w_CB = words4(b + CB_INDEX * 4u * rw, rw, w0 + QUAD * BITS / 8u);",
            "let w_CB = words4(b + 0u * CB_INDEX * rw, rw, w0 + QUAD * BITS / 8u);",
        )],
        scope: Scope { kinds: GEMM_VEC_KIND, arith: None, formats: all, needs: Needs::ManyRows },
    },
    Fault {
        id: "gemm-vec-one-row-of-x",
        description: "CPU adapters' GEMM reads every row of a thread from the thread's first activation row",
        patches: &[(
            Piece::GemmVec,
            "let xr_ROW = min(m0 + ROW_INDEX, params.m - 1u) * (params.k / 4u);",
            "let xr_ROW = min(m0, params.m - 1u) * (params.k / 4u);",
        )],
        scope: Scope { kinds: GEMM_VEC_KIND, arith: None, formats: all, needs: Needs::ManyRows },
    },
    Fault {
        id: "vec-lanes-swapped",
        description: "vector GEMV decodes the codes of each pair of lanes in swapped order",
        patches: &[(
            Piece::GemvVec,
            "let sh = (vec4<u32>(4u * j) + vec4<u32>(0u, 1u, 2u, 3u)) * BITS;",
            "let sh = (vec4<u32>(4u * j) + vec4<u32>(1u, 0u, 3u, 2u)) * BITS;",
        )],
        scope: scope(VEC, word_codes),
    },
    Fault {
        id: "vec-one-group-a-tile",
        description: "vector GEMV applies the tile's first scale to a whole tile that spans several groups",
        patches: &[(Piece::GemvVec, "return g + i * codes_per_word / max(GROUP_LEN, 1u);", "return g;")],
        scope: scope(VEC, groups_shorter_than_a_tile),
    },
    Fault {
        id: "vec-sign-flip-lost",
        description: "vector GEMV forgets to flip the sign bits of symmetric codes before the float trick",
        patches: &[(Piece::GemvVec, "w = w ^ sign_bits();", "w = w;")],
        scope: scope(VEC, word_codes_sym),
    },
    Fault {
        id: "vec-rows-mixed-in-reduction",
        description: "vector GEMV's reduction adds every row's partial sums from row 0's slots",
        patches: &[(
            Piece::GemvVec,
            "partial[ROW_INDEX * WG_X + t] += partial[ROW_INDEX * WG_X + t + stride];",
            "partial[ROW_INDEX * WG_X + t] += partial[t + stride];",
        )],
        scope: scope(&[KernelKind::GemvVec], all),
    },
    Fault {
        id: "vec-sg-first-subgroup-only",
        description: "vector GEMV's subgroup reduction keeps only the first subgroup's sum of each row",
        patches: &[(Piece::ReduceSubgroup, "for (var s = 0u; s < n_sg; s++) {", "for (var s = 0u; s < 1u; s++) {")],
        scope: scope(&[KernelKind::GemvVecSg], all),
    },
];

impl Fault {
    pub fn by_id(id: &str) -> Option<&'static Fault> {
        FAULTS.iter().find(|f| f.id == id)
    }

    pub fn applies(&self, format: &QuantFormat, kind: KernelKind, arith: Arith) -> bool {
        self.scope.kinds.contains(&kind) && self.scope.arith.is_none_or(|a| a == arith) && (self.scope.formats)(format)
    }

    /// The kernel source of `variant` with this fault planted. Every patch must match exactly once, so
    /// that a fault never silently stops applying when a kernel is edited.
    pub fn source(&self, variant: &KernelVariant) -> Result<String, String> {
        let mut pieces = [
            (Piece::Dequant, DEQUANT.to_string()),
            (Piece::Scales, SCALES.to_string()),
            (Piece::Gemv, GEMV.to_string()),
            (Piece::Gemm, GEMM.to_string()),
            (Piece::GemvVec, GEMV_VEC.to_string()),
            (Piece::GemmVec, GEMM_VEC.to_string()),
            (Piece::ReduceSubgroup, REDUCE_SUBGROUP.to_string()),
        ];
        for &(piece, from, to) in self.patches {
            let text = &mut pieces.iter_mut().find(|(p, _)| *p == piece).expect("every piece is listed").1;
            let hits = piece.text().matches(from).count();
            if hits != 1 {
                return Err(format!("fault {}: patch `{from}` matches {hits} times in {piece:?}", self.id));
            }
            *text = text.replacen(from, to, 1);
        }
        let [dequant, scales, gemv, gemm, vec, gemm_vec, reduce] = pieces.map(|(_, text)| text);
        let body = match variant.kind {
            KernelKind::Gemv => gemv,
            KernelKind::Gemm => gemm,
            KernelKind::GemvVec | KernelKind::GemvVecSg => vec,
            KernelKind::GemmVec => gemm_vec,
        };
        Ok(variant_source(variant, &Pieces { dequant: &dequant, scales: &scales, body: &body, reduce: &reduce }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_patch_matches_exactly_once() {
        assert!(FAULTS.len() >= 10);
        for f in FAULTS {
            for kind in f.scope.kinds {
                let variant = KernelVariant::new(*kind, Arith::F16, super::super::Workgroup { x: 128, y: 2 });
                let s = f.source(&variant).unwrap();
                assert_ne!(s, super::super::kernel::shader_source(&variant), "{} changes the source", f.id);
            }
        }
    }
}
