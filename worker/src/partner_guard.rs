//! The partner guard: one Durable Object per partner id, the single writer of its record.
//!
//! Upserts (secret rotations among them), re-seals and deletes take turns on the object's own
//! copy, which is authoritative; KV holds the copy every request reads. Without it a key-rotation
//! walk that read a record just before an admin rotated the partner's API key would write the old
//! record back: the rotated (perhaps leaked) key alive again, the new one refused. KV has no
//! compare-and-swap, and may serve a minute-old value at another location, so reading again before
//! writing would not close that window.

use crate::durable::{self, object_error};
use crate::random;
use crate::store::Store;
use futures_util::lock::Mutex;
use keaplink_api::{PartnerUpsert, PartnerView};
use keaplink_core::clock::UnixTime;
use keaplink_core::ids::PartnerId;
use keaplink_core::partner::{apply_upsert, FreshSecrets, PartnerRecord};
use keaplink_core::seal::{Reseal, ResealOutcome};
use keaplink_core::{ApiError, ErrorCode};
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
        id: String,
        body: PartnerUpsert,
        now: UnixTime,
    },
    /// Move the session secret to the current first key of `TOKEN_KEYS`.
    Reseal { id: String },
    /// Remove the partner (its connections are purged by the caller, through the queue).
    Delete { id: String },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum Answer {
    Upserted {
        record: Box<PartnerRecord>,
        view: Box<PartnerView>,
    },
    /// The upsert was refused (bad input); nothing was stored.
    Refused { code: String, message: String },
    /// `None`: there is no such partner.
    Resealed { result: Option<ResealOutcome> },
    /// Whether there was a partner to delete.
    Deleted { existed: bool },
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
        let command: Command = req.json().await?;
        let _turn = self.turn.lock().await;
        let (cfg, store) = crate::setup(&self.env).map_err(object_error)?;
        let answer = match command {
            Command::Upsert { id, body, now } => {
                let id = parse_id(&id)?;
                let existing = self.record(&store, &id).await?;
                let fresh = FreshSecrets {
                    api_key: random::bytes(),
                    session_secret: random::bytes(),
                    nonce: random::bytes(),
                };
                match apply_upsert(&id, existing.clone(), body, &fresh, &cfg.keys, now) {
                    Ok((record, view)) => {
                        self.save(&store, &record, existing.as_ref()).await?;
                        self.state.storage().delete(DELETED).await?;
                        Answer::Upserted {
                            record: Box::new(record),
                            view: Box::new(view),
                        }
                    }
                    Err(e) => Answer::Refused {
                        code: e.code.as_str().to_owned(),
                        message: e.message,
                    },
                }
            }
            Command::Reseal { id } => {
                let id = parse_id(&id)?;
                match self.record(&store, &id).await? {
                    None => Answer::Resealed { result: None },
                    Some(record) => {
                        let resealed = record.resealed(&cfg.keys, random::bytes());
                        if let Reseal::Moved(moved) = &resealed {
                            self.save(&store, moved, Some(&record)).await?;
                        }
                        Answer::Resealed {
                            result: Some(resealed.outcome()),
                        }
                    }
                }
            }
            Command::Delete { id } => {
                let id = parse_id(&id)?;
                let gone = self.record(&store, &id).await?;
                if let Some(record) = &gone {
                    store.delete_partner(record).await.map_err(object_error)?;
                }
                // A tombstone: KV at other locations may serve the old copy for a minute.
                self.state.storage().delete(RECORD).await?;
                self.state.storage().put(DELETED, true).await?;
                Answer::Deleted {
                    existed: gone.is_some(),
                }
            }
        };
        Response::from_json(&answer)
    }
}

impl PartnerGuard {
    /// The authoritative record: ours, or (before this object first wrote) KV's.
    async fn record(&self, store: &Store, id: &PartnerId) -> worker::Result<Option<PartnerRecord>> {
        if let Some(r) = self.state.storage().get::<PartnerRecord>(RECORD).await? {
            return Ok(Some(r));
        }
        if self.state.storage().get::<bool>(DELETED).await?.is_some() {
            return Ok(None);
        }
        store.partner_uncached(id).await.map_err(object_error)
    }

    /// Authoritative first, then the copy (and its origin index); only then is anyone answered.
    async fn save(
        &self,
        store: &Store,
        record: &PartnerRecord,
        old: Option<&PartnerRecord>,
    ) -> worker::Result<()> {
        self.state.storage().put(RECORD, record).await?;
        store.put_partner(record, old).await.map_err(object_error)
    }
}

fn parse_id(raw: &str) -> worker::Result<PartnerId> {
    PartnerId::parse(raw).ok_or_else(|| worker::Error::RustError("not a partner id".into()))
}

async fn ask(env: &Env, id: &PartnerId, command: &Command) -> worker::Result<Answer> {
    durable::call(env, PARTNER_GUARD_BINDING, id.as_str(), command).await
}

/// An answer that does not fit the command: a bug, answered as an internal error.
fn unexpected() -> ApiError {
    crate::http::internal(())
}

/// Creates or changes the partner; a refused upsert is the caller's error and stores nothing.
pub async fn upsert(
    env: &Env,
    store: &Store,
    id: &PartnerId,
    body: PartnerUpsert,
    now: UnixTime,
) -> Result<PartnerView, ApiError> {
    let command = Command::Upsert {
        id: id.as_str().to_owned(),
        body,
        now,
    };
    match ask(env, id, &command)
        .await
        .map_err(crate::http::internal)?
    {
        Answer::Upserted { record, view } => {
            // This isolate sees the change at once (others within the partner cache's 30 s).
            store.remember_partner(&record);
            Ok(*view)
        }
        Answer::Refused { code, message } => Err(ApiError::new(
            ErrorCode::from_code(&code).unwrap_or(ErrorCode::Internal),
            message,
        )),
        _ => Err(unexpected()),
    }
}

/// `None`: there is no such partner.
pub async fn reseal(env: &Env, id: &PartnerId) -> Result<Option<ResealOutcome>, ApiError> {
    let command = Command::Reseal {
        id: id.as_str().to_owned(),
    };
    match ask(env, id, &command)
        .await
        .map_err(crate::http::internal)?
    {
        Answer::Resealed { result } => Ok(result),
        _ => Err(unexpected()),
    }
}

/// Whether there was such a partner.
pub async fn delete(env: &Env, store: &Store, id: &PartnerId) -> Result<bool, ApiError> {
    let command = Command::Delete {
        id: id.as_str().to_owned(),
    };
    match ask(env, id, &command)
        .await
        .map_err(crate::http::internal)?
    {
        Answer::Deleted { existed } => {
            store.forget_partner(id);
            Ok(existed)
        }
        _ => Err(unexpected()),
    }
}
