//! The whole refresh rule: whether a connection must be refreshed now (for whom: a token
//! request, the sweep, a proxied call Keap refused, an operator), how long to wait after a
//! failure, and what an attempt came to (what to count, what to announce).
//!
//! The guard asks, sends and applies; it decides nothing. A sweep decides from KV metadata
//! alone, so the rule takes the few fields metadata carries: [`RefreshPolicy::due`] is the one
//! per-link decision of the sweep (which links are kept fresh and which only kept alive is
//! `crate::keep`). Backoff is exponential with jitter;
//! the jitter is derived from the connection id, so the rule stays a pure function (and spreads
//! a fleet of failing links over time).

use crate::clock::UnixTime;
use crate::connection::{ConnectionMeta, ConnectionRecord, FailureKind, MIN_TOKEN_VALIDITY_SECS};

/// How long a token request's answer may take to leave after the refresh rule found the token
/// fresh (the guard decides, then its reply travels back under load): a token is refreshed
/// rather than handed out when it would cross the contract's 60 s within this.
pub const ANSWER_SLACK_SECS: i64 = 5;
use crate::keep::{KeepPolicy, Uses};
use crate::secret::Secret;
use crate::stats::RefreshOutcome;
use crate::webhook::EventKind;
use keaplink_api::ConnectionStatus;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The knobs of the refresh rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Refresh when less than this is left on the access token (the token path's freshness).
    pub margin_secs: i64,
    /// When above 0: also refresh any link whose refresh token is this old (a cap on top of
    /// [`KeepPolicy`]'s idle rule; 0 by default).
    pub keepalive_secs: i64,
    /// The first wait after a transient failure; doubles with each further failure.
    pub base_backoff_secs: i64,
    pub max_backoff_secs: i64,
    /// Whether sweeps keep links in use fresh (refresh their access tokens ahead of expiry). Off,
    /// sweeps only keep refresh tokens alive, and token requests refresh on demand.
    pub proactive: bool,
    /// How long Keap keeps a refresh token alive after issuing it (for `refresh_expires_at`).
    pub refresh_lifetime_secs: i64,
    /// Which links are kept fresh, and when idle ones are kept alive.
    pub keep: KeepPolicy,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            margin_secs: 3_600,
            keepalive_secs: 0,
            base_backoff_secs: 60,
            max_backoff_secs: 3_600,
            proactive: true,
            refresh_lifetime_secs: crate::connection::DEFAULT_REFRESH_LIFETIME_SECS,
            keep: KeepPolicy::default(),
        }
    }
}

/// What the rule needs of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshState<'a> {
    pub id: &'a str,
    pub status: ConnectionStatus,
    /// The last failure's kind, if the last attempt failed.
    pub failed_with: Option<FailureKind>,
    pub access_expires_at: UnixTime,
    pub refresh_issued_at: UnixTime,
    /// When the refresh token is expected to die.
    pub refresh_expires_at: UnixTime,
    /// When the last failure happened, if the last attempt failed.
    pub failed_at: Option<UnixTime>,
    pub failures: u32,
    /// The link's recorded uses (token and proxied calls).
    pub uses: Uses,
}

impl<'a> From<&'a ConnectionMeta> for RefreshState<'a> {
    fn from(m: &'a ConnectionMeta) -> Self {
        RefreshState {
            id: m.id.as_str(),
            status: m.status,
            failed_with: m.last_error.map(|e| e.kind),
            access_expires_at: m.access_expires_at,
            refresh_issued_at: m.refresh_issued_at,
            refresh_expires_at: m.refresh_expires_at(),
            failed_at: m.last_error.map(|e| e.at),
            failures: m.failures,
            uses: m.uses(),
        }
    }
}

impl<'a> From<&'a ConnectionRecord> for RefreshState<'a> {
    fn from(r: &'a ConnectionRecord) -> Self {
        RefreshState {
            id: r.id.as_str(),
            status: r.status,
            failed_with: r.last_error.map(|e| e.kind),
            access_expires_at: r.access_expires_at,
            refresh_issued_at: r.refresh_issued_at,
            refresh_expires_at: r.refresh_expires_at(),
            failed_at: r.last_error.map(|e| e.at),
            failures: r.failures,
            uses: r.uses(),
        }
    }
}

