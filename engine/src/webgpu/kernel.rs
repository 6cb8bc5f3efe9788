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
pub(crate) const GEMV_VEC: &str = include_str!("kernels/gemv_vec.wgsl");
pub(crate) const GEMM_VEC: &str = include_str!("kernels/gemm_vec.wgsl");
pub(crate) const REDUCE_SUBGROUP: &str = include_str!("kernels/reduce_subgroup.wgsl");
pub(crate) const SCALES: &str = include_str!("kernels/scales.wgsl");

/// The kernels: two shapes, a GEMV for bandwidth-bound adapters and a GEMM for CPU adapters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelKind {
    /// One activation row (LLM decode).
    Gemv,
    /// Many rows, tiled (prefill, batches).
    Gemm,
    /// One activation row, several rows of weights per thread through 128-bit loads; needs K to be a
    /// multiple of [`gemv_vec_tile`] (the executor refuses other shapes).
    #[serde(rename = "gemv-vec")]
    GemvVec,
    /// `gemv-vec` with its rows' sums added by subgroup operations and one barrier instead of a tree
    /// in workgroup memory ([`subgroup_reduction`]); needs the device's subgroups (wgpu's
    /// `Features::SUBGROUP`, natively only: wgpu 30 does not ask browsers for them), without which the
    /// executor refuses it.
    #[serde(rename = "gemv-vec-sg")]
    GemvVecSg,
    /// Many rows, blocks of channels by several rows a thread, no workgroup memory: for CPU adapters,
    /// where the tuning table's row names its block ([`GemvKernel::gemm_vec`], [`GemvKernel::variant`]);
    /// needs what [`gemm_vec_fits`] says.
    #[serde(rename = "gemm-vec")]
    GemmVec,
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
            KernelKind::GemvVec => "gemv-vec",
            KernelKind::GemvVecSg => "gemv-vec-sg",
            KernelKind::GemmVec => "gemm-vec",
        }
    }

    /// The vector-load GEMV, with either reduction.
    pub fn is_gemv_vec(self) -> bool {
        matches!(self, KernelKind::GemvVec | KernelKind::GemvVecSg)
    }

    /// The shader's entry point.
    pub fn entry_point(self) -> &'static str {
        match self {
            KernelKind::Gemv => "gemv",
            KernelKind::Gemm => "gemm",
            KernelKind::GemvVec | KernelKind::GemvVecSg => "gemv_vec",
            KernelKind::GemmVec => "gemm_vec",
        }
    }

    pub(crate) fn body(self) -> &'static str {
        match self {
            KernelKind::Gemv => GEMV,
            KernelKind::Gemm => GEMM,
            KernelKind::GemvVec | KernelKind::GemvVecSg => GEMV_VEC,
            KernelKind::GemmVec => GEMM_VEC,
        }
    }
}

/// `gemv_vec.wgsl` as `gemv-vec-sg` runs it: its REDUCE block replaced by `reduce` (reduce_subgroup.wgsl) and
/// the entry point given the subgroup builtins. `None` where the body has no such block or entry
/// point (a planted fault's patch may not remove them: every patch is checked to match once).
pub(crate) fn subgroup_reduction(body: &str, reduce: &str) -> Option<String> {
    const ENTRY: &str = "@builtin(workgroup_id) wid: vec3<u32>) {";
    let begin = body.find("    // REDUCE BEGIN")?;
    let end = body.find("    // REDUCE END\n")? + "    // REDUCE END\n".len();
    let entry = "@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) sg_lane: u32, \
                 @builtin(subgroup_id) sg_id: u32, @builtin(num_subgroups) n_sg: u32) {";
    (body.matches(ENTRY).count() == 1)
        .then(|| format!("{}{reduce}{}", &body[..begin], &body[end..]).replace(ENTRY, entry))
}

/// Weights per tile of the `gemv-vec` kernel: four packed words (four planes3 blocks for 3 bits).
/// K must be a multiple of it.
pub fn gemv_vec_tile(format: &QuantFormat) -> usize {
    match format {
        QuantFormat::F16 => 8,
        QuantFormat::Int(f) => match f.bits.bits() {
            3 => 128,
            b => 128 / b as usize,
        },
    }
}

