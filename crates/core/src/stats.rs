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

impl RefreshTally {
    fn add(&mut self, o: RefreshOutcome, n: u64) {
        match o {
            RefreshOutcome::Succeeded => self.succeeded += n,
            RefreshOutcome::Failed => self.failed += n,
            RefreshOutcome::NeedsReauth => self.needs_reauth += n,
        }
    }
}

/// What became of Keap's events (`KeapEventCounts` says what each count means).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeapEventOutcome {
    /// A batch Keap posted to a link's hook URL, taken in by the queue (Keap's retries too).
    Received,
    /// A batch received again after it was delivered (a retry of Keap's): not sent again;
    /// counted as received and as deduplicated, in one step.
    Repeated,
    /// A `keap.*` event the partner's webhook accepted.
    Delivered,
}

impl KeapEventOutcome {
    /// What a verdict on a batch counts: a new batch the link wants is `Received`, one seen
    /// before `Repeated` (one count each way: one Durable Object call per batch). Nothing when
    /// the link is gone or no longer wants the event key.
    pub fn of_batch(duplicate: bool, wanted: bool) -> Option<KeapEventOutcome> {
        match (wanted, duplicate) {
            (false, _) => None,
            (true, false) => Some(KeapEventOutcome::Received),
            (true, true) => Some(KeapEventOutcome::Repeated),
        }
    }

    /// Whether a delivery attempt counts as `Delivered`: a `keap.*` event the receiver accepted.
    pub fn delivered(keap_event: bool, accepted: bool) -> bool {
        keap_event && accepted
    }

    /// Keap's events are counted in the refresh tally's three slots (received in `succeeded`,
    /// deduplicated in `failed`, delivered in `needs_reauth`): one stored shape, so the Worker's
    /// wasm carries one decoder for both (`keap_counts` names them again).
    fn slots(self) -> &'static [RefreshOutcome] {
        match self {
            KeapEventOutcome::Received => &[RefreshOutcome::Succeeded],
            KeapEventOutcome::Repeated => &[RefreshOutcome::Succeeded, RefreshOutcome::Failed],
            KeapEventOutcome::Delivered => &[RefreshOutcome::NeedsReauth],
        }
    }
}

/// Keap's events by hour, in the refresh tally's shape (`KeapEventOutcome::slot`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeapEventTally(HourlyTally);

impl KeapEventTally {
    pub fn add(&mut self, now: UnixTime, outcome: KeapEventOutcome) {
        for slot in outcome.slots() {
            self.0.add(now, *slot, 1);
        }
    }

    /// The last 24 hours' counts, still in the stored shape (as they cross a Durable Object
    /// call); `keap_counts` names them.
    pub fn last_24h(&self, now: UnixTime) -> RefreshTally {
        self.0.last_24h(now)
    }
}

/// The counts of a `KeapEventTally::last_24h`, by their own names.
pub fn keap_counts(t: RefreshTally) -> KeapEventCounts {
    KeapEventCounts {
        received: t.succeeded,
        deduplicated: t.failed,
        delivered: t.needs_reauth,
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

    #[test]
    fn counts_keap_events_by_verdict_and_delivery() {
        let mut t = KeapEventTally::default();
        let day0 = 1_800_000_000 - 1_800_000_000 % HOUR;
        for (duplicate, wanted) in [(false, true), (true, true), (false, false), (true, true)] {
            if let Some(o) = KeapEventOutcome::of_batch(duplicate, wanted) {
                t.add(day0, o);
            }
        }
        for (keap, accepted) in [(true, true), (true, false), (false, true), (true, true)] {
            if KeapEventOutcome::delivered(keap, accepted) {
                t.add(day0 + HOUR, KeapEventOutcome::Delivered);
            }
        }
        assert_eq!(
            keap_counts(t.last_24h(day0 + HOUR)),
            KeapEventCounts {
                received: 3,
                deduplicated: 2,
                delivered: 2
            }
        );
        assert_eq!(keap_counts(t.last_24h(day0 + 24 * HOUR)).received, 0);
        assert_eq!(keap_counts(t.last_24h(day0 + 24 * HOUR)).delivered, 2);
        // Stored as the refresh tally is: the same JSON, read by the same decoder.
        let text = serde_json::to_string(&t).unwrap();
        assert!(text.starts_with(r#"{"buckets":{"#), "{text}");
        let back: KeapEventTally = serde_json::from_str(&text).unwrap();
        assert_eq!(back, t);
    }
}