/// Who asks for a refresh, as sent to a connection's guard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// A partner needs a usable token now (`POST /v1/token`, the proxy).
    Token,
    /// The sweep or the refresh queue: whatever the policy says is due.
    Sweep,
    /// Keap refused an access token (a proxied call got 401). `failed` is that token's
    /// [`fingerprint`]: if the guard already holds another one, someone refreshed meanwhile and
    /// no refresh is needed, only a retry with the newer token.
    Heal { failed: String },
    /// An operator asked for it (the console's "refresh now").
    Force,
    /// Not a refresh: a token or proxied call used the link at `at`, and its guard records the
    /// use if the rule asks for it (at most once per window; `crate::keep`).
    Use { at: UnixTime },
}

/// A short, one-way name for an access token, so "is this the token that failed?" can be asked
/// across a Durable Object call without sending the token.
pub fn fingerprint(access_token: &Secret) -> String {
    let digest = Sha256::digest(access_token.expose().as_bytes());
    crate::ids::hex(&digest[..12])
}

/// Why a connection is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueReason {
    /// A link in use: its access token nears the margin.
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

    /// Whether `purpose` needs a refresh of this connection at `now`. `current` is the
    /// fingerprint of the access token the record holds (only a heal looks at it). A
    /// `needs_reauth` link is never refreshed: only its user can restore it.
    /// A token request refreshes unless the token stays fresh `ANSWER_SLACK_SECS` more.
    pub fn needs_refresh(
        &self,
        s: &RefreshState<'_>,
        purpose: &Purpose,
        current: Option<&str>,
        now: UnixTime,
    ) -> bool {
        if s.status != ConnectionStatus::Active {
            return false;
        }
        // A caller who needs a token now may go past a backoff, except Keap's own "slow down".
        let throttled =
            s.failed_with == Some(FailureKind::KeapThrottled) && now < self.next_attempt_at(s);
        match purpose {
            Purpose::Sweep => self.due(s, now).is_some(),
            // Fresh a few seconds from now: the answer that hands the token out leaves after
            // this decision (a guard's reply travels back), and must still keep the 60 s promise.
            Purpose::Token => !self.is_fresh(s, now + ANSWER_SLACK_SECS) && !throttled,
            Purpose::Heal { failed } => current == Some(failed.as_str()) && !throttled,
            Purpose::Force => true,
            Purpose::Use { .. } => false,
        }
    }

    /// Fresh enough to hand out as stored: at least the margin left, and never less than the
    /// contract's 60 s. The token hot path asks this of the KV copy.
    pub fn is_fresh(&self, s: &RefreshState<'_>, now: UnixTime) -> bool {
        s.status == ConnectionStatus::Active
            && s.access_expires_at - now >= self.margin_secs.max(MIN_TOKEN_VALIDITY_SECS)
    }

    /// The sweep's per-link decision: whether the connection should be refreshed at `now`, and
    /// why. Only an `active` link is ever refreshed (a `needs_reauth` one waits for its user; an
    /// `exported` one is the partner's now).
    /// A link in use is kept fresh (its access token refreshed a lead before the margin); any
    /// link is kept alive when its refresh token nears its death (`crate::keep`). Nothing is due
    /// while a failure's backoff runs.
    pub fn due(&self, s: &RefreshState<'_>, now: UnixTime) -> Option<DueReason> {
        match s.status {
            ConnectionStatus::Active => {}
            ConnectionStatus::NeedsReauth | ConnectionStatus::Exported => return None,
        }
        if now < self.next_attempt_at(s) {
            return None;
        }
        let margin = self.margin_secs.max(MIN_TOKEN_VALIDITY_SECS);
        if self.proactive
            && self.keep.in_use(s.uses, now)
            && self.keep.fresh_due(margin, s.access_expires_at, now)
        {
            Some(DueReason::AccessExpiring)
        } else if self.keepalive_secs > 0 && now - s.refresh_issued_at >= self.keepalive_secs {
            // The operator's age cap (`REFRESH_KEEPALIVE_SECS`): the usual backoff only.
            Some(DueReason::KeepAlive)
        } else if now >= self.keep.keepalive_at(s.id, s.refresh_expires_at) {
            // Only kept alive: after a failure it waits the idle backoff (hours, not minutes).
            let waited = s.failed_at.is_none_or(|at| {
                now >= at.saturating_add(self.keep.idle_backoff_secs(s.id, s.failures))
            });
            waited.then_some(DueReason::KeepAlive)
        } else {
            None
        }
    }
}