/// Whether `gemm-vec` takes weights of `format` with rows of `k`: 2-, 4- or 8-bit codes (a word holds
/// whole quads of codes), K a multiple of its 32-k step (every group size divides into steps).
pub fn gemm_vec_fits(format: &QuantFormat, k: usize) -> bool {
    format.as_int().is_some_and(|f| matches!(f.bits.bits(), 2 | 4 | 8)) && k % 32 == 0
}

/// Rows a `gemm-vec` thread computes for `m` activation rows: the fewest of 2, 4, 8 or 16 that cover
/// them, at most `most` (the rows of the tuning table's [`GemvKernel::gemm_vec`]).
pub fn gemm_vec_rows(m: usize, most: u32) -> u32 {
    Workgroup::GEMM_VEC_ROWS.into_iter().filter(|&r| r <= most).find(|&r| m <= r as usize).unwrap_or(most)
}

/// Channels a `gemm-vec` thread computes for `n` output channels, at most `most` (the channels of the
/// tuning table's [`GemvKernel::gemm_vec`]). Wider blocks cost less a channel (a row's activations
/// serve more channels) but pad N up to whole workgroups of 64 threads, and the padding is computed
/// too: the block with the least padded channels times a channel's cost, taken as (c + 4) / 2c of a
/// 4-channel block's (measured on lavapipe at N = 4096: 1, 0.77, 0.60 and 0.52 for 4, 8, 16 and 32,
/// against the model's 1, 0.75, 0.63 and 0.56), the wider on a tie. This picked the fastest of the
/// four at each N measured (384, 576, 1024, 1536, 4096; bench/2026-12-07-gemm-vec-channels.txt).
pub fn gemm_vec_channels(n: usize, most: u32) -> u32 {
    let cost = |c: u32| {
        let padded = n.max(1).div_ceil(64 * c as usize) * 64 * c as usize;
        padded as f64 * f64::from(c + 4) / f64::from(2 * c)
    };
    Workgroup::GEMM_VEC_CHANNELS
        .into_iter()
        .filter(|&c| c <= most)
        .min_by(|&a, &b| cost(a).total_cmp(&cost(b)).then(b.cmp(&a)))
        .unwrap_or(4)
}

/// Workgroup size of the GEMV kernel. For `gemv-vec`, `x` threads share the rows and each thread
/// computes `y` rows (at most 8). For the GEMM, the output tile of its 16x16 threads: 64 channels by
/// 16, 32 or 64 activation rows ([`Workgroup::gemm_tile`]). For `gemm-vec`, whose workgroup is 64
/// threads, the output block of one thread: `x` channels ([`Workgroup::GEMM_VEC_CHANNELS`]) by `y` rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Workgroup {
    pub x: u32,
    pub y: u32,
}

impl Workgroup {
    /// The variants every GEMV is built and checked in.
    pub const VARIANTS: [Workgroup; 4] =
        [Workgroup { x: 64, y: 1 }, Workgroup { x: 128, y: 1 }, Workgroup { x: 256, y: 1 }, Workgroup { x: 128, y: 2 }];
    /// The GEMM's largest tile: 64 channels x 64 rows, 4 x 4 outputs a thread.
    pub const GEMM_TILE: Workgroup = Workgroup { x: 64, y: 64 };
    /// The GEMM tiles: 64 channels by 16, 32 or 64 rows.
    pub const GEMM_TILES: [Workgroup; 3] =
        [Workgroup { x: 64, y: 16 }, Workgroup { x: 64, y: 32 }, Workgroup::GEMM_TILE];
    /// The channels a `gemm-vec` thread can compute: whole blocks of four.
    pub const GEMM_VEC_CHANNELS: [u32; 4] = [4, 8, 16, 32];
    /// The rows a `gemm-vec` thread can compute ([`gemm_vec_rows`]).
    pub const GEMM_VEC_ROWS: [u32; 4] = [2, 4, 8, 16];

