//! The partner guard: one Durable Object per partner id, the single writer of its record.
//!
//! Upserts (secret rotations among them), re-seals and deletes take turns on the object's own
//! copy, which is authoritative; KV holds the copy every request reads. Without it a key-rotation
//! walk that read a record just before an admin rotated the partner's API key would write the old
//! record back: the rotated (perhaps leaked) key alive again, the new one refused. KV has no
//! compare-and-swap, and may serve a minute-old value at another location, so reading again before
//! writing would not close that window.

use crate::config::setup;
use crate::durable;
use crate::random;
use crate::store::Store;
use futures_util::lock::Mutex;
use keaplink_api::{PartnerUpsert, PartnerView};
use keaplink_core::clock::UnixTime;
use keaplink_core::ids::PartnerId;
use keaplink_core::partner::{apply_upsert, FreshSecrets, PartnerRecord};
use keaplink_core::seal::{Reseal, ResealOutcome};
use keaplink_core::{ApiError, ApiResult};
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, State};

pub const PARTNER_GUARD_BINDING: &str = "PARTNER_GUARD";
const RECORD: &str = "record";
const DELETED: &str = "deleted";

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
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
}

/// A stored upsert: the record (for this isolate's cache) and what the admin is answered.
#[derive(Serialize, Deserialize)]
struct Upserted {
    record: Box<PartnerRecord>,
    view: Box<PartnerView>,
}

#[durable_object(fetch)]
pub struct PartnerGuard {
    state: State,
    env: Env,
    /// One command at a time, in arrival order.
    turn: Mutex<()>,
}

impl DurableObject for PartnerGuard {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            turn: Mutex::new(()),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let command: Command = match req.json().await {
            Ok(c) => c,
            Err(e) => {
                return durable::reply::<()>(Err(durable::unreadable(PARTNER_GUARD_BINDING, e)))
            }
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
                    self.state
                        .storage()
                        .delete(DELETED)
                        .await
                        .map_err(storage)?;
                    Ok(Upserted {
                        record: Box::new(record),
                        view: Box::new(view),
                    })
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
            Command::Delete { id } => {
                let result = async {
                    let gone = self.record(&store, &id).await?;
                    if let Some(record) = &gone {
                        store.delete_partner(record).await?;
                    }
                    // A tombstone: KV at other locations may serve the old copy for a minute.
                    let st = self.state.storage();
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

impl PartnerGuard {
    /// The authoritative record: ours, or (before this object first wrote) KV's.
    async fn record(&self, store: &Store, id: &PartnerId) -> ApiResult<Option<PartnerRecord>> {
        let st = self.state.storage();
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
        self.state
            .storage()
            .put(RECORD, record)
            .await
            .map_err(storage)?;
        store.put_partner(record, old).await
    }
}

async fn ask<A: serde::de::DeserializeOwned>(
    env: &Env,
    id: &PartnerId,
    command: &Command,
) -> ApiResult<A> {
    durable::call(env, PARTNER_GUARD_BINDING, id.as_str(), command).await
}

/// Creates or changes the partner; a refused upsert is the caller's error and stores nothing.
pub async fn upsert(
    env: &Env,
    store: &Store,
    id: &PartnerId,
    body: PartnerUpsert,
    now: UnixTime,
) -> ApiResult<PartnerView> {
    let command = Command::Upsert {
        id: id.clone(),
        body,
        now,
    };
    let Upserted { record, view } = ask(env, id, &command).await?;
    // This isolate sees the change at once (others within the partner cache's 30 s).
    store.remember_partner(&record);
    Ok(*view)
}

/// `None`: there is no such partner.
pub async fn reseal(env: &Env, id: &PartnerId) -> ApiResult<Option<ResealOutcome>> {
    ask(env, id, &Command::Reseal { id: id.clone() }).await
}

/// Whether there was such a partner.
pub async fn delete(env: &Env, store: &Store, id: &PartnerId) -> ApiResult<bool> {
    let existed = ask(env, id, &Command::Delete { id: id.clone() }).await?;
    store.forget_partner(id);
    Ok(existed)
}
