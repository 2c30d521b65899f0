//! Keap's quotas and throttles, counted as its API gateway counts them and reported in its
//! `x-keap-*` headers: a day quota and a per-minute spike throttle per OAuth client (the REST API
//! and the token endpoint spend the same ones), and a per-minute throttle per tenant (Keap app).
//! Fixed windows; their lengths can be shortened so tests can cross a boundary in seconds.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const DAY_MS: u64 = 86_400_000;
pub const MINUTE_MS: u64 = 60_000;
/// Keap's published limits for an OAuth client, and the per-tenant spike throttle.
pub const PRODUCT_QUOTA_LIMIT: u64 = 150_000;
pub const PRODUCT_THROTTLE_LIMIT: u64 = 1_500;
pub const TENANT_THROTTLE_LIMIT: u64 = 10_000;

/// Keap's answer once a quota or throttle is spent (the gateway's, for the API and token calls
/// alike; the double space is Keap's).
pub fn violation() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        Json(
            json!({"fault": {"faultstring": "Rate limit quota violation. Quota limit  exceeded.",
            "detail": {"errorcode": "policies.ratelimit.QuotaViolation"}}}),
        ),
    )
        .into_response()
}

/// One fixed window. Windows follow each other from `anchor_ms`: epoch 0 by default, so the day
/// resets at 00:00 UTC (as Keap's does) and the minute on the minute; a window set through the
/// controls starts when it is set, so a test gets all of it.
#[derive(Debug, Clone)]
struct Window {
    limit: u64,
    len_ms: u64,
    anchor_ms: u64,
    start_ms: u64,
    used: u64,
}

impl Window {
    fn new(limit: u64, len_ms: u64) -> Self {
        Window {
            limit,
            len_ms,
            anchor_ms: 0,
            start_ms: 0,
            used: 0,
        }
    }

    fn roll(&mut self, now_ms: u64) {
        if now_ms >= self.start_ms.saturating_add(self.len_ms) {
            let since = now_ms.saturating_sub(self.anchor_ms);
            self.start_ms = self.anchor_ms + since / self.len_ms * self.len_ms;
            self.used = 0;
        }
    }

    fn restart(&mut self, now_ms: u64, used: u64) {
        self.anchor_ms = now_ms;
        self.start_ms = now_ms;
        self.used = used;
    }

    fn full(&self) -> bool {
        self.used >= self.limit
    }

    fn view(&self) -> WindowView {
        WindowView {
            limit: self.limit,
            used: self.used,
            resets_at_ms: self.start_ms.saturating_add(self.len_ms),
        }
    }

    fn state(&self) -> Value {
        let v = self.view();
        json!({"limit": v.limit, "window_ms": self.len_ms, "used": v.used,
            "available": v.available(), "resets_at_ms": v.resets_at_ms})
    }
}

#[derive(Debug, Clone, Copy)]
pub struct WindowView {
    pub limit: u64,
    pub used: u64,
    pub resets_at_ms: u64,
}

impl WindowView {
    pub fn available(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

/// Where the windows a call touched stand once it was counted (or refused).
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub product_quota: WindowView,
    pub product_throttle: WindowView,
    /// REST calls only: the token endpoint is not a tenant's.
    pub tenant_throttle: Option<WindowView>,
}

impl Report {
    /// As a throttle Keap applied without the counts predicting it (an injected fault) shows it.
    pub fn throttled(mut self) -> Self {
        self.product_throttle.used = self.product_throttle.limit;
        self
    }

    pub fn write(&self, headers: &mut HeaderMap) {
        let mut put = |name: &str, value: String| {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                headers.insert(n, v);
            }
        };
        let q = self.product_quota;
        put("x-keap-product-quota-limit", q.limit.to_string());
        put("x-keap-product-quota-time-unit", "day".into());
        put("x-keap-product-quota-interval", "1".into());
        put("x-keap-product-quota-available", q.available().to_string());
        put("x-keap-product-quota-used", q.used.to_string());
        // Keap documents this as an integer "timecode" without a unit. Its gateway is Apigee,
        // whose quota expiry is milliseconds since the epoch, and client libraries read it so:
        // epoch milliseconds of the moment the day bucket empties.
        put(
            "x-keap-product-quota-expiry-time",
            q.resets_at_ms.to_string(),
        );
        // The unit and interval name the policy (a minute), also when a test shortened the window.
        for (prefix, w) in [
            ("x-keap-product-throttle", Some(self.product_throttle)),
            ("x-keap-tenant-throttle", self.tenant_throttle),
        ] {
            let Some(w) = w else { continue };
            put(&format!("{prefix}-limit"), w.limit.to_string());
            put(&format!("{prefix}-time-unit"), "minute".into());
            put(&format!("{prefix}-interval"), "1".into());
            put(&format!("{prefix}-available"), w.available().to_string());
            put(&format!("{prefix}-used"), w.used.to_string());
        }
    }
}

