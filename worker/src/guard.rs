//! One Durable Object per connection: the single place its record is written and its tokens are
//! refreshed. Keap rotates the refresh token on every refresh, so two refreshes of one
//! connection at once kill the link; KV has no compare-and-set. The object holds the
//! authoritative record in its own strongly consistent storage and runs one command at a time:
//! a caller that waited for its turn finds the new tokens and does not refresh again. The KV copy
//! (what listings and fresh-token reads see) is written before anyone is answered.
//!
//! The guard decides nothing itself: `keaplink_core::refresh` says whether to refresh and what an
//! attempt came to; the guard asks, sends and applies.

use crate::clock::unix_now;
use crate::config::{setup, Config};
use crate::durable;
use crate::keap_client::send;
use crate::random;
use crate::stats;
use crate::store::Store;
use crate::webhooks;
use futures_util::lock::Mutex;
use keaplink_api::ConnectionStatus;
use keaplink_core::connection::{ConnectionKey, ConnectionRecord, OpenTokens};
use keaplink_core::keap::{parse_token_response, refresh_request, KeapFailure};
use keaplink_core::refresh::{fingerprint, Attempt, Purpose, RefreshState};
use keaplink_core::seal::{Reseal, ResealOutcome};
use keaplink_core::webhook::EventKind;
use keaplink_core::{ApiError, ApiResult};
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, State};

pub const GUARD_BINDING: &str = "CONNECTION_GUARD";
const RECORD: &str = "record";
const DELETED: &str = "deleted";

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Command {
    /// Store a new or reconnected link (the callback).
    Put {
        key: ConnectionKey,
        record: Box<ConnectionRecord>,
    },
    /// Refresh if still needed once it is our turn; answer the latest record.
    Refresh {
        key: ConnectionKey,
        purpose: Purpose,
    },
    /// Destroy the link.
    Delete { key: ConnectionKey },
    /// Move the tokens to the current first key of `TOKEN_KEYS` (key rotation).
    Reseal { key: ConnectionKey },
}

/// The latest record after a refresh was asked for.
#[derive(Debug, Serialize, Deserialize)]
pub struct Refreshed {
    pub record: ConnectionRecord,
    /// Whether this call refreshed it (else it was fresh, failed, or dead).
    pub refreshed: bool,
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
        let command: Command = match req.json().await {
            Ok(c) => c,
            Err(e) => return durable::reply::<()>(Err(durable::unreadable(GUARD_BINDING, e))),
        };
        let _turn = self.turn.lock().await;
        let (cfg, store) = match setup(&self.env) {
            Ok(s) => s,
            Err(e) => return durable::reply::<()>(Err(e)),
        };
        match command {
            Command::Put { key, record } => durable::reply(self.put(&store, &key, *record).await),
            Command::Refresh { key, purpose } => {
                durable::reply(self.refresh(&cfg, &store, &key, &purpose).await)
            }
            Command::Delete { key } => durable::reply(self.delete(&store, &key).await),
            Command::Reseal { key } => durable::reply(self.reseal(&cfg, &store, &key).await),
        }
    }
}

fn storage(e: worker::Error) -> ApiError {
    ApiError::internal(format!("connection guard storage: {e}"))
}

fn unopenable(e: impl std::fmt::Debug) -> ApiError {
    ApiError::internal(format!(
        "the connection's tokens do not open with TOKEN_KEYS ({e:?})"
    ))
}

impl ConnectionGuard {
    /// The authoritative record: this object's storage, or on first use the KV copy the
    /// callback wrote before guards existed.
    async fn record(
        &self,
        store: &Store,
        key: &ConnectionKey,
    ) -> ApiResult<Option<ConnectionRecord>> {
        let st = self.state.storage();
        if let Some(r) = st.get::<ConnectionRecord>(RECORD).await.map_err(storage)? {
            return Ok(Some(r));
        }
        if st.get::<bool>(DELETED).await.map_err(storage)?.is_some() {
            return Ok(None);
        }
        let from_kv = store.connection(key).await?;
        if let Some(r) = &from_kv {
            st.put(RECORD, r).await.map_err(storage)?;
        }
        Ok(from_kv)
    }

    /// Authoritative first, then the copy; only then is anyone answered.
    async fn save(
        &self,
        store: &Store,
        key: &ConnectionKey,
        record: &ConnectionRecord,
        new_id: bool,
    ) -> ApiResult<()> {
        self.state
            .storage()
            .put(RECORD, record)
            .await
            .map_err(storage)?;
        store.put_connection(key, record, new_id).await
    }

    async fn put(
        &self,
        store: &Store,
        key: &ConnectionKey,
        mut record: ConnectionRecord,
    ) -> ApiResult<ConnectionRecord> {
        // Reconnecting restores the link in place: same id.
        let existing = self.record(store, key).await?;
        if let Some(old) = &existing {
            record.id = old.id.clone();
        }
        self.save(store, key, &record, existing.is_none()).await?;
        self.state
            .storage()
            .delete(DELETED)
            .await
            .map_err(storage)?;
        let announce = match existing.map(|old| old.status) {
            None => Some(EventKind::Created),
            Some(ConnectionStatus::NeedsReauth) => Some(EventKind::Recovered),
            Some(ConnectionStatus::Active) => None,
        };
        if let Some(kind) = announce {
            webhooks::emit(&self.env, webhooks::event(kind, &record)).await;
        }
        Ok(record)
    }

