//! Link keeping at any scale: which links the sweep refreshes, decided per link from what KV
//! list metadata already carries, so that one OAuth client (Keap's 150,000 calls a day) keeps a
//! million mostly idle links alive.
//!
//! - A link **in use** (called regularly through `POST /v1/token` or the proxy) is kept fresh:
//!   its access token is refreshed one sweep period (the *lead*) before it would fall under the
//!   margin, so a token request finds it fresh in KV.
//! - An **idle** link is refreshed only to keep it alive: when its refresh token's remaining life
//!   falls under a margin plus a per-link offset (a hash of the connection id spread over
//!   `idle_spread_secs`), so links made or refreshed on the same day are kept on different days.
//! - A link that **wakes up** is refreshed on its first call (the token path, through its guard).
//!
//! Use is recorded at most once per `in_use_secs` per link (see [`KeepPolicy::record_use`]): the
//! last two recorded uses are kept, and a link is in use while both are recent, so a link called
//! every day is kept fresh and one called once a week is not (it costs one refresh per call).

use crate::clock::UnixTime;
use sha2::{Digest, Sha256};

/// The two latest recorded uses of a link (token or proxied calls), at most one per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Uses {
    pub last: Option<UnixTime>,
    pub prev: Option<UnixTime>,
}

/// The knobs of link keeping (the README's `REFRESH_IN_USE_SECS`, `REFRESH_LEAD_SECS`,
/// `REFRESH_IDLE_MARGIN_SECS`, `REFRESH_IDLE_SPREAD_SECS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepPolicy {
    /// A use is recorded at most once per this; a link whose last two recorded uses are less
    /// than twice this apart, the last less than twice this ago, is in use. So a link called at
    /// least once per `in_use_secs` is always in use.
    pub in_use_secs: i64,
    /// How long before the access margin an in-use link is refreshed: at least one sweep period
    /// (hourly cron) plus the time a sweep's queue takes to reach it.
    pub lead_secs: i64,
    /// An idle link is refreshed when its refresh token has less than this (plus its offset)
    /// left: the time its refreshes have to succeed before the link would die of age. Longer
    /// than the week in which failing refreshes warn (`connection.expiring`).
    pub idle_margin_secs: i64,
    /// Idle links' keep-alive refreshes are spread over this many seconds by connection id.
    pub idle_spread_secs: i64,
}

impl Default for KeepPolicy {
    fn default() -> Self {
        KeepPolicy {
            in_use_secs: 2 * 86_400,
            lead_secs: 4_500,
            idle_margin_secs: 8 * 86_400,
            idle_spread_secs: 10 * 86_400,
        }
    }
}

impl KeepPolicy {
    /// The uses to store after a call at `now`, or `None` when the stored ones are recent
    /// enough: a link records at most one use per `in_use_secs` (one guard write).
    pub fn record_use(&self, uses: Uses, now: UnixTime) -> Option<Uses> {
        match uses.last {
            Some(last) if now - last < self.in_use_secs.max(1) => None,
            _ => Some(Uses {
                last: Some(now),
                prev: uses.last,
            }),
        }
    }

    /// Whether the link is in use at `now`: its last two recorded uses are less than two
    /// windows apart, the last less than two windows ago; or its first recorded use (a new
    /// link's is its linking) is less than one window ago. A link used once a week is not in
    /// use; one used daily is.
    pub fn in_use(&self, uses: Uses, now: UnixTime) -> bool {
        let window = self.in_use_secs.max(1);
        let horizon = window.saturating_mul(2);
        match (uses.last, uses.prev) {
            (None, _) => false,
            // A first use (or a new link): in use for one window.
            (Some(last), None) => now - last < window,
            (Some(last), Some(prev)) => now - last < horizon && last - prev < horizon,
        }
    }

    /// This link's share of the spread, in `[0, idle_spread_secs)`, from its id alone: the same
    /// at every sweep, evenly spread over a fleet.
    pub fn offset_secs(&self, id: &str) -> i64 {
        if self.idle_spread_secs <= 0 {
            return 0;
        }
        let d = Sha256::digest(id.as_bytes());
        let n = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        (n % self.idle_spread_secs as u64) as i64
    }

