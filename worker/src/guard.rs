//! One Durable Object per connection: the single place its record is written and its tokens are
//! refreshed. Keap rotates the refresh token on every refresh, so two refreshes of one
//! connection at once kill the link; KV has no compare-and-set. The object holds the
//! authoritative record in its own strongly consistent storage and runs one command at a time:
//! a caller that waited for its turn finds the new tokens and does not refresh again. The KV copy
//! (what listings and fresh-token reads see) is written before anyone is answered.

use crate::config::Config;
use crate::durable::{self, object_error};
use crate::keap_client::send;
use crate::ops;
use crate::random;
use crate::store::Store;
use futures_util::lock::Mutex;
use keaplink_api::ConnectionStatus;
use keaplink_core::clock::UnixTime;
use keaplink_core::connection::{ConnectionKey, ConnectionRecord, FailureKind};
use keaplink_core::ids::ConnectionId;
use keaplink_core::keap::{parse_token_response, refresh_request, KeapFailure};
use keaplink_core::refresh::RefreshState;
use keaplink_core::seal::{Reseal, ResealOutcome};
use keaplink_core::stats::RefreshOutcome;
use keaplink_core::webhook::EventKind;
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, State};

pub const GUARD_BINDING: &str = "CONNECTION_GUARD";
const RECORD: &str = "record";
const DELETED: &str = "deleted";

/// Why a refresh is asked for: a token request wants a fresh token; a sweep wants whatever is
/// due by the policy.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Token,
    Sweep,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Command {
    /// Store a new or reconnected link (the callback).
    Put {
        key: String,
        record: Box<ConnectionRecord>,
    },
    /// Refresh if still needed once it is our turn; answer the latest record.
    Refresh { key: String, purpose: Purpose },
    /// Destroy the link.
    Delete { key: String },
    /// Move the tokens to the current first key of `TOKEN_KEYS` (key rotation).
    Reseal { key: String },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Answer {
    /// The latest record (refreshed, or already fresh, or failed with `last_error`).
    Record {
        record: Box<ConnectionRecord>,
        refreshed: bool,
    },
    /// There is no such connection.
    Gone,
    Done,
    /// `None`: there is no such connection.
    Resealed {
        result: Option<ResealOutcome>,
    },
}

#[durable_object(fetch)]
pub struct ConnectionGuard {
    state: State,
    env: Env,
    /// One command at a time, in arrival order: the object's own single flight.
    turn: Mutex<()>,
}

impl DurableObject for ConnectionGuard {
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
            Command::Put { key, mut record } => {
                let key = parse_key(&key)?;
                // Reconnecting restores the link in place: same id.
                let existing = self.record(&store, &key).await?;
                if let Some(old) = &existing {
                    record.id = old.id.clone();
                }
                self.state.storage().put(RECORD, &record).await?;
                self.state.storage().delete(DELETED).await?;
                store
                    .put_connection(&key, &record, existing.is_none())
                    .await
                    .map_err(object_error)?;
                match existing.map(|old| old.status) {
                    None => ops::emit(&self.env, EventKind::Created, &record).await,
                    Some(ConnectionStatus::NeedsReauth) => {
                        ops::emit(&self.env, EventKind::Recovered, &record).await
                    }
                    Some(ConnectionStatus::Active) => {}
                }
                Answer::Record {
                    record,
                    refreshed: false,
                }
            }
            Command::Delete { key } => {
                let key = parse_key(&key)?;
                let gone = self.record(&store, &key).await?;
                if let Some(record) = &gone {
                    if let Some(id) = ConnectionId::parse(&record.id) {
                        store
                            .delete_connection(&key, &id)
                            .await
                            .map_err(object_error)?;
                    }
                }
                // A tombstone, not an empty object: an empty one would reload the record from
                // a KV copy that other locations may still serve for a minute.
                self.state.storage().delete(RECORD).await?;
                self.state.storage().put(DELETED, true).await?;
                if let Some(record) = gone {
                    ops::emit(&self.env, EventKind::Deleted, &record).await;
                }
                Answer::Done
            }
            Command::Reseal { key } => {
                let key = parse_key(&key)?;
                let result = match self.record(&store, &key).await? {
                    None => None,
                    Some(record) => {
                        let resealed = record.resealed(&cfg.keys, &key, random::bytes());
                        if let Reseal::Moved(next) = &resealed {
                            self.save(&store, &key, next).await?;
                        }
                        Some(resealed.outcome())
                    }
                };
                Answer::Resealed { result }
            }
            Command::Refresh { key, purpose } => {
                let key = parse_key(&key)?;
                match self.record(&store, &key).await? {
                    None => Answer::Gone,
                    Some(record) => self.refresh(&cfg, &store, &key, record, purpose).await?,
                }
            }
        };
        Response::from_json(&answer)
    }
}

fn parse_key(raw: &str) -> worker::Result<ConnectionKey> {
    ConnectionKey::parse(raw).ok_or_else(|| worker::Error::RustError("not a connection key".into()))
}

fn now() -> UnixTime {
    crate::store::unix_now()
}

impl ConnectionGuard {
    /// The authoritative record: this object's storage, or on first use the KV copy the
    /// callback wrote before guards existed.
    async fn record(
        &self,
        store: &Store,
        key: &ConnectionKey,
    ) -> worker::Result<Option<ConnectionRecord>> {
        if let Some(r) = self.state.storage().get::<ConnectionRecord>(RECORD).await? {
            return Ok(Some(r));
        }
        if self.state.storage().get::<bool>(DELETED).await?.is_some() {
            return Ok(None);
        }
        let from_kv = store.connection(key).await.map_err(object_error)?;
        if let Some(r) = &from_kv {
            self.state.storage().put(RECORD, r).await?;
        }
        Ok(from_kv)
    }

