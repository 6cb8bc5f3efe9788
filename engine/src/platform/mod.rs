//! Platform policy: what to run where, and what to do when the browser or device says no.
//!
//! - [`selection`]: backend and precision per browser and model family, from real capabilities.
//! - [`classify`]: browser error messages mapped to five kinds, each with a recommendation.
//! - [`fallback`]: out-of-memory fallback, stepping the precision down (16 -> 8 -> 4 -> 2 bits) and
//!   retrying, with every step recorded.

pub mod classify;
pub mod fallback;
pub mod selection;
