//! When a connection must be refreshed, and how long to wait after a failure.
//!
//! A sweep decides from KV metadata alone, so the rule takes the few fields metadata carries.
//! Backoff is exponential with jitter; the jitter is derived from the connection id, so the rule
//! stays a pure function (and spreads a fleet of failing links over time).

use crate::clock::UnixTime;
use crate::connection::{ConnectionMeta, ConnectionRecord, MIN_TOKEN_VALIDITY_SECS};
use keaplink_api::ConnectionStatus;
use sha2::{Digest, Sha256};

/// The knobs of the refresh rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Refresh when less than this is left on the access token.
    pub margin_secs: i64,
    /// Refresh an idle link once its refresh token is this old, long before Keap's ~45 days.
    pub keepalive_secs: i64,
    /// The first wait after a transient failure; doubles with each further failure.
    pub base_backoff_secs: i64,
    pub max_backoff_secs: i64,
    /// Whether sweeps refresh access tokens ahead of expiry. Off, sweeps only keep refresh
    /// tokens alive, and token requests refresh on demand: for deployments whose links outnumber
    /// Keap's daily quota (150,000 calls per OAuth client).
    pub proactive: bool,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            margin_secs: 21_600,
            keepalive_secs: 7 * 86_400,
            base_backoff_secs: 60,
            max_backoff_secs: 3_600,
            proactive: true,
        }
    }
}

/// What the rule needs of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshState<'a> {
    pub id: &'a str,
    pub status: ConnectionStatus,
    pub access_expires_at: UnixTime,
    pub refresh_issued_at: UnixTime,
    /// When the last failure happened, if the last attempt failed.
    pub failed_at: Option<UnixTime>,
    pub failures: u32,
}

impl<'a> From<&'a ConnectionMeta> for RefreshState<'a> {
    fn from(m: &'a ConnectionMeta) -> Self {
        RefreshState {
            id: &m.id,
            status: m.status,
            access_expires_at: m.access_expires_at,
            refresh_issued_at: m.refresh_issued_at,
            failed_at: m.last_error.map(|e| e.at),
            failures: m.failures,
        }
    }
}

impl<'a> From<&'a ConnectionRecord> for RefreshState<'a> {
    fn from(r: &'a ConnectionRecord) -> Self {
        RefreshState {
            id: &r.id,
            status: r.status,
            access_expires_at: r.access_expires_at,
            refresh_issued_at: r.refresh_issued_at,
            failed_at: r.last_error.map(|e| e.at),
            failures: r.failures,
        }
    }
}

/// Why a connection is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueReason {
    /// The access token has less than the margin left.
    AccessExpiring,
    /// The refresh token is getting old: refresh to keep an idle link alive.
    KeepAlive,
}

impl RefreshPolicy {
    /// The wait after `failures` consecutive transient failures: base × 2^(n-1), capped, then
    /// scaled by a jitter in [0.5, 1.0) derived from the id.
    pub fn backoff_secs(&self, id: &str, failures: u32) -> i64 {
        if failures == 0 {
            return 0;
        }
        let exp = failures.saturating_sub(1).min(30);
        let full = self
            .base_backoff_secs
            .saturating_mul(1_i64 << exp)
            .min(self.max_backoff_secs);
        let digest = Sha256::digest(format!("{id}:{failures}").as_bytes());
        let jitter = 0.5 + f64::from(digest[0]) / 512.0;
        ((full as f64) * jitter) as i64
    }

    /// When the next attempt may start: now for a link that has not failed, after the backoff
    /// otherwise, but never so late that the access token runs out first.
    pub fn next_attempt_at(&self, s: &RefreshState<'_>) -> UnixTime {
        match s.failed_at {
            None => UnixTime::MIN,
            Some(at) => {
                let after_backoff = at.saturating_add(self.backoff_secs(s.id, s.failures));
                let last_safe = s.access_expires_at - 2 * MIN_TOKEN_VALIDITY_SECS;
                after_backoff.min(last_safe.max(at))
            }
        }
    }

    /// Whether the connection should be refreshed at `now`, and why. A `needs_reauth` link is
    /// never refreshed: only its user can restore it.
    pub fn due(&self, s: &RefreshState<'_>, now: UnixTime) -> Option<DueReason> {
        if s.status != ConnectionStatus::Active || now < self.next_attempt_at(s) {
            return None;
        }
        if self.proactive
            && s.access_expires_at - now < self.margin_secs.max(MIN_TOKEN_VALIDITY_SECS)
        {
            Some(DueReason::AccessExpiring)
        } else if now - s.refresh_issued_at >= self.keepalive_secs {
            Some(DueReason::KeepAlive)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(expires: i64, issued: i64) -> RefreshState<'static> {
        RefreshState {
            id: "conn-1",
            status: ConnectionStatus::Active,
            access_expires_at: expires,
            refresh_issued_at: issued,
            failed_at: None,
            failures: 0,
        }
    }

    #[test]
    fn due_when_inside_the_margin_or_the_refresh_token_ages() {
        let p = RefreshPolicy::default();
        let now = 1_000_000;
        assert_eq!(p.due(&state(now + 86_400, now - 10), now), None);
        assert_eq!(
            p.due(&state(now + 21_599, now - 10), now),
            Some(DueReason::AccessExpiring)
        );
        assert_eq!(
            p.due(&state(now + 86_400, now - 7 * 86_400), now),
            Some(DueReason::KeepAlive)
        );
    }

    #[test]
    fn without_proactive_refresh_only_age_makes_a_link_due() {
        let p = RefreshPolicy {
            proactive: false,
            ..RefreshPolicy::default()
        };
        let now = 1_000_000;
        assert_eq!(p.due(&state(now - 10, now - 10), now), None);
        assert_eq!(
            p.due(&state(now - 10, now - 7 * 86_400), now),
            Some(DueReason::KeepAlive)
        );
    }

    #[test]
    fn never_refreshes_a_link_that_needs_its_user() {
        let p = RefreshPolicy::default();
        let mut s = state(0, 0);
        s.status = ConnectionStatus::NeedsReauth;
        assert_eq!(p.due(&s, 1_000_000), None);
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RefreshPolicy::default();
        assert_eq!(p.backoff_secs("a", 0), 0);
        let b1 = p.backoff_secs("a", 1);
        assert!((30..60).contains(&b1), "{b1}");
        let b3 = p.backoff_secs("a", 3);
        assert!((120..240).contains(&b3), "{b3}");
        assert!(p.backoff_secs("a", 40) < p.max_backoff_secs);
        assert!(p.backoff_secs("a", 40) >= p.max_backoff_secs / 2);
    }

    #[test]
    fn a_failing_link_waits_its_backoff_but_not_past_its_expiry() {
        let p = RefreshPolicy::default();
        let now = 1_000_000;
        let mut s = state(now + 600, now - 10);
        s.failed_at = Some(now);
        s.failures = 10; // backoff about an hour
        assert_eq!(p.due(&s, now + 1), None);
        // The backoff would end after the token expires; the attempt comes before it does.
        let next = p.next_attempt_at(&s);
        assert!(next <= s.access_expires_at - 2 * MIN_TOKEN_VALIDITY_SECS);
        assert_eq!(p.due(&s, next), Some(DueReason::AccessExpiring));
    }
}
