//! The partner guard: one Durable Object per partner id, the single writer of its record.
//!
//! Upserts (secret rotations among them), re-seals and deletes take turns on the object's own
//! copy, which is authoritative; KV holds the copy every request reads. Without it a key-rotation
//! walk that read a record just before an admin rotated the partner's API key would write the old
//! record back: the rotated (perhaps leaked) key alive again, the new one refused. KV has no
//! compare-and-swap, and may serve a minute-old value at another location, so reading again before
//! writing would not close that window.

use crate::clock::unix_now;
use crate::config::{setup, Config};
use crate::durable;
use crate::queue::{enqueue, Job};
use crate::random;
use crate::store::Store;
use futures_util::lock::Mutex;
use keaplink_api::{
    ConnectionCounts, ConnectionStatus, PartnerSettings, PartnerUpsert, PartnerView, RefreshCounts,
    WebhookCounts, WebhookDelivery,
};
use keaplink_core::clock::UnixTime;
use keaplink_core::deliveries::{self, DeliveryEntry, DeliveryOrder};
use keaplink_core::ids::PartnerId;
use keaplink_core::partner::{apply_upsert, upsert_from, FreshSecrets, PartnerRecord};
use keaplink_core::seal::{Reseal, ResealOutcome};
use keaplink_core::stats::{
    HourlyTally, KeapEventOutcome, KeapEventTally, RefreshOutcome, RefreshTally,
};
use keaplink_core::webhook::{Delivery, QueuedEvent};
use keaplink_core::{ApiError, ApiResult, ErrorCode};
use serde::{Deserialize, Serialize};
use std::future::Future;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

pub const PARTNER_GUARD_BINDING: &str = "PARTNER_GUARD";
const RECORD: &str = "record";
const DELETED: &str = "deleted";
const DELIVERY_ORDER: &str = "delivery-order";
const REFRESHES: &str = "refreshes";
const KEAP_EVENTS: &str = "keap-events";
const COUNTS: &str = "counts";
/// How long a count of the partner's links by status is reused before it is counted again.
const COUNTS_FRESH_SECS: i64 = 300;

/// Written as serde writes it; read through `Fields` (`durable::Named` says why).
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Command {
    /// Create or change the partner (`PUT /v1/admin/partners/{id}`).
    Upsert {
        id: PartnerId,
        body: PartnerUpsert,
        now: UnixTime,
    },
    /// Move the session secret to the current first key of `TOKEN_KEYS`.
    Reseal { id: PartnerId },
    /// Remove the partner (its connections are purged by the caller, through the queue).
    Delete { id: PartnerId },
    /// The partner changes its own settings (the console), or rotates its secrets.
    Change {
        id: PartnerId,
        change: PartnerSettings,
        rotate: bool,
        now: UnixTime,
    },
    /// One delivery attempt of `event` (the queue's consumer).
    Delivered {
        event: Box<QueuedEvent>,
        status: Option<u16>,
        outcome: Delivery,
        at: UnixTime,
    },
    /// The latest deliveries, newest first.
    Deliveries { id: PartnerId, limit: usize },
    /// Send one again.
    Redeliver { id: PartnerId, event_id: String },
    /// One refresh attempt of one of its links.
    Refreshed {
        id: PartnerId,
        outcome: RefreshOutcome,
    },
    /// The console's overview.
    Overview { id: PartnerId },
    /// What became of a batch Keap posted for one of its links.
    KeapEvent {
        id: PartnerId,
        keap: KeapEventOutcome,
    },
}

/// Every field a `Command` carries, each optional: how the object reads its commands.
#[cfg(feature = "objects")]
#[derive(Deserialize)]
struct Fields {
    id: Option<PartnerId>,
    body: Option<PartnerUpsert>,
    now: Option<UnixTime>,
    change: Option<PartnerSettings>,
    rotate: Option<bool>,
    event: Option<Box<QueuedEvent>>,
    status: Option<u16>,
    outcome: Option<Outcome>,
    at: Option<UnixTime>,
    limit: Option<usize>,
    event_id: Option<String>,
    keap: Option<KeapEventOutcome>,
}