    /// Whether a `gemm-vec` thread can compute this block of outputs.
    pub fn is_gemm_vec_block(self) -> bool {
        Workgroup::GEMM_VEC_CHANNELS.contains(&self.x) && Workgroup::GEMM_VEC_ROWS.contains(&self.y)
    }

    /// The blocks [`Workgroup::is_gemm_vec_block`] takes, in words, from the same lists.
    pub fn gemm_vec_blocks() -> String {
        let words = |v: &[u32]| {
            let (last, rest) = v.split_last().expect("the lists are not empty");
            format!("{} or {last}", rest.iter().map(u32::to_string).collect::<Vec<_>>().join(", "))
        };
        let (channels, rows) = (words(&Workgroup::GEMM_VEC_CHANNELS), words(&Workgroup::GEMM_VEC_ROWS));
        format!("a thread's block of {channels} channels by {rows} rows")
    }

    /// The GEMM tile for `m` activation rows: the shortest that covers them, so that a short prompt
    /// does not compute 64 rows of padding.
    pub fn gemm_tile(m: usize) -> Workgroup {
        Workgroup::GEMM_TILES.into_iter().find(|t| m <= t.y as usize).unwrap_or(Workgroup::GEMM_TILE)
    }

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

/// The GEMV kernel a cell runs and its workgroup: the tuning table's pick, or a matrix's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GemvKernel {
    /// [`KernelKind::Gemv`] (portable) or [`KernelKind::GemvVec`] (vector loads).
    pub kind: KernelKind,
    pub workgroup: Workgroup,
    /// Where the adapter's GEMM is `gemm-vec` (the tuning table's rows for the CPU adapters), the
    /// block a thread computes: channels by rows at most, measured per adapter
    /// (bench/2026-12-07-gemm-vec-channels.txt); `None` (a matrix's own workgroup, a GPU): the tiled GEMM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gemm_vec: Option<Workgroup>,
}

impl GemvKernel {
    /// The portable kernel with the seed's workgroup, where nothing else was measured.
    pub const PORTABLE: GemvKernel = GemvKernel::portable(128, 2);
    /// What a matrix's `workgroups = ["all"]` runs: every portable workgroup and vector shapes.
    pub const VARIANTS: [GemvKernel; 7] = [
        GemvKernel::portable(64, 1),
        GemvKernel::portable(128, 1),
        GemvKernel::portable(256, 1),
        GemvKernel::portable(128, 2),
        GemvKernel::vector(64, 4),
        GemvKernel::vector(128, 2),
        GemvKernel::vector(32, 8),
    ];

    pub const fn portable(x: u32, y: u32) -> Self {
        GemvKernel { kind: KernelKind::Gemv, workgroup: Workgroup { x, y }, gemm_vec: None }
    }

    /// The vector-load kernel: `threads` share the rows, each thread computes `rows` of them.
    pub const fn vector(threads: u32, rows: u32) -> Self {
        GemvKernel { kind: KernelKind::GemvVec, workgroup: Workgroup { x: threads, y: rows }, gemm_vec: None }
    }

    /// The vector-load kernel reducing with subgroup operations (`gemv-vec-sg`).
    pub const fn vector_subgroups(threads: u32, rows: u32) -> Self {
        GemvKernel { kind: KernelKind::GemvVecSg, workgroup: Workgroup { x: threads, y: rows }, gemm_vec: None }
    }

    /// This kernel as a device runs it: `gemv-vec-sg` becomes `gemv-vec` (the same loads, the tree
    /// reduction) where the device has no subgroups, as a tuning row measured on one driver may meet
    /// another without them.
    pub fn runnable(self, subgroups: bool) -> Self {
        if self.kind == KernelKind::GemvVecSg && !subgroups {
            GemvKernel { kind: KernelKind::GemvVec, ..self }
        } else {
            self
        }
    }

    /// This kernel with `gemm-vec` computing `channels` channels (4, 8, 16 or 32) by up to `rows`
    /// rows (2, 4, 8 or 16) a thread.
    pub const fn with_gemm_vec(self, channels: u32, rows: u32) -> Self {
        GemvKernel { gemm_vec: Some(Workgroup { x: channels, y: rows }), ..self }
    }

