//! GEMV kernels and workgroup sizes chosen by data: a table keyed by runtime (browser or native),
//! adapter and model family, never hard-wired in a kernel. A row's kernel also names the adapter's
//! GEMM (`GemvKernel::variant`). Each row says where it was measured (bench/).

use serde::{Deserialize, Serialize};

use super::kernel::GemvKernel;

/// What a tuning row matches; `None` matches anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TuningKey {
    /// Runtime or browser name (`firefox`, `chromium`, `native`, ...).
    pub runtime: Option<String>,
    /// A substring of the adapter's name, any case (`llvmpipe`, `SwiftShader`, `H100`, ...).
    pub adapter: Option<String>,
    /// Model family (`text`, `vision`, `audio`, `llm`).
    pub family: Option<String>,
}

impl TuningKey {
    fn matches(&self, runtime: &str, adapter: &str, family: Option<&str>) -> bool {
        self.runtime.as_deref().is_none_or(|r| r == runtime)
            && self.adapter.as_deref().is_none_or(|a| adapter.to_lowercase().contains(&a.to_lowercase()))
            && self.family.as_deref().is_none_or(|f| Some(f) == family)
    }

    /// How many fields the row pins down: the most specific matching row wins.
    fn specificity(&self) -> usize {
        [self.runtime.is_some(), self.adapter.is_some(), self.family.is_some()].iter().filter(|b| **b).count()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TuningTable {
    pub rows: Vec<(TuningKey, GemvKernel)>,
}

impl TuningTable {
    /// The seed's tuning (256x1x1 for audio models in Firefox, 128x2x1 everywhere else), and the
    /// vector-load GEMV where it was measured faster: at 4096x4096 it beat the portable kernel in
    /// Chromium on SwiftShader, in Firefox and natively on lavapipe (bench/2026-11-27-browsers-kernels.txt),
    /// and a sweep of its shapes (bench/2026-11-27-browsers-sweep.txt) found 8 threads x 8 rows best on
    /// SwiftShader (int4 82 ms against 229 ms for 64x4 and 558 ms for the portable kernel) and 16 x 8
    /// across formats on lavapipe (Firefox names no adapter, so its row keys on the browser; once the
    /// kernel's lane loops were written out, 8 x 8 stayed the fastest on SwiftShader natively: int4
    /// 21.5 ms against 23.5 for 4 x 4, 25.8 for 8 x 4 and 28.1 for 16 x 8,
    /// bench/2026-12-04-cpu-adapters-kernels.txt); at
    /// 8192x8192 on an NVIDIA H100, 128 x 2 (1.3-1.8x for fp16, int8, int3 and int2, even for int4;
    /// bench/2026-11-27-nvidia-h100*.txt). The seed's audio row for Firefox was measured on
    /// lavapipe against 128x2 and vec-16x8 on Whisper's decoder shapes: 1.83x and 13.1x slower
    /// (medians; bench/2026-12-02-firefox-audio-gemv.txt); it stays for the GPUs it was written for,
    /// which this machine does not have. The CPU adapters' rows also name their GEMM, `gemm-vec`, by
    /// the block a thread computes, channels by rows (bench/2026-12-06-gemm-vec-native.txt): rows 8
    /// on lavapipe (16 took 170 ms against 95), 16 on SwiftShader
    /// (bench/2026-12-06-gemm-vec-rows-chromium.txt; 32 saved 3% of GPU time for 1.4 s more
    /// compilation, bench/2026-12-06-peer-gemm-m128-rows16-rounds.txt); 16 channels on both
    /// (bench/2026-12-07-gemm-vec-channels.txt: 128x4096x4096 in 0.60x the time of 4 channels on
    /// lavapipe and 0.65x on SwiftShader; 32 channels took 0.88x of 16's on lavapipe for 2.3x its
    /// compilation, 4.9 s, and 1.8x its time on SwiftShader). A block is compiled once and pays its
    /// compilation back within a few dozen dispatches of the prefill shape.
    pub fn seed() -> Self {
        let any = TuningKey { runtime: None, adapter: None, family: None };
        let gemv_on = |runtime: Option<&str>, adapter: Option<&str>| TuningKey {
            runtime: runtime.map(str::to_string),
            adapter: adapter.map(str::to_string),
            family: None,
        };
        TuningTable {
            rows: vec![
                (any.clone(), GemvKernel::PORTABLE),
                (gemv_on(None, Some("llvmpipe")), GemvKernel::vector(16, 8).with_gemm_vec(16, 8)),
                // Natively wgpu gives lavapipe's subgroups: the same GEMV with one barrier, 0.86x the
                // time (0.57-0.94x, ten shapes and formats; bench/2026-12-06-gemv-subgroups-lavapipe.txt).
                (gemv_on(Some("native"), Some("llvmpipe")), GemvKernel::vector_subgroups(16, 8).with_gemm_vec(16, 8)),
                (gemv_on(None, Some("swiftshader")), GemvKernel::vector(8, 8).with_gemm_vec(16, 16)),
                (gemv_on(Some("firefox"), None), GemvKernel::vector(16, 8).with_gemm_vec(16, 8)),
                (gemv_on(None, Some("H100")), GemvKernel::vector(128, 2)),
                // More specific than the Firefox row above (runtime and family against runtime alone).
                (
                    TuningKey { runtime: Some("firefox".into()), family: Some("audio".into()), ..any },
                    GemvKernel::portable(256, 1),
                ),
            ],
        }
    }

    /// The kernel of the most specific matching row (the later row on a tie): the one that pins down
    /// the most of runtime, adapter and family.
    pub fn pick(&self, runtime: &str, adapter: &str, family: Option<&str>) -> GemvKernel {
        self.rows
            .iter()
            .filter(|(k, _)| k.matches(runtime, adapter, family))
            .max_by_key(|(k, _)| k.specificity())
            .map_or(GemvKernel::PORTABLE, |(_, w)| *w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_tuning() {
        let t = TuningTable::seed();
        let lavapipe = "llvmpipe (LLVM 15.0.6, 256 bits)";
        assert_eq!(t.pick("firefox", "", Some("audio")), GemvKernel::portable(256, 1));
        let lavapipe_row = GemvKernel::vector(16, 8).with_gemm_vec(16, 8);
        assert_eq!(t.pick("firefox", "", Some("text")), lavapipe_row);
        let swiftshader = GemvKernel::vector(8, 8).with_gemm_vec(16, 16);
        assert_eq!(t.pick("chromium", "google swiftshader", Some("audio")), swiftshader);
        assert_eq!(t.pick("native", lavapipe, None), GemvKernel::vector_subgroups(16, 8).with_gemm_vec(16, 8));
        assert_eq!(t.pick("chromium", lavapipe, None), lavapipe_row, "browsers get no subgroups");
        assert_eq!(t.pick("native", "NVIDIA H100 80GB HBM3", None), GemvKernel::vector(128, 2));
        assert_eq!(t.pick("chromium", "Some GPU", None), GemvKernel::PORTABLE, "not measured there");
    }
}
