//! This isolate's picture of Keap's quota (the rules are `keaplink_core::quota`), the proxied
//! calls it counted since it last reported, and when it last traded both for the picture every
//! isolate shares (kept by `stats`, one round trip every few seconds, never one per call).

use keaplink_api::proxy::ProxyCounts;
use keaplink_core::proxy::{add_counts, ProxyOutcome};
use keaplink_core::quota::{deferred_report_wait_ms, observe, sync_due, Hold, QuotaView};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

#[derive(Default)]
struct Isolate {
    view: QuotaView,
    /// The shared picture as of the last exchange, plus what was sent since.
    shared: QuotaView,
    counts: ProxyCounts,
    last_sync_ms: u64,
    /// When the deferred report on its way was asked for (0: none). One older than
    /// `DEFERRED_LOST_MS` is taken as lost (its `waitUntil` torn down) and asked for again.
    deferred_at_ms: u64,
}

thread_local! {
    static ISOLATE: RefCell<Isolate> = RefCell::new(Isolate::default());
}

/// What an isolate tells the shared picture.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub seen: QuotaView,
    pub counts: ProxyCounts,
}

/// Whether a proxied call (for Keap app `app`, once known) must wait.
pub fn hold(app: Option<&str>, reserve: u64, now_ms: u64) -> Option<Hold> {
    ISOLATE.with(|i| i.borrow().view.hold(app, reserve, now_ms))
}

/// Learns from one of Keap's answers to a call for `app`.
pub fn learn(headers: &[(String, String)], status: u16, app: &str, now_ms: u64) {
    let seen = observe(headers, status, now_ms);
    ISOLATE.with(|i| i.borrow_mut().view.learn(&seen, app, now_ms));
}

pub fn count(outcome: ProxyOutcome) {
    ISOLATE.with(|i| outcome.count_into(&mut i.borrow_mut().counts));
}

/// What to tell the shared picture, when it is time: every few seconds, or at once when this
/// isolate saw a window spent (or the day near the reserve) that the shared picture lacks.
/// Taking it starts the exchange; answer it with `absorb`.
pub fn report_due(reserve: u64, now_ms: u64) -> Option<Report> {
    ISOLATE.with(|i| {
        let mut i = i.borrow_mut();
        let news = i.view.news_for(&i.shared, reserve, now_ms);
        if !sync_due(i.last_sync_ms, news, now_ms) {
            return None;
        }
        Some(take_report(&mut i, now_ms))
    })
}

fn take_report(i: &mut Isolate, now_ms: u64) -> Report {
    i.last_sync_ms = now_ms;
    let seen = i.view.report(now_ms);
    // As good as told: concurrent calls of this isolate do not tell it again.
    i.shared.merge(&seen, now_ms);
    Report {
        seen,
        counts: std::mem::take(&mut i.counts),
    }
}

/// Counts not told yet wait for the next exchange, which rides along with a call to Keap. So
/// that an isolate's last calls are counted even if no call follows, the first answer that
/// leaves counts behind asks for one deferred report: `Some(wait_ms)` until it is due.
pub fn deferred_report(now_ms: u64) -> Option<u64> {
    ISOLATE.with(|i| {
        let mut i = i.borrow_mut();
        let pending =
            i.deferred_at_ms != 0 && now_ms.saturating_sub(i.deferred_at_ms) < DEFERRED_LOST_MS;
        if pending || i.counts == ProxyCounts::default() {
            return None;
        }
        i.deferred_at_ms = now_ms;
        Some(deferred_report_wait_ms(i.last_sync_ms, now_ms))
    })
}

/// A deferred report waits at most `SYNC_EVERY_MS`; one not done long after that was lost.
const DEFERRED_LOST_MS: u64 = 10 * keaplink_core::quota::SYNC_EVERY_MS;

/// The deferred report, once its wait is over: what is still untold (a call may have told it
/// meanwhile, and then there is nothing to send).
pub fn take_deferred(now_ms: u64) -> Option<Report> {
    ISOLATE.with(|i| {
        let mut i = i.borrow_mut();
        i.deferred_at_ms = 0;
        if i.counts == ProxyCounts::default() {
            return None;
        }
        Some(take_report(&mut i, now_ms))
    })
}

/// Takes in the shared picture an exchange answered; a failed exchange keeps its counts for
/// the next one.
pub fn absorb(sent: Report, answer: Result<QuotaView, ()>, now_ms: u64) {
    ISOLATE.with(|i| {
        let mut i = i.borrow_mut();
        match answer {
            Ok(shared) => {
                i.view.merge(&shared, now_ms);
                i.shared = shared;
            }
            Err(()) => add_counts(&mut i.counts, &sent.counts),
        }
    })
}
