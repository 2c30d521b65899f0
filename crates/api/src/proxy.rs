//! The contract's types for calling Keap through keaplink (`/v1/keap/<path>`): what
//! `GET /v1/admin/stats` reports of Keap's shared quota and of proxied calls.

use serde::{Deserialize, Serialize};

/// One of Keap's quota windows, as last reported by Keap's own headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaWindow {
    pub limit: u64,
    pub available: u64,
    /// When the window starts over (RFC 3339, rounded down to the second).
    pub resets_at: Option<String>,
}

/// A Keap app's own per-minute throttle (10,000 calls), shown while it is spent or nearly so.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppThrottle {
    pub keap_app: String,
    #[serde(flatten)]
    pub window: QuotaWindow,
}

/// Keap's quota for this deployment's OAuth client, as last seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeapQuota {
    /// When Keap last reported it.
    pub as_of: String,
    /// The daily quota (`x-keap-product-quota-*`).
    pub quota: Option<QuotaWindow>,
    /// The per-minute spike throttle (`x-keap-product-throttle-*`).
    pub throttle: Option<QuotaWindow>,
    /// Keap apps whose own throttle (`x-keap-tenant-throttle-*`) is spent or nearly so, the
    /// most pressed first.
    #[serde(default)]
    pub app_throttles: Vec<AppThrottle>,
    /// Calls of the day kept for refreshes (`KEAP_QUOTA_RESERVE`).
    #[serde(default)]
    pub reserve: u64,
    /// While set, proxied calls are answered 429 `keap_quota` without calling Keap.
    pub paused_until: Option<String>,
}

/// Proxied calls of the last 24 hours (whole hours), by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProxyCounts {
    /// Relayed from Keap (any status Keap answered but 429).
    pub relayed: u64,
    /// Of those, calls that met a 401 and were retried after a heal.
    pub healed: u64,
    /// Answered 429 `keap_quota` by keaplink without calling Keap.
    pub held_for_quota: u64,
    /// Keap answered 429 (passed on as 429 `keap_quota`).
    #[serde(default)]
    pub keap_throttled: u64,
    /// Keap failed or timed out (502/504 by keaplink).
    pub keap_failed: u64,
    /// The link needs its user (409 `needs_reauth`, nothing sent to Keap).
    #[serde(default)]
    pub needs_reauth: u64,
    /// Refused by keaplink before Keap: bad path, headers or body, unknown connection, rate
    /// limits, credentials.
    #[serde(default)]
    pub refused: u64,
}