/// The `outcome` of `delivered` (a `Delivery`) or of `refreshed` (a `RefreshOutcome`): one field
/// name with two types, read as either, each variant spelled as its own type writes it.
#[cfg(feature = "objects")]
#[derive(Deserialize)]
enum Outcome {
    Done,
    Retry(u32),
    Drop,
    #[serde(rename = "succeeded")]
    Succeeded,
    #[serde(rename = "failed")]
    Failed,
    #[serde(rename = "needs_reauth")]
    NeedsReauth,
}

#[cfg(feature = "objects")]
impl Outcome {
    fn delivery(self) -> Result<Delivery, &'static str> {
        match self {
            Outcome::Done => Ok(Delivery::Done),
            Outcome::Retry(secs) => Ok(Delivery::Retry(secs)),
            Outcome::Drop => Ok(Delivery::Drop),
            _ => Err("a refresh's outcome"),
        }
    }

    fn refresh(self) -> Result<RefreshOutcome, &'static str> {
        match self {
            Outcome::Succeeded => Ok(RefreshOutcome::Succeeded),
            Outcome::Failed => Ok(RefreshOutcome::Failed),
            Outcome::NeedsReauth => Ok(RefreshOutcome::NeedsReauth),
            _ => Err("a delivery's outcome"),
        }
    }
}

#[cfg(feature = "objects")]
impl Command {
    /// The command `name` with its fields, or what it lacks.
    fn read(name: &str, f: Fields) -> Result<Command, &'static str> {
        // Every command but `delivered` names its partner.
        let id = f.id.ok_or("no id");
        Ok(match name {
            "upsert" => Command::Upsert {
                id: id?,
                body: f.body.ok_or("no body")?,
                now: f.now.ok_or("no now")?,
            },
            "reseal" => Command::Reseal { id: id? },
            "delete" => Command::Delete { id: id? },
            "change" => Command::Change {
                id: id?,
                change: f.change.ok_or("no change")?,
                rotate: f.rotate.ok_or("no rotate")?,
                now: f.now.ok_or("no now")?,
            },
            "delivered" => Command::Delivered {
                event: f.event.ok_or("no event")?,
                status: f.status,
                outcome: f.outcome.ok_or("no outcome")?.delivery()?,
                at: f.at.ok_or("no at")?,
            },
            "deliveries" => Command::Deliveries {
                id: id?,
                limit: f.limit.ok_or("no limit")?,
            },
            "redeliver" => Command::Redeliver {
                id: id?,
                event_id: f.event_id.ok_or("no event_id")?,
            },
            "refreshed" => Command::Refreshed {
                id: id?,
                outcome: f.outcome.ok_or("no outcome")?.refresh()?,
            },
            "overview" => Command::Overview { id: id? },
            "keap_event" => Command::KeapEvent {
                id: id?,
                keap: f.keap.ok_or("no keap")?,
            },
            _ => return Err("an unknown command"),
        })
    }
}

/// The partner's own figures for the console's first page.
#[derive(Serialize, Deserialize)]
pub struct Overview {
    pub connections: ConnectionCounts,
    pub refreshes_last_24h: RefreshCounts,
    pub webhooks: WebhookCounts,
    /// In the stored shape (`keaplink_core::stats::keap_counts` names them).
    pub keap_events_last_24h: RefreshTally,
}

/// A count of the partner's links by status, and when it was made.
#[derive(Serialize, Deserialize)]
struct Counted {
    at: UnixTime,
    counts: ConnectionCounts,
}

/// A stored upsert: the record (for this isolate's cache) and what the admin is answered (a
/// `PartnerView`, as JSON text the caller relays).
#[derive(Serialize, Deserialize)]
struct Upserted {
    record: Box<PartnerRecord>,
    view: String,
}