    /// Parses `128x2` or `256` (portable), `vec-64x4` or `vec:64x4` (vector loads: threads x rows,
    /// a power of two of at most 256 threads, 1 to 8 rows, no more rows than threads) and
    /// `vec-sg-64x4` or `vec-sg:64x4` (the same, reducing with subgroup operations).
    pub fn parse(s: &str) -> Option<GemvKernel> {
        let (kind, v) = if let Some(v) = s.strip_prefix("vec-sg-").or_else(|| s.strip_prefix("vec-sg:")) {
            (KernelKind::GemvVecSg, v)
        } else if let Some(v) = s.strip_prefix("vec-").or_else(|| s.strip_prefix("vec:")) {
            (KernelKind::GemvVec, v)
        } else {
            return Workgroup::parse(s).map(|w| GemvKernel { kind: KernelKind::Gemv, workgroup: w, gemm_vec: None });
        };
        let (x, y) = v.split_once('x')?;
        let w = Workgroup { x: x.parse().ok()?, y: y.parse().ok()? };
        (w.x.is_power_of_two() && w.x <= 256 && (1..=8).contains(&w.y) && w.x >= w.y).then_some(GemvKernel {
            kind,
            workgroup: w,
            gemm_vec: None,
        })
    }

    /// What runs for `m` activation rows of length `k` and `n` output channels in `format` (`None`:
    /// any format, as when a fallback may step the format down): GEMM for several rows, and the
    /// portable GEMV with the seed's workgroup where the vector kernel cannot take K.
    ///
    /// Where the tuning table's row names [`GemvKernel::gemm_vec`] (the CPU adapters), several rows
    /// run `gemm-vec`, the GEMM written for those adapters (bench/2026-12-06-gemm-vec-native.txt),
    /// where it takes the format, with the rows that cover `m` and the channels that suit `n`
    /// ([`gemm_vec_rows`], [`gemm_vec_channels`]); the tiled GEMM everywhere else.
    pub fn variant(self, m: usize, n: usize, k: usize, format: Option<&QuantFormat>, arith: Arith) -> KernelVariant {
        if m > 1 {
            if let Some(block) = self.gemm_vec.filter(|_| format.is_some_and(|f| gemm_vec_fits(f, k))) {
                let block = Workgroup { x: gemm_vec_channels(n, block.x), y: gemm_vec_rows(m, block.y) };
                return KernelVariant::new(KernelKind::GemmVec, arith, block);
            }
            return KernelVariant::new(KernelKind::Gemm, arith, Workgroup::gemm_tile(m));
        }
        let tile = format.map_or(128, gemv_vec_tile);
        let kernel = if self.kind.is_gemv_vec() && k % tile != 0 { Self::PORTABLE } else { self };
        KernelVariant::new(kernel.kind, arith, kernel.workgroup)
    }

    /// How results name the kernel of a variant that ran: `128x2`, `vec-64x4`, GEMM's tile (`64x64`), or
    /// `gemm-vec-16x8` (channels by rows a thread).
    pub fn ran(variant: &KernelVariant) -> String {
        match variant.kind {
            KernelKind::Gemm => variant.workgroup.to_string(),
            KernelKind::GemmVec => format!("gemm-vec-{}", variant.workgroup),
            kind => GemvKernel { kind, workgroup: variant.workgroup, gemm_vec: None }.to_string(),
        }
    }
}