#[derive(Debug, Clone)]
pub struct Quota {
    product_quota: Window,
    product_throttle: Window,
    /// Every tenant's window starts as a copy of this one (same limit, length and anchor).
    tenant_template: Window,
    tenants: BTreeMap<&'static str, Window>,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            product_quota: Window::new(PRODUCT_QUOTA_LIMIT, DAY_MS),
            product_throttle: Window::new(PRODUCT_THROTTLE_LIMIT, MINUTE_MS),
            tenant_template: Window::new(TENANT_THROTTLE_LIMIT, MINUTE_MS),
            tenants: BTreeMap::new(),
        }
    }
}

impl Quota {
    fn tenant(&mut self, app: &'static str, now_ms: u64) -> &mut Window {
        let template = &self.tenant_template;
        let w = self.tenants.entry(app).or_insert_with(|| template.clone());
        w.roll(now_ms);
        w
    }

    /// A token endpoint call: the client's windows only. `Err` when one is exhausted; a refused
    /// call is not counted, as the gateway stops it before it counts.
    pub fn spend_token(&mut self, now_ms: u64) -> Result<Report, Report> {
        self.product_quota.roll(now_ms);
        self.product_throttle.roll(now_ms);
        let refused = self.product_quota.full() || self.product_throttle.full();
        if !refused {
            self.product_quota.used += 1;
            self.product_throttle.used += 1;
        }
        let report = Report {
            product_quota: self.product_quota.view(),
            product_throttle: self.product_throttle.view(),
            tenant_throttle: None,
        };
        if refused {
            Err(report)
        } else {
            Ok(report)
        }
    }

    /// A REST call on behalf of `app`: the client's windows and the tenant's.
    pub fn spend_api(&mut self, app: &'static str, now_ms: u64) -> Result<Report, Report> {
        self.product_quota.roll(now_ms);
        self.product_throttle.roll(now_ms);
        let tenant_full = self.tenant(app, now_ms).full();
        let refused = self.product_quota.full() || self.product_throttle.full() || tenant_full;
        if !refused {
            self.product_quota.used += 1;
            self.product_throttle.used += 1;
            self.tenant(app, now_ms).used += 1;
        }
        let report = Report {
            product_quota: self.product_quota.view(),
            product_throttle: self.product_throttle.view(),
            tenant_throttle: Some(self.tenant(app, now_ms).view()),
        };
        if refused {
            Err(report)
        } else {
            Ok(report)
        }
    }

    /// What `GET /__sandbox/stats` and `POST /__sandbox/quota` show, windows rolled to `now_ms`.
    pub fn state(&mut self, now_ms: u64) -> Value {
        self.product_quota.roll(now_ms);
        self.product_throttle.roll(now_ms);
        let apps: BTreeMap<&str, Value> = self
            .tenants
            .iter_mut()
            .map(|(app, w)| {
                w.roll(now_ms);
                let v = w.view();
                (
                    *app,
                    json!({"used": v.used, "available": v.available(), "resets_at_ms": v.resets_at_ms}),
                )
            })
            .collect();
        json!({
            "product_quota": self.product_quota.state(),
            "product_throttle": self.product_throttle.state(),
            "tenant_throttle": {"limit": self.tenant_template.limit,
                "window_ms": self.tenant_template.len_ms, "apps": apps},
        })
    }