impl Upserted {
    fn new(record: PartnerRecord, view: &PartnerView) -> ApiResult<Upserted> {
        Ok(Upserted {
            record: Box::new(record),
            view: serde_json::to_string(view).map_err(ApiError::internal)?,
        })
    }
}

#[cfg(feature = "objects")]
#[durable_object(fetch)]
pub struct PartnerGuard {
    state: State,
    env: Env,
    /// One command at a time, in arrival order.
    turn: Mutex<()>,
}

#[cfg(feature = "objects")]
impl DurableObject for PartnerGuard {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            turn: Mutex::new(()),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let command = durable::command(&mut req, PARTNER_GUARD_BINDING)
            .await
            .and_then(|named| durable::read_command(PARTNER_GUARD_BINDING, named, Command::read));
        let command = match command {
            Ok(c) => c,
            Err(e) => return durable::reply::<()>(Err(e)),
        };
        let _turn = self.turn.lock().await;
        let (cfg, store) = match setup(&self.env) {
            Ok(s) => s,
            Err(e) => return durable::reply::<()>(Err(e)),
        };
        match command {
            Command::Upsert { id, body, now } => {
                let result = async {
                    let existing = self.record(&store, &id).await?;
                    let fresh = FreshSecrets {
                        api_key: random::bytes(),
                        session_secret: random::bytes(),
                        nonce: random::bytes(),
                    };
                    // A refused upsert is the caller's error and stores nothing.
                    let (record, view) = apply_upsert(
                        &id,
                        existing.clone(),
                        body,
                        &fresh,
                        &cfg.keys,
                        cfg.upsert_rules(),
                        now,
                    )?;
                    self.save(&store, &record, existing.as_ref()).await?;
                    durable::storage(&self.state)
                        .delete(DELETED)
                        .await
                        .map_err(storage)?;
                    Upserted::new(record, &view)
                };
                durable::reply(result.await)
            }
            Command::Reseal { id } => {
                let result = async {
                    let Some(record) = self.record(&store, &id).await? else {
                        return Ok(None);
                    };
                    let resealed = record.resealed(&cfg.keys, random::bytes());
                    if let Reseal::Moved(moved) = &resealed {
                        self.save(&store, moved, Some(&record)).await?;
                    }
                    Ok(Some(resealed.outcome()))
                };
                durable::reply::<Option<ResealOutcome>>(result.await)
            }
            Command::Change {
                id,
                change,
                rotate,
                now,
            } => durable::reply(self.change(&cfg, &store, &id, &change, rotate, now).await),
            Command::Delivered {
                event,
                status,
                outcome,
                at,
            } => durable::reply(self.delivered(*event, status, outcome, at).await),
            // Answered as JSON text: the caller relays it as it is.
            Command::Deliveries { limit, .. } => {
                durable::reply(durable::text(self.deliveries(limit).await))
            }
            Command::Redeliver { event_id, .. } => {
                let redelivered = self.redeliver(&self.env, &event_id).await;
                durable::reply(
                    redelivered.and_then(|d| d.map(|d| durable::text(Ok(d))).transpose()),
                )
            }
            Command::Refreshed { outcome, .. } => durable::reply(self.refreshed(outcome).await),
            Command::Overview { id } => durable::reply(self.overview(&store, &id).await),
            Command::KeapEvent { keap, .. } => durable::reply(self.keap_event(keap).await),
            Command::Delete { id } => {
                let result = async {
                    let gone = self.record(&store, &id).await?;
                    if let Some(record) = &gone {
                        store.delete_partner(record).await?;
                    }
                    // A tombstone: KV at other locations may serve the old copy for a minute.
                    let st = durable::storage(&self.state);
                    st.delete(RECORD).await.map_err(storage)?;
                    st.put(DELETED, true).await.map_err(storage)?;
                    Ok(gone.is_some())
                };
                durable::reply::<bool>(result.await)
            }
        }
    }
}

fn storage(e: worker::Error) -> ApiError {
    ApiError::internal(format!("partner guard storage: {e}"))
}

