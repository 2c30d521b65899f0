//! One Durable Object per connection: the single place its record is written and its tokens are
//! refreshed. Keap rotates the refresh token on every refresh, so two refreshes of one
//! connection at once kill the link; KV has no compare-and-set. The object holds the
//! authoritative record in its own strongly consistent storage and runs one command at a time:
//! a caller that waited for its turn finds the new tokens and does not refresh again. The KV copy
//! (what listings and fresh-token reads see) is written before anyone is answered.
//!
//! The guard also keeps the link's timeline (its last 100 events), checks the identity lock of a
//! reconnect before anything is stored, and counts repair links' attempts and spends them on the
//! restore, so a link's count holds even if its button is pressed twice at once.
//!
//! The guard decides nothing itself: `keaplink_core` says whether to refresh, whether a reconnect
//! may replace the link, and what an attempt came to; the guard asks, sends and applies.

use crate::clock::{now_ms, unix_now};
use crate::config::{setup, Config};
use crate::durable;
use crate::keap_client::send;
use crate::log::{self, Field, Level};
use crate::partner_guard;
use crate::random;
use crate::stats;
use crate::store::Store;
use crate::webhooks;
use futures_util::future::LocalBoxFuture;
use futures_util::lock::Mutex;
use keaplink_api::{
    ConnectionEvent, ConnectionEventKind, ConnectionStatus, ExportedLink, ReconnectIdentity,
};
use keaplink_core::connection::{ConnectionKey, ConnectionRecord, OpenTokens};
use keaplink_core::export;
use keaplink_core::identity::{self, Mismatch};
use keaplink_core::keap::{parse_token_response, refresh_request, KeapFailure, KeapIdentity};
use keaplink_core::keap_pace::KeapSignal;
use keaplink_core::mcp::oauth::{Bound, Consent, Grants, Issued, Kind, Token};
use keaplink_core::partner::PartnerRecord;
use keaplink_core::refresh::{fingerprint, Attempt, Purpose, RefreshState};
use keaplink_core::repair::{self, RepairHandle, RepairLinkRecord, RepairToken, Try};
use keaplink_core::seal::{Reseal, ResealOutcome};
use keaplink_core::timeline::Timeline;
use keaplink_core::webhook::EventKind;
use keaplink_core::{ApiError, ApiResult};
use serde::{Deserialize, Serialize};
use std::future::Future;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

pub const GUARD_BINDING: &str = "CONNECTION_GUARD";
const RECORD: &str = "record";
const DELETED: &str = "deleted";
const TIMELINE: &str = "timeline";
/// The link's MCP grants (`keaplink_core::mcp::oauth::Grants`: hashes only) and the key they
/// belong to (an MCP token names the guard by id, not by key).
const MCP: &str = "mcp";
const MCP_KEY: &str = "mcp_key";
/// A grant's last use is written at most this often (each MCP request checks its token).
const MCP_USE_WRITE_SECS: i64 = 300;

