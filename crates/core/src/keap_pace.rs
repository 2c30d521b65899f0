//! How many refreshes may go to Keap now, by what Keap's own answers to refreshes last reported:
//! the client's day quota and per-minute throttle (`x-keap-product-quota-*`,
//! `x-keap-product-throttle-*`, read by `quota::observe`) and a 429's `Retry-After`. The sweep
//! gates each guard call on it (a nearly spent window stops it, the rest waiting in the refresh
//! queue until the window starts over), and the pacer caps its grants by it.
//!
//! Refreshes keep links alive, so they go before proxied calls: proxied calls already stop at
//! the reserve (`quota::QuotaView::hold`); refreshes may spend the day to its last call. Of the
//! per-minute throttle, which proxied calls share at the same moment, they leave a small margin.
//! Time is epoch milliseconds, passed in.

use crate::quota::{http_date_ms, merge_slot, observe, Window, SPIKE_HOLD_MS};
use serde::{Deserialize, Serialize};

/// Of a per-minute window, this share of its limit is left to calls already on their way that
/// no answer has counted yet (other isolates', proxied calls): 15 of Keap's 1,500.
const THROTTLE_MARGIN_DIVISOR: u64 = 100;
/// A `Retry-After` longer than this is not believed (a day window resets within a day).
const MAX_QUIET_MS: u64 = 24 * 60 * 60 * 1000;
/// Of the day's quota, this share of its limit is never spent on upkeep ([`Lane::Upkeep`]): the
/// last tenth, where [`KeapSignal::pressing`] starts, is for keeping links alive.
const UPKEEP_DAY_FLOOR_DIVISOR: u64 = 10;

/// What the Keap calls asked for are for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    /// Refreshes: they keep links alive, and may spend the day to its last call.
    #[default]
    Keep,
    /// Checks of links' hooks at Keap: they stop while the day has a tenth or less left (Keap
    /// reported it), so they never take what a refresh needs; they resume when it starts over.
    Upkeep,
}

/// What Keap last reported to refreshes, as the pace reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeapSignal {
    /// The client's calls of the day.
    #[serde(default)]
    pub day: Option<Window>,
    /// The client's calls of the minute.
    #[serde(default)]
    pub throttle: Option<Window>,
    /// After a 429: no refresh before this (0: none).
    #[serde(default)]
    pub quiet_until_ms: u64,
}

/// How many refreshes may start now, and when more may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// `u64::MAX` when nothing Keap reported limits them.
    pub calls: u64,
    /// When the limiting window starts over (0 when nothing limits).
    pub resume_at_ms: u64,
}

impl Room {
    pub const UNLIMITED: Room = Room {
        calls: u64::MAX,
        resume_at_ms: 0,
    };

    /// Whole seconds from `now_ms` until more may start, at least 1, at most `max_secs`.
    pub fn wait_secs(&self, now_ms: u64, max_secs: u32) -> u32 {
        let secs = self
            .resume_at_ms
            .saturating_sub(now_ms)
            .div_ceil(1000)
            .max(1);
        u32::try_from(secs).unwrap_or(u32::MAX).min(max_secs).max(1)
    }
}

impl KeapSignal {
    /// What one of Keap's answers says (`headers`: lower-case name, value). A 429 asks for
    /// quiet until its `Retry-After` (seconds or a date), else until the window it shows spent
    /// starts over, else for a moment (the unreported spike limit).
    pub fn read(headers: &[(String, String)], status: u16, now_ms: u64) -> KeapSignal {
        let seen = observe(headers, status, now_ms);
        let mut signal = KeapSignal {
            day: seen.day,
            throttle: seen.throttle,
            quiet_until_ms: 0,
        };
        if seen.refused {
            let stated = headers
                .iter()
                .find(|(n, _)| n == "retry-after")
                .and_then(|(_, v)| retry_after_ms(v.trim(), now_ms));
            let spent = [signal.day, signal.throttle]
                .into_iter()
                .flatten()
                .filter(|w| w.available == 0 && now_ms < w.resets_at_ms)
                .map(|w| w.resets_at_ms)
                .max();
            signal.quiet_until_ms = stated
                .or(spent)
                .unwrap_or(now_ms + SPIKE_HOLD_MS)
                .clamp(now_ms + 1, now_ms + MAX_QUIET_MS);
        }
        signal
    }

    /// Takes in a later (or out-of-order) report: each window as `quota` merges them (the
    /// lower count of the same window wins), the later quiet.
    pub fn merge(&mut self, other: &KeapSignal) {
        merge_slot(&mut self.day, &other.day);
        merge_slot(&mut self.throttle, &other.throttle);
        self.quiet_until_ms = self.quiet_until_ms.max(other.quiet_until_ms);
    }

    /// How many refreshes may start now, `in_flight` being on their way already (not yet
    /// counted by any answer).
    pub fn room(&self, in_flight: u64, now_ms: u64) -> Room {
        self.room_in(Lane::Keep, in_flight, now_ms)
    }

