//! Platform policy: what to do when the device says no.
//!
//! - [`fallback`]: out-of-memory fallback, stepping the precision down (16 -> 8 -> 4 -> 2 bits) and
//!   retrying, with every step recorded.

pub mod fallback;