/// Written as serde writes it; read through `Fields` (`durable::Named` says why).
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Command {
    /// Store a new or reconnected link (the callback). An existing link is replaced only if the
    /// one who signed in passes its identity lock under `rule`.
    Put {
        key: ConnectionKey,
        record: Box<ConnectionRecord>,
        #[serde(default)]
        rule: ReconnectIdentity,
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
    /// The record and its timeline (the console).
    Detail { key: ConnectionKey },
    /// A reconnect of this link landed on another app: note it on the timeline.
    NoteMismatch {
        key: ConnectionKey,
        mismatch: Mismatch,
    },
    /// Make a repair link for this connection.
    MintRepairLink { key: ConnectionKey, ttl_secs: u64 },
    /// A repair link's button was pressed: count the attempt, unless a restore spent the link
    /// or its attempts are used up.
    TryRepairLink {
        key: ConnectionKey,
        link: RepairHandle,
    },
    /// A repair link's attempt restored the connection: the link is spent.
    RepairLinkRestored {
        key: ConnectionKey,
        link: RepairHandle,
    },
    /// Store an imported link, unless the user already has one to this app (kept as it is).
    Import {
        key: ConnectionKey,
        record: Box<ConnectionRecord>,
    },
    /// Freeze the link and hand out its tokens (`POST /v1/connections/export`).
    Export {
        key: ConnectionKey,
        request_id: String,
    },
    /// Make the link's Keap hooks these (`PUT .../hooks`; an empty list deletes them all).
    SetHooks {
        key: ConnectionKey,
        event_keys: Vec<String>,
        hydrate: bool,
    },
    /// The link's hooks as keaplink last knew them.
    Hooks { key: ConnectionKey },
    /// Check the link's hooks at Keap and restore what lapsed (the sweep).
    CheckHooks { key: ConnectionKey },
    /// Keap posted a batch to the link's hook URL: is it news?
    HookBatch {
        key: ConnectionKey,
        event_key: String,
        digest: String,
    },
    /// An MCP client's grant in this link, waiting for its code (the consent's Allow).
    McpGrant {
        key: ConnectionKey,
        consent: Box<Consent>,
    },
    /// The authorization code grant.
    McpRedeem {
        token: String,
        client: String,
        redirect_uri: String,
        verifier: String,
        resource: Option<String>,
    },
    /// The refresh grant.
    McpRefresh {
        token: String,
        client: String,
        resource: Option<String>,
    },
    /// What a presented access token is bound to.
    McpCheck { token: String, resource: String },
    /// RFC 7009: ends the grant of a token.
    McpRevokeToken { token: String },
    /// The link's MCP clients (the widget's Connected assistants).
    McpList { key: ConnectionKey },
    /// Ends one MCP client's grant (the user's revoke in the widget).
    McpRevoke { key: ConnectionKey, grant: String },
    /// Notes an MCP tool call on the timeline: the tool and its outcome, never its arguments.
    McpNote { tool: String, outcome: String },
}

/// Every field a `Command` carries, each optional: how the object reads its commands.
#[cfg(feature = "objects")]
#[derive(Deserialize)]
struct Fields {
    key: Option<ConnectionKey>,
    record: Option<Box<ConnectionRecord>>,
    rule: Option<ReconnectIdentity>,
    purpose: Option<Purpose>,
    mismatch: Option<Mismatch>,
    ttl_secs: Option<u64>,
    link: Option<RepairHandle>,
    request_id: Option<String>,
    event_keys: Option<Vec<String>>,
    hydrate: Option<bool>,
    event_key: Option<String>,
    digest: Option<String>,
    consent: Option<Box<Consent>>,
    token: Option<String>,
    client: Option<String>,
    redirect_uri: Option<String>,
    verifier: Option<String>,
    resource: Option<String>,
    grant: Option<String>,
    tool: Option<String>,
    outcome: Option<String>,
}

#[cfg(feature = "objects")]
impl Command {
    /// The command `name` with its fields, or what it lacks.
    fn read(name: &str, f: Fields) -> Result<Command, &'static str> {
        // The MCP commands a token addresses: by the guard's id, without the key.
        let token = || f.token.clone().ok_or("no token");
        match name {
            "mcp_redeem" => {
                return Ok(Command::McpRedeem {
                    token: token()?,
                    client: f.client.ok_or("no client")?,
                    redirect_uri: f.redirect_uri.ok_or("no redirect_uri")?,
                    verifier: f.verifier.ok_or("no verifier")?,
                    resource: f.resource,
                })
            }
            "mcp_refresh" => {
                return Ok(Command::McpRefresh {
                    token: token()?,
                    client: f.client.ok_or("no client")?,
                    resource: f.resource,
                })
            }
            "mcp_check" => {
                return Ok(Command::McpCheck {
                    token: token()?,
                    resource: f.resource.ok_or("no resource")?,
                })
            }
            "mcp_revoke_token" => return Ok(Command::McpRevokeToken { token: token()? }),
            "mcp_note" => {
                return Ok(Command::McpNote {
                    tool: f.tool.ok_or("no tool")?,
                    outcome: f.outcome.ok_or("no outcome")?,
                })
            }
            _ => {}
        }
        let key = f.key.ok_or("no key")?;
        Ok(match name {
            "put" => Command::Put {
                key,
                record: f.record.ok_or("no record")?,
                rule: f.rule.unwrap_or_default(),
            },
            "refresh" => Command::Refresh {
                key,
                purpose: f.purpose.ok_or("no purpose")?,
            },
            "delete" => Command::Delete { key },
            "reseal" => Command::Reseal { key },
            "detail" => Command::Detail { key },
            "note_mismatch" => Command::NoteMismatch {
                key,
                mismatch: f.mismatch.ok_or("no mismatch")?,
            },
            "mint_repair_link" => Command::MintRepairLink {
                key,
                ttl_secs: f.ttl_secs.ok_or("no ttl_secs")?,
            },
            "try_repair_link" => Command::TryRepairLink {
                key,
                link: f.link.ok_or("no link")?,
            },
            "repair_link_restored" => Command::RepairLinkRestored {
                key,
                link: f.link.ok_or("no link")?,
            },
            "import" => Command::Import {
                key,
                record: f.record.ok_or("no record")?,
            },
            "export" => Command::Export {
                key,
                request_id: f.request_id.ok_or("no request_id")?,
            },
            "set_hooks" => Command::SetHooks {
                key,
                event_keys: f.event_keys.ok_or("no event_keys")?,
                hydrate: f.hydrate.unwrap_or(false),
            },
            "hooks" => Command::Hooks { key },
            "check_hooks" => Command::CheckHooks { key },
            "hook_batch" => Command::HookBatch {
                key,
                event_key: f.event_key.ok_or("no event_key")?,
                digest: f.digest.ok_or("no digest")?,
            },
            "mcp_grant" => Command::McpGrant {
                key,
                consent: f.consent.ok_or("no consent")?,
            },
            "mcp_list" => Command::McpList { key },
            "mcp_revoke" => Command::McpRevoke {
                key,
                grant: f.grant.ok_or("no grant")?,
            },

            _ => return Err("an unknown command"),
        })
    }
}

/// A token request's answer, from the guard to the token endpoint (never logged).
#[derive(Serialize, Deserialize)]
pub struct McpTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub scope: String,
}

impl From<Issued> for McpTokens {
    fn from(i: Issued) -> Self {
        McpTokens {
            access_token: i.access_token.expose().to_owned(),
            refresh_token: i.refresh_token.expose().to_owned(),
            expires_in: i.expires_in,
            scope: i.scope.to_owned(),
        }
    }
}

fn bad_code() -> ApiError {
    ApiError::new(
        keaplink_core::ErrorCode::InvalidGrant,
        "The code or token is not valid.",
    )
}

/// The latest record after a refresh was asked for.
#[derive(Debug, Serialize, Deserialize)]
pub struct Refreshed {
    pub record: ConnectionRecord,
    /// Whether this call refreshed it (else it was fresh, failed, or dead).
    pub refreshed: bool,
    /// Whether this call asked Keap at all.
    pub tried: bool,
    /// What Keap's answer to this call's refresh said of the quota (`keaplink_core::keap_pace`).
    #[serde(default)]
    pub keap: Option<KeapSignal>,
}

/// What became of a `put`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stored {
    /// Stored (with the link's lasting id, when it replaced one).
    Linked(Box<ConnectionRecord>),
    /// Refused by the identity lock: nothing changed.
    Refused(Mismatch),
}

/// What became of an imported link.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Imported {
    New(Box<ConnectionRecord>),
    /// The user already had a link to this app: that one, unchanged.
    AlreadyLinked(Box<ConnectionRecord>),
}

