//! Operations: the refresh tally behind `GET /v1/admin/stats` (one Durable Object), and partner
//! webhooks (queued, signed, retried; the rules are `keaplink_core::webhook`).

use crate::config::Config;
use crate::keap_client::send;
use crate::random;
use crate::store::{unix_now, Store};
use crate::sweep::{Job, QUEUE_BINDING};
use keaplink_core::clock::rfc3339;
use keaplink_core::connection::ConnectionRecord;
use keaplink_core::ids::PartnerId;
use keaplink_core::keap::OutboundRequest;
use keaplink_core::stats::{HourlyTally, RefreshOutcome, RefreshTally};
use keaplink_core::webhook::{
    self, after_attempt, Delivery, EventKind, WebhookEvent, EVENT_ID_HEADER, SIGNATURE_HEADER,
};
use keaplink_core::Secret;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

pub const STATS_BINDING: &str = "OPS_STATS";
const TALLY: &str = "tally";

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Cmd {
    Record { outcome: RefreshOutcome },
    Read,
}

#[durable_object(fetch)]
pub struct OpsStats {
    state: State,
    tally: RefCell<Option<HourlyTally>>,
}

impl DurableObject for OpsStats {
    fn new(state: State, _env: Env) -> Self {
        Self {
            state,
            tally: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let cmd: Cmd = req.json().await?;
        if self.tally.borrow().is_none() {
            let loaded = self
                .state
                .storage()
                .get::<HourlyTally>(TALLY)
                .await?
                .unwrap_or_default();
            self.tally.borrow_mut().get_or_insert(loaded);
        }
        let now = unix_now();
        match cmd {
            Cmd::Record { outcome } => {
                // Counted in memory without an await in between, then stored.
                let snapshot = {
                    let mut slot = self.tally.borrow_mut();
                    let t = slot.get_or_insert_with(HourlyTally::default);
                    t.add(now, outcome, 1);
                    t.clone()
                };
                self.state.storage().put(TALLY, &snapshot).await?;
                Response::from_json(&())
            }
            Cmd::Read => {
                let sum = self
                    .tally
                    .borrow()
                    .as_ref()
                    .map(|t| t.last_24h(now))
                    .unwrap_or_default();
                Response::from_json(&sum)
            }
        }
    }
}

async fn ask<A: serde::de::DeserializeOwned>(env: &Env, cmd: &Cmd) -> worker::Result<A> {
    crate::durable::call(env, STATS_BINDING, "refresh-outcomes", cmd).await
}

/// Counts one refresh attempt. A failure to count is logged, never fatal.
pub async fn record_refresh(env: &Env, outcome: RefreshOutcome) {
    if ask::<()>(env, &Cmd::Record { outcome }).await.is_err() {
        worker::console_error!("{{\"event\":\"stats_record_failed\"}}");
    }
}

pub async fn refresh_tally(env: &Env) -> worker::Result<RefreshTally> {
    ask(env, &Cmd::Read).await
}

/// Queues a connection event for the partner's webhook (if it has one, the consumer sends it).
pub async fn emit(env: &Env, kind: EventKind, record: &ConnectionRecord) {
    let event = WebhookEvent {
        id: format!("evt_{}", keaplink_core::ids::hex(&random::bytes::<16>())),
        kind,
        created_at: rfc3339(unix_now()),
        partner_id: record.partner.clone(),
        user: record.user.clone(),
        connection: record.to_api(),
    };
    let sent = match env.queue(QUEUE_BINDING) {
        Ok(q) => q
            .send(Job::Webhook {
                event: Box::new(event),
            })
            .await
            .is_ok(),
        Err(_) => false,
    };
    if !sent {
        worker::console_error!("{{\"event\":\"webhook_enqueue_failed\"}}");
    }
}

/// One delivery attempt of `event`, `age_secs` after it was queued.
pub async fn deliver(store: &Store, cfg: &Config, event: &WebhookEvent, age_secs: i64) -> Delivery {
    let Some(partner) = PartnerId::parse(&event.partner_id) else {
        return Delivery::Drop;
    };
    let record = match store.partner(&partner).await {
        Ok(Some(r)) => r,
        Ok(None) => return Delivery::Drop,
        Err(_) => return after_attempt(None, age_secs, cfg.webhook_backoff_secs),
    };
    let Some(url) = record
        .webhook_url
        .as_deref()
        .filter(|u| webhook::target_allowed(u, cfg.webhook_allow_http))
        .and_then(|u| worker::Url::parse(u).ok())
    else {
        return Delivery::Done;
    };
    let Ok(secret) = record.session_secret(&cfg.keys) else {
        return Delivery::Drop;
    };
    let body = serde_json::to_string(event).unwrap_or_default();
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
    worker::console_log!(
        "{}",
        serde_json::json!({
            "event": "webhook",
            "id": event.id,
            "type": event.kind,
            "partner": event.partner_id,
            "status": status,
            "outcome": format!("{outcome:?}"),
        })
    );
    outcome
}
