//! Pacing calls to Keap's token endpoint under its quota (about 1,500 a minute per OAuth
//! client): a token bucket at the configured rate. A 429 halves the rate; a minute without one
//! lets it climb back by a tenth of the configured rate per minute (additive increase,
//! multiplicative decrease). Time is passed in, in milliseconds.

use serde::{Deserialize, Serialize};

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
}

impl Pace {
    pub fn new(rate_per_min: f64, now_ms: f64) -> Self {
        Pace {
            configured: rate_per_min,
            rate: rate_per_min,
            tokens: 1.0,
            last_ms: now_ms,
            last_throttle_ms: f64::MIN,
        }
    }

    /// A new configured rate takes effect at once (downwards) or through recovery (upwards).
    pub fn configure(&mut self, rate_per_min: f64) {
        self.configured = rate_per_min;
        self.rate = self.rate.min(rate_per_min);
    }

    pub fn take(&mut self, want: u32, throttled: bool, now_ms: f64) -> PaceGrant {
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
        let granted = (self.tokens.floor() as u32).min(want);
        self.tokens -= f64::from(granted);
        let missing = f64::from(want - granted);
        let per_sec = self.rate / 60.0;
        PaceGrant {
            granted,
            retry_after_secs: if missing > 0.0 {
                ((missing / per_sec).ceil() as u32).clamp(1, 900)
            } else {
                0
            },
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
}
