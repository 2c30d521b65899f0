//! The cron sweep: walks every connection's KV metadata page by page, decides from metadata
//! alone which are due (`keaplink_core::refresh`), and hands each due one to its guard. It never
//! reads a KV value itself. One invocation spends at most `SWEEP_SUBREQUEST_BUDGET` subrequests
//! (`keaplink_core::sweep` does the arithmetic); due connections it has no budget for go to the
//! refresh queue, paced by the pacer, and an unfinished walk continues there too.

use crate::clock::{now_ms, unix_now};
use crate::config::Config;
use crate::guard::{self, Refreshed};
use crate::queue::{enqueue, enqueue_after, Job};
use crate::random;
use crate::store::Store;
use futures_util::stream::{self, StreamExt};
use keaplink_core::connection::ConnectionKey;
use keaplink_core::hooks;
use keaplink_core::keap_pace::{KeapSignal, Lane};
use keaplink_core::pace::MAX_QUOTA_WAIT_SECS;
use keaplink_core::refresh::{DueReason, Purpose, RefreshState};
use keaplink_core::sweep::{Answered, Budget, Tally, LIST_PAGE};
use keaplink_core::ApiResult;
use serde::Serialize;
use std::cell::{Cell, RefCell};
use worker::Env;

/// Guard calls in flight at once (a Worker may hold six connections open).
const PARALLEL_GUARD_CALLS: usize = 6;

/// What one sweep did: logged as one JSON line.
#[derive(Debug, Default, Serialize)]
pub struct SweepReport {
    pub event: &'static str,
    /// Tells this sweep's line apart (a cron run and its queued continuations log one each).
    pub id: String,
    pub listed: u64,
    pub due: u64,
    /// Of the due: links in use kept fresh, and idle links kept alive (`keaplink_core::keep`).
    pub due_fresh: u64,
    pub due_keepalive: u64,
    /// Links whose Keap hooks were due for a check (queued, paced with the refreshes).
    pub hooks_due: u64,
    /// Of those, checks not queued: Keap's day was at its last tenth, kept for refreshes.
    pub hooks_held: u64,
    #[serde(flatten)]
    pub tally: Tally,
    /// Due connections handed to the refresh queue for lack of budget.
    pub enqueued: u64,
    /// Due connections held back because Keap reported its quota (nearly) spent: queued to
    /// come back when the window starts over, `paced_secs` from now.
    pub paced: u64,
    pub paced_secs: u32,
    pub kv_list_calls: u64,
    /// KV values this sweep read itself (its guards read their own records).
    pub kv_value_reads: u64,
    pub guard_calls: u64,
    pub queue_sends: u64,
    /// Whether the walk reached the end (else it continues through the queue).
    pub complete: bool,
    pub continued: bool,
    pub duration_ms: u64,
}

fn tally(answers: Vec<Option<ApiResult<Option<Refreshed>>>>) -> Tally {
    let mut tally = Tally::default();
    for a in answers.iter().flatten() {
        tally.add(match a {
            Ok(Some(r)) => Answered::Record(&r.record, r.refreshed),
            Ok(None) => Answered::Gone,
            Err(_) => Answered::Error,
        });
        if let Ok(Some(Refreshed { keap: Some(s), .. })) = a {
            tally.keap.merge(s);
        }
    }
    tally
}

/// What `refresh_paced` left for later: the keys, and when Keap's window starts over.
#[derive(Default)]
pub struct Held {
    pub keys: Vec<ConnectionKey>,
    pub resume_at_ms: u64,
}

/// Refreshes `keys` through their guards, six at a time, and tallies the answers. Each guard
/// call starts only while what Keap last reported (`heard`, kept up to date by every answer)
/// leaves room for it (`keaplink_core::keap_pace`); the keys it leaves no room for are handed
/// back, not called.
pub async fn refresh_paced(
    env: &Env,
    keys: Vec<ConnectionKey>,
    heard: &RefCell<KeapSignal>,
) -> (Tally, Held) {
    let in_flight = Cell::new(0u64);
    let held = RefCell::new(Held::default());
    let (in_flight, held_ref) = (&in_flight, &held);
    let answers: Vec<_> = stream::iter(keys)
        .map(|key| async move {
            let room = heard.borrow().room(in_flight.get(), now_ms());
            if room.calls == 0 {
                let mut h = held_ref.borrow_mut();
                h.resume_at_ms = h.resume_at_ms.max(room.resume_at_ms);
                h.keys.push(key);
                return None;
            }
            in_flight.set(in_flight.get() + 1);
            let answer = guard::refresh(env, &key, Purpose::Sweep).await;
            in_flight.set(in_flight.get() - 1);
            if let Ok(Some(Refreshed { keap: Some(s), .. })) = &answer {
                heard.borrow_mut().merge(s);
            }
            Some(answer)
        })
        .buffer_unordered(PARALLEL_GUARD_CALLS)
        .collect()
        .await;
    (tally(answers), held.into_inner())
}