/// What became of a batch Keap posted to a link's hook URL.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// New: deliver it (with the link as it is now, and whether to read the objects).
    Deliver {
        record: Box<ConnectionRecord>,
        hydrate: bool,
    },
    /// Keap sent this batch before (a retry): delivered already.
    Duplicate,
    /// The link no longer wants this event key (a hook being deleted): dropped.
    NotWanted,
    /// The link is gone.
    Gone,
}

/// A link and its timeline (a JSON array of `ConnectionEvent`, newest first, as text the caller
/// relays).
#[derive(Debug, Serialize, Deserialize)]
pub struct Detail {
    pub record: ConnectionRecord,
    pub events: String,
}

/// A repair link just made: its URL (holding the token) and the record stored under its hash.
#[derive(Serialize, Deserialize)]
pub struct Minted {
    pub url: String,
    pub link: RepairLinkRecord,
}

/// Whether a repair link's button may start a reconnect.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spend {
    /// Attempt `n`: go ahead.
    Go(u32),
    /// A restore spent it before.
    Used,
    /// Its attempts are used up.
    Exhausted,
    /// The connection is gone.
    Gone,
}

#[cfg(feature = "objects")]
#[durable_object(fetch)]
pub struct ConnectionGuard {
    pub(crate) state: State,
    pub(crate) env: Env,
    /// One command at a time, in arrival order: the object's own single flight.
    turn: Mutex<()>,
}

