//! Workgroup sizes chosen by data: a table keyed by runtime (browser or native adapter), kernel and
//! model family, never hard-wired in a kernel.

use serde::{Deserialize, Serialize};

use super::kernel::{KernelKind, Workgroup};

/// What a tuning row matches; `None` matches anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TuningKey {
    /// Runtime or browser name (`firefox`, `chromium`, `native`, ...).
    pub runtime: Option<String>,
    /// A substring of the adapter's name (`llvmpipe`, `SwiftShader`, `H100`, ...).
    pub adapter: Option<String>,
    pub kernel: Option<KernelKind>,
    /// Model family (`text`, `vision`, `audio`, `llm`).
    pub family: Option<String>,
}

impl TuningKey {
    fn matches(&self, runtime: &str, adapter: &str, kernel: KernelKind, family: Option<&str>) -> bool {
        self.runtime.as_deref().is_none_or(|r| r == runtime)
            && self.adapter.as_deref().is_none_or(|a| adapter.contains(a))
            && self.kernel.is_none_or(|k| k == kernel)
            && self.family.as_deref().is_none_or(|f| Some(f) == family)
    }

    /// How many fields the row pins down: the most specific matching row wins.
    fn specificity(&self) -> usize {
        [self.runtime.is_some(), self.adapter.is_some(), self.kernel.is_some(), self.family.is_some()]
            .iter()
            .filter(|b| **b)
            .count()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TuningTable {
    pub rows: Vec<(TuningKey, Workgroup)>,
}

impl TuningTable {
    /// The seed's tuning: 256x1x1 for audio models in Firefox, 128x2x1 everywhere else.
    pub fn seed() -> Self {
        let any = TuningKey { runtime: None, adapter: None, kernel: None, family: None };
        TuningTable {
            rows: vec![
                (any.clone(), Workgroup { x: 128, y: 2 }),
                (
                    TuningKey { runtime: Some("firefox".into()), family: Some("audio".into()), ..any },
                    Workgroup { x: 256, y: 1 },
                ),
            ],
        }
    }

    /// The workgroup of the most specific matching row (the later row on a tie).
    pub fn pick(&self, runtime: &str, adapter: &str, kernel: KernelKind, family: Option<&str>) -> Workgroup {
        if kernel == KernelKind::Gemm {
            return Workgroup::GEMM_TILE;
        }
        self.rows
            .iter()
            .filter(|(k, _)| k.matches(runtime, adapter, kernel, family))
            .max_by_key(|(k, _)| k.specificity())
            .map_or(Workgroup { x: 128, y: 2 }, |(_, w)| *w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_tuning() {
        let t = TuningTable::seed();
        assert_eq!(t.pick("firefox", "", KernelKind::Gemv, Some("audio")), Workgroup { x: 256, y: 1 });
        assert_eq!(t.pick("firefox", "", KernelKind::Gemv, Some("text")), Workgroup { x: 128, y: 2 });
        assert_eq!(t.pick("chromium", "SwiftShader", KernelKind::Gemv, Some("audio")), Workgroup { x: 128, y: 2 });
        assert_eq!(t.pick("native", "llvmpipe", KernelKind::Gemm, None), Workgroup::GEMM_TILE);
    }
}