    /// How many calls of `lane` may start now (see [`Lane`]).
    pub fn room_in(&self, lane: Lane, in_flight: u64, now_ms: u64) -> Room {
        if self.quiet_until_ms > now_ms {
            return Room {
                calls: 0,
                resume_at_ms: self.quiet_until_ms,
            };
        }
        let mut room = Room::UNLIMITED;
        let day_margin = match lane {
            Lane::Keep => 0,
            Lane::Upkeep => UPKEEP_DAY_FLOOR_DIVISOR,
        };
        let windows = [
            (self.day, day_margin),
            (self.throttle, THROTTLE_MARGIN_DIVISOR),
        ];
        for (w, divisor) in windows {
            let Some(w) = w.filter(|w| now_ms < w.resets_at_ms) else {
                continue;
            };
            let margin = w.limit.checked_div(divisor).unwrap_or(0);
            let left = w.available.saturating_sub(margin.saturating_add(in_flight));
            if left < room.calls {
                room = Room {
                    calls: left,
                    resume_at_ms: w.resets_at_ms,
                };
            } else if left == 0 {
                // Both spent: more may start once both have started over.
                room.resume_at_ms = room.resume_at_ms.max(w.resets_at_ms);
            }
        }
        room
    }

    /// Whether this says anything the pace must act on now: a 429's quiet, or a window with
    /// little left (at most a tenth of its limit). The pacer is told only then.
    pub fn pressing(&self, now_ms: u64) -> bool {
        let low = |w: &Option<Window>| {
            w.is_some_and(|w| now_ms < w.resets_at_ms && w.available <= w.limit / 10)
        };
        self.quiet_until_ms > now_ms || low(&self.day) || low(&self.throttle)
    }
}

