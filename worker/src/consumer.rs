//! The refresh queue's consumer: continues sweeps, purges deleted partners' links, delivers
//! webhooks, and refreshes what the pacer allows now (the rest comes back after the wait the
//! pacer names).

use crate::clock::now_ms;
use crate::clock::unix_now;
use crate::config::Config;
use crate::hook_events;
use crate::import_run::{run_item, ItemRun};
use crate::js_json;
use crate::log::{self, Field, Level};
use crate::pacer;
use crate::partner_guard;
use crate::purge::purge_page;
use crate::queue::Job;
use crate::stats;
use crate::store::Store;
use crate::sweep::{refresh_paced, sweep};
use crate::webhooks;
use futures_util::stream::{self, StreamExt};
use keaplink_core::hooks;
use keaplink_core::import::{quota_wait, ImportId, KEAP_CALLS_PER_ITEM};
use keaplink_core::stats::KeapEventOutcome;
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
    let mut hook_checks = Vec::new();
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
                    let accepted = attempted.outcome == Delivery::Done;
                    if KeapEventOutcome::delivered(event.keap_type.is_some(), accepted) {
                        stats::record_keap(env, KeapEventOutcome::Delivered).await;
                    }
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
            Job::KeapEvent { key, body } => {
                match hook_events::deliver_batch(env, cfg, &key, &body).await {
                    Ok(()) => msg.ack(),
                    Err(e) => {
                        log::failure(Level::Error, "keap_event_failed", &e);
                        msg.retry();
                    }
                }
            }
            Job::Hooks { key } => hook_checks.push((msg, key)),
        }
    }
    if !hook_checks.is_empty() {
        check_hooks(env, hook_checks).await;
    }
    let rust_error = |e: keaplink_core::ApiError| worker::Error::RustError(e.to_string());
    if !items.is_empty() {
        import_items(env, cfg, items).await;
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
    // Keap's answers gate the batch too: what a nearly spent window leaves no room for comes
    // back when it starts over.
    let heard = std::cell::RefCell::new(keaplink_core::keap_pace::KeapSignal::default());
    let (tally, held) = refresh_paced(env, keys, &heard).await;
    let wait = QueueRetryOptionsBuilder::new()
        .with_delay_seconds(
            keaplink_core::keap_pace::Room {
                calls: 0,
                resume_at_ms: held.resume_at_ms,
            }
            .wait_secs(now_ms(), keaplink_core::pace::MAX_QUOTA_WAIT_SECS),
        )
        .build();
    for (msg, key) in &refreshes {
        if held.keys.contains(key) {
            msg.retry_with_options(&wait);
        } else {
            msg.ack();
        }
    }
    let mut rate = grant.rate_per_min;
    if tally.throttled || tally.keap.pressing(now_ms()) {
        // Keap said "slow down", or that little is left: so does every consumer.
        rate = pacer::tell(env, 0, tally.throttled, Some(tally.keap))
            .await
            .map_err(rust_error)?
            .rate_per_min;
    }
    log::write(
        Level::Info,
        &BatchReport {
            event: "refresh_batch",
            messages: (refreshes.len() + later.len()) as u64,
            granted: (refreshes.len() - held.keys.len()) as u64,
            delayed: (later.len() + held.keys.len()) as u64,
            refreshed: tally.refreshed,
            still_failing: tally.still_failing,
            throttled: tally.throttled,
            rate_per_min: rate,
            retry_after_secs: grant.retry_after_secs,
        },
    );
    Ok(())
}

/// Checks links' hooks at Keap as the pacer allows (each check is a few Keap calls, counted
/// against the refreshes' pace, not the proxy's, and none while Keap's day is at its last tenth,
/// which is for refreshes); the rest come back after the pacer's wait.
async fn check_hooks(
    env: &Env,
    mut checks: Vec<(RawMessage, keaplink_core::connection::ConnectionKey)>,
) {
    let grant = match pacer::ask_upkeep(env, checks.len() as u32 * hooks::CHECK_CALLS).await {
        Ok(g) => g,
        Err(e) => {
            log::failure(Level::Error, "hooks_check_failed", &e);
            for (msg, _) in &checks {
                msg.retry();
            }
            return;
        }
    };
    let go = (grant.granted / hooks::CHECK_CALLS) as usize;
    for (msg, _) in checks.split_off(go.min(checks.len())) {
        retry_in(&msg, grant.retry_after_secs);
    }
    let keys = checks.iter().map(|(_, k)| k.clone()).collect();
    let restored = hook_events::check_all(env, keys).await;
    for (msg, _) in &checks {
        msg.ack();
    }
    log::event(
        Level::Info,
        "hooks_checked",
        &[
            ("checked", Field::Num(checks.len() as u64)),
            ("restored", Field::Num(u64::from(restored))),
        ],
    );
}

/// Import items at once (each holds a few Keap calls and guard calls in flight).
const PARALLEL_ITEMS: usize = 6;

/// Runs import items as the pacer and Keap's quota allow (they share the refreshes' pace and
/// yield to them at the reserve, like proxied calls); the rest come back later, still pending.
/// A failure here is the items' alone: they are tried again, and the batch's refreshes go on.
async fn import_items(env: &Env, cfg: &Config, mut items: Vec<(RawMessage, ImportId, u32)>) {
    let (go, wait_secs) = match admit(env, cfg, items.len()).await {
        Ok(admitted) => admitted,
        Err(e) => {
            log::failure(Level::Error, "import_items_failed", &e);
            (0, cfg.import_retry_secs)
        }
    };
    for (msg, _, _) in items.split_off(go.min(items.len())) {
        retry_in(&msg, wait_secs);
    }
    let runs: Vec<_> = stream::iter(items)
        .map(|(msg, import, index)| async move {
            let run = match Store::open(env) {
                Ok(store) => run_item(env, cfg, &store, &import, index).await,
                Err(e) => Err(e),
            };
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
        if let Err(e) = pacer::ask(env, 0, true).await {
            log::failure(Level::Error, "import_items_failed", &e);
        }
    }
}

/// How many of `n` items may go now, and how long the others wait: none while Keap's quota is
/// held (below the reserve, or a window spent), else what the pacer grants.
async fn admit(env: &Env, cfg: &Config, n: usize) -> keaplink_core::ApiResult<(usize, u32)> {
    let view = stats::shared_quota(env).await?;
    if let Some(secs) = quota_wait(view.as_ref(), cfg.quota_reserve, now_ms()) {
        return Ok((0, secs));
    }
    let grant = pacer::ask(env, n as u32 * KEAP_CALLS_PER_ITEM, false).await?;
    Ok((
        (grant.granted / KEAP_CALLS_PER_ITEM) as usize,
        grant.retry_after_secs,
    ))
}

/// Retries `msg` after `secs` (a queue takes at most 12 hours; a longer wait, such as Keap's
/// daily quota, comes round again).
fn retry_in(msg: &RawMessage, secs: u32) {
    msg.retry_with_options(
        &QueueRetryOptionsBuilder::new()
            .with_delay_seconds(secs.clamp(1, 43_200))
            .build(),
    );
}
