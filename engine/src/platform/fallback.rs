//! Out-of-memory fallback: when a weight does not fit the device (a binding or buffer over its limit,
//! an allocation refused), quantize it one step narrower and try again, recording every step. It never
//! steps silently: the caller gets the list of what was tried and why each failed.

use serde::{Deserialize, Serialize};

use crate::protocol::ErrorClass;

use crate::quant::{quantize, QuantFormat, Quantizer};
use crate::webgpu::{Executor, GpuError, KernelVariant, MatmulRun};

/// The next narrower format: fp16 -> int8 (per-channel) -> int4 (group 128) -> int2 (group 32,
/// asymmetric) -> none. Any 8-bit format steps to int4, any 4- or 3-bit one to int2.
pub fn step_down(format: &QuantFormat) -> Option<QuantFormat> {
    let next = match format.weight_bits() {
        16 => "int8",
        8 => "int4",
        3 | 4 => "int2",
        _ => return None,
    };
    Some(next.parse().expect("known format names"))
}

/// One format that was tried and did not fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FallbackStep {
    pub format: String,
    pub error_class: ErrorClass,
    pub error: String,
}

/// The outcome: the formats that failed, in order, and the run of the one that fitted.
#[derive(Debug)]
pub struct FallbackRun {
    pub steps: Vec<FallbackStep>,
    pub format: QuantFormat,
    pub run: MatmulRun,
}

impl FallbackRun {
    /// What to record when the format that ran is not the one asked for.
    pub fn note(&self, requested: QuantFormat) -> Option<String> {
        (self.format != requested).then(|| format!("out-of-memory fallback: {requested} -> {}", self.format))
    }
}

/// Whether an error means "too big for this device" (the errors a narrower format can cure): an
/// out-of-memory or limit error of its own, or a validation error whose words classify as RESOURCE_LIMIT.
pub fn is_out_of_memory(e: &GpuError) -> bool {
    e.class() == ErrorClass::ResourceLimit
        || (e.class() == ErrorClass::Validation
            && super::classify::kind_of(&e.to_string()) == super::classify::ErrorKind::ResourceLimit)
}

/// Runs `x (m x k) * w^T` starting at `format`, stepping down on out-of-memory errors. Other
/// errors end the attempt at once, with the steps so far.
#[allow(clippy::too_many_arguments)]
pub async fn matmul_with_fallback(
    exec: &Executor,
    w: &[f32],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    format: QuantFormat,
    quantizer: Quantizer,
    variant: KernelVariant,
) -> Result<FallbackRun, (Vec<FallbackStep>, GpuError)> {
    let mut steps = Vec::new();
    let mut current = Some(format);
    let mut last = GpuError::OutOfMemory("no format to try".into());
    while let Some(f) = current {
        let q = match quantize(w, n, k, f, quantizer) {
            Ok(q) => q,
            Err(e) => return Err((steps, GpuError::Validation(format!("{f}: {e}")))),
        };
        match exec.matmul(x, m, &q, variant, 1).await {
            Ok(run) => return Ok(FallbackRun { steps, format: f, run }),
            Err(e) if is_out_of_memory(&e) => {
                steps.push(FallbackStep { format: f.to_string(), error_class: e.class(), error: e.to_string() });
                last = e;
                current = step_down(&f);
            }
            Err(e) => return Err((steps, e)),
        }
    }
    Err((steps, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_go_down_by_width() {
        let chain: Vec<String> =
            std::iter::successors(Some(QuantFormat::F16), step_down).map(|f| f.to_string()).collect();
        assert_eq!(chain, ["fp16", "int8-pc-sym", "int4-g128-sym", "int2-g32-asym"]);
        assert_eq!(step_down(&"int3-g64-sym".parse().unwrap()).unwrap().to_string(), "int2-g32-asym");
    }
}
