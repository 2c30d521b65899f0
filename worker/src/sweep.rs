//! The cron sweep: walks every connection's KV metadata page by page, decides from metadata
//! alone which are due (see `keaplink_core::refresh`), and hands each due one to its guard. It
//! never reads a KV value itself. One invocation spends at most `SWEEP_SUBREQUEST_BUDGET`
//! subrequests (list pages, guard calls, queue sends); the due connections it has no budget for
//! go to the refresh queue, paced by the pacer, and an unfinished walk continues there too.

use crate::config::Config;
use crate::guard::{self, Answer, Purpose};
use crate::http::{internal, ApiResult};
use crate::pacer;
use crate::store::{unix_now, Store};
use futures_util::stream::{self, StreamExt};
use keaplink_api::ConnectionStatus;
use keaplink_core::connection::{ConnectionKey, FailureKind, ALL_CONNECTIONS_PREFIX};
use keaplink_core::refresh::RefreshState;
use keaplink_core::webhook::Delivery;
use serde::{Deserialize, Serialize};
use worker::{Env, MessageBatch, MessageExt, QueueRetryOptionsBuilder};

pub const QUEUE_BINDING: &str = "REFRESH_QUEUE";
/// Guard calls in flight at once (a Worker may hold six connections open).
const PARALLEL_GUARD_CALLS: usize = 6;
const LIST_PAGE: u64 = 1000;
/// Messages per queue send (Cloudflare's batch limit).
const SEND_BATCH: usize = 100;

/// Work the sweep hands to the refresh queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Job {
    Refresh {
        key: String,
    },
    /// Continue walking from this list cursor.
    Sweep {
        cursor: String,
    },
    /// Destroy a deleted partner's connections linked at or before `before`, a page at a time.
    Purge {
        partner: String,
        before: i64,
        cursor: Option<String>,
    },
    /// Deliver a connection event to the partner's webhook.
    Webhook {
        event: Box<keaplink_core::webhook::WebhookEvent>,
    },
}

