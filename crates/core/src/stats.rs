//! Operations figures: refresh outcomes counted in hourly buckets, summed over the last 24 hours.

use crate::clock::UnixTime;
use crate::vec_map::VecMap;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshOutcome {
    Succeeded,
    /// A transient failure (Keap down, throttled, timed out): retried.
    Failed,
    /// The link died (refresh token refused, or lost): only the user can restore it.
    NeedsReauth,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshTally {
    pub succeeded: u64,
    pub failed: u64,
    pub needs_reauth: u64,
}

impl RefreshTally {
    fn add(&mut self, o: RefreshOutcome, n: u64) {
        match o {
            RefreshOutcome::Succeeded => self.succeeded += n,
            RefreshOutcome::Failed => self.failed += n,
            RefreshOutcome::NeedsReauth => self.needs_reauth += n,
        }
    }
}

const HOUR: i64 = 3600;
pub const WINDOW_HOURS: i64 = 24;

/// Counts by hour; keeps only the buckets the window can still see.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourlyTally {
    buckets: VecMap<i64, RefreshTally>,
}

impl HourlyTally {
    pub fn add(&mut self, now: UnixTime, outcome: RefreshOutcome, n: u64) {
        let hour = now.div_euclid(HOUR);
        self.buckets
            .get_or_insert_with(hour, RefreshTally::default)
            .add(outcome, n);
        self.buckets.retain(|h, _| *h > hour - WINDOW_HOURS);
    }

    /// The sums over the 24 hours up to `now` (whole hours: the current one and the 23 before).
    pub fn last_24h(&self, now: UnixTime) -> RefreshTally {
        let hour = now.div_euclid(HOUR);
        let mut sum = RefreshTally::default();
        for t in self.buckets.range(hour - WINDOW_HOURS + 1..=hour) {
            sum.succeeded += t.succeeded;
            sum.failed += t.failed;
            sum.needs_reauth += t.needs_reauth;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_last_24_hours_only() {
        let mut t = HourlyTally::default();
        let day0 = 1_800_000_000 - 1_800_000_000 % HOUR;
        t.add(day0, RefreshOutcome::Succeeded, 5);
        t.add(day0 + 10, RefreshOutcome::Failed, 1);
        t.add(day0 + 5 * HOUR, RefreshOutcome::NeedsReauth, 1);
        assert_eq!(
            t.last_24h(day0 + 5 * HOUR),
            RefreshTally {
                succeeded: 5,
                failed: 1,
                needs_reauth: 1
            }
        );
        // 23 h after the first hour it still counts; at 24 h it has left the window.
        assert_eq!(t.last_24h(day0 + 23 * HOUR).succeeded, 5);
        assert_eq!(t.last_24h(day0 + 24 * HOUR).succeeded, 0);
        assert_eq!(t.last_24h(day0 + 24 * HOUR).needs_reauth, 1);
        // Old buckets are dropped as new ones come.
        t.add(day0 + 40 * HOUR, RefreshOutcome::Succeeded, 1);
        assert_eq!(t.buckets.len(), 1);
    }
}
