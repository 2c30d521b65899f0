//! The refresh queue's messages and their producer. The queue carries five kinds of work, each
//! consumed by `consumer`: refreshes the sweep had no budget for, sweep continuations, purges of
//! a deleted partner's links, webhook deliveries, and import items.

use crate::kv;
use keaplink_core::clock::UnixTime;
use keaplink_core::connection::ConnectionKey;
use keaplink_core::ids::PartnerId;
use keaplink_core::import::ImportId;
use keaplink_core::sweep::SEND_BATCH;
use keaplink_core::webhook::QueuedEvent;
use keaplink_core::{ApiError, ApiResult};
use serde::{Deserialize, Serialize};
use worker::js_sys::{Array, Object, Reflect};
use worker::wasm_bindgen::JsValue;
use worker::Env;

pub const QUEUE_BINDING: &str = "REFRESH_QUEUE";

/// One message, externally tagged (`{"refresh": {"key": ...}}`): serde reads such an enum
/// without buffering it first, which an internally tagged one costs the Worker in code size.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
        event: Box<QueuedEvent>,
    },
    /// Work on item `index` of an import (paced with the refreshes).
    Import {
        import: ImportId,
        index: u32,
    },
    /// Keap posted `body` (checked by `keaplink_core::hooks::batch`, and read again from this
    /// text) to this link's hook URL: deduplicate, read (`hydrate`), deliver.
    KeapEvent {
        key: ConnectionKey,
        body: String,
    },
    /// Check this link's hooks at Keap (the sweep; paced with the refreshes).
    Hooks {
        key: ConnectionKey,
    },
}

impl Job {
    /// A job as earlier releases queued it, internally tagged (`{"job": "refresh", "key": ...}`),
    /// so that none in flight across the deploy that changed the format is lost. Can go once
    /// that deploy is older than the queue's retention (4 days).
    pub fn legacy(v: &serde_json::Value) -> Option<Job> {
        let mut fields = v.as_object()?.clone();
        let tag = fields.remove("job")?;
        if tag.as_str()? == "webhook" {
            // Then a webhook carried the whole event; now its JSON as sent.
            let e = fields.get("event")?;
            let text = |k: &str| e.get(k)?.as_str().map(str::to_owned);
            let kind = serde_json::from_slice(&serde_json::to_vec(e.get("type")?).ok()?).ok()?;
            return Some(Job::Webhook {
                event: Box::new(QueuedEvent {
                    id: text("id")?,
                    kind,
                    partner: keaplink_core::ids::PartnerId::parse(&text("partner_id")?)?,
                    user: Some(keaplink_core::ids::UserId::parse(&text("user")?)?),
                    connection_id: Some(e.get("connection")?.get("id")?.as_str()?.to_owned()),
                    created_at: text("created_at")?,
                    body: serde_json::to_string(e).ok()?,
                    keap_type: None,
                }),
            });
        }
        let mut tagged = serde_json::Map::new();
        tagged.insert(tag.as_str()?.to_owned(), serde_json::Value::Object(fields));
        // Read back from its text: the reading of JSON text is linked anyway, and a second
        // reading of every job from a `Value` cost the Worker ~14 KB of code.
        serde_json::from_slice(&serde_json::to_vec(&serde_json::Value::Object(tagged)).ok()?).ok()
    }
}

/// Sends `jobs`, 100 per send; answers how many sends it took. Each message is the job's JSON
/// text (read back by `js_json::from_js`, which also reads the JS objects earlier releases sent).
/// Sent through the queue's JS binding (`sendBatch([{body, contentType: "text"}])`): worker's
/// `Queue::send_batch` serializes each message and its options through serde-wasm-bindgen.
/// "text" lets the dashboard show a message as it is. A release from before JSON-text messages
/// cannot read these and drops them: while the queue holds messages, roll back no further than
/// the release that introduced them (the consumer of this one retries what it cannot read).
pub async fn enqueue(env: &Env, jobs: Vec<Job>) -> ApiResult<u64> {
    enqueue_after(env, jobs, 0).await
}

/// As `enqueue`, each message delivered no sooner than `delay_secs` from now.
pub async fn enqueue_after(env: &Env, jobs: Vec<Job>, delay_secs: u32) -> ApiResult<u64> {
    let failed = |e: String| ApiError::internal(format!("queue send: {e}"));
    let queue = kv::binding(env, QUEUE_BINDING).map_err(failed)?;
    let mut sends = 0;
    for chunk in jobs.chunks(SEND_BATCH) {
        let batch = Array::new();
        for job in chunk {
            let text = serde_json::to_string(job).map_err(ApiError::internal)?;
            let message = Object::new();
            // A fresh plain object: setting a property cannot fail.
            let _ = Reflect::set(&message, &JsValue::from_str("body"), &JsValue::from(text));
            let _ = Reflect::set(
                &message,
                &JsValue::from_str("contentType"),
                &JsValue::from_str("text"),
            );
            if delay_secs > 0 {
                let _ = Reflect::set(
                    &message,
                    &JsValue::from_str("delaySeconds"),
                    &JsValue::from(delay_secs),
                );
            }
            batch.push(&message);
        }
        kv::call(&queue, "sendBatch", &Array::of1(&batch))
            .await
            .map_err(failed)?;
        sends += 1;
    }
    Ok(sends)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_queued_by_the_previous_format_still_read() {
        let key = format!("c/acme/{}/ab123", "h".repeat(43));
        let old = serde_json::json!({"job": "refresh", "key": key});
        assert!(matches!(Job::legacy(&old), Some(Job::Refresh { key: k }) if k.as_str() == key));
        let old =
            serde_json::json!({"job": "purge", "partner": "acme", "before": 5, "cursor": null});
        assert!(matches!(
            Job::legacy(&old),
            Some(Job::Purge { before: 5, .. })
        ));
        assert!(Job::legacy(&serde_json::json!({"job": "nope"})).is_none());
        let event = serde_json::json!({"id": "evt_1", "type": "connection.created", "created_at": "t",
            "partner_id": "acme", "user": "u1", "connection": {"id": "c1"}});
        let Some(Job::Webhook { event: q }) =
            Job::legacy(&serde_json::json!({"job": "webhook", "event": event}))
        else {
            panic!("a legacy webhook job");
        };
        assert_eq!(q.connection_id.as_deref(), Some("c1"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&q.body).unwrap(),
            event
        );
        assert!(Job::legacy(&serde_json::json!({"refresh": {"key": key}})).is_none());
        // The current format reads as itself.
        let now = serde_json::to_value(Job::Sweep { cursor: "x".into() }).unwrap();
        assert_eq!(now, serde_json::json!({"sweep": {"cursor": "x"}}));
    }
}
