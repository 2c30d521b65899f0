//! The refresh queue's consumer: continues sweeps, purges deleted partners' links, delivers
//! webhooks, and refreshes what the pacer allows now (the rest comes back after the wait the
//! pacer names).

use crate::clock::now_ms;
use crate::clock::unix_now;
use crate::config::Config;
use crate::import_run::{run_item, ItemRun};
use crate::js_json;
use crate::log::{self, Field, Level};
use crate::pacer;
use crate::partner_guard;
use crate::purge::purge_page;
use crate::queue::Job;
use crate::stats;
use crate::store::Store;
use crate::sweep::{refresh_all, sweep};
use crate::webhooks;
use futures_util::stream::{self, StreamExt};
use keaplink_core::import::{quota_wait, ImportId, KEAP_CALLS_PER_ITEM};
use keaplink_core::webhook::Delivery;
use serde::Serialize;
use worker::{Env, MessageBatch, MessageExt, QueueRetryOptionsBuilder, RawMessage};

/// What one queue batch's refreshes did: logged as one JSON line.
#[derive(Debug, Default, Serialize)]
struct BatchReport {
    event: &'static str,
    messages: u64,
    granted: u64,
    delayed: u64,
    refreshed: u64,
    still_failing: u64,
    throttled: bool,
    rate_per_min: f64,
    retry_after_secs: u32,
}

pub async fn consume(
    batch: MessageBatch<serde_json::Value>,
    env: &Env,
    cfg: &Config,
) -> worker::Result<()> {
    let mut refreshes = Vec::new();
    let mut items = Vec::new();
    // One message at a time: a body that does not read is logged and retried on its own (the
    // queue's max_retries bounds it), and cannot hold back the rest of its batch. A release that
    // writes messages another way may be consuming beside this one during a deploy: its messages
    // are then read by it on a later try instead of being lost.
    for msg in batch.raw_iter() {
        let body = msg.body();
        let job = js_json::from_js::<Job>(&body).or_else(|e| {
            let legacy = js_json::legacy_json(&body)
                .ok()
                .and_then(|text| serde_json::from_slice(text.as_bytes()).ok())
                .and_then(|value| Job::legacy(&value));
            legacy.ok_or(e)
        });
        let job = match job {
            Ok(job) => job,
            Err(cause) => {
                log::event(
                    Level::Error,
                    "job_unreadable",
                    &[("cause", Field::Str(&cause))],
                );
                msg.retry();
                continue;
            }
        };
        match job {
            Job::Sweep { cursor } => {
                match sweep(env, cfg, Some(cursor)).await {
                    Ok(r) => log::write(Level::Info, &r),
                    Err(e) => log::failure(Level::Error, "sweep_failed", &e),
                }
                msg.ack();
            }
            Job::Purge {
                partner,
                before,
                cursor,
            } => match purge_page(env, &partner, before, cursor).await {
                Ok(()) => msg.ack(),
                Err(e) => {
                    log::event(
                        Level::Error,
                        "purge_failed",
                        &[
                            ("cause", Field::OptStr(e.cause())),
                            ("error", Field::Str(e.code.as_str())),
                        ],
                    );
                    msg.retry();
                }
            },
            Job::Webhook { event } => {
                let store =
                    Store::open(env).map_err(|e| worker::Error::RustError(e.to_string()))?;
                let age = webhooks::age_secs(msg.timestamp().as_millis());
                let attempted = webhooks::deliver(&store, cfg, &event, age).await;
                if let Some(status) = attempted.sent {
                    // The partner's console shows every attempt.
                    partner_guard::delivered(env, &event, status, attempted.outcome, unix_now())
                        .await;
                }
                match attempted.outcome {
                    Delivery::Retry(secs) => msg.retry_with_options(
                        &QueueRetryOptionsBuilder::new()
                            .with_delay_seconds(secs)
                            .build(),
                    ),
                    Delivery::Done | Delivery::Drop => msg.ack(),
                }
            }
            Job::Refresh { key } => refreshes.push((msg, key)),
            Job::Import { import, index } => items.push((msg, import, index)),
        }
    }
    let rust_error = |e: keaplink_core::ApiError| worker::Error::RustError(e.to_string());
    if !items.is_empty() {
        import_items(env, cfg, items).await.map_err(rust_error)?;
    }
    if refreshes.is_empty() {
        return Ok(());
    }
    let grant = pacer::ask(env, refreshes.len() as u32, false)
        .await
        .map_err(rust_error)?;
    let later = refreshes.split_off((grant.granted as usize).min(refreshes.len()));
    let retry = QueueRetryOptionsBuilder::new()
        .with_delay_seconds(grant.retry_after_secs.max(1))
        .build();
    for (msg, _) in &later {
        msg.retry_with_options(&retry);
    }
    let keys = refreshes.iter().map(|(_, k)| k.clone()).collect();
    let tally = refresh_all(env, keys).await;
    for (msg, _) in &refreshes {
        msg.ack();
    }
    let mut rate = grant.rate_per_min;
    if tally.throttled {
        // Keap said "slow down": so does every consumer.
        rate = pacer::ask(env, 0, true)
            .await
            .map_err(rust_error)?
            .rate_per_min;
    }
    log::write(
        Level::Info,
        &BatchReport {
            event: "refresh_batch",
            messages: (refreshes.len() + later.len()) as u64,
            granted: refreshes.len() as u64,
            delayed: later.len() as u64,
            refreshed: tally.refreshed,
            still_failing: tally.still_failing,
            throttled: tally.throttled,
            rate_per_min: rate,
            retry_after_secs: grant.retry_after_secs,
        },
    );
    Ok(())
}