impl fmt::Display for GemvKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            KernelKind::GemvVec => write!(f, "vec-{}", self.workgroup),
            KernelKind::GemvVecSg => write!(f, "vec-sg-{}", self.workgroup),
            _ => write!(f, "{}", self.workgroup),
        }
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
    /// A GEMM given anything but one of [`Workgroup::GEMM_TILES`] gets the largest tile.
    pub fn new(kind: KernelKind, arith: Arith, workgroup: Workgroup) -> Self {
        let workgroup = if kind == KernelKind::Gemm && !Workgroup::GEMM_TILES.contains(&workgroup) {
            Workgroup::GEMM_TILE
        } else {
            workgroup
        };
        KernelVariant { kind, arith, workgroup }
    }

    /// Rows each thread computes, written into the source: the vector GEMV's rows, the GEMM's rows
    /// per thread (its tile's rows over 16 threads), 1 for the portable GEMV.
    pub fn unrolled_rows(&self) -> u32 {
        match self.kind {
            KernelKind::GemvVec | KernelKind::GemvVecSg | KernelKind::GemmVec => self.workgroup.y,
            KernelKind::Gemm => self.workgroup.y / 16,
            KernelKind::Gemv => 1,
        }
    }

    /// Workgroups to dispatch for `m` activation rows and `n` output channels.
    pub fn groups(&self, m: usize, n: usize) -> (u32, u32, u32) {
        let wg = self.workgroup;
        match self.kind {
            KernelKind::Gemv | KernelKind::GemvVec | KernelKind::GemvVecSg => {
                (n.div_ceil(wg.y as usize) as u32, m as u32, 1)
            }
            KernelKind::Gemm => (n.div_ceil(wg.x as usize) as u32, m.div_ceil(wg.y as usize) as u32, 1),
            KernelKind::GemmVec => (n.div_ceil(64 * wg.x as usize) as u32, m.div_ceil(wg.y as usize) as u32, 1),
        }
    }
}

/// The WGSL of a kernel variant: prelude + scales + decoding + kernel body (the vector kernels decode
/// on their own), with its rows per thread written into the source.
pub fn shader_source(variant: &KernelVariant) -> String {
    variant_source(
        variant,
        &Pieces { dequant: DEQUANT, scales: SCALES, body: variant.kind.body(), reduce: REDUCE_SUBGROUP },
    )
}

/// The WGSL files a matmul kernel is joined from (planted faults pass patched ones).
pub(crate) struct Pieces<'a> {
    /// `dequant.wgsl`: the portable GEMV's and tiled GEMM's decoding.
    pub dequant: &'a str,
    /// `scales.wgsl`: every kernel's group scales.
    pub scales: &'a str,
    /// The kernel's own file.
    pub body: &'a str,
    /// `reduce_subgroup.wgsl`, for `gemv-vec-sg`.
    pub reduce: &'a str,
}

/// The WGSL of `variant` from its pieces.
pub(crate) fn variant_source(variant: &KernelVariant, pieces: &Pieces) -> String {
    let decode = match variant.kind {
        KernelKind::Gemv | KernelKind::Gemm => format!("{}\n{}", pieces.scales, pieces.dequant),
        _ => pieces.scales.to_string(),
    };
    if variant.kind == KernelKind::GemvVecSg {
        let body =
            subgroup_reduction(pieces.body, pieces.reduce).expect("gemv_vec.wgsl has its REDUCE block and entry point");
        // No `enable subgroups;`: naga (wgpu 30) refuses the directive and takes subgroup operations
        // from the device's feature instead (gfx-rs/wgpu#5555); browsers would need it, but wgpu does
        // not ask them for the feature, so this kernel runs natively only.
        return assemble(variant.arith, &decode, &unroll_rows(&body, variant.unrolled_rows()));
    }
    let body = unroll_quads(pieces.body);
    let body =
        if variant.kind == KernelKind::GemmVec { unroll_channel_blocks(&body, variant.workgroup.x / 4) } else { body };
    assemble(variant.arith, &decode, &unroll_rows(&body, variant.unrolled_rows()))
}

/// Writes the lines between `// QUADS BEGIN` and `// QUADS END` once per quad of a 32-code step,
/// `QUAD` becoming `0u` to `7u` (`gemm-vec`; other kernels have no such block).
pub(crate) fn unroll_quads(body: &str) -> String {
    let (Some(begin), Some(end)) = (body.find("// QUADS BEGIN\n"), body.find("// QUADS END")) else {
        return body.to_string();
    };
    let block = &body[begin + "// QUADS BEGIN\n".len()..end];
    let block = &block[..block.rfind('\n').map_or(0, |i| i + 1)]; // the END line's indent stays out
    let quads: String = (0..8).map(|q| block.replace("QUAD", &format!("{q}u"))).collect();
    let before = &body[..body[..begin].rfind('\n').map_or(0, |i| i + 1)]; // up to the BEGIN line
    format!("{before}{quads}{}", body[end + "// QUADS END".len()..].trim_start_matches('\n'))
}