#[cfg(feature = "objects")]
impl PartnerGuard {
    async fn change(
        &self,
        cfg: &Config,
        store: &Store,
        id: &PartnerId,
        change: &PartnerSettings,
        rotate: bool,
        now: UnixTime,
    ) -> ApiResult<Upserted> {
        let existing = self
            .record(store, id)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::PartnerNotFound, "No such partner."))?;
        let fresh = FreshSecrets {
            api_key: random::bytes(),
            session_secret: random::bytes(),
            nonce: random::bytes(),
        };
        let body = upsert_from(&existing, change, rotate);
        let (record, view) = apply_upsert(
            id,
            Some(existing.clone()),
            body,
            &fresh,
            &cfg.keys,
            cfg.upsert_rules(),
            now,
        )?;
        self.save(store, &record, Some(&existing)).await?;
        Upserted::new(record, &view)
    }

    async fn order(&self) -> ApiResult<DeliveryOrder> {
        Ok(durable::storage(&self.state)
            .get::<DeliveryOrder>(DELIVERY_ORDER)
            .await
            .map_err(storage)?
            .unwrap_or_default())
    }

    async fn delivered(
        &self,
        event: QueuedEvent,
        status: Option<u16>,
        outcome: Delivery,
        at: UnixTime,
    ) -> ApiResult<()> {
        let st = durable::storage(&self.state);
        let key = format!("delivery/{}", event.id);
        let mut entry = st
            .get::<DeliveryEntry>(&key)
            .await
            .map_err(storage)?
            .unwrap_or_else(|| DeliveryEntry::new(event.clone()));
        if KeapEventOutcome::delivered(event.keap_type.is_some(), outcome == Delivery::Done) {
            self.keap_event(KeapEventOutcome::Delivered).await?;
        }
        entry.attempted(status, outcome, at);
        let mut order = self.order().await?;
        for gone in order.push(&event.id) {
            st.delete(&format!("delivery/{gone}"))
                .await
                .map_err(storage)?;
        }
        st.put(&key, &entry).await.map_err(storage)?;
        st.put(DELIVERY_ORDER, &order).await.map_err(storage)
    }

    async fn entries(&self, limit: usize) -> ApiResult<Vec<DeliveryEntry>> {
        let st = durable::storage(&self.state);
        let mut out = Vec::new();
        for id in self.order().await?.newest(limit) {
            if let Some(e) = st
                .get::<DeliveryEntry>(&format!("delivery/{id}"))
                .await
                .map_err(storage)?
            {
                out.push(e);
            }
        }
        Ok(out)
    }

    async fn deliveries(&self, limit: usize) -> ApiResult<Vec<WebhookDelivery>> {
        Ok(self
            .entries(limit)
            .await?
            .iter()
            .map(DeliveryEntry::to_api)
            .collect())
    }

    async fn redeliver(&self, env: &Env, event_id: &str) -> ApiResult<Option<WebhookDelivery>> {
        let st = durable::storage(&self.state);
        let key = format!("delivery/{event_id}");
        let Some(mut entry) = st.get::<DeliveryEntry>(&key).await.map_err(storage)? else {
            return Ok(None);
        };
        enqueue(
            env,
            vec![Job::Webhook {
                event: Box::new(entry.event.clone()),
            }],
        )
        .await?;
        entry.redelivered();
        st.put(&key, &entry).await.map_err(storage)?;
        Ok(Some(entry.to_api()))
    }

    async fn refreshed(&self, outcome: RefreshOutcome) -> ApiResult<()> {
        let st = durable::storage(&self.state);
        let mut t = st
            .get::<HourlyTally>(REFRESHES)
            .await
            .map_err(storage)?
            .unwrap_or_default();
        t.add(unix_now(), outcome, 1);
        st.put(REFRESHES, &t).await.map_err(storage)
    }

    async fn keap_events(&self) -> ApiResult<KeapEventTally> {
        Ok(durable::storage(&self.state)
            .get::<KeapEventTally>(KEAP_EVENTS)
            .await
            .map_err(storage)?
            .unwrap_or_default())
    }

    async fn keap_event(&self, outcome: KeapEventOutcome) -> ApiResult<()> {
        let mut t = self.keap_events().await?;
        t.add(unix_now(), outcome);
        durable::storage(&self.state)
            .put(KEAP_EVENTS, &t)
            .await
            .map_err(storage)
    }

    async fn overview(&self, store: &Store, id: &PartnerId) -> ApiResult<Overview> {
        let st = durable::storage(&self.state);
        let now = unix_now();
        // Counted from the listing's metadata (1,000 links a call), at most every 5 minutes.
        let cached = st.get::<Counted>(COUNTS).await.map_err(storage)?;
        let connections = match cached {
            Some(c) if now - c.at < COUNTS_FRESH_SECS => c.counts,
            _ => {
                let mut counts = ConnectionCounts::default();
                let mut cursor = None;
                loop {
                    let page = store.list_partner_connections(id, 1000, cursor).await?;
                    for (_, meta) in &page.items {
                        counts.total += 1;
                        match meta.status {
                            ConnectionStatus::Active => counts.active += 1,
                            ConnectionStatus::NeedsReauth => counts.needs_reauth += 1,
                            ConnectionStatus::Exported => counts.exported += 1,
                        }
                    }
                    match page.next {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
                let fresh = Counted { at: now, counts };
                st.put(COUNTS, &fresh).await.map_err(storage)?;
                fresh.counts
            }
        };
        let t = st
            .get::<HourlyTally>(REFRESHES)
            .await
            .map_err(storage)?
            .unwrap_or_default()
            .last_24h(now);
        let webhooks = deliveries::counts(&self.entries(deliveries::MAX_DELIVERIES).await?, now);
        Ok(Overview {
            connections,
            refreshes_last_24h: RefreshCounts {
                succeeded: t.succeeded,
                failed: t.failed,
                needs_reauth: t.needs_reauth,
            },
            webhooks,
            keap_events_last_24h: self.keap_events().await?.last_24h(now),
        })
    }

    /// The authoritative record: ours, or (before this object first wrote) KV's.
    async fn record(&self, store: &Store, id: &PartnerId) -> ApiResult<Option<PartnerRecord>> {
        let st = durable::storage(&self.state);
        if let Some(r) = st.get::<PartnerRecord>(RECORD).await.map_err(storage)? {
            return Ok(Some(r));
        }
        if st.get::<bool>(DELETED).await.map_err(storage)?.is_some() {
            return Ok(None);
        }
        store.partner_uncached(id).await
    }

    /// Authoritative first, then the copy (and its origin index); only then is anyone answered.
    async fn save(
        &self,
        store: &Store,
        record: &PartnerRecord,
        old: Option<&PartnerRecord>,
    ) -> ApiResult<()> {
        durable::storage(&self.state)
            .put(RECORD, record)
            .await
            .map_err(storage)?;
        store.put_partner(record, old).await
    }
}

/// Asks the object to do `command`. This and the calls below that only ask are plain functions
/// returning the answer as a future, not `async fn`s (`guard::ask` says why).
fn ask<A: serde::de::DeserializeOwned>(
    env: &Env,
    id: &PartnerId,
    command: &Command,
) -> impl Future<Output = ApiResult<A>> {
    durable::call(env, PARTNER_GUARD_BINDING, id.as_str(), command)
}

/// Creates or changes the partner; a refused upsert is the caller's error and stores nothing.
/// Answers the partner's `PartnerView` as JSON text.
pub async fn upsert(
    env: &Env,
    store: &Store,
    id: &PartnerId,
    body: PartnerUpsert,
    now: UnixTime,
) -> ApiResult<String> {
    let command = Command::Upsert {
        id: id.clone(),
        body,
        now,
    };
    let Upserted { record, view } = ask(env, id, &command).await?;
    // This isolate sees the change at once (others within the partner cache's 30 s).
    store.remember_partner(&record);
    Ok(view)
}

/// `None`: there is no such partner.
pub fn reseal(env: &Env, id: &PartnerId) -> impl Future<Output = ApiResult<Option<ResealOutcome>>> {
    ask(env, id, &Command::Reseal { id: id.clone() })
}

/// Whether there was such a partner.
pub async fn delete(env: &Env, store: &Store, id: &PartnerId) -> ApiResult<bool> {
    let existed = ask(env, id, &Command::Delete { id: id.clone() }).await?;
    store.forget_partner(id);
    Ok(existed)
}

/// The partner changes its own settings, or rotates its secrets (`change` empty then). Answers
/// its `PartnerView` as JSON text.
pub async fn change(
    env: &Env,
    store: &Store,
    id: &PartnerId,
    change: PartnerSettings,
    rotate: bool,
    now: UnixTime,
) -> ApiResult<String> {
    let command = Command::Change {
        id: id.clone(),
        change,
        rotate,
        now,
    };
    let Upserted { record, view } = ask(env, id, &command).await?;
    store.remember_partner(&record);
    Ok(view)
}

/// Notes one delivery attempt. A failure to note it is logged, never fatal: the delivery itself
/// went as it went.
pub async fn delivered(
    env: &Env,
    event: &QueuedEvent,
    status: Option<u16>,
    outcome: Delivery,
    at: UnixTime,
) {
    let command = Command::Delivered {
        event: Box::new(event.clone()),
        status,
        outcome,
        at,
    };
    if let Err(e) = ask::<()>(env, &event.partner, &command).await {
        crate::log::event(
            crate::log::Level::Error,
            "delivery_record_failed",
            &[
                ("cause", crate::log::Field::OptStr(e.cause())),
                ("id", crate::log::Field::Str(&event.id)),
            ],
        );
    }
}

/// The latest deliveries, newest first: a JSON array of `WebhookDelivery`, as text.
pub fn deliveries(
    env: &Env,
    id: &PartnerId,
    limit: usize,
) -> impl Future<Output = ApiResult<String>> {
    ask(
        env,
        id,
        &Command::Deliveries {
            id: id.clone(),
            limit,
        },
    )
}

/// The delivery queued again, a `WebhookDelivery` as JSON text. `None`: no such delivery of this
/// partner.
pub fn redeliver(
    env: &Env,
    id: &PartnerId,
    event_id: &str,
) -> impl Future<Output = ApiResult<Option<String>>> {
    let command = Command::Redeliver {
        id: id.clone(),
        event_id: event_id.to_owned(),
    };
    ask(env, id, &command)
}

/// Counts one refresh attempt of the partner's links. A failure to count is logged only.
pub async fn refreshed(env: &Env, id: &PartnerId, outcome: RefreshOutcome) {
    let command = Command::Refreshed {
        id: id.clone(),
        outcome,
    };
    count(env, id, &command).await;
}

/// Sends a count to the partner's guard; a failure to count is logged only.
async fn count(env: &Env, id: &PartnerId, command: &Command) {
    if let Err(e) = ask::<()>(env, id, command).await {
        crate::log::event(
            crate::log::Level::Error,
            "stats_record_failed",
            &[
                ("cause", crate::log::Field::OptStr(e.cause())),
                ("partner", crate::log::Field::Str(id.as_str())),
            ],
        );
    }
}

/// Counts what became of a batch Keap posted for one of the partner's links. Logged if it fails.
pub async fn keap_event(env: &Env, id: &PartnerId, keap: KeapEventOutcome) {
    let command = Command::KeapEvent {
        id: id.clone(),
        keap,
    };
    count(env, id, &command).await;
}

pub fn overview(env: &Env, id: &PartnerId) -> impl Future<Output = ApiResult<Overview>> {
    ask(env, id, &Command::Overview { id: id.clone() })
}
