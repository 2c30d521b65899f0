//! Partner webhooks: events are queued by the guards (`emit`) and delivered by the queue's
//! consumer (`deliver`), signed and retried by the rules of `keaplink_core::webhook`.

use crate::clock::{now_ms, unix_now};
use crate::config::Config;
use crate::keap_client::send;
use crate::log::{self, Field, Level};
use crate::queue::{enqueue, Job};
use crate::random;
use crate::store::Store;
use keaplink_api::ImportFinished;
use keaplink_core::clock::rfc3339;
use keaplink_core::connection::ConnectionRecord;
use keaplink_core::import::ImportRecord;
use keaplink_core::keap::OutboundRequest;
use keaplink_core::webhook::{
    self, after_attempt, Delivery, EventKind, ImportFinishedEvent, QueuedEvent, WebhookEvent,
    EVENT_ID_HEADER, SIGNATURE_HEADER,
};
use keaplink_core::{ApiResult, Secret};
use worker::Env;

/// The event for `record`, with a fresh id (the same on every retry of its delivery).
pub fn event(kind: EventKind, record: &ConnectionRecord) -> WebhookEvent {
    WebhookEvent {
        id: format!("evt_{}", keaplink_core::ids::hex(&random::bytes::<16>())),
        kind,
        created_at: rfc3339(unix_now()),
        partner_id: record.partner.clone(),
        user: record.user.clone(),
        connection: record.to_api(),
        repair_url: None,
    }
}

/// Queues `event` for the partner's webhook (if it has one, the consumer sends it). A failure
/// to queue is logged, never fatal: the change it reports has already been stored.
pub async fn emit(env: &Env, event: WebhookEvent) {
    let id = event.id.clone();
    if let Err(e) = enqueue(
        env,
        vec![Job::Webhook {
            event: Box::new(event.queued()),
        }],
    )
    .await
    {
        log::event(
            Level::Error,
            "webhook_enqueue_failed",
            &[("cause", Field::OptStr(e.cause())), ("id", Field::Str(&id))],
        );
    }
}

/// Queues `import.finished` with the import's counts. Unlike a link's events, a failure to
/// queue is answered: the import's alarm tries again.
pub async fn emit_import_finished(env: &Env, import: &ImportRecord) -> ApiResult<()> {
    let event = ImportFinishedEvent {
        id: format!("evt_{}", keaplink_core::ids::hex(&random::bytes::<16>())),
        kind: EventKind::ImportFinished,
        created_at: rfc3339(unix_now()),
        partner_id: import.partner.clone(),
        import: ImportFinished {
            import_id: import.id.as_str().to_owned(),
            total: import.total,
            counts: import.counts.clone(),
        },
    };
    enqueue(
        env,
        vec![Job::Webhook {
            event: Box::new(event.queued()),
        }],
    )
    .await
    .map(|_| ())
}

/// What a delivery attempt came to: what to do next, and the webhook's answer when one was sent
/// (`Some(None)`: sent, no answer).
pub struct Attempted {
    pub outcome: Delivery,
    pub sent: Option<Option<u16>>,
}

impl From<Delivery> for Attempted {
    fn from(outcome: Delivery) -> Self {
        Attempted {
            outcome,
            sent: None,
        }
    }
}

/// One delivery attempt of `event`, `age_secs` after it was first queued.
pub async fn deliver(store: &Store, cfg: &Config, event: &QueuedEvent, age_secs: i64) -> Attempted {
    let record = match store.partner(&event.partner).await {
        Ok(Some(r)) => r,
        Ok(None) => return Delivery::Drop.into(),
        Err(_) => return after_attempt(None, age_secs, cfg.webhook_backoff_secs).into(),
    };
    let Some(url) = record
        .webhook_url
        .as_deref()
        .filter(|u| webhook::target_allowed(u, cfg.webhook_allow_http))
        .and_then(|u| worker::Url::parse(u).ok())
    else {
        // No webhook: nothing to send.
        return Delivery::Done.into();
    };
    let Ok(secret) = record.session_secret(&cfg.keys) else {
        return Delivery::Drop.into();
    };
    let body = event.body.clone();
    let signature = webhook::signature(&webhook::signing_key(&secret), unix_now(), body.as_bytes());
    let req = OutboundRequest {
        method: "POST",
        url,
        headers: vec![
            ("content-type", Secret::new("application/json")),
            ("user-agent", Secret::new("keaplink-webhooks/1")),
            (SIGNATURE_HEADER, Secret::new(signature)),
            (EVENT_ID_HEADER, Secret::new(event.id.clone())),
        ],
        body: Some(body),
    };
    let status = send(&req, cfg.keap_timeout_ms).await.ok().map(|a| a.status);
    let outcome = after_attempt(status, age_secs, cfg.webhook_backoff_secs);
    log::event(
        Level::Info,
        "webhook",
        &[
            ("id", Field::Str(&event.id)),
            ("outcome", Field::Str(&format!("{outcome:?}"))),
            ("partner", Field::Str(event.partner.as_str())),
            ("status", Field::OptNum(status.map(u64::from))),
            ("type", Field::Str(event.type_name())),
        ],
    );
    Attempted {
        outcome,
        sent: Some(status),
    }
}

/// How long ago (seconds) a queue message was first sent.
pub fn age_secs(sent_at_ms: u64) -> i64 {
    (now_ms() as i64 - sent_at_ms as i64) / 1000
}
