//! The refresh queue's messages and their producer. The queue carries four kinds of work, each
//! consumed by `consumer`: refreshes the sweep had no budget for, sweep continuations, purges of
//! a deleted partner's links, and webhook deliveries.

use keaplink_core::clock::UnixTime;
use keaplink_core::connection::ConnectionKey;
use keaplink_core::ids::PartnerId;
use keaplink_core::sweep::SEND_BATCH;
use keaplink_core::webhook::WebhookEvent;
use keaplink_core::{ApiError, ApiResult};
use serde::{Deserialize, Serialize};
use worker::Env;

pub const QUEUE_BINDING: &str = "REFRESH_QUEUE";

/// One message. The JSON (`{"job": "...", ...}`) is the queue's wire format: messages in flight
/// during a deploy are read by the new code.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Job {
    Refresh {
        key: ConnectionKey,
    },
    /// Continue walking from this list cursor.
    Sweep {
        cursor: String,
    },
    /// Destroy a deleted partner's connections linked at or before `before`, a page at a time.
    Purge {
        partner: PartnerId,
        before: UnixTime,
        cursor: Option<String>,
    },
    /// Deliver a connection event to the partner's webhook.
    Webhook {
        event: Box<WebhookEvent>,
    },
}

/// Sends `jobs`, 100 per send; answers how many sends it took.
pub async fn enqueue(env: &Env, jobs: Vec<Job>) -> ApiResult<u64> {
    let failed = |e: worker::Error| ApiError::internal(format!("queue send: {e}"));
    let queue = env.queue(QUEUE_BINDING).map_err(failed)?;
    let mut sends = 0;
    for chunk in jobs.chunks(SEND_BATCH) {
        queue.send_batch(chunk.to_vec()).await.map_err(failed)?;
        sends += 1;
    }
    Ok(sends)
}
