//! Weight formats: widths, groups, schemes, packed layouts, quantizers and mixed-precision policies.

mod error;
mod format;
mod layout;
mod policy;
mod quantize;

pub use error::QuantError;
pub use format::{Group, IntBits, IntFormat, QuantFormat, ScaleType, Scheme, StorageBytes};
pub use layout::{sign_extend, Layout, PLANES3_BLOCK, PLANES3_BLOCK_BYTES};
pub use policy::{LayerKind, MixedPolicy};
pub use quantize::{quantize, QuantizedMatrix, Quantizer};