/// Writes each line that names `_CB` or `CB_INDEX` once per block of four channels (`_CB` becoming
/// `_c0`, `_c1`, ..., `CB_INDEX` the block's number) and sets `const CHANNELS` (`gemm-vec`); run
/// before [`unroll_rows`], so that a line naming both is written once per block and row.
pub(crate) fn unroll_channel_blocks(body: &str, blocks: u32) -> String {
    let copies = Copies { constant: "const CHANNELS: u32", value: 4 * blocks, name: "_CB", index: "CB_INDEX" };
    copies.write_out(body, blocks, |c| format!("_c{c}"))
}

/// Writes each line that names `_ROW` or `ROW_INDEX` once per row (`_ROW` becoming `_0`, `_1`, ..., `ROW_INDEX` the
/// row's number) and sets `const ROWS`: per-row registers without arrays or loops to unroll.
pub(crate) fn unroll_rows(body: &str, rows: u32) -> String {
    let copies = Copies { constant: "const ROWS: u32", value: rows, name: "_ROW", index: "ROW_INDEX" };
    copies.write_out(body, rows, |r| format!("_{r}"))
}

/// Lines of WGSL written once per copy: those naming `name` (a suffix of the copy's registers) or
/// `index` (the copy's number); `constant` is the declaration that says how many there are.
struct Copies {
    constant: &'static str,
    value: u32,
    name: &'static str,
    index: &'static str,
}

