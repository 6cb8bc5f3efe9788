//! Errors of the quantization layer: each names what was wrong and where.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum QuantError {
    #[error("unsupported weight width: {0} bits (supported: 2, 3, 4, 8 and fp16)")]
    UnsupportedBits(u32),
    #[error("group size {group} does not divide K = {k}: every row must split into whole groups")]
    GroupDoesNotDivide { k: usize, group: usize },
    #[error("empty input: {what}")]
    Empty { what: String },
    #[error("weight at row {row}, column {col} is {value}: only finite weights can be quantized")]
    NonFinite { row: usize, col: usize, value: f32 },
    #[error("weight at row {row}, column {col} is {value}, outside the f16 range (|w| <= 65504)")]
    OutOfF16Range { row: usize, col: usize, value: f32 },
    #[error("scale {scale} of row {row}, group {group} overflows f16 scale storage: use f32 scales (-f32s)")]
    ScaleOverflow { row: usize, group: usize, scale: f32 },
    #[error("shape mismatch: {what}")]
    Shape { what: String },
    #[error("bad format name `{name}`: {reason}")]
    BadFormatName { name: String, reason: String },
}