    /// When an idle link's keep-alive refresh becomes due: its refresh token's expected death
    /// minus the margin and its offset.
    pub fn keepalive_at(&self, id: &str, refresh_expires_at: UnixTime) -> UnixTime {
        refresh_expires_at - self.idle_margin_secs - self.offset_secs(id)
    }

    /// The latest time an idle link can be due, whatever its id: its refresh token's death
    /// minus the margin. The simulation checks no link ever gets closer to death while Keap
    /// answers.
    pub fn latest_keepalive(&self, refresh_expires_at: UnixTime) -> UnixTime {
        refresh_expires_at - self.idle_margin_secs
    }

    /// Whether an in-use link's access token is due, with `margin_secs` the token path's own
    /// freshness margin: refreshed a lead ahead, so the token path never finds it stale.
    pub fn fresh_due(&self, margin_secs: i64, access_expires_at: UnixTime, now: UnixTime) -> bool {
        access_expires_at - now < margin_secs + self.lead_secs
    }

    /// How long an idle link waits after `failures` failed keep-alive refreshes: an hour (less
    /// when the margin is short), doubling, at most a twelfth of the idle margin (16 hours by
    /// default, so 12 tries fit in it), jittered to 50-100% by id. An idle link has days to spare; hammering a Keap that is
    /// down would only spend the quota its links in use need when it is back.
    pub fn idle_backoff_secs(&self, id: &str, failures: u32) -> i64 {
        if failures == 0 {
            return 0;
        }
        let cap = (self.idle_margin_secs / 12).max(60);
        let full = cap
            .min(3_600)
            .saturating_mul(1 << failures.saturating_sub(1).min(20))
            .min(cap);
        // The jitter from the link's offset (one hash of its id), turned by the failure count.
        let turn = (self.offset_secs(id) as u64).rotate_left(failures % 64) % 256;
        full / 2 + full / 2 * turn as i64 / 256
    }