impl Copies {
    fn write_out(&self, body: &str, copies: u32, renamed: impl Fn(u32) -> String) -> String {
        let mut out = String::with_capacity(body.len() * 2);
        for line in body.lines() {
            if line.starts_with(self.constant) {
                out.push_str(&format!("{} = {}u;\n", self.constant, self.value));
            } else if (line.contains(self.name) || line.contains(self.index)) && !line.trim_start().starts_with("//") {
                for i in 0..copies {
                    out.push_str(&line.replace(self.index, &format!("{i}u")).replace(self.name, &renamed(i)));
                    out.push('\n');
                }
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
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
    match variant.kind {
        KernelKind::Gemv => {
            c.push(("WG_X", variant.workgroup.x as f64));
            c.push(("WG_Y", variant.workgroup.y as f64));
        }
        KernelKind::GemvVec | KernelKind::GemvVecSg => c.push(("WG_X", variant.workgroup.x as f64)),
        KernelKind::Gemm | KernelKind::GemmVec => {}
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_vec_source_has_every_quad_row_and_channel_block_written_out() {
        let v = shader_source(&KernelVariant::new(KernelKind::GemmVec, Arith::F32, Workgroup { x: 8, y: 8 }));
        let code = v.lines().filter(|l| !l.trim_start().starts_with("//"));
        let markers = ["QUAD", "_ROW", "ROW_INDEX", "_CB", "CB_INDEX"];
        assert!(code.clone().all(|l| markers.iter().all(|m| !l.contains(m))));
        assert!(v.contains("const ROWS: u32 = 8u;") && v.contains("const CHANNELS: u32 = 8u;"));
        assert!(v.contains("let w_c1 = words4(b + 1u * 4u * rw, rw, w0 + 7u * BITS / 8u);"));
        assert_eq!(v.matches("let w_c0 = words4(").count(), 8);
        assert_eq!(v.matches("acc_7_c1 += ").count(), 32, "8 quads x 4 codes for the eighth row's second block");
        assert_eq!(v.matches("store(m0 + 7u, n0 + 1u * 4u, acc_7_c1);").count(), 1);
        assert!(!v.contains("QUADS BEGIN") && !v.contains("QUADS END"));
        // Four channels: one block, as the kernel was before blocks.
        let one = shader_source(&KernelVariant::new(KernelKind::GemmVec, Arith::F32, Workgroup { x: 4, y: 2 }));
        assert!(one.contains("const CHANNELS: u32 = 4u;") && !one.contains("_c1"));
    }

    #[test]
    fn the_vector_kernel_steps_aside_where_k_is_not_whole_tiles() {
        let int3: QuantFormat = "int3".parse().unwrap();
        let vec = GemvKernel::vector(64, 4);
        assert_eq!(vec.variant(1, 4096, 256, Some(&int3), Arith::F32).kind, KernelKind::GemvVec);
        assert_eq!(
            vec.variant(1, 4096, 96, Some(&int3), Arith::F32),
            KernelVariant::new(KernelKind::Gemv, Arith::F32, Workgroup { x: 128, y: 2 })
        );
        assert_eq!(vec.variant(1, 4096, 96, Some(&QuantFormat::F16), Arith::F32).kind, KernelKind::GemvVec);
        assert_eq!(
            vec.variant(1, 4096, 96, None, Arith::F32).kind,
            KernelKind::Gemv,
            "any format: whole 128-code tiles"
        );
        assert_eq!(vec.variant(5, 4096, 256, Some(&int3), Arith::F16).kind, KernelKind::Gemm);
    }

    #[test]
    fn gemm_vec_takes_the_channels_that_suit_n() {
        // With blocks of up to 32 channels: the fastest measured on lavapipe at each N
        // (bench/2026-12-07-gemm-vec-channels.txt).
        let picks: Vec<u32> = [384, 576, 1024, 1536, 4096].map(|n| gemm_vec_channels(n, 32)).to_vec();
        assert_eq!(picks, [8, 16, 16, 32, 32]);
        assert_eq!(gemm_vec_channels(4096, 16), 16, "never wider than the adapter's block");
        assert_eq!((gemm_vec_channels(3, 32), gemm_vec_channels(40, 16), gemm_vec_channels(0, 32)), (4, 4, 4));
        assert_eq!(gemm_vec_channels(4096, 2), 4, "at least one block of four");
    }

    #[test]
    fn the_gemm_is_gemm_vec_only_where_the_tuning_row_names_its_block() {
        let int4: QuantFormat = "int4-g32-sym".parse().unwrap();
        let lavapipe = GemvKernel::vector(16, 8).with_gemm_vec(16, 8);
        let v = lavapipe.variant(128, 4096, 4096, Some(&int4), Arith::F32);
        assert_eq!((v.kind, v.workgroup), (KernelKind::GemmVec, Workgroup { x: 16, y: 8 }));
        assert_eq!(GemvKernel::ran(&v), "gemm-vec-16x8");
        assert_eq!(v.groups(128, 4096), (4, 16, 1), "64 threads of 16 channels a workgroup");
        assert_eq!(lavapipe.variant(3, 4096, 4096, Some(&int4), Arith::F32).workgroup, Workgroup { x: 16, y: 4 });
        let swiftshader = GemvKernel::vector(8, 8).with_gemm_vec(16, 16);
        assert_eq!(swiftshader.variant(128, 4096, 4096, Some(&int4), Arith::F32).workgroup, Workgroup { x: 16, y: 16 });
        assert_eq!(lavapipe.variant(9, 384, 4096, Some(&int4), Arith::F32).workgroup, Workgroup { x: 8, y: 8 });
        // A matrix's own vector workgroup names the GEMV only; a format or K gemm-vec does not take.
        assert_eq!(GemvKernel::vector(16, 8).variant(128, 4096, 4096, Some(&int4), Arith::F32).kind, KernelKind::Gemm);
        assert_eq!(
            lavapipe.variant(128, 4096, 4096, Some(&"int3".parse().unwrap()), Arith::F32).kind,
            KernelKind::Gemm
        );
        assert_eq!(lavapipe.variant(128, 4096, 4080, Some(&int4), Arith::F32).kind, KernelKind::Gemm);
        assert_eq!(lavapipe.variant(128, 4096, 4096, None, Arith::F32).kind, KernelKind::Gemm, "any format");
    }

    #[test]
    fn the_subgroup_gemv_is_the_vector_gemv_with_one_barrier() {
        for arith in [Arith::F32, Arith::F16] {
            let sg = shader_source(&KernelVariant::new(KernelKind::GemvVecSg, arith, Workgroup { x: 16, y: 2 }));
            let tree = shader_source(&KernelVariant::new(KernelKind::GemvVec, arith, Workgroup { x: 16, y: 2 }));
            assert!(sg.contains("subgroupAdd(") && !tree.contains("subgroupAdd("));
            assert_eq!(sg.matches("workgroupBarrier()").count(), 1);
            assert_eq!(tree.matches("workgroupBarrier()").count(), 2, "one before the tree, one a level");
            assert!(sg.contains("let sum_1 = subgroupAdd(acc_1);") && sg.contains("@builtin(num_subgroups) n_sg: u32"));
            assert!(!sg.contains("REDUCE BEGIN") && !sg.contains("REDUCE END") && !sg.contains("stride = WG_X"));
            // Everything before the reduction is the same text.
            let head = |s: &str| {
                let from = s.find("var acc_0").unwrap();
                s[from..from + s[from..].find("\n    // ").unwrap()].to_string()
            };
            assert_eq!(head(&sg), head(&tree));
        }
        let v = GemvKernel::vector_subgroups(16, 8);
        assert_eq!(v.variant(1, 4096, 4096, Some(&"int4".parse().unwrap()), Arith::F32).kind, KernelKind::GemvVecSg);
        assert_eq!(v.variant(1, 4096, 96, None, Arith::F32).kind, KernelKind::Gemv, "K not whole tiles");
        assert_eq!(GemvKernel::ran(&v.variant(1, 4096, 4096, None, Arith::F32)), "vec-sg-16x8");
    }

    #[test]
    fn sources_assemble() {
        let wg = Workgroup { x: 128, y: 2 };
        let s = shader_source(&KernelVariant::new(KernelKind::Gemv, Arith::F16, wg));
        assert!(s.starts_with("// Arithmetic type of the shader-f16 variant"));
        assert!(s.contains("enable f16;") && s.contains("fn gemv("));
        assert!(!shader_source(&KernelVariant::new(KernelKind::Gemm, Arith::F32, wg)).contains("enable f16"));
        let v = shader_source(&KernelVariant::new(KernelKind::GemvVec, Arith::F32, Workgroup { x: 64, y: 3 }));
        assert!(v.contains("const ROWS: u32 = 3u;") && v.contains("var acc_2 = 0.0;") && !v.contains("acc_3"));
        let code = v.lines().filter(|l| !l.trim_start().starts_with("//"));
        assert!(
            code.clone().all(|l| !l.contains("_ROW") && !l.contains("ROW_INDEX")),
            "every per-row line is unrolled"
        );
        assert_eq!(Workgroup::parse("128x2"), Some(Workgroup { x: 128, y: 2 }));
        assert_eq!(Workgroup::parse("256"), Some(Workgroup { x: 256, y: 1 }));
        assert_eq!(Workgroup::parse("100x1"), None);
        assert_eq!(Workgroup::parse("65536x65536"), None, "overflowing product");
        assert_eq!(Workgroup::parse("4294967295x2"), None);
        assert_eq!(GemvKernel::parse("vec-64x4"), Some(GemvKernel::vector(64, 4)));
        assert_eq!(GemvKernel::parse("vec:64x4").unwrap().to_string(), "vec-64x4");
        assert_eq!(GemvKernel::parse("128x2"), Some(GemvKernel::PORTABLE));
        assert_eq!(GemvKernel::parse("vec-sg-16x8"), Some(GemvKernel::vector_subgroups(16, 8)));
        assert_eq!(GemvKernel::parse("vec-sg:16x8").unwrap().to_string(), "vec-sg-16x8");
        for bad in ["vec-64x9", "vec-4x8", "vec-100x2", "vec-64", "gemm", "vec-sg-4x8"] {
            assert_eq!(GemvKernel::parse(bad), None, "{bad}");
        }
    }
}
