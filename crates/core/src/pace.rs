//! Pacing calls to Keap's token endpoint under its quota (about 1,500 a minute per OAuth
//! client): a token bucket at the configured rate. A 429 halves the rate; a minute without one
//! lets it climb back by a tenth of the configured rate per minute (additive increase,
//! multiplicative decrease). Time is passed in, in milliseconds.

use crate::keap_pace::{KeapSignal, Lane};
use serde::{Deserialize, Serialize};

/// The longest a refresh is put off for Keap's quota (the queue's longest delay is 12 hours).
pub const MAX_QUOTA_WAIT_SECS: u32 = 43_200;

/// What the pacer answers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PaceGrant {
    /// Calls that may start now.
    pub granted: u32,
    /// When to come back for the rest (0 when all were granted).
    pub retry_after_secs: u32,
    pub rate_per_min: f64,
}

#[derive(Debug, Clone)]
pub struct Pace {
    configured: f64,
    rate: f64,
    tokens: f64,
    last_ms: f64,
    last_throttle_ms: f64,
    /// What Keap last reported to refreshes (`keap_pace`): grants never exceed its room.
    keap: KeapSignal,
}

impl Pace {
    pub fn new(rate_per_min: f64, now_ms: f64) -> Self {
        Pace {
            configured: rate_per_min,
            rate: rate_per_min,
            tokens: 1.0,
            last_ms: now_ms,
            last_throttle_ms: f64::MIN,
            keap: KeapSignal::default(),
        }
    }

    /// A new configured rate takes effect at once (downwards) or through recovery (upwards).
    pub fn configure(&mut self, rate_per_min: f64) {
        self.configured = rate_per_min;
        self.rate = self.rate.min(rate_per_min);
    }

    /// Takes in what Keap reported to a caller's refreshes.
    pub fn learn(&mut self, signal: &KeapSignal) {
        self.keap.merge(signal);
    }

    pub fn take(&mut self, want: u32, throttled: bool, now_ms: f64) -> PaceGrant {
        self.take_in(Lane::Keep, want, throttled, now_ms)
    }

    /// As [`Pace::take`], for calls of `lane`: the same bucket, capped by that lane's room in
    /// what Keap reported (hook checks stop at the day's last tenth; refreshes go on).
    pub fn take_in(&mut self, lane: Lane, want: u32, throttled: bool, now_ms: f64) -> PaceGrant {
        let minutes = ((now_ms - self.last_ms) / 60_000.0).max(0.0);
        if throttled {
            self.rate = (self.rate / 2.0).max(self.configured / 64.0);
            self.tokens = 0.0;
            self.last_throttle_ms = now_ms;
        } else if now_ms - self.last_throttle_ms > 60_000.0 {
            self.rate = (self.rate + self.configured * 0.1 * minutes).min(self.configured);
        }
        // A burst of at most two seconds' worth.
        let burst = (self.rate / 30.0).max(1.0);
        self.tokens = (self.tokens + self.rate * minutes).min(burst);
        self.last_ms = now_ms;
        let paced = (self.tokens.floor() as u32).min(want);
        // What Keap reported caps the bucket: a nearly spent window waits for its start over.
        let room = self.keap.room_in(lane, 0, now_ms.max(0.0) as u64);
        let granted = paced.min(u32::try_from(room.calls).unwrap_or(u32::MAX));
        self.tokens -= f64::from(granted);
        let missing = f64::from(want - granted);
        let per_sec = self.rate / 60.0;
        let retry_after_secs = if granted < paced {
            room.wait_secs(now_ms.max(0.0) as u64, MAX_QUOTA_WAIT_SECS)
        } else if missing > 0.0 {
            ((missing / per_sec).ceil() as u32).clamp(1, 900)
        } else {
            0
        };
        PaceGrant {
            granted,
            retry_after_secs,
            rate_per_min: self.rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_at_the_configured_rate() {
        let mut p = Pace::new(600.0, 0.0); // 10 a second
        let g = p.take(100, false, 1000.0);
        assert!(g.granted <= 20, "a burst of at most two seconds: {g:?}");
        assert!(g.retry_after_secs >= 1);
        let mut total = g.granted;
        for s in 2..=60 {
            total += p.take(100, false, f64::from(s) * 1000.0).granted;
        }
        assert!((580..=620).contains(&total), "{total} in a minute");
    }

    #[test]
    fn a_429_halves_the_rate_and_it_recovers_slowly() {
        let mut p = Pace::new(600.0, 0.0);
        assert_eq!(p.take(0, true, 0.0).rate_per_min, 300.0);
        assert_eq!(p.take(0, true, 10.0).rate_per_min, 150.0);
        // Within a minute of the 429: no increase.
        assert_eq!(p.take(0, false, 30_000.0).rate_per_min, 150.0);
        // Later: back up by a tenth of the configured rate per minute, never above it.
        let g = p.take(0, false, 150_000.0);
        assert!(g.rate_per_min > 150.0 && g.rate_per_min < 600.0, "{g:?}");
        assert_eq!(p.take(0, false, 3_600_000.0).rate_per_min, 600.0);
        // Never below 1/64 of the configured rate.
        for i in 0..20 {
            p.take(0, true, 3_600_000.0 + f64::from(i));
        }
        assert!(p.take(0, false, 3_600_100.0).rate_per_min >= 600.0 / 64.0);
    }

    #[test]
    fn what_keap_reports_caps_the_grants() {
        use crate::quota::Window;
        let now: u64 = 1_796_112_010_000;
        let mut p = Pace::new(6000.0, now as f64);
        let minute = |available| Window {
            limit: 1500,
            available,
            ends_keap_ms: now + 50_000,
            resets_at_ms: now + 50_000,
            seen_at_ms: now,
        };
        // 25 left of the minute, 15 of them the margin: 10 now, the rest when it starts over.
        p.learn(&KeapSignal {
            throttle: Some(minute(25)),
            ..KeapSignal::default()
        });
        let g = p.take(100, false, (now + 5_000) as f64);
        assert_eq!(g.granted, 10, "{g:?}");
        assert_eq!(g.retry_after_secs, 45);
        // A later answer of the same minute saying less wins over the earlier one.
        p.learn(&KeapSignal {
            throttle: Some(minute(3)),
            ..KeapSignal::default()
        });
        assert_eq!(p.take(100, false, (now + 6_000) as f64).granted, 0);
        // Once the minute started over, the bucket alone paces again.
        assert!(p.take(100, false, (now + 51_000) as f64).granted > 0);
    }

    #[test]
    fn hook_checks_wait_at_the_days_last_tenth_while_refreshes_are_granted() {
        use crate::quota::Window;
        let now: u64 = 1_796_112_010_000;
        let mut p = Pace::new(6000.0, now as f64);
        p.learn(&KeapSignal {
            day: Some(Window {
                limit: 150_000,
                available: 9_000,
                ends_keap_ms: now + 3_600_000,
                resets_at_ms: now + 3_600_000,
                seen_at_ms: now,
            }),
            ..KeapSignal::default()
        });
        let at = (now + 5_000) as f64;
        let upkeep = p.take_in(Lane::Upkeep, 10, false, at);
        assert_eq!(upkeep.granted, 0);
        assert_eq!(
            upkeep.retry_after_secs, 3_595,
            "back when the day starts over"
        );
        assert!(p.take_in(Lane::Keep, 10, false, at + 1.0).granted > 0);
    }
}