    /// Keep-alive refreshes a day for `links` idle links, on average (the README's arithmetic):
    /// each link's refresh token is renewed every `lifetime - margin - offset` seconds, the
    /// offset uniform over the spread.
    pub fn idle_calls_per_day(&self, links: f64, lifetime_secs: i64) -> f64 {
        let longest = (lifetime_secs - self.idle_margin_secs) as f64;
        let shortest = longest - self.idle_spread_secs.max(0) as f64;
        if shortest <= 0.0 {
            return f64::INFINITY;
        }
        let mean_inverse = if self.idle_spread_secs > 0 {
            (longest / shortest).ln() / self.idle_spread_secs as f64
        } else {
            1.0 / longest
        };
        links * 86_400.0 * mean_inverse
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn use_is_recorded_at_most_once_per_window() {
        let p = KeepPolicy::default();
        let first = p.record_use(Uses::default(), 1_000).unwrap();
        assert_eq!(
            first,
            Uses {
                last: Some(1_000),
                prev: None
            }
        );
        assert_eq!(p.record_use(first, 1_000 + p.in_use_secs - 1), None);
        let second = p.record_use(first, 1_000 + p.in_use_secs).unwrap();
        assert_eq!(second.prev, Some(1_000));
        assert_eq!(second.last, Some(1_000 + p.in_use_secs));
    }

    #[test]
    fn daily_use_is_in_use_and_weekly_use_is_not() {
        let p = KeepPolicy::default();
        let now = 100 * DAY;
        // Never used: idle.
        assert!(!p.in_use(Uses::default(), now));
        // A first use (or a new link): in use for one window.
        let first = Uses {
            last: Some(now - DAY),
            prev: None,
        };
        assert!(p.in_use(first, now));
        assert!(p.in_use(first, now - DAY + p.in_use_secs - 1));
        assert!(!p.in_use(first, now - DAY + p.in_use_secs));
        // Two uses two days apart, the last a day ago: in use.
        let daily = Uses {
            last: Some(now - DAY),
            prev: Some(now - 3 * DAY),
        };
        assert!(p.in_use(daily, now));
        // Two uses a week apart: not in use, however recent the last.
        let weekly = Uses {
            last: Some(now - 60),
            prev: Some(now - 60 - 7 * DAY),
        };
        assert!(!p.in_use(weekly, now));
    }

    #[test]
    fn a_link_called_once_per_window_stays_in_use_between_calls() {
        // Calls every `in_use_secs` minus a little, recorded as the rule says: once two uses are
        // recorded, the link is in use at every instant between calls.
        let p = KeepPolicy::default();
        let mut uses = Uses::default();
        let gap = p.in_use_secs - 3_600;
        let mut t = 0;
        for _ in 0..20 {
            if let Some(u) = p.record_use(uses, t) {
                uses = u;
            }
            // From its second recorded use on (a first use alone counts for one window).
            for probe in (t..t + gap).step_by(1_800) {
                if uses.prev.is_some() {
                    assert!(p.in_use(uses, probe), "{uses:?} at {probe}");
                }
            }
            t += gap;
        }
    }

    #[test]
    fn offsets_spread_evenly_and_stay_put() {
        let p = KeepPolicy::default();
        let buckets = 12usize;
        let mut counts = vec![0u32; buckets];
        for i in 0..12_000 {
            let id = format!("conn-{i}");
            let o = p.offset_secs(&id);
            assert!((0..p.idle_spread_secs).contains(&o));
            assert_eq!(o, p.offset_secs(&id), "the same at every sweep");
            counts[(o * buckets as i64 / p.idle_spread_secs) as usize] += 1;
        }
        // 1,000 expected per bucket; a uniform hash stays well within 15%.
        assert!(
            counts.iter().all(|c| (850..=1150).contains(c)),
            "{counts:?}"
        );
        let none = KeepPolicy {
            idle_spread_secs: 0,
            ..p
        };
        assert_eq!(none.offset_secs("x"), 0);
    }

    #[test]
    fn keepalive_comes_before_the_margin_for_every_id() {
        let p = KeepPolicy::default();
        let dies = 1_000 * DAY;
        for i in 0..1000 {
            let at = p.keepalive_at(&format!("c{i}"), dies);
            assert!(at <= p.latest_keepalive(dies));
            assert!(at > dies - p.idle_margin_secs - p.idle_spread_secs);
        }
    }

    #[test]
    fn idle_links_back_off_for_hours_but_retry_many_times_before_death() {
        let p = KeepPolicy::default();
        assert_eq!(p.idle_backoff_secs("a", 0), 0);
        let first = p.idle_backoff_secs("a", 1);
        assert!((1_800..=3_600).contains(&first), "{first}");
        let cap = p.idle_margin_secs / 12;
        for n in 1..40 {
            let b = p.idle_backoff_secs("a", n);
            assert!(b <= cap && b >= 1_800, "{n}: {b}");
        }
        // Within the margin, at least 12 tries fit even at the longest waits.
        assert!(p.idle_margin_secs / cap >= 12);
    }

    #[test]
    fn in_use_tokens_are_due_a_lead_before_the_margin() {
        let p = KeepPolicy::default();
        let margin = 3_600;
        let exp = 1_000_000;
        assert!(!p.fresh_due(margin, exp, exp - margin - p.lead_secs));
        assert!(p.fresh_due(margin, exp, exp - margin - p.lead_secs + 1));
    }

    #[test]
    fn the_default_keeps_a_million_idle_links_under_a_quarter_of_the_quota() {
        let p = KeepPolicy::default();
        let per_day = p.idle_calls_per_day(1_000_000.0, 45 * DAY);
        assert!(per_day < 0.25 * 150_000.0, "{per_day}");
        // A margin past the lifetime cannot be kept: infinite.
        let silly = KeepPolicy {
            idle_margin_secs: 50 * DAY,
            ..p
        };
        assert!(silly.idle_calls_per_day(1.0, 45 * DAY).is_infinite());
    }
}