    async fn delete(&self, store: &Store, key: &ConnectionKey) -> ApiResult<bool> {
        let gone = self.record(store, key).await?;
        if let Some(record) = &gone {
            store.delete_connection(key, &record.id).await?;
        }
        // A tombstone, not an empty object: an empty one would reload the record from a KV copy
        // that other locations may still serve for a minute.
        let st = self.state.storage();
        st.delete(RECORD).await.map_err(storage)?;
        st.put(DELETED, true).await.map_err(storage)?;
        if let Some(record) = &gone {
            webhooks::emit(&self.env, webhooks::event(EventKind::Deleted, record)).await;
        }
        Ok(gone.is_some())
    }

    async fn reseal(
        &self,
        cfg: &Config,
        store: &Store,
        key: &ConnectionKey,
    ) -> ApiResult<Option<ResealOutcome>> {
        let Some(record) = self.record(store, key).await? else {
            return Ok(None);
        };
        let resealed = record.resealed(&cfg.keys, key, random::bytes());
        if let Reseal::Moved(next) = &resealed {
            self.save(store, key, next, false).await?;
        }
        Ok(Some(resealed.outcome()))
    }

    async fn refresh(
        &self,
        cfg: &Config,
        store: &Store,
        key: &ConnectionKey,
        purpose: &Purpose,
    ) -> ApiResult<Option<Refreshed>> {
        let Some(record) = self.record(store, key).await? else {
            return Ok(None);
        };
        let t = unix_now();
        let not_refreshed = |record| {
            Ok(Some(Refreshed {
                record,
                refreshed: false,
            }))
        };
        if record.status != ConnectionStatus::Active {
            return not_refreshed(record);
        }
        // Only a heal asks which token is held; nothing else opens the tokens unless it refreshes.
        let held = match purpose {
            Purpose::Heal { .. } => Some(fingerprint(
                &record
                    .open_tokens(&cfg.keys, key)
                    .map_err(unopenable)?
                    .access_token,
            )),
            _ => None,
        };
        if !cfg
            .refresh
            .needs_refresh(&RefreshState::from(&record), purpose, held.as_deref(), t)
        {
            return not_refreshed(record);
        }
        let current: OpenTokens = record.open_tokens(&cfg.keys, key).map_err(unopenable)?;
        let req = refresh_request(&cfg.keap, &cfg.client, &current.refresh_token);
        let outcome = match send(&req, cfg.keap_timeout_ms).await {
            Ok(answer) => parse_token_response(answer.status, &answer.body),
            Err(f) => Err(f),
        };
        let next = match outcome {
            Ok(grant) => record.refreshed(
                &cfg.keys,
                key,
                &current,
                grant,
                cfg.refresh.refresh_lifetime_secs,
                t,
                random::bytes(),
            ),
            Err(KeapFailure::InvalidGrant) => {
                // Keap says the refresh token is dead. If the authoritative record moved on
                // meanwhile, this was a lost race, not a dead link.
                let latest = self
                    .state
                    .storage()
                    .get::<ConnectionRecord>(RECORD)
                    .await
                    .map_err(storage)?;
                if let Some(latest) = latest.filter(|l| l.tokens != record.tokens) {
                    return not_refreshed(latest);
                }
                record.refresh_refused(t)
            }
            Err(failure) => record.refresh_failed(&failure, t),
        };
        self.save(store, key, &next, false).await?;
        let attempt = Attempt::between(&record, &next);
        stats::record_refresh(&self.env, attempt.outcome).await;
        for kind in attempt.announce {
            webhooks::emit(&self.env, webhooks::event(kind, &next)).await;
        }
        let refreshed = next.last_error.is_none();
        Ok(Some(Refreshed {
            record: next,
            refreshed,
        }))
    }
}

/// Asks the connection's guard to do `command`.
async fn ask<A: serde::de::DeserializeOwned>(
    env: &Env,
    key: &ConnectionKey,
    command: &Command,
) -> ApiResult<A> {
    durable::call(env, GUARD_BINDING, key.as_str(), command).await
}

/// Stores a new or reconnected link; answers the stored record (with the link's lasting id).
pub async fn put(
    env: &Env,
    key: &ConnectionKey,
    record: ConnectionRecord,
) -> ApiResult<ConnectionRecord> {
    let command = Command::Put {
        key: key.clone(),
        record: Box::new(record),
    };
    ask(env, key, &command).await
}

/// Destroys the link; answers whether there was one.
pub async fn delete(env: &Env, key: &ConnectionKey) -> ApiResult<bool> {
    ask(env, key, &Command::Delete { key: key.clone() }).await
}

/// Refreshes if `purpose` still needs it once it is this caller's turn. `None`: the connection
/// is gone.
pub async fn refresh(
    env: &Env,
    key: &ConnectionKey,
    purpose: Purpose,
) -> ApiResult<Option<Refreshed>> {
    let command = Command::Refresh {
        key: key.clone(),
        purpose,
    };
    ask(env, key, &command).await
}

/// Moves the connection's tokens to the current first key (through its guard, so a refresh in
/// flight is never overwritten with older tokens). `None`: the connection is gone.
pub async fn reseal(env: &Env, key: &ConnectionKey) -> ApiResult<Option<ResealOutcome>> {
    ask(env, key, &Command::Reseal { key: key.clone() }).await
}