/// A `Retry-After` value (delay-seconds or an HTTP date) as the moment it names.
fn retry_after_ms(value: &str, now_ms: u64) -> Option<u64> {
    match value.parse::<u64>() {
        Ok(secs) => Some(now_ms.saturating_add(secs.saturating_mul(1000))),
        Err(_) => http_date_ms(value).filter(|t| *t > now_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2026-12-01T08:00:10Z, in ms.
    const NOW: u64 = 1_796_112_010_000;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn throttle(available: &str) -> Vec<(String, String)> {
        h(&[
            ("date", "Tue, 01 Dec 2026 08:00:10 GMT"),
            ("x-keap-product-throttle-limit", "1500"),
            ("x-keap-product-throttle-time-unit", "minute"),
            ("x-keap-product-throttle-interval", "1"),
            ("x-keap-product-throttle-available", available),
            ("x-keap-product-quota-limit", "150000"),
            ("x-keap-product-quota-time-unit", "day"),
            ("x-keap-product-quota-available", "100000"),
        ])
    }

    #[test]
    fn nothing_reported_limits_nothing() {
        assert_eq!(KeapSignal::default().room(6, NOW), Room::UNLIMITED);
        let roomy = KeapSignal::read(&throttle("1400"), 200, NOW);
        // 1,400 left of the minute, a margin of 15 and 6 on their way.
        assert_eq!(roomy.room(6, NOW).calls, 1400 - 15 - 6);
        assert!(!roomy.pressing(NOW));
    }

    #[test]
    fn a_nearly_spent_minute_stops_refreshes_until_it_starts_over() {
        let s = KeapSignal::read(&throttle("10"), 200, NOW);
        let room = s.room(0, NOW);
        assert_eq!(room.calls, 0, "10 left is within the margin of 15");
        // The minute ends at 08:01:00, 50 s from now.
        assert_eq!(room.resume_at_ms, NOW + 50_000);
        assert_eq!(room.wait_secs(NOW, 900), 50);
        assert!(s.pressing(NOW));
        // Once the minute is over only the day's 100,000 left limit them.
        assert_eq!(s.room(0, NOW + 50_000).calls, 100_000);
    }

    #[test]
    fn hook_checks_stop_at_the_last_tenth_of_the_day_and_refreshes_go_on() {
        let day = |available: &str| {
            h(&[
                ("date", "Tue, 01 Dec 2026 08:00:10 GMT"),
                ("x-keap-product-quota-limit", "150000"),
                ("x-keap-product-quota-time-unit", "day"),
                ("x-keap-product-quota-interval", "1"),
                ("x-keap-product-quota-available", available),
            ])
        };
        let roomy = KeapSignal::read(&day("20000"), 200, NOW);
        assert_eq!(roomy.room_in(Lane::Upkeep, 0, NOW).calls, 20_000 - 15_000);
        assert_eq!(roomy.room_in(Lane::Keep, 0, NOW).calls, 20_000);
        let low = KeapSignal::read(&day("15000"), 200, NOW);
        let upkeep = low.room_in(Lane::Upkeep, 0, NOW);
        assert_eq!(upkeep.calls, 0, "the last tenth is for keeping links alive");
        assert!(upkeep.resume_at_ms > NOW, "until the day starts over");
        assert_eq!(
            low.room(0, NOW).calls,
            15_000,
            "refreshes may still spend it"
        );
        assert!(low.pressing(NOW), "the pacer is told at the same point");
        // Nothing reported: nothing limits either lane.
        assert_eq!(
            KeapSignal::default().room_in(Lane::Upkeep, 0, NOW),
            Room::UNLIMITED
        );
    }

    #[test]
    fn the_day_is_spent_to_its_last_call() {
        let day = |available: &str| {
            h(&[
                ("date", "Tue, 01 Dec 2026 08:00:10 GMT"),
                ("x-keap-product-quota-limit", "150000"),
                ("x-keap-product-quota-time-unit", "day"),
                ("x-keap-product-quota-available", available),
            ])
        };
        // No margin of the day: proxied calls stop at the reserve, refreshes go on.
        assert_eq!(KeapSignal::read(&day("3"), 200, NOW).room(1, NOW).calls, 2);
        let spent = KeapSignal::read(&day("0"), 200, NOW).room(0, NOW);
        assert_eq!(spent.calls, 0);
        // Midnight UTC.
        assert_eq!(spent.resume_at_ms, 1_796_169_600_000);
        assert_eq!(spent.wait_secs(NOW, 43_200), 43_200);
    }

    #[test]
    fn a_429_asks_for_quiet() {
        let stated = KeapSignal::read(&h(&[("retry-after", "30")]), 429, NOW);
        assert_eq!(stated.room(0, NOW).calls, 0);
        assert_eq!(stated.room(0, NOW).resume_at_ms, NOW + 30_000);
        assert_eq!(stated.room(0, NOW + 30_000), Room::UNLIMITED);
        let dated = h(&[("retry-after", "Tue, 01 Dec 2026 08:00:40 GMT")]);
        assert_eq!(
            KeapSignal::read(&dated, 429, NOW).quiet_until_ms,
            NOW + 30_000
        );
        // No Retry-After: until the spent window starts over.
        let spent = KeapSignal::read(&throttle("0"), 429, NOW);
        assert_eq!(spent.quiet_until_ms, NOW + 50_000);
        // Nothing at all: a moment.
        assert_eq!(
            KeapSignal::read(&[], 429, NOW).quiet_until_ms,
            NOW + SPIKE_HOLD_MS
        );
        // A 200 asks for no quiet, and an absurd Retry-After is capped.
        assert_eq!(KeapSignal::read(&[], 200, NOW).quiet_until_ms, 0);
        let absurd = KeapSignal::read(&h(&[("retry-after", "99999999")]), 429, NOW);
        assert_eq!(absurd.quiet_until_ms, NOW + MAX_QUIET_MS);
    }

    #[test]
    fn reports_merge_whatever_their_order() {
        let a = KeapSignal::read(&throttle("100"), 200, NOW);
        let b = KeapSignal::read(&throttle("40"), 200, NOW);
        let (mut ab, mut ba) = (a, b);
        ab.merge(&b);
        ba.merge(&a);
        assert_eq!(ab.room(0, NOW), ba.room(0, NOW));
        assert_eq!(ab.room(0, NOW).calls, 40 - 15);
    }

    proptest! {
        /// Whatever Keap reported, the room never exceeds what any live window has left after
        /// the calls in flight, never limits once every window has started over, and the
        /// pace resumes no earlier than now when it allows nothing.
        #[test]
        fn room_stays_within_every_window(
            day_left in 0u64..150_000,
            minute_left in 0u64..1_500,
            in_flight in 0u64..50,
            later_ms in 0u64..200_000,
            refused in any::<bool>(),
        ) {
            let headers = h(&[
                ("date", "Tue, 01 Dec 2026 08:00:10 GMT"),
                ("x-keap-product-throttle-limit", "1500"),
                ("x-keap-product-throttle-time-unit", "minute"),
                ("x-keap-product-throttle-available", &minute_left.to_string()),
                ("x-keap-product-quota-limit", "150000"),
                ("x-keap-product-quota-time-unit", "day"),
                ("x-keap-product-quota-available", &day_left.to_string()),
            ]);
            let s = KeapSignal::read(&headers, if refused { 429 } else { 200 }, NOW);
            let now = NOW + later_ms;
            let room = s.room(in_flight, now);
            if now < NOW + 50_000 {
                prop_assert!(room.calls <= minute_left.saturating_sub(in_flight));
            }
            if now < s.quiet_until_ms {
                prop_assert_eq!(room.calls, 0);
            }
            prop_assert!(room.calls <= day_left.saturating_sub(in_flight));
            if room.calls == 0 {
                prop_assert!(room.resume_at_ms > now);
            }
            prop_assert_eq!(s.room(in_flight, NOW + 2 * 24 * 3_600_000), Room::UNLIMITED);
        }
    }
}
