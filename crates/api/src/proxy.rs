//! The contract's types for calling Keap through keaplink (`/v1/keap/<path>`): what
//! `GET /v1/admin/stats` reports of Keap's shared quota and of proxied calls.

use serde::{Deserialize, Serialize};

/// One of Keap's quota windows, as last reported by Keap's own headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaWindow {
    pub limit: u64,
    pub available: u64,
    /// When the window starts over, if Keap said.
    pub resets_at: Option<String>,
}

/// Keap's quota for this deployment's OAuth client, as last seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeapQuota {
    /// When Keap last reported it.
    pub as_of: String,
    /// The daily quota (`x-keap-product-quota-*`).
    pub quota: Option<QuotaWindow>,
    /// The per-minute spike throttle (`x-keap-product-throttle-*`).
    pub throttle: Option<QuotaWindow>,
    /// While set, proxied calls are answered 429 `keap_quota` without calling Keap.
    pub paused_until: Option<String>,
}

/// Proxied calls of the last 24 hours, by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyCounts {
    /// Relayed from Keap (any status Keap answered).
    pub relayed: u64,
    /// Of those, calls that met a 401 and were retried after a heal.
    pub healed: u64,
    /// Answered 429 `keap_quota` by keaplink without calling Keap.
    pub held_for_quota: u64,
    /// Keap failed or timed out (502/504 by keaplink).
    pub keap_failed: u64,
}