/// Import items at once (each holds a few Keap calls and guard calls in flight).
const PARALLEL_ITEMS: usize = 6;

/// Runs import items as the pacer and Keap's quota allow (they share the refreshes' pace and
/// yield to them at the reserve, like proxied calls); the rest come back later, still pending.
async fn import_items(
    env: &Env,
    cfg: &Config,
    mut items: Vec<(RawMessage, ImportId, u32)>,
) -> keaplink_core::ApiResult<()> {
    let later = |msgs: &[(RawMessage, ImportId, u32)], secs: u32| {
        for (msg, _, _) in msgs {
            retry_in(msg, secs);
        }
    };
    let view = stats::shared_quota(env).await?;
    if let Some(secs) = quota_wait(view.as_ref(), cfg.quota_reserve, now_ms()) {
        later(&items, secs);
        return Ok(());
    }
    let want = items.len() as u32 * KEAP_CALLS_PER_ITEM;
    let grant = pacer::ask(env, want, false).await?;
    let go = (grant.granted / KEAP_CALLS_PER_ITEM) as usize;
    let waiting = items.split_off(go.min(items.len()));
    later(&waiting, grant.retry_after_secs);
    let store = Store::open(env)?;
    let store = &store;
    let runs: Vec<_> = stream::iter(items)
        .map(|(msg, import, index)| async move {
            let run = run_item(env, cfg, store, &import, index).await;
            (msg, run)
        })
        .buffer_unordered(PARALLEL_ITEMS)
        .collect()
        .await;
    let mut throttled = false;
    for (msg, run) in runs {
        match run {
            Ok(ItemRun::Done) => msg.ack(),
            Ok(ItemRun::Retry { secs, throttled: t }) => {
                throttled |= t;
                retry_in(&msg, secs);
            }
            Err(e) => {
                log::failure(Level::Error, "import_item_failed", &e);
                msg.retry();
            }
        }
    }
    if throttled {
        // Keap said "slow down": so does every consumer, refreshes and imports alike.
        pacer::ask(env, 0, true).await?;
    }
    Ok(())
}

fn retry_in(msg: &RawMessage, secs: u32) {
    msg.retry_with_options(
        &QueueRetryOptionsBuilder::new()
            .with_delay_seconds(secs.max(1))
            .build(),
    );
}
