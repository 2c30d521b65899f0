//! Keap for AI agents: each partner's MCP server (`PUBLIC_URL/mcp/{partner_id}`), bound by OAuth
//! to one user's link.
//!
//! - [`oauth`]: the authorization server's rules: partner settings, client registration,
//!   redirect URIs, the pending request, PKCE, grants, codes and tokens (issue, rotate, revoke).
//! - [`rpc`]: JSON-RPC 2.0 as MCP's Streamable HTTP carries it (JSON answers, no stream).
//! - [`tools`]: the Keap tools, which a grant lists, the Keap call each makes and the answer an
//!   agent gets.
//! - [`page`]: keaplink's consent page.
//!
//! The MCP Rust SDK (rmcp) needs tokio and cannot run in a wasm32 Worker: JSON-RPC over HTTP is
//! small enough to read and write here with serde_json, which the Worker links anyway.

pub mod oauth;
pub mod page;
pub mod rpc;
pub mod tools;
