//! webq-conformance: how a cell is judged.
//!
//! Two verdicts per cell, never one (see the README):
//! - [`tolerance`]: kernel conformance, the backend against the CPU emulation of the same computation;
//! - [`budget`] with [`metrics`]: quantization accuracy, the quantized output against the fp16 reference.
//!
//! [`number`] keeps every float of a verdict readable after a JSON round trip, NaN included.

pub mod budget;
pub mod metrics;
pub mod number;
pub mod tolerance;

pub use budget::{accuracy_budget, AccuracyVerdict, BudgetKey};
pub use metrics::{LengthMismatch, Metrics};
pub use tolerance::{KernelTolerance, KernelVerdict, WorstOutput};
