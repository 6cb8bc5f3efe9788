//! Typed errors of the wgpu executor.

use thiserror::Error;

use crate::protocol::ErrorClass;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum GpuError {
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    #[error("device request failed: {0}")]
    Device(String),
    #[error("the adapter lacks {0}")]
    MissingFeature(&'static str),
    #[error("{what} takes {bytes} bytes, over the device's binding limit of {limit} bytes: split the weight or use a smaller format")]
    TooLarge { what: &'static str, bytes: u64, limit: u64 },
    #[error("this kernel cannot run this shape: {0}")]
    Shape(String),
    #[error("shader or pipeline failed to build: {0}")]
    Compile(String),
    #[error("validation error: {0}")]
    Validation(String),
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    #[error("device lost: {0}")]
    DeviceLost(String),
    #[error("reading results back failed: {0}")]
    Readback(String),
}

impl GpuError {
    /// A short class name for results and reports.
    pub fn class(&self) -> ErrorClass {
        match self {
            GpuError::NoAdapter(_) | GpuError::MissingFeature(_) | GpuError::Shape(_) => ErrorClass::Unsupported,
            GpuError::Device(_) => ErrorClass::DeviceRequest,
            GpuError::TooLarge { .. } | GpuError::OutOfMemory(_) => ErrorClass::ResourceLimit,
            GpuError::Compile(_) => ErrorClass::Compile,
            GpuError::Validation(_) => ErrorClass::Validation,
            GpuError::DeviceLost(_) => ErrorClass::DeviceLost,
            GpuError::Readback(_) => ErrorClass::Readback,
        }
    }
}