    async fn save(
        &self,
        store: &Store,
        key: &ConnectionKey,
        record: &ConnectionRecord,
    ) -> worker::Result<()> {
        // Authoritative first, then the copy; only then is anyone answered.
        self.state.storage().put(RECORD, record).await?;
        store
            .put_connection(key, record, false)
            .await
            .map_err(object_error)
    }

    async fn refresh(
        &self,
        cfg: &Config,
        store: &Store,
        key: &ConnectionKey,
        record: ConnectionRecord,
        purpose: Purpose,
    ) -> worker::Result<Answer> {
        let t = now();
        let policy = cfg.refresh_policy();
        let needed = match purpose {
            _ if record.status != ConnectionStatus::Active => false,
            // Someone may have refreshed while this caller waited its turn.
            // A token request may go past a backoff, except Keap's own "slow down".
            Purpose::Token => {
                let throttled = record
                    .last_error
                    .is_some_and(|e| e.kind == FailureKind::KeapThrottled);
                let backing_off =
                    throttled && t < policy.next_attempt_at(&RefreshState::from(&record));
                !record.is_fresh(t, cfg.refresh_margin_secs) && !backing_off
            }
            Purpose::Sweep => policy.due(&RefreshState::from(&record), t).is_some(),
        };
        if !needed {
            return Ok(Answer::Record {
                record: Box::new(record),
                refreshed: false,
            });
        }
        let current = record.open_tokens(&cfg.keys, key).map_err(|_| {
            worker::Error::RustError("the record does not open with TOKEN_KEYS".into())
        })?;
        let req = refresh_request(&cfg.keap, &cfg.client, &current.refresh_token);
        let outcome = match send(&req, cfg.keap_timeout_ms).await {
            Ok(answer) => parse_token_response(answer.status, &answer.body),
            Err(f) => Err(f),
        };
        let next = match outcome {
            Ok(grant) => record.refreshed(&cfg.keys, key, &current, grant, t, random::bytes()),
            Err(KeapFailure::InvalidGrant) => {
                // Keap says the refresh token is dead. If the authoritative record moved on
                // meanwhile, this was a lost race, not a dead link.
                if let Some(latest) = self.state.storage().get::<ConnectionRecord>(RECORD).await? {
                    if latest.tokens != record.tokens {
                        return Ok(Answer::Record {
                            record: Box::new(latest),
                            refreshed: false,
                        });
                    }
                }
                let lost = record
                    .last_error
                    .is_some_and(|e| e.kind == FailureKind::KeapTimeout);
                record.refresh_dead(lost, t)
            }
            Err(failure) => record.refresh_failed(&failure, t),
        };
        self.save(store, key, &next).await?;
        let refreshed = next.last_error.is_none();
        let outcome = match next.status {
            ConnectionStatus::NeedsReauth => RefreshOutcome::NeedsReauth,
            ConnectionStatus::Active if refreshed => RefreshOutcome::Succeeded,
            ConnectionStatus::Active => RefreshOutcome::Failed,
        };
        ops::record_refresh(&self.env, outcome).await;
        if next.status == ConnectionStatus::NeedsReauth && record.status == ConnectionStatus::Active
        {
            ops::emit(&self.env, EventKind::NeedsReauth, &next).await;
        }
        Ok(Answer::Record {
            record: Box::new(next),
            refreshed,
        })
    }
}

/// Asks the connection's guard to do `command`.
async fn ask(env: &Env, key: &ConnectionKey, command: &Command) -> worker::Result<Answer> {
    durable::call(env, GUARD_BINDING, key.as_str(), command).await
}

/// Stores a new or reconnected link; answers the stored record (with the link's lasting id).
pub async fn put(
    env: &Env,
    key: &ConnectionKey,
    record: ConnectionRecord,
) -> worker::Result<ConnectionRecord> {
    match ask(
        env,
        key,
        &Command::Put {
            key: key.as_str().to_owned(),
            record: Box::new(record),
        },
    )
    .await?
    {
        Answer::Record { record, .. } => Ok(*record),
        _ => Err(worker::Error::RustError(
            "the guard did not store the link".into(),
        )),
    }
}

pub async fn delete(env: &Env, key: &ConnectionKey) -> worker::Result<()> {
    ask(
        env,
        key,
        &Command::Delete {
            key: key.as_str().to_owned(),
        },
    )
    .await?;
    Ok(())
}

pub async fn refresh(env: &Env, key: &ConnectionKey, purpose: Purpose) -> worker::Result<Answer> {
    ask(
        env,
        key,
        &Command::Refresh {
            key: key.as_str().to_owned(),
            purpose,
        },
    )
    .await
}

/// Moves the connection's tokens to the current first key (through its guard, so a refresh in
/// flight is never overwritten with older tokens).
/// `None`: the connection is gone.
pub async fn reseal(env: &Env, key: &ConnectionKey) -> worker::Result<Option<ResealOutcome>> {
    match ask(
        env,
        key,
        &Command::Reseal {
            key: key.as_str().to_owned(),
        },
    )
    .await?
    {
        Answer::Resealed { result } => Ok(result),
        _ => Err(worker::Error::RustError("the guard did not re-seal".into())),
    }
}