/// What one refresh attempt came to, from the record before and after it: what to count, what
/// to record on the link's timeline, and which events to send the partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub outcome: RefreshOutcome,
    /// The failure, when it failed.
    pub failure: Option<FailureKind>,
    /// Webhook events the attempt causes: `needs_reauth` when the link died, `expiring` when it
    /// first became at risk (failing with under a week left on its refresh token).
    pub announce: Vec<EventKind>,
}

impl Attempt {
    pub fn between(before: &ConnectionRecord, after: &ConnectionRecord) -> Attempt {
        let failure = after.last_error.map(|e| e.kind);
        let outcome = match (after.status, failure) {
            (ConnectionStatus::NeedsReauth, _) => RefreshOutcome::NeedsReauth,
            (ConnectionStatus::Active, None) => RefreshOutcome::Succeeded,
            (ConnectionStatus::Active, Some(_)) => RefreshOutcome::Failed,
            // Never refreshed (the guard refreshes active links only): not a success.
            (ConnectionStatus::Exported, _) => RefreshOutcome::Failed,
        };
        let mut announce = Vec::new();
        if before.status == ConnectionStatus::Active
            && after.status == ConnectionStatus::NeedsReauth
        {
            announce.push(EventKind::NeedsReauth);
        }
        if before.reconnect_before().is_none() && after.reconnect_before().is_some() {
            announce.push(EventKind::Expiring);
        }
        Attempt {
            outcome,
            failure,
            announce,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link last used (and refreshed) at `issued`.
    fn state(expires: i64, issued: i64) -> RefreshState<'static> {
        RefreshState {
            id: "conn-1",
            status: ConnectionStatus::Active,
            failed_with: None,
            access_expires_at: expires,
            refresh_issued_at: issued,
            refresh_expires_at: issued + 45 * 86_400,
            failed_at: None,
            failures: 0,
            uses: Uses {
                last: Some(issued),
                prev: None,
            },
        }
    }

    #[test]
    fn only_links_in_use_are_kept_fresh() {
        let p = RefreshPolicy::default();
        let now = 100 * 86_400;
        let mut s = state(now + 1_800, now - 3_600);
        assert_eq!(p.due(&s, now), Some(DueReason::AccessExpiring));
        // The same token on a link nobody called for a week: left to expire.
        s.uses.last = Some(now - 7 * 86_400);
        assert_eq!(p.due(&s, now), None);
        // Used twice a week apart: not in use either; used twice two days apart: in use.
        s.uses = Uses {
            last: Some(now - 60),
            prev: Some(now - 60 - 7 * 86_400),
        };
        assert_eq!(p.due(&s, now), None);
        s.uses.prev = Some(now - 60 - 2 * 86_400);
        assert_eq!(p.due(&s, now), Some(DueReason::AccessExpiring));
    }

    #[test]
    fn idle_links_are_kept_alive_at_their_own_offset() {
        let p = RefreshPolicy::default();
        let issued = 1_000_000;
        let mut s = state(issued + 86_400, issued);
        s.uses = Uses::default();
        let at = p.keep.keepalive_at(s.id, s.refresh_expires_at);
        assert!(at <= s.refresh_expires_at - p.keep.idle_margin_secs);
        assert_eq!(p.due(&s, at - 1), None);
        assert_eq!(p.due(&s, at), Some(DueReason::KeepAlive));
        // Another id, another day.
        let mut other = s;
        other.id = "conn-2";
        assert_ne!(p.keep.keepalive_at(other.id, other.refresh_expires_at), at);
        // The old age cap, when set, applies on top.
        let capped = RefreshPolicy {
            keepalive_secs: 5,
            ..p
        };
        assert_eq!(capped.due(&s, issued + 5), Some(DueReason::KeepAlive));
        assert_eq!(p.due(&s, issued + 5), None);
    }

    #[test]
    fn due_when_inside_the_margin_or_the_refresh_token_ages() {
        let p = RefreshPolicy::default();
        let now = 1_000_000;
        assert_eq!(p.due(&state(now + 86_400, now - 10), now), None);
        let lead = p.margin_secs + p.keep.lead_secs;
        assert_eq!(p.due(&state(now + lead, now - 10), now), None);
        assert_eq!(
            p.due(&state(now + lead - 1, now - 10), now),
            Some(DueReason::AccessExpiring)
        );
        assert_eq!(
            p.due(&state(now + 86_400, now - 40 * 86_400), now),
            Some(DueReason::KeepAlive)
        );
    }

    #[test]
    fn freshness_uses_the_margin_but_never_less_than_60s() {
        let exp = 1_000_000;
        let wide = RefreshPolicy {
            margin_secs: 21_600,
            ..RefreshPolicy::default()
        };
        assert!(wide.is_fresh(&state(exp, 0), exp - 21_600));
        assert!(!wide.is_fresh(&state(exp, 0), exp - 21_599));
        let narrow = RefreshPolicy {
            margin_secs: 10,
            ..RefreshPolicy::default()
        };
        assert!(narrow.is_fresh(&state(exp, 0), exp - 60));
        assert!(!narrow.is_fresh(&state(exp, 0), exp - 59));
        // A token request refreshes a token that would cross the 60 s before its answer leaves.
        let token = |now| narrow.needs_refresh(&state(exp, 0), &Purpose::Token, None, now);
        assert!(!token(exp - 60 - ANSWER_SLACK_SECS));
        assert!(token(exp - 60 - ANSWER_SLACK_SECS + 1));
        assert!(token(exp - 60));
        let mut dead = state(exp, 0);
        dead.status = ConnectionStatus::NeedsReauth;
        assert!(
            !narrow.is_fresh(&dead, 0),
            "a link that needs its user is never fresh"
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
            p.due(&state(now - 10, now - 40 * 86_400), now),
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

    #[test]
    fn each_purpose_has_its_rule() {
        let p = RefreshPolicy::default();
        let now = 1_000_000;
        let fresh = state(now + 86_400, now - 10);
        let stale = state(now + 1_800, now - 10);
        assert!(!p.needs_refresh(&fresh, &Purpose::Token, None, now));
        assert!(p.needs_refresh(&stale, &Purpose::Token, None, now));
        assert!(p.needs_refresh(&stale, &Purpose::Sweep, None, now));
        assert!(!p.needs_refresh(&fresh, &Purpose::Sweep, None, now));
        assert!(p.needs_refresh(&fresh, &Purpose::Force, None, now));
        // Recording a use never refreshes, however stale the token.
        assert!(!p.needs_refresh(&stale, &Purpose::Use { at: now }, None, now));
        // A heal refreshes only if the failed token is still the one held.
        let heal = Purpose::Heal {
            failed: "abc".into(),
        };
        assert!(p.needs_refresh(&fresh, &heal, Some("abc"), now));
        assert!(!p.needs_refresh(&fresh, &heal, Some("newer"), now));
        // Nobody refreshes a dead link.
        let mut dead = fresh;
        dead.status = ConnectionStatus::NeedsReauth;
        for purpose in [Purpose::Token, Purpose::Sweep, Purpose::Force, heal.clone()] {
            assert!(
                !p.needs_refresh(&dead, &purpose, Some("abc"), now),
                "{purpose:?}"
            );
        }
    }

    #[test]
    fn after_a_429_even_a_caller_in_need_waits_the_backoff() {
        let p = RefreshPolicy::default();
        let now = 1_000_000;
        let mut s = state(now + 1_800, now - 10);
        s.failed_at = Some(now - 1);
        s.failures = 1;
        s.failed_with = Some(FailureKind::KeapThrottled);
        let heal = Purpose::Heal { failed: "a".into() };
        assert!(!p.needs_refresh(&s, &Purpose::Token, None, now));
        assert!(!p.needs_refresh(&s, &heal, Some("a"), now));
        // Any other failure: a caller in need goes past the backoff; the sweep waits.
        s.failed_with = Some(FailureKind::KeapUnavailable);
        assert!(p.needs_refresh(&s, &Purpose::Token, None, now));
        assert!(!p.needs_refresh(&s, &Purpose::Sweep, None, now));
        // Once the backoff is over, the throttled link is tried again.
        s.failed_with = Some(FailureKind::KeapThrottled);
        let later = p.next_attempt_at(&s);
        assert!(p.needs_refresh(&s, &Purpose::Token, None, later));
    }

    fn record(now: i64, lifetime: i64) -> ConnectionRecord {
        use crate::connection::NewConnection;
        use crate::ids::{ConnectionId, PartnerId, UserId};
        use crate::keap::{KeapApp, KeapIdentity};
        use crate::keys::ConnectionKey;
        let user = UserId::parse("u").unwrap();
        let key = ConnectionKey::new(
            &PartnerId::parse("acme").unwrap(),
            &user,
            &KeapApp::parse("ab123").unwrap(),
        );
        ConnectionRecord::create(
            NewConnection {
                key: &key,
                id: ConnectionId::from_random([1; 16]),
                user: &user,
                who: KeapIdentity {
                    email: "a@b.c".into(),
                    name: "A".into(),
                    sub: None,
                    tenant_id: None,
                },
                app_name: None,
                access_token: Secret::new("a"),
                refresh_token: Secret::new("r"),
                expires_in: 86_400,
                refresh_lifetime_secs: lifetime,
                now,
                nonce: [0; 12],
            },
            &crate::seal::Keyring::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap(),
        )
    }

    #[test]
    fn an_attempt_counts_once_and_announces_what_changed() {
        use crate::keap::KeapFailure;
        let now = 1_000_000;
        let rec = record(now, 45 * 86_400);
        let busy = rec.refresh_failed(&KeapFailure::Throttled, now + 10);
        let a = Attempt::between(&rec, &busy);
        assert_eq!(a.outcome, RefreshOutcome::Failed);
        assert_eq!(a.failure, Some(FailureKind::KeapThrottled));
        assert!(a.announce.is_empty(), "45 days left: no warning");
        let dead = busy.refresh_refused(now + 20);
        let a = Attempt::between(&busy, &dead);
        assert_eq!(a.outcome, RefreshOutcome::NeedsReauth);
        assert_eq!(a.announce, vec![EventKind::NeedsReauth]);
        assert!(
            Attempt::between(&dead, &dead).announce.is_empty(),
            "announced once"
        );
        // A short-lived refresh token: the first failure puts the link at risk, once.
        let short = record(now, 600);
        let failing = short.refresh_failed(&KeapFailure::Timeout, now + 30);
        assert_eq!(
            Attempt::between(&short, &failing).announce,
            vec![EventKind::Expiring]
        );
        let still = failing.refresh_failed(&KeapFailure::Timeout, now + 60);
        assert!(Attempt::between(&failing, &still).announce.is_empty());
    }

    #[test]
    fn fingerprints_name_a_token_without_showing_it() {
        let a = fingerprint(&Secret::new("access-token-a"));
        assert_eq!(a.len(), 24);
        assert_eq!(a, fingerprint(&Secret::new("access-token-a")));
        assert_ne!(a, fingerprint(&Secret::new("access-token-b")));
        assert!(!a.contains("access"));
    }
}