    /// Applies a `POST /__sandbox/quota` body. Every window it names restarts now, with `used`
    /// as given (else 0) and `limit` / `window_ms` as given (else kept).
    pub fn configure(&mut self, req: QuotaRequest, now_ms: u64) -> Result<(), String> {
        for (name, set) in [
            ("product_quota", &req.product_quota),
            ("product_throttle", &req.product_throttle),
        ] {
            if let Some(s) = set {
                check_len(name, s.window_ms)?;
            }
        }
        if let Some(t) = &req.tenant_throttle {
            check_len("tenant_throttle", t.window_ms)?;
        }
        let mut tenant_used = BTreeMap::new();
        if let Some(used) = req.tenant_throttle.as_ref().and_then(|t| t.used.as_ref()) {
            for (app, n) in used {
                let Some(a) = crate::seed::app(app) else {
                    return Err(format!("tenant_throttle.used: no Keap app {app:?}"));
                };
                tenant_used.insert(a.id, *n);
            }
        }
        for (w, set) in [
            (&mut self.product_quota, req.product_quota),
            (&mut self.product_throttle, req.product_throttle),
        ] {
            if let Some(s) = set {
                w.limit = s.limit.unwrap_or(w.limit);
                w.len_ms = s.window_ms.unwrap_or(w.len_ms);
                w.restart(now_ms, s.used.unwrap_or(0));
            }
        }
        if let Some(t) = req.tenant_throttle {
            let tpl = &mut self.tenant_template;
            tpl.limit = t.limit.unwrap_or(tpl.limit);
            tpl.len_ms = t.window_ms.unwrap_or(tpl.len_ms);
            tpl.restart(now_ms, 0);
            self.tenants.clear();
            for (app, used) in tenant_used {
                let mut w = self.tenant_template.clone();
                w.used = used;
                self.tenants.insert(app, w);
            }
        }
        Ok(())
    }
}

fn check_len(name: &str, len: Option<u64>) -> Result<(), String> {
    match len {
        Some(0) => Err(format!("{name}.window_ms must be at least 1")),
        _ => Ok(()),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSet {
    pub limit: Option<u64>,
    pub window_ms: Option<u64>,
    pub used: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSet {
    pub limit: Option<u64>,
    pub window_ms: Option<u64>,
    /// Calls already made in the new window, per app.
    pub used: Option<BTreeMap<String, u64>>,
}

/// `POST /__sandbox/quota`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaRequest {
    pub product_quota: Option<WindowSet>,
    pub product_throttle: Option<WindowSet>,
    pub tenant_throttle: Option<TenantSet>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_day_window_resets_at_utc_midnight() {
        let mut q = Quota::default();
        // 2026-03-01T13:20:00Z
        let now = 1_772_323_200_000 + 13 * 3_600_000 + 20 * 60_000;
        let r = q.spend_token(now).unwrap();
        assert_eq!(r.product_quota.resets_at_ms, 1_772_323_200_000 + DAY_MS);
        assert_eq!(
            r.product_throttle.resets_at_ms,
            now - now % MINUTE_MS + MINUTE_MS
        );
        assert_eq!(
            (r.product_quota.used, r.product_quota.available()),
            (1, 149_999)
        );
    }

    #[test]
    fn a_refused_call_is_not_counted_and_the_next_window_starts_empty() {
        let mut q = Quota::default();
        let req = QuotaRequest {
            product_throttle: Some(WindowSet {
                limit: Some(2),
                window_ms: Some(1_000),
                used: Some(1),
            }),
            ..Default::default()
        };
        q.configure(req, 10_000).unwrap();
        assert!(q.spend_token(10_100).is_ok());
        let refused = q.spend_token(10_200).unwrap_err();
        assert_eq!(refused.product_throttle.used, 2);
        assert_eq!(
            refused.product_quota.used, 1,
            "the refused call spent nothing"
        );
        // Windows follow each other from when it was set: 11_000, 12_000, ...
        let r = q.spend_token(12_500).unwrap();
        assert_eq!(r.product_throttle.used, 1);
        assert_eq!(r.product_throttle.resets_at_ms, 13_000);
    }

    #[test]
    fn tenants_are_counted_apart() {
        let mut q = Quota::default();
        let mut used = BTreeMap::new();
        used.insert("ab123".to_owned(), 1);
        q.configure(
            QuotaRequest {
                tenant_throttle: Some(TenantSet {
                    limit: Some(1),
                    window_ms: None,
                    used: Some(used),
                }),
                ..Default::default()
            },
            5_000,
        )
        .unwrap();
        assert!(q.spend_api("ab123", 5_001).is_err());
        let r = q.spend_api("cd456", 5_002).unwrap();
        assert_eq!(r.tenant_throttle.unwrap().used, 1);
        assert_eq!(r.product_throttle.used, 1);
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut q = Quota::default();
        let zero = QuotaRequest {
            product_quota: Some(WindowSet {
                window_ms: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(q.configure(zero, 0).unwrap_err().contains("window_ms"));
        let mut used = BTreeMap::new();
        used.insert("zz999".to_owned(), 1);
        let unknown = QuotaRequest {
            tenant_throttle: Some(TenantSet {
                used: Some(used),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(q.configure(unknown, 0).unwrap_err().contains("zz999"));
    }
}
