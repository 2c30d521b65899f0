//! keaplink's domain rules, sans I/O.
//!
//! The Worker reads what it needs, asks this crate what it means and what to do, and writes the
//! result. Nothing here touches the network, storage or a clock of its own, so every rule is
//! tested natively in milliseconds.

pub mod error;

pub use error::{ApiError, ErrorCode};
