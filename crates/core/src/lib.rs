//! keaplink's domain rules, sans I/O.
//!
//! The Worker reads what it needs, asks this crate what it means and what to do, and writes the
//! result. Nothing here touches the network, storage, randomness or a clock of its own: those
//! arrive as arguments, so every rule is tested natively in milliseconds.

pub mod body;
pub mod clock;
pub mod connection;
pub mod cursor;
pub mod deliveries;
pub mod deploy;
pub mod error;
pub mod export;
pub mod flow;
pub mod hooks;
pub mod identity;
pub mod ids;
pub mod import;
pub mod keap;
pub mod keap_pace;
pub mod keep;
pub mod keys;
pub mod limits;
pub mod links;
pub mod mcp;
pub mod pace;
pub mod partner;
pub mod proxy;
pub mod query;
pub mod quota;
pub mod refresh;
pub mod repair;
pub mod seal;
pub mod search;
pub mod secret;
pub mod session;
pub mod sim;
pub mod stats;
pub mod sweep;
pub mod timeline;
pub mod vec_map;
pub mod webhook;

pub use error::{ApiError, ApiResult, ErrorCode};
pub use secret::Secret;
