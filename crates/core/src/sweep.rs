//! The sweep's arithmetic: how one invocation spends its subrequests (Cloudflare caps them per
//! invocation: 50 on the free plan) between list pages, direct guard calls and queue sends, and
//! how the guards' answers are tallied into the sweep's log line.

use crate::connection::{ConnectionRecord, FailureKind};
use crate::keap_pace::KeapSignal;
use keaplink_api::ConnectionStatus;
use serde::Serialize;

/// Messages per queue send (Cloudflare's batch limit).
pub const SEND_BATCH: usize = 100;
/// KV list page size (KV's maximum).
pub const LIST_PAGE: u64 = 1000;

/// The smallest budget that always fits a first page: one list call, up to ten sends for a
/// page of 1,000 due connections, and one send to continue.
pub const MIN_BUDGET: u64 = 1 + LIST_PAGE.div_ceil(SEND_BATCH as u64) + 1;

/// The subrequests one invocation has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    left: u64,
}

/// What to do with the due connections of one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagePlan {
    /// Refresh the first `direct` through their guards now...
    pub direct: usize,
    /// ...and queue the rest, in this many sends.
    pub sends: u64,
}

impl Budget {
    pub fn new(subrequests: u64) -> Self {
        Budget { left: subrequests }
    }

    /// Whether another list page fits: one list call, keeping room to queue what it finds and
    /// one send for a continuation. `false`: stop here and continue through the queue.
    pub fn take_page(&mut self) -> bool {
        if self.left < 3 {
            return false;
        }
        self.left -= 1;
        true
    }

    /// Splits `due` connections between direct guard calls and queue sends, keeping one send
    /// for a continuation, and spends the budget for both: as many direct as fit. `None`: even
    /// queueing them all does not fit; the page must be walked again by a continuation that
    /// starts at it (which the kept send pays for). A fresh invocation's first page always fits
    /// once the budget is at least [`MIN_BUDGET`].
    pub fn plan(&mut self, due: usize) -> Option<PagePlan> {
        let room = self.left.saturating_sub(1);
        let cost = |direct: usize| direct as u64 + (due - direct).div_ceil(SEND_BATCH) as u64;
        let mut direct = due.min(room as usize);
        while cost(direct) > room {
            if direct == 0 {
                return None;
            }
            direct -= 1;
        }
        self.left -= cost(direct);
        Some(PagePlan {
            direct,
            sends: cost(direct) - direct as u64,
        })
    }

    pub fn left(&self) -> u64 {
        self.left
    }
}

/// What the guards answered, counted for the sweep's and the queue batch's log lines.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub refreshed: u64,
    pub still_failing: u64,
    pub needs_reauth: u64,
    pub already_fresh: u64,
    pub gone: u64,
    pub errors: u64,
    /// Some refresh met Keap's 429: the pace must slow.
    #[serde(skip)]
    pub throttled: bool,
    /// What Keap's answers to these refreshes said of the quota, merged.
    #[serde(skip)]
    pub keap: KeapSignal,
}

/// One guard's answer to a sweep refresh.
pub enum Answered<'a> {
    /// The latest record, and whether this call refreshed it.
    Record(&'a ConnectionRecord, bool),
    /// The connection is gone.
    Gone,
    /// The call failed.
    Error,
}

impl Tally {
    pub fn add(&mut self, a: Answered<'_>) {
        match a {
            Answered::Record(_, true) => self.refreshed += 1,
            Answered::Record(r, false) if r.status == ConnectionStatus::NeedsReauth => {
                self.needs_reauth += 1
            }
            Answered::Record(r, false) => match r.last_error {
                Some(e) => {
                    self.still_failing += 1;
                    self.throttled |= e.kind == FailureKind::KeapThrottled;
                }
                None => self.already_fresh += 1,
            },
            Answered::Gone => self.gone += 1,
            Answered::Error => self.errors += 1,
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        self.refreshed += other.refreshed;
        self.still_failing += other.still_failing;
        self.needs_reauth += other.needs_reauth;
        self.already_fresh += other.already_fresh;
        self.gone += other.gone;
        self.errors += other.errors;
        self.throttled |= other.throttled;
        self.keap.merge(&other.keap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_plan_invocation_fits_in_its_50_subrequests() {
        // 45, as configured by default: one page with 1000 due connections.
        let mut b = Budget::new(45);
        assert!(b.take_page());
        let plan = b.plan(1000).unwrap();
        // 44 left, minus one continuation send and 10 sends for 1000: 33 direct, 10 sends for
        // the 967 others.
        assert_eq!(
            plan,
            PagePlan {
                direct: 33,
                sends: 10
            }
        );
        assert_eq!(b.left(), 1);
        assert!(
            !b.take_page(),
            "no room for another page: continue through the queue"
        );
    }

    #[test]
    fn small_pages_go_direct_and_the_walk_goes_on_while_it_fits() {
        let mut b = Budget::new(45);
        let mut plans = Vec::new();
        while b.take_page() {
            plans.push(b.plan(2).unwrap());
        }
        // Each page costs 1 list + 2 guard calls, until the last one only fits a queue send.
        assert_eq!(plans.len(), 15);
        assert!(plans[..14].iter().all(|p| *p
            == PagePlan {
                direct: 2,
                sends: 0
            }));
        assert_eq!(
            plans[14],
            PagePlan {
                direct: 0,
                sends: 1
            }
        );
        assert_eq!(b.left(), 1, "the continuation send is kept");
        assert!(!Budget::new(2).take_page());
    }

    #[test]
    fn a_page_that_cannot_be_queued_is_walked_again_later() {
        // Late in a walk: 3 left, a page with 500 due needs 5 sends.
        let mut b = Budget::new(3);
        assert!(b.take_page());
        assert_eq!(b.plan(500), None);
        assert_eq!(
            b.left(),
            2,
            "nothing spent: the continuation send is still there"
        );
        // A fresh invocation with the smallest budget always fits its first page.
        let mut fresh = Budget::new(MIN_BUDGET);
        assert!(fresh.take_page());
        assert_eq!(
            fresh.plan(1000),
            Some(PagePlan {
                direct: 0,
                sends: 10
            })
        );
    }

    #[test]
    fn never_spends_more_than_it_has() {
        for total in 0..120u64 {
            for due in [0usize, 1, 7, 99, 100, 101, 1000] {
                let mut b = Budget::new(total);
                let mut spent = 0u64;
                while b.take_page() {
                    spent += 1;
                    let Some(p) = b.plan(due) else {
                        spent += 1; // the continuation that walks the page again
                        break;
                    };
                    spent += p.direct as u64 + p.sends;
                    assert_eq!(p.sends, (due - p.direct).div_ceil(SEND_BATCH) as u64);
                }
                assert!(
                    spent < total.max(1),
                    "total {total}, due {due}: spent {spent}"
                );
            }
        }
    }
}