#[cfg(feature = "objects")]
impl DurableObject for ConnectionGuard {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            turn: Mutex::new(()),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let command = durable::command(&mut req, GUARD_BINDING)
            .await
            .and_then(|named| durable::read_command(GUARD_BINDING, named, Command::read));
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
            Command::Put { key, record, rule } => {
                durable::reply(self.put(&cfg, &store, &key, *record, rule).await)
            }
            Command::Refresh { key, purpose } => {
                durable::reply(self.refresh(&cfg, &store, &key, &purpose).await)
            }
            Command::Delete { key } => durable::reply(self.delete(&cfg, &store, &key).await),
            Command::Reseal { key } => durable::reply(self.reseal(&cfg, &store, &key).await),
            Command::Detail { key } => durable::reply(self.detail(&store, &key).await),
            Command::NoteMismatch { key, mismatch } => {
                durable::reply(self.note_mismatch(&store, &key, &mismatch).await)
            }
            Command::MintRepairLink { key, ttl_secs } => {
                durable::reply(self.mint_repair_link(&cfg, &store, &key, ttl_secs).await)
            }
            Command::TryRepairLink { key, link } => {
                durable::reply(self.try_repair_link(&store, &key, &link).await)
            }
            Command::RepairLinkRestored { link, .. } => {
                durable::reply(self.repair_link_restored(&link).await)
            }
            Command::Import { key, record } => {
                durable::reply(self.import(&cfg, &store, &key, *record).await)
            }
            Command::Export { key, request_id } => {
                durable::reply(self.export(&cfg, &store, &key, &request_id).await)
            }
            Command::SetHooks {
                key,
                event_keys,
                hydrate,
            } => {
                let mode = keaplink_core::hooks::Mode::Set(keaplink_core::hooks::Wanted {
                    event_keys,
                    hydrate,
                });
                let set = self.run_hooks(&cfg, &store, &key, mode).await;
                durable::reply(set.map(|o| o.map(|(text, _)| text)))
            }
            Command::Hooks { key } => durable::reply(self.get_hooks(&store, &key).await),
            Command::CheckHooks { key } => {
                let mode = keaplink_core::hooks::Mode::Check;
                let checked = self.run_hooks(&cfg, &store, &key, mode).await;
                durable::reply(checked.map(|o| o.map(|(_, restored)| restored)))
            }
            Command::HookBatch {
                key,
                event_key,
                digest,
            } => durable::reply(self.hook_batch(&store, &key, &event_key, &digest).await),
            Command::McpGrant { key, consent } => {
                durable::reply(self.mcp_grant(&store, &key, &consent).await)
            }
            // The MCP commands that work on the grants alone: one future for them all.
            other => self.mcp(&store, other).await,
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

#[cfg(feature = "objects")]
impl ConnectionGuard {
    /// The authoritative record: this object's storage, or on first use the KV copy the
    /// callback wrote before guards existed.
    pub(crate) async fn record(
        &self,
        store: &Store,
        key: &ConnectionKey,
    ) -> ApiResult<Option<ConnectionRecord>> {
        let st = durable::storage(&self.state);
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
    pub(crate) async fn save(
        &self,
        store: &Store,
        key: &ConnectionKey,
        record: &ConnectionRecord,
        new_id: bool,
    ) -> ApiResult<()> {
        durable::storage(&self.state)
            .put(RECORD, record)
            .await
            .map_err(storage)?;
        store.put_connection(key, record, new_id).await
    }

    /// Adds to the timeline. Losing an entry must not fail the command it reports.
    /// `f` is boxed so that this state machine is compiled once, not once per caller's closure.
    pub(crate) async fn note(&self, f: Box<dyn FnOnce(&mut Timeline) + '_>) {
        let st = durable::storage(&self.state);
        let mut t = match st.get::<Timeline>(TIMELINE).await {
            Ok(t) => t.unwrap_or_default(),
            Err(e) => {
                // Written over, the last 100 events would be lost for one: keep them and say so.
                let cause = e.to_string();
                log::event(
                    Level::Error,
                    "timeline_unreadable",
                    &[("cause", Field::Str(&cause))],
                );
                return;
            }
        };
        f(&mut t);
        let _ = st.put(TIMELINE, &t).await;
    }

    /// Sends `kind` for `record` to the partner's webhook, with a fresh repair link when the
    /// event is one a user must act on and the partner asked for links in its webhooks.
    async fn announce(
        &self,
        cfg: &Config,
        store: &Store,
        key: &ConnectionKey,
        kind: EventKind,
        record: &ConnectionRecord,
    ) {
        let mut event = webhooks::event(kind, record);
        if kind.carries_repair_link() {
            let wants = matches!(store.partner(&record.partner).await, Ok(Some(p)) if p.webhook_repair_links);
            if wants {
                let ttl = keaplink_core::repair::DEFAULT_TTL_SECS;
                match self.mint(cfg, store, key, record, ttl).await {
                    Ok(m) => event.repair_url = Some(m.url),
                    Err(e) => crate::log::event(
                        crate::log::Level::Error,
                        "repair_link_failed",
                        &[("cause", crate::log::Field::OptStr(e.cause()))],
                    ),
                }
            }
        }
        webhooks::emit(&self.env, event).await;
    }

    async fn put(
        &self,
        cfg: &Config,
        store: &Store,
        key: &ConnectionKey,
        mut record: ConnectionRecord,
        rule: ReconnectIdentity,
    ) -> ApiResult<Stored> {
        let existing = self.record(store, key).await?;
        let now = unix_now();
        if let Some(old) = &existing {
            // A reconnect: the identity lock first, before anything is stored.
            let who = KeapIdentity {
                email: record.keap_email.clone(),
                name: record.keap_name.clone(),
                sub: record.keap_sub.clone(),
                tenant_id: None,
            };
            if let Err(m) = identity::check(rule, old, &who) {
                self.note(Box::new(|t| {
                    t.push(
                        now,
                        ConnectionEventKind::IdentityMismatch,
                        Some("identity_mismatch"),
                        Some(m.describe()),
                    )
                }))
                .await;
                return Ok(Stored::Refused(m));
            }
            // Reconnecting restores the link in place: same id, same start.
            record.id = old.id.clone();
            record.connected_at = old.connected_at;
            record.reconnected_at = Some(now);
            if record.keap_app_name.is_none() {
                record.keap_app_name = old.keap_app_name.clone();
            }
            // The link keeps its hooks across a reconnect (its URL too).
            record.hooks_checked_at = old.hooks_checked_at;
        }
        self.save(store, key, &record, existing.is_none()).await?;
        store.reindex(key, existing.as_ref(), Some(&record)).await?;
        durable::storage(&self.state)
            .delete(DELETED)
            .await
            .map_err(storage)?;
        let (event, kind) = match existing.as_ref().map(|old| old.status) {
            None => (ConnectionEventKind::Created, Some(EventKind::Created)),
            Some(ConnectionStatus::NeedsReauth) => {
                (ConnectionEventKind::Recovered, Some(EventKind::Recovered))
            }
            Some(ConnectionStatus::Active) => (ConnectionEventKind::Reconnected, None),
            // Back under keaplink after an export: the partner hears it is usable here again.
            Some(ConnectionStatus::Exported) => {
                (ConnectionEventKind::Reconnected, Some(EventKind::Recovered))
            }
        };
        let who = format!("{} in {}", record.keap_email, record.keap_app);
        self.note(Box::new(|t| t.push(now, event, None, Some(who))))
            .await;
        if let Some(kind) = kind {
            self.announce(cfg, store, key, kind, &record).await;
        }
        Ok(Stored::Linked(Box::new(record)))
    }

    async fn import(
        &self,
        cfg: &Config,
        store: &Store,
        key: &ConnectionKey,
        record: ConnectionRecord,
    ) -> ApiResult<Imported> {
        if let Some(existing) = self.record(store, key).await? {
            return Ok(Imported::AlreadyLinked(Box::new(existing)));
        }
        self.save(store, key, &record, true).await?;
        store.reindex(key, None, Some(&record)).await?;
        durable::storage(&self.state)
            .delete(DELETED)
            .await
            .map_err(storage)?;
        let who = format!("{} in {}", record.keap_email, record.keap_app);
        self.note(Box::new(|t| {
            t.push(unix_now(), ConnectionEventKind::Imported, None, Some(who))
        }))
        .await;
        self.announce(cfg, store, key, EventKind::Created, &record)
            .await;
        Ok(Imported::New(Box::new(record)))
    }

    /// Freezes the link (no refresh can rotate its refresh token after this turn), then reads
    /// the tokens it hands out.
    async fn export(
        &self,
        cfg: &Config,
        store: &Store,
        key: &ConnectionKey,
        request_id: &str,
    ) -> ApiResult<Option<ExportedLink>> {
        let Some(record) = self.record(store, key).await? else {
            return Ok(None);
        };
        let mut frozen = export::freeze(&record)?;
        // Keap's events stop with keaplink's use of the link: its hooks go first, while its
        // token is still keaplink's to use.
        self.drop_hooks(cfg, store, key).await;
        frozen.hooks_checked_at = None;
        let out = export::handed_out(&frozen, &cfg.keys, key)?;
        self.save(store, key, &frozen, false).await?;
        // An exported link is no longer keaplink's to act in: its MCP clients end with it.
        durable::storage(&self.state)
            .delete(MCP)
            .await
            .map_err(storage)?;
        store.reindex(key, Some(&record), Some(&frozen)).await?;
        let detail = format!("Request {request_id}.");
        self.note(Box::new(|t| {
            t.push(
                unix_now(),
                ConnectionEventKind::Exported,
                None,
                Some(detail),
            )
        }))
        .await;
        self.announce(cfg, store, key, EventKind::Exported, &frozen)
            .await;
        Ok(Some(out))
    }

    async fn mcp_grants(&self) -> ApiResult<Grants> {
        Ok(durable::storage(&self.state)
            .get::<Grants>(MCP)
            .await
            .map_err(storage)?
            .unwrap_or_default())
    }

    /// The partner of the link these grants are in, read from KV now (not an isolate's copy:
    /// a deletion or a server turned off must end grants at once). `None`: deleted, or no link.
    async fn mcp_partner(&self, store: &Store) -> ApiResult<Option<PartnerRecord>> {
        let key = durable::storage(&self.state)
            .get::<ConnectionKey>(MCP_KEY)
            .await
            .map_err(storage)?;
        match key {
            Some(key) => store.partner_uncached(&key.partner()).await,
            None => Ok(None),
        }
    }

    async fn mcp_save(&self, grants: &Grants) -> ApiResult<()> {
        let st = durable::storage(&self.state);
        if grants.grants.is_empty() {
            st.delete(MCP).await.map_err(storage).map(|_| ())
        } else {
            st.put(MCP, grants).await.map_err(storage)
        }
    }

    /// Adds a grant waiting for its code, if the link is there and active; answers the code.
    async fn mcp_grant(
        &self,
        store: &Store,
        key: &ConnectionKey,
        consent: &Consent,
    ) -> ApiResult<Option<String>> {
        let Some(record) = self.record(store, key).await? else {
            return Ok(None);
        };
        let ours = record.partner == consent.pending.partner && record.user == consent.user;
        if !ours || record.status != ConnectionStatus::Active {
            return Ok(None);
        }
        let now = unix_now();
        let mut grants = self.mcp_grants().await?;
        grants.prune(now);
        let code = Token::new(Kind::Code, &self.state.id().to_string(), random::bytes());
        let id = keaplink_core::ids::hex(&random::bytes::<8>());
        grants.add(consent, id, &code, now);
        durable::storage(&self.state)
            .put(MCP_KEY, key)
            .await
            .map_err(storage)?;
        self.mcp_save(&grants).await?;
        let detail = format!(
            "{} ({})",
            consent.pending.client_name,
            keaplink_core::mcp::oauth::scope_of(consent.pending.access)
        );
        self.note(Box::new(|t| {
            t.push(now, ConnectionEventKind::McpGranted, None, Some(detail))
        }))
        .await;
        Ok(Some(code.expose().to_owned()))
    }

    /// The MCP commands on the grants alone (boxed: one future, not one per command inlined
    /// into `fetch`).
    fn mcp<'a>(
        &'a self,
        store: &'a Store,
        command: Command,
    ) -> LocalBoxFuture<'a, worker::Result<Response>> {
        Box::pin(async move {
            let now = unix_now();
            let mut grants = match self.mcp_grants().await {
                Ok(g) => g,
                Err(e) => return durable::reply::<()>(Err(e)),
            };
            // A token request: the link's partner as it is now, read before anything is issued
            // (deleted, or its server turned off since the grant was made, ends the grant).
            let partner = match &command {
                Command::McpRedeem { .. } | Command::McpRefresh { .. } => {
                    match self.mcp_partner(store).await {
                        Ok(p) => p,
                        Err(e) => return durable::reply::<()>(Err(e)),
                    }
                }
                _ => None,
            };
            let before = grants.clone();
            let mut note = None;
            let reply = match command {
                Command::McpRedeem {
                    token,
                    client,
                    redirect_uri,
                    verifier,
                    resource,
                } => durable::reply(
                    Token::parse(Kind::Code, &token)
                        .ok_or_else(bad_code)
                        .and_then(|code| {
                            grants.redeem(
                                &code,
                                &client,
                                &redirect_uri,
                                &verifier,
                                resource.as_deref(),
                                partner.as_ref(),
                                now,
                            )
                        })
                        .map(McpTokens::from),
                ),
                Command::McpRefresh {
                    token,
                    client,
                    resource,
                } => durable::reply(
                    Token::parse(Kind::Refresh, &token)
                        .ok_or_else(bad_code)
                        .and_then(|t| {
                            grants.refresh(&t, &client, resource.as_deref(), partner.as_ref(), now)
                        })
                        .map(McpTokens::from),
                ),
                Command::McpCheck { token, resource } => {
                    let bound = Token::parse(Kind::Access, &token)
                        .and_then(|t| grants.check(&t, &resource, now));
                    let key = match &bound {
                        Some(_) => durable::storage(&self.state)
                            .get::<ConnectionKey>(MCP_KEY)
                            .await
                            .ok()
                            .flatten(),
                        None => None,
                    };
                    if let Some(b) = &bound {
                        if let Some(g) = grants.grants.iter_mut().find(|g| g.id == b.grant) {
                            // Its last use, written now and then, not at every request.
                            if now - g.used_at >= MCP_USE_WRITE_SECS {
                                g.used_at = now;
                            }
                        }
                    }
                    durable::reply(Ok(bound.zip(key)))
                }
                Command::McpRevokeToken { token } => {
                    durable::reply(Ok(grants.revoke_token(&token)))
                }
                Command::McpRevoke { grant, .. } => {
                    let revoked = grants.revoke(&grant);
                    if revoked {
                        note = Some((ConnectionEventKind::McpRevoked, None, None));
                    }
                    durable::reply(Ok(revoked))
                }
                Command::McpList { .. } => durable::reply(Ok(grants
                    .active()
                    .map(|g| keaplink_api::Assistant {
                        id: g.id.clone(),
                        client_name: g.client_name.clone(),
                        access: g.access,
                        created_at: keaplink_core::clock::rfc3339(g.created_at),
                        used_at: keaplink_core::clock::rfc3339(g.used_at),
                    })
                    .collect::<Vec<_>>())),
                Command::McpNote { tool, outcome } => {
                    note = Some((
                        ConnectionEventKind::McpToolCall,
                        Some(outcome.clone()),
                        Some(format!("{tool}: {outcome}")),
                    ));
                    durable::reply(Ok(()))
                }
                _ => durable::reply::<()>(Err(ApiError::internal("not an MCP command"))),
            };
            if grants != before {
                if let Err(e) = self.mcp_save(&grants).await {
                    return durable::reply::<()>(Err(e));
                }
            }
            if let Some((kind, code, detail)) = note {
                self.note(Box::new(move |t| {
                    t.push(now, kind, code.as_deref(), detail)
                }))
                .await;
            }
            reply
        })
    }