/// What one sweep did: logged as one JSON line.
#[derive(Debug, Default, Serialize)]
pub struct SweepReport {
    pub event: &'static str,
    /// Tells this sweep's line apart (a cron run and its queued continuations log one each).
    pub id: String,
    pub listed: u64,
    pub due: u64,
    pub refreshed: u64,
    pub still_failing: u64,
    pub needs_reauth: u64,
    pub already_fresh: u64,
    pub gone: u64,
    pub errors: u64,
    /// Due connections handed to the refresh queue for lack of budget.
    pub enqueued: u64,
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

/// Tallies one guard answer.
#[derive(Default)]
struct Tally {
    refreshed: u64,
    still_failing: u64,
    needs_reauth: u64,
    already_fresh: u64,
    gone: u64,
    errors: u64,
    throttled: bool,
}

impl Tally {
    fn add(&mut self, answer: worker::Result<Answer>) {
        match answer {
            Ok(Answer::Record { record, refreshed }) => {
                if refreshed {
                    self.refreshed += 1;
                } else if record.status == ConnectionStatus::NeedsReauth {
                    self.needs_reauth += 1;
                } else if let Some(e) = record.last_error {
                    self.still_failing += 1;
                    self.throttled |= e.kind == FailureKind::KeapThrottled;
                } else {
                    self.already_fresh += 1;
                }
            }
            Ok(Answer::Gone) => self.gone += 1,
            Ok(Answer::Done | Answer::Resealed { .. }) | Err(_) => self.errors += 1,
        }
    }
}

async fn refresh_all(env: &Env, keys: Vec<ConnectionKey>) -> Tally {
    let answers: Vec<_> = stream::iter(keys)
        .map(|key| async move { guard::refresh(env, &key, Purpose::Sweep).await })
        .buffer_unordered(PARALLEL_GUARD_CALLS)
        .collect()
        .await;
    let mut tally = Tally::default();
    for a in answers {
        tally.add(a);
    }
    tally
}

pub async fn enqueue(env: &Env, jobs: Vec<Job>) -> worker::Result<u64> {
    let queue = env.queue(QUEUE_BINDING)?;
    let mut sends = 0;
    for chunk in jobs.chunks(SEND_BATCH) {
        queue.send_batch(chunk.to_vec()).await?;
        sends += 1;
    }
    Ok(sends)
}

/// Walks from `cursor` (the start when `None`).
pub async fn sweep(env: &Env, cfg: &Config, mut cursor: Option<String>) -> ApiResult<SweepReport> {
    let started = worker::Date::now().as_millis();
    let store = Store::open(env)?;
    let policy = cfg.refresh_policy();
    let mut report = SweepReport {
        event: "sweep",
        id: keaplink_core::ids::hex(&crate::random::bytes::<8>()),
        ..SweepReport::default()
    };
    let mut budget = cfg.sweep_budget;
    loop {
        // A page costs one list call; keep one send for a continuation.
        if budget < 3 {
            if let Some(c) = cursor.clone() {
                report.queue_sends += enqueue(env, vec![Job::Sweep { cursor: c }])
                    .await
                    .map_err(internal)?;
                report.continued = true;
            }
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
            .filter_map(|(name, _)| ConnectionKey::parse(name))
            .collect();
        report.listed += page.len() as u64;
        report.due += due.len() as u64;
        // Direct guard calls, keeping enough budget to enqueue the rest and to continue.
        let reserve = 1 + due.len().div_ceil(SEND_BATCH) as u64;
        let direct = due.len().min(budget.saturating_sub(reserve) as usize);
        let mut due = due;
        let deferred: Vec<Job> = due
            .split_off(direct)
            .into_iter()
            .map(|k| Job::Refresh {
                key: k.as_str().to_owned(),
            })
            .collect();
        budget -= direct as u64;
        report.guard_calls += direct as u64;
        let tally = refresh_all(env, due).await;
        report.refreshed += tally.refreshed;
        report.still_failing += tally.still_failing;
        report.needs_reauth += tally.needs_reauth;
        report.already_fresh += tally.already_fresh;
        report.gone += tally.gone;
        report.errors += tally.errors;
        if !deferred.is_empty() {
            report.enqueued += deferred.len() as u64;
            let sends = enqueue(env, deferred).await.map_err(internal)?;
            report.queue_sends += sends;
            budget = budget.saturating_sub(sends);
        }
        match next {
            Some(c) => cursor = Some(c),
            None => {
                report.complete = true;
                break;
            }
        }
    }
    report.kv_value_reads = store.reads();
    report.duration_ms = worker::Date::now().as_millis() - started;
    Ok(report)
}

/// What one queue batch did: logged as one JSON line.
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

/// The refresh queue's consumer: continues sweeps, and refreshes what the pacer allows now;
/// the rest comes back later.
pub async fn consume(batch: MessageBatch<Job>, env: &Env, cfg: &Config) -> worker::Result<()> {
    let mut refreshes = Vec::new();
    for msg in batch.messages()? {
        match msg.body().clone() {
            Job::Sweep { cursor } => {
                match sweep(env, cfg, Some(cursor)).await {
                    Ok(r) => {
                        worker::console_log!("{}", serde_json::to_string(&r).unwrap_or_default())
                    }
                    Err(e) => worker::console_error!(
                        "{{\"event\":\"sweep_failed\",\"code\":\"{}\"}}",
                        e.code.as_str()
                    ),
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
                    worker::console_error!(
                        "{{\"event\":\"purge_failed\",\"error\":\"{}\"}}",
                        e.code.as_str()
                    );
                    msg.retry();
                }
            },
            Job::Webhook { event } => {
                let store =
                    Store::open(env).map_err(|e| worker::Error::RustError(e.to_string()))?;
                let age = (worker::Date::now().as_millis() as i64
                    - msg.timestamp().as_millis() as i64)
                    / 1000;
                match crate::ops::deliver(&store, cfg, &event, age).await {
                    Delivery::Retry(secs) => msg.retry_with_options(
                        &QueueRetryOptionsBuilder::new()
                            .with_delay_seconds(secs)
                            .build(),
                    ),
                    Delivery::Done | Delivery::Drop => msg.ack(),
                }
            }
            Job::Refresh { key } => match ConnectionKey::parse(&key) {
                Some(k) => refreshes.push((msg, k)),
                None => msg.ack(),
            },
        }
    }
    if refreshes.is_empty() {
        return Ok(());
    }
    let grant = pacer::ask(env, refreshes.len() as u32, false).await?;
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
        rate = pacer::ask(env, 0, true).await?.rate_per_min;
    }
    let report = BatchReport {
        event: "refresh_batch",
        messages: (refreshes.len() + later.len()) as u64,
        granted: refreshes.len() as u64,
        delayed: later.len() as u64,
        refreshed: tally.refreshed,
        still_failing: tally.still_failing,
        throttled: tally.throttled,
        rate_per_min: rate,
        retry_after_secs: grant.retry_after_secs,
    };
    worker::console_log!("{}", serde_json::to_string(&report).unwrap_or_default());
    Ok(())
}

/// Guard calls one purge page may make (within the free plan's 50 subrequests).
const PURGE_PAGE: u64 = 40;

/// One page of a deleted partner's connections, destroyed through their guards (KV record, id
/// index, guard storage, with a tombstone); the next page goes back on the queue. Links made
/// after the deletion (the id registered again) are left alone.
async fn purge_page(
    env: &Env,
    partner: &str,
    before: i64,
    cursor: Option<String>,
) -> ApiResult<()> {
    let store = Store::open(env)?;
    let Some(id) = keaplink_core::ids::PartnerId::parse(partner) else {
        return Ok(());
    };
    let prefix = keaplink_core::connection::partner_prefix(&id);
    let (items, next) = store.list_connections(&prefix, PURGE_PAGE, cursor).await?;
    let mut deleted = 0u64;
    for (name, meta) in items {
        if meta.connected_at > before {
            continue;
        }
        if let Some(key) = ConnectionKey::parse_under(&id, &name) {
            guard::delete(env, &key).await.map_err(internal)?;
            deleted += 1;
        }
    }
    worker::console_log!(
        "{}",
        serde_json::json!({"event": "purge", "partner": partner, "deleted": deleted, "more": next.is_some()})
    );
    if let Some(c) = next {
        enqueue(
            env,
            vec![Job::Purge {
                partner: partner.to_owned(),
                before,
                cursor: Some(c),
            }],
        )
        .await
        .map_err(internal)?;
    }
    Ok(())
}
