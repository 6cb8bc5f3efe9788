//! webq-conformance: how a cell is judged.
//!
//! Two verdicts per cell, never one (see the README):
//! - [`tolerance`]: kernel conformance, the backend against the CPU emulation of the same computation;
//! - [`budget`] with [`metrics`]: quantization accuracy, the quantized output against the fp16 reference.

pub mod budget;
pub mod metrics;
pub mod tolerance;

pub use budget::{accuracy_budget, AccuracyVerdict};
pub use metrics::Metrics;
pub use tolerance::{KernelTolerance, KernelVerdict};