/// Walks from `cursor` (the start when `None`).
pub async fn sweep(env: &Env, cfg: &Config, mut cursor: Option<String>) -> ApiResult<SweepReport> {
    let started = now_ms();
    let store = Store::open(env)?;
    let mut report = SweepReport {
        event: "sweep",
        id: keaplink_core::ids::hex(&random::bytes::<8>()),
        ..SweepReport::default()
    };
    let mut budget = Budget::new(cfg.sweep_budget);
    let heard = RefCell::new(KeapSignal::default());
    loop {
        if !budget.take_page() {
            if let Some(c) = cursor.take() {
                report.queue_sends += enqueue(env, vec![Job::Sweep { cursor: c }]).await?;
                report.continued = true;
            }
            break;
        }
        report.kv_list_calls += 1;
        let page = store
            .list_all_connections(LIST_PAGE, cursor.clone())
            .await?;
        let now = unix_now();
        let (mut fresh, mut keepalive) = (0u64, 0u64);
        let mut due: Vec<ConnectionKey> = Vec::new();
        let mut hook_checks: Vec<Job> = Vec::new();
        for (key, meta) in &page.items {
            if hooks::check_due(meta.hooks_checked_at, now, i64::from(cfg.hooks_check_secs)) {
                hook_checks.push(Job::Hooks { key: key.clone() });
            }
            match cfg.refresh.due(&RefreshState::from(meta), now) {
                Some(DueReason::AccessExpiring) => fresh += 1,
                Some(DueReason::KeepAlive) => keepalive += 1,
                None => continue,
            }
            due.push(key.clone());
        }
        let Some(plan) = budget.plan(due.len()) else {
            // Not even queueing this page's due links fits: walk it again from a continuation.
            if let Some(c) = cursor.take() {
                report.queue_sends += enqueue(env, vec![Job::Sweep { cursor: c }]).await?;
                report.continued = true;
            }
            break;
        };
        report.listed += page.items.len() as u64;
        report.due += due.len() as u64;
        report.due_fresh += fresh;
        report.due_keepalive += keepalive;
        let mut deferred: Vec<Job> = due
            .split_off(plan.direct)
            .into_iter()
            .map(|key| Job::Refresh { key })
            .collect();
        report.hooks_due += hook_checks.len() as u64;
        let (tally, held) = refresh_paced(env, due, &heard).await;
        // Keap's day at its last tenth (or a 429's quiet): hook checks are not queued, they stay
        // due for a later sweep, and the refreshes may spend what is left (`keap_pace::Lane`).
        if heard.borrow().room_in(Lane::Upkeep, 0, now_ms()).calls == 0 {
            report.hooks_held += hook_checks.len() as u64;
            hook_checks.clear();
        }
        let n_hooks = hook_checks.len();
        deferred.append(&mut hook_checks);
        report.guard_calls += plan.direct as u64 - held.keys.len() as u64;
        report.tally.merge(&tally);
        if !held.keys.is_empty() {
            // Keap's window is (nearly) spent: these come back through the queue once it starts
            // over (the pacer, told what Keap said, holds them as long as it lasts).
            let secs = keaplink_core::keap_pace::Room {
                calls: 0,
                resume_at_ms: held.resume_at_ms,
            }
            .wait_secs(now_ms(), MAX_QUOTA_WAIT_SECS);
            report.paced += held.keys.len() as u64;
            report.paced_secs = report.paced_secs.max(secs);
            let jobs = held
                .keys
                .into_iter()
                .map(|key| Job::Refresh { key })
                .collect();
            report.queue_sends += enqueue_after(env, jobs, secs).await?;
        }
        if !deferred.is_empty() {
            report.enqueued += (deferred.len() - n_hooks) as u64;
            report.queue_sends += enqueue(env, deferred).await?;
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => {
                report.complete = true;
                break;
            }
        }
    }
    report.kv_value_reads = store.reads();
    report.duration_ms = now_ms() - started;
    Ok(report)
}
