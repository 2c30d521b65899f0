//! The cron sweep: walks every connection's KV metadata page by page, decides from metadata
//! alone which are due (see `keaplink_core::refresh`), and hands each due one to its guard. It
//! never reads a KV value itself. One invocation spends at most `SWEEP_SUBREQUEST_BUDGET`
//! subrequests (list pages and guard calls); what it could not reach waits for the next tick.

use crate::config::Config;
use crate::guard::{self, Answer, Purpose};
use crate::http::ApiResult;
use crate::store::{unix_now, Store};
use futures_util::stream::{self, StreamExt};
use keaplink_api::ConnectionStatus;
use keaplink_core::connection::{ConnectionKey, ALL_CONNECTIONS_PREFIX};
use keaplink_core::ids::PartnerId;
use keaplink_core::refresh::RefreshState;
use serde::Serialize;
use worker::Env;

/// Guard calls in flight at once (a Worker may hold six connections open).
const PARALLEL_GUARD_CALLS: usize = 6;
const LIST_PAGE: u64 = 1000;

/// What one sweep did: logged as one JSON line.
#[derive(Debug, Default, Serialize)]
pub struct SweepReport {
    pub event: &'static str,
    pub listed: u64,
    pub due: u64,
    pub refreshed: u64,
    pub still_failing: u64,
    pub needs_reauth: u64,
    pub already_fresh: u64,
    pub gone: u64,
    pub errors: u64,
    /// Due connections this invocation had no budget left for.
    pub deferred: u64,
    pub kv_list_calls: u64,
    /// KV values this sweep read: always zero (decisions come from metadata).
    pub kv_value_reads: u64,
    pub guard_calls: u64,
    pub complete: bool,
    pub duration_ms: u64,
}

fn key_of(name: &str) -> Option<ConnectionKey> {
    let partner = PartnerId::parse(name.split('/').nth(1)?)?;
    ConnectionKey::parse_under(&partner, name)
}

pub async fn sweep(env: &Env, cfg: &Config) -> ApiResult<SweepReport> {
    let started = worker::Date::now().as_millis();
    let store = Store::open(env)?;
    let policy = cfg.refresh_policy();
    let mut report = SweepReport {
        event: "sweep",
        ..SweepReport::default()
    };
    let mut budget = cfg.sweep_budget;
    let mut cursor = None;
    loop {
        if budget == 0 {
            break;
        }
        budget -= 1;
        report.kv_list_calls += 1;
        let (page, next) = store
            .list_connections(ALL_CONNECTIONS_PREFIX, LIST_PAGE, cursor)
            .await?;
        let now = unix_now();
        let due: Vec<ConnectionKey> = page
            .iter()
            .filter(|(_, meta)| policy.due(&RefreshState::from(meta), now).is_some())
            .filter_map(|(name, _)| key_of(name))
            .collect();
        report.listed += page.len() as u64;
        report.due += due.len() as u64;
        let take = due.len().min(budget as usize);
        budget -= take as u64;
        report.deferred += (due.len() - take) as u64;
        report.guard_calls += take as u64;
        let answers: Vec<_> = stream::iter(due.into_iter().take(take))
            .map(|key| async move { guard::refresh(env, &key, Purpose::Sweep).await })
            .buffer_unordered(PARALLEL_GUARD_CALLS)
            .collect()
            .await;
        for answer in answers {
            match answer {
                Ok(Answer::Record { record, refreshed }) => {
                    if refreshed {
                        report.refreshed += 1;
                    } else if record.status == ConnectionStatus::NeedsReauth {
                        report.needs_reauth += 1;
                    } else if record.last_error.is_some() {
                        report.still_failing += 1;
                    } else {
                        report.already_fresh += 1;
                    }
                }
                Ok(Answer::Gone) => report.gone += 1,
                Ok(Answer::Done) | Err(_) => report.errors += 1,
            }
        }
        match next {
            Some(c) => cursor = Some(c),
            None => {
                report.complete = true;
                break;
            }
        }
    }
    report.duration_ms = worker::Date::now().as_millis() - started;
    Ok(report)
}
