//! Operations figures: refresh outcomes, and what became of Keap's events, counted in hourly
//! buckets, summed over the last 24 hours.

use crate::clock::UnixTime;
use crate::vec_map::VecMap;
use keaplink_api::KeapEventCounts;
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

/// One hour's counts of something, and how two are summed.
pub trait Tally: Default + Clone {
    type Outcome: Copy;
    fn count(&mut self, o: Self::Outcome, n: u64);
    fn sum(&mut self, other: &Self);
}

impl Tally for RefreshTally {
    type Outcome = RefreshOutcome;
    fn count(&mut self, o: RefreshOutcome, n: u64) {
        match o {
            RefreshOutcome::Succeeded => self.succeeded += n,
            RefreshOutcome::Failed => self.failed += n,
            RefreshOutcome::NeedsReauth => self.needs_reauth += n,
        }
    }
    fn sum(&mut self, t: &Self) {
        self.succeeded += t.succeeded;
        self.failed += t.failed;
        self.needs_reauth += t.needs_reauth;
    }
}

/// What became of Keap's events (`KeapEventCounts` says what each count means).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeapEventOutcome {
    /// A batch Keap posted to a link's hook URL, taken in by the queue (Keap's retries too).
    Received,
    /// A batch already delivered (a retry of Keap's): not sent again.
    Deduplicated,
    /// A `keap.*` event the partner's webhook accepted.
    Delivered,
}

impl KeapEventOutcome {
    /// The counts of a verdict on a batch: every batch the link still wants is `Received`, and
    /// a batch seen before is also `Deduplicated`. `None`: nothing to count (the link is gone,
    /// or no longer wants the event key).
    pub fn of_batch(duplicate: bool, wanted: bool) -> &'static [KeapEventOutcome] {
        match (wanted, duplicate) {
            (false, _) => &[],
            (true, false) => &[KeapEventOutcome::Received],
            (true, true) => &[KeapEventOutcome::Received, KeapEventOutcome::Deduplicated],
        }
    }
}

impl Tally for KeapEventCounts {
    type Outcome = KeapEventOutcome;
    fn count(&mut self, o: KeapEventOutcome, n: u64) {
        match o {
            KeapEventOutcome::Received => self.received += n,
            KeapEventOutcome::Deduplicated => self.deduplicated += n,
            KeapEventOutcome::Delivered => self.delivered += n,
        }
    }
    fn sum(&mut self, t: &Self) {
        self.received += t.received;
        self.deduplicated += t.deduplicated;
        self.delivered += t.delivered;
    }
}

const HOUR: i64 = 3600;
pub const WINDOW_HOURS: i64 = 24;

/// Counts by hour; keeps only the buckets the window can still see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(serialize = "T: Serialize", deserialize = "T: Deserialize<'de>"))]
pub struct HourlyTally<T = RefreshTally> {
    buckets: VecMap<i64, T>,
}

impl<T> Default for HourlyTally<T> {
    fn default() -> Self {
        HourlyTally {
            buckets: VecMap::default(),
        }
    }
}

/// Keap's events counted by hour.
pub type KeapEventTally = HourlyTally<KeapEventCounts>;

impl<T: Tally> HourlyTally<T> {
    pub fn add(&mut self, now: UnixTime, outcome: T::Outcome, n: u64) {
        let hour = now.div_euclid(HOUR);
        self.buckets
            .get_or_insert_with(hour, T::default)
            .count(outcome, n);
        self.buckets.retain(|h, _| *h > hour - WINDOW_HOURS);
    }

    /// The sums over the 24 hours up to `now` (whole hours: the current one and the 23 before).
    pub fn last_24h(&self, now: UnixTime) -> T {
        let hour = now.div_euclid(HOUR);
        let mut sum = T::default();
        for t in self.buckets.range(hour - WINDOW_HOURS + 1..=hour) {
            sum.sum(t);
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_last_24_hours_only() {
        let mut t: HourlyTally = HourlyTally::default();
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

    #[test]
    fn counts_keap_events_by_verdict_and_delivery() {
        let mut t = KeapEventTally::default();
        let day0 = 1_800_000_000 - 1_800_000_000 % HOUR;
        for (duplicate, wanted) in [(false, true), (true, true), (false, false), (true, true)] {
            for o in KeapEventOutcome::of_batch(duplicate, wanted) {
                t.add(day0, *o, 1);
            }
        }
        t.add(day0 + HOUR, KeapEventOutcome::Delivered, 2);
        assert_eq!(
            t.last_24h(day0 + HOUR),
            KeapEventCounts {
                received: 3,
                deduplicated: 2,
                delivered: 2
            }
        );
        assert_eq!(t.last_24h(day0 + 24 * HOUR).received, 0);
        assert_eq!(t.last_24h(day0 + 24 * HOUR).delivered, 2);
        // Stored as the refresh tally is: a JSON object of hours.
        let back: KeapEventTally =
            serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }
}