    async fn delete(&self, cfg: &Config, store: &Store, key: &ConnectionKey) -> ApiResult<bool> {
        let gone = self.record(store, key).await?;
        if gone.is_some() {
            self.drop_hooks(cfg, store, key).await;
        }
        if let Some(record) = &gone {
            store.delete_connection(key, record).await?;
            store.reindex(key, Some(record), None).await?;
        }
        // A tombstone, not an empty object: an empty one would reload the record from a KV copy
        // that other locations may still serve for a minute.
        let st = durable::storage(&self.state);
        st.delete(RECORD).await.map_err(storage)?;
        st.delete(MCP).await.map_err(storage)?;
        st.put(DELETED, true).await.map_err(storage)?;
        if let Some(record) = &gone {
            self.note(Box::new(|t| {
                t.push(unix_now(), ConnectionEventKind::Deleted, None, None)
            }))
            .await;
            webhooks::emit(&self.env, webhooks::event(EventKind::Deleted, record)).await;
        }
        Ok(gone.is_some())
    }

    /// Deletes the link's hooks at Keap; a failure is logged, never fatal to what asked.
    async fn drop_hooks(&self, cfg: &Config, store: &Store, key: &ConnectionKey) {
        let teardown = keaplink_core::hooks::Mode::Teardown;
        if let Err(e) = self.run_hooks(cfg, store, key, teardown).await {
            log::failure(Level::Error, "hooks_teardown_failed", &e);
        }
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

    async fn detail(&self, store: &Store, key: &ConnectionKey) -> ApiResult<Option<Detail>> {
        let Some(record) = self.record(store, key).await? else {
            return Ok(None);
        };
        let t = durable::storage(&self.state)
            .get::<Timeline>(TIMELINE)
            .await
            .map_err(storage)?
            .unwrap_or_default();
        let events: Vec<ConnectionEvent> = t.newest_first();
        Ok(Some(Detail {
            record,
            events: serde_json::to_string(&events).map_err(ApiError::internal)?,
        }))
    }

    async fn note_mismatch(
        &self,
        store: &Store,
        key: &ConnectionKey,
        m: &Mismatch,
    ) -> ApiResult<()> {
        if self.record(store, key).await?.is_some() {
            self.note(Box::new(|t| {
                t.push(
                    unix_now(),
                    ConnectionEventKind::IdentityMismatch,
                    Some("identity_mismatch"),
                    Some(m.describe()),
                )
            }))
            .await;
        }
        Ok(())
    }

    async fn mint(
        &self,
        cfg: &Config,
        store: &Store,
        key: &ConnectionKey,
        record: &ConnectionRecord,
        ttl_secs: u64,
    ) -> ApiResult<Minted> {
        let now = unix_now();
        let token = RepairToken::from_random(random::bytes());
        let link = RepairLinkRecord {
            partner: record.partner.clone(),
            connection: record.id.clone(),
            key: key.clone(),
            created_at: now,
            expires_at: now + ttl_secs as i64,
            used_at: None,
        };
        store.put_repair_link(&token.handle(), &link, now).await?;
        self.note(Box::new(|t| {
            t.push(
                now,
                ConnectionEventKind::RepairLinkCreated,
                None,
                Some(format!(
                    "Expires {}.",
                    keaplink_core::clock::rfc3339(link.expires_at)
                )),
            )
        }))
        .await;
        Ok(Minted {
            url: token.url(cfg.public_url.as_str()),
            link,
        })
    }

    async fn mint_repair_link(
        &self,
        cfg: &Config,
        store: &Store,
        key: &ConnectionKey,
        ttl_secs: u64,
    ) -> ApiResult<Option<Minted>> {
        match self.record(store, key).await? {
            None => Ok(None),
            Some(record) => self
                .mint(cfg, store, key, &record, ttl_secs)
                .await
                .map(Some),
        }
    }

    async fn try_repair_link(
        &self,
        store: &Store,
        key: &ConnectionKey,
        link: &RepairHandle,
    ) -> ApiResult<Spend> {
        if self.record(store, key).await?.is_none() {
            return Ok(Spend::Gone);
        }
        let st = durable::storage(&self.state);
        let spent = st.get::<i64>(&link.spend_key()).await.map_err(storage)?;
        let tries = st.get::<u32>(&link.attempts_key()).await.map_err(storage)?;
        let n = match repair::next_try(spent.is_some(), tries.unwrap_or(0)) {
            Try::Spent => return Ok(Spend::Used),
            Try::Exhausted => return Ok(Spend::Exhausted),
            Try::Go(n) => n,
        };
        st.put(&link.attempts_key(), n).await.map_err(storage)?;
        let now = unix_now();
        self.note(Box::new(move |t| {
            t.push(
                now,
                ConnectionEventKind::RepairLinkTried,
                None,
                Some(repair::attempt_note(n)),
            )
        }))
        .await;
        Ok(Spend::Go(n))
    }

    async fn repair_link_restored(&self, link: &RepairHandle) -> ApiResult<()> {
        let now = unix_now();
        durable::storage(&self.state)
            .put(&link.spend_key(), now)
            .await
            .map_err(storage)?;
        self.note(Box::new(|t| {
            t.push(
                now,
                ConnectionEventKind::RepairLinkUsed,
                None,
                Some("It restored the connection: the link is spent.".into()),
            )
        }))
        .await;
        Ok(())
    }

    pub(crate) async fn refresh(
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
                tried: false,
                keap: None,
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
            // A call's use, when the rule wants it recorded (at most once per window).
            if let Purpose::Use { at } = purpose {
                if let Some(uses) = cfg.refresh.keep.record_use(record.uses(), *at) {
                    let next = record.with_uses(uses);
                    self.save(store, key, &next, false).await?;
                    return not_refreshed(next);
                }
            }
            return not_refreshed(record);
        }
        let current: OpenTokens = record.open_tokens(&cfg.keys, key).map_err(unopenable)?;
        let req = refresh_request(&cfg.keap, &cfg.client, &current.refresh_token);
        let (outcome, keap) = match send(&req, cfg.keap_timeout_ms).await {
            Ok(answer) => (
                parse_token_response(answer.status, &answer.body),
                Some(KeapSignal::read(
                    &answer.quota_headers,
                    answer.status,
                    now_ms(),
                )),
            ),
            Err(f) => (Err(f), None),
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
                let latest = durable::storage(&self.state)
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
        // A caller's refresh is a use: recorded in the same write (a woken link is in use).
        let next = match (purpose, cfg.refresh.keep.record_use(next.uses(), t)) {
            (Purpose::Token, Some(uses)) => next.with_uses(uses),
            _ => next,
        };
        self.save(store, key, &next, false).await?;
        store.reindex(key, Some(&record), Some(&next)).await?;
        let attempt = Attempt::between(&record, &next);
        self.note(Box::new(|tl| tl.record_attempt(&attempt, t)))
            .await;
        stats::record_refresh(&self.env, attempt.outcome).await;
        partner_guard::refreshed(&self.env, &record.partner, attempt.outcome).await;
        for kind in &attempt.announce {
            self.announce(cfg, store, key, *kind, &next).await;
        }
        let refreshed = next.last_error.is_none();
        Ok(Some(Refreshed {
            record: next,
            refreshed,
            tried: true,
            keap,
        }))
    }
}

/// Asks the connection's guard to do `command`.
///
/// This and the calls below are plain functions returning the object's answer as a future, not
/// `async fn`s: each `async fn` wrapper was a state machine of its own in the wasm, and the
/// future `durable::call` returns borrows nothing, so it can be handed on as it is.
fn ask<A: serde::de::DeserializeOwned>(
    env: &Env,
    key: &ConnectionKey,
    command: &Command,
) -> impl Future<Output = ApiResult<A>> {
    durable::call(env, GUARD_BINDING, key.as_str(), command)
}

/// Stores a new or reconnected link, unless a reconnect fails the identity lock under `rule`.
pub fn put(
    env: &Env,
    key: &ConnectionKey,
    record: ConnectionRecord,
    rule: ReconnectIdentity,
) -> impl Future<Output = ApiResult<Stored>> {
    let command = Command::Put {
        key: key.clone(),
        record: Box::new(record),
        rule,
    };
    ask(env, key, &command)
}

/// Stores an imported link unless the user already has one to its app.
pub fn import(
    env: &Env,
    key: &ConnectionKey,
    record: ConnectionRecord,
) -> impl Future<Output = ApiResult<Imported>> {
    let command = Command::Import {
        key: key.clone(),
        record: Box::new(record),
    };
    ask(env, key, &command)
}

/// Freezes the link and answers its tokens (`None`: gone; 409 `exported`: exported before).
pub fn export(
    env: &Env,
    key: &ConnectionKey,
    request_id: &str,
) -> impl Future<Output = ApiResult<Option<ExportedLink>>> {
    let command = Command::Export {
        key: key.clone(),
        request_id: request_id.to_owned(),
    };
    ask(env, key, &command)
}

/// Destroys the link; answers whether there was one.
pub fn delete(env: &Env, key: &ConnectionKey) -> impl Future<Output = ApiResult<bool>> {
    ask(env, key, &Command::Delete { key: key.clone() })
}

/// Refreshes if `purpose` still needs it once it is this caller's turn. `None`: the connection
/// is gone.
pub fn refresh(
    env: &Env,
    key: &ConnectionKey,
    purpose: Purpose,
) -> impl Future<Output = ApiResult<Option<Refreshed>>> {
    let command = Command::Refresh {
        key: key.clone(),
        purpose,
    };
    ask(env, key, &command)
}

/// Moves the connection's tokens to the current first key (through its guard, so a refresh in
/// flight is never overwritten with older tokens). `None`: the connection is gone.
pub fn reseal(
    env: &Env,
    key: &ConnectionKey,
) -> impl Future<Output = ApiResult<Option<ResealOutcome>>> {
    ask(env, key, &Command::Reseal { key: key.clone() })
}

/// The link and its timeline. `None`: the connection is gone.
pub fn detail(env: &Env, key: &ConnectionKey) -> impl Future<Output = ApiResult<Option<Detail>>> {
    ask(env, key, &Command::Detail { key: key.clone() })
}

/// Notes on the link's timeline that a reconnect landed on another app.
pub fn note_mismatch(
    env: &Env,
    key: &ConnectionKey,
    mismatch: Mismatch,
) -> impl Future<Output = ApiResult<()>> {
    let command = Command::NoteMismatch {
        key: key.clone(),
        mismatch,
    };
    ask(env, key, &command)
}

/// A repair link for the connection. `None`: the connection is gone.
pub fn mint_repair_link(
    env: &Env,
    key: &ConnectionKey,
    ttl_secs: u64,
) -> impl Future<Output = ApiResult<Option<Minted>>> {
    let command = Command::MintRepairLink {
        key: key.clone(),
        ttl_secs,
    };
    ask(env, key, &command)
}

/// Counts an attempt of a repair link of the connection, unless it is spent or used up.
pub fn try_repair_link(
    env: &Env,
    key: &ConnectionKey,
    link: &RepairHandle,
) -> impl Future<Output = ApiResult<Spend>> {
    let command = Command::TryRepairLink {
        key: key.clone(),
        link: link.clone(),
    };
    ask(env, key, &command)
}

/// Spends a repair link whose attempt restored the connection.
pub fn repair_link_restored(
    env: &Env,
    key: &ConnectionKey,
    link: &RepairHandle,
) -> impl Future<Output = ApiResult<()>> {
    let command = Command::RepairLinkRestored {
        key: key.clone(),
        link: link.clone(),
    };
    ask(env, key, &command)
}

/// Makes the link's Keap hooks `wanted`. `None`: the connection is gone.
pub fn set_hooks(
    env: &Env,
    key: &ConnectionKey,
    wanted: keaplink_core::hooks::Wanted,
) -> impl Future<Output = ApiResult<Option<String>>> {
    let command = Command::SetHooks {
        key: key.clone(),
        event_keys: wanted.event_keys,
        hydrate: wanted.hydrate,
    };
    ask(env, key, &command)
}

/// The link's hooks (as the API's JSON text). `None`: the connection is gone.
pub fn hooks(env: &Env, key: &ConnectionKey) -> impl Future<Output = ApiResult<Option<String>>> {
    ask(env, key, &Command::Hooks { key: key.clone() })
}

/// Checks the link's hooks at Keap; answers how many it restored. `None`: the connection is gone.
pub fn check_hooks(env: &Env, key: &ConnectionKey) -> impl Future<Output = ApiResult<Option<u32>>> {
    ask(env, key, &Command::CheckHooks { key: key.clone() })
}

/// Whether a batch Keap posted to the link is news.
pub fn hook_batch(
    env: &Env,
    key: &ConnectionKey,
    event_key: &str,
    digest: &str,
) -> impl Future<Output = ApiResult<Verdict>> {
    let command = Command::HookBatch {
        key: key.clone(),
        event_key: event_key.to_owned(),
        digest: digest.to_owned(),
    };
    ask(env, key, &command)
}

/// An MCP client's grant in the link, waiting for its code; answers the code (`None`: the link
/// is gone or not active).
pub fn mcp_grant(
    env: &Env,
    key: &ConnectionKey,
    consent: Consent,
) -> impl Future<Output = ApiResult<Option<String>>> {
    let command = Command::McpGrant {
        key: key.clone(),
        consent: Box::new(consent),
    };
    ask_mcp(env, None, Some(key), &command)
}

/// An MCP command, to the guard a token names (`token`) or a link's (`key`): one boxed round
/// trip for all of them.
fn ask_mcp<A: serde::de::DeserializeOwned>(
    env: &Env,
    token: Option<&Token>,
    key: Option<&ConnectionKey>,
    command: &Command,
) -> impl Future<Output = ApiResult<A>> {
    let body = serde_json::to_string(command).map_err(ApiError::internal);
    let sent = match (token, key) {
        (Some(t), _) => durable::call_text(env, GUARD_BINDING, t.object(), true, body),
        (None, Some(k)) => durable::call_text(env, GUARD_BINDING, k.as_str(), false, body),
        (None, None) => durable::call_text(
            env,
            GUARD_BINDING,
            "",
            false,
            Err(ApiError::internal("no guard named")),
        ),
    };
    async move { durable::read_answer(GUARD_BINDING, sent.await) }
}

/// The authorization code grant, at the guard the code names.
pub fn mcp_redeem(
    env: &Env,
    code: &Token,
    client: String,
    redirect_uri: String,
    verifier: String,
    resource: Option<String>,
) -> impl Future<Output = ApiResult<McpTokens>> {
    let command = Command::McpRedeem {
        token: code.expose().to_owned(),
        client,
        redirect_uri,
        verifier,
        resource,
    };
    ask_mcp(env, Some(code), None, &command)
}

/// The refresh grant, at the guard the token names.
pub fn mcp_refresh(
    env: &Env,
    token: &Token,
    client: String,
    resource: Option<String>,
) -> impl Future<Output = ApiResult<McpTokens>> {
    let command = Command::McpRefresh {
        token: token.expose().to_owned(),
        client,
        resource,
    };
    ask_mcp(env, Some(token), None, &command)
}

/// What an access token is bound to (`None`: not a live token for `resource`).
pub fn mcp_check(
    env: &Env,
    token: &Token,
    resource: &str,
) -> impl Future<Output = ApiResult<Option<(Bound, ConnectionKey)>>> {
    let command = Command::McpCheck {
        token: token.expose().to_owned(),
        resource: resource.to_owned(),
    };
    ask_mcp(env, Some(token), None, &command)
}

/// Ends the grant of an access or refresh token (whether one ended).
pub fn mcp_revoke_token(env: &Env, token: &Token) -> impl Future<Output = ApiResult<bool>> {
    let command = Command::McpRevokeToken {
        token: token.expose().to_owned(),
    };
    ask_mcp(env, Some(token), None, &command)
}

/// The link's MCP clients.
pub fn mcp_list(
    env: &Env,
    key: &ConnectionKey,
) -> impl Future<Output = ApiResult<Vec<keaplink_api::Assistant>>> {
    ask_mcp(env, None, Some(key), &Command::McpList { key: key.clone() })
}

/// Ends one MCP client's grant in the link.
pub fn mcp_revoke(
    env: &Env,
    key: &ConnectionKey,
    grant: &str,
) -> impl Future<Output = ApiResult<bool>> {
    let command = Command::McpRevoke {
        key: key.clone(),
        grant: grant.to_owned(),
    };
    ask_mcp(env, None, Some(key), &command)
}

/// Notes an MCP tool call on the link's timeline (at the guard an access token named).
pub fn mcp_note(
    env: &Env,
    token: &Token,
    tool: &str,
    outcome: &str,
) -> impl Future<Output = ApiResult<()>> {
    let command = Command::McpNote {
        tool: tool.to_owned(),
        outcome: outcome.to_owned(),
    };
    ask_mcp(env, Some(token), None, &command)
}
