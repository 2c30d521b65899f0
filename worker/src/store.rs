//! Workers KV, as `keaplink_core::keys` lays it out: reads and writes of partners, connections,
//! pending links and repair links, and the named listings the routes and the sweep walk. No other
//! module spells a key.

use crate::clock::now_ms;
use crate::js_json;
use crate::kv::{Kv, PutOptions};
use keaplink_core::connection::{ConnectionKey, ConnectionMeta, ConnectionRecord};
use keaplink_core::flow::{PendingLink, StateToken, STATE_TTL_SECS};
use keaplink_core::ids::{ConnectionId, PartnerId, UserId};
use keaplink_core::keys;
use keaplink_core::partner::PartnerRecord;
use keaplink_core::repair::{RepairHandle, RepairLinkRecord};
use keaplink_core::search;
use keaplink_core::{ApiError, ApiResult};
use serde::de::DeserializeOwned;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use worker::Env;

pub const KV_BINDING: &str = "KV";
/// How long an isolate trusts its copy of a partner record. KV itself may serve a value up to
/// 60 s stale, so this adds no staleness a partner could not already see.
const PARTNER_CACHE_MS: u64 = 30_000;

pub struct Store {
    kv: Kv,
    /// KV values this store read: the sweep reports it.
    reads: Cell<u64>,
}

/// One page of a listing, and where the next one starts (`None`: the end).
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

thread_local! {
    static PARTNERS: RefCell<HashMap<PartnerId, (u64, Option<PartnerRecord>)>> = RefCell::new(HashMap::new());
}

fn kv_failed(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("KV {what}: {e}"))
}

fn parse<T: DeserializeOwned>(key: &str, raw: &str) -> ApiResult<T> {
    serde_json::from_slice(raw.as_bytes()).map_err(|e| {
        // The key's kind names what is broken; neither the value nor serde_json's message
        // (which quotes it) is written to a log.
        let kind = key.split('/').next().unwrap_or_default();
        ApiError::internal(format!(
            "the stored {kind}/ record does not parse: {}",
            js_json::where_broken(&e)
        ))
    })
}

/// A key's metadata; metadata written by no version of ours reads as none.
fn parse_meta<T: DeserializeOwned>(json: &str) -> Option<T> {
    serde_json::from_slice(json.as_bytes()).ok()
}

impl Store {
    pub fn open(env: &Env) -> ApiResult<Store> {
        Ok(Store {
            kv: Kv::open(env, KV_BINDING).map_err(|e| kv_failed("binding", e))?,
            reads: Cell::new(0),
        })
    }

    /// Every value read goes through here, so it is counted.
    async fn get_text(&self, key: &str) -> ApiResult<Option<String>> {
        self.reads.set(self.reads.get() + 1);
        self.kv.get_text(key).await.map_err(|e| kv_failed("get", e))
    }

    async fn put_text(&self, key: &str, value: String) -> ApiResult<()> {
        self.put_with(key, &value, PutOptions::default()).await
    }

    async fn put_with(&self, key: &str, value: &str, opts: PutOptions<'_>) -> ApiResult<()> {
        self.kv
            .put(key, value, opts)
            .await
            .map_err(|e| kv_failed("put", e))
    }

    async fn delete(&self, key: &str) -> ApiResult<()> {
        self.kv
            .delete(key)
            .await
            .map_err(|e| kv_failed("delete", e))
    }

    /// How many KV values this store has read.
    pub fn reads(&self) -> u64 {
        self.reads.get()
    }

    // ---- partners ------------------------------------------------------------------------

    /// A partner record, from this isolate's cache when recent: the token hot path then costs
    /// one KV read (the connection).
    pub async fn partner(&self, id: &PartnerId) -> ApiResult<Option<PartnerRecord>> {
        if let Some(hit) = self.partner_cached(id, |p| p.cloned()) {
            return Ok(hit);
        }
        let fresh = self.partner_uncached(id).await?;
        PARTNERS.with(|c| c.borrow_mut().insert(id.clone(), (now_ms(), fresh.clone())));
        Ok(fresh)
    }

    /// `f` of this isolate's recent copy of a partner record (`Some(None)`: known to be gone),
    /// without copying it; `None` when the cache has no recent copy (then ask `partner`).
    pub fn partner_cached<R>(
        &self,
        id: &PartnerId,
        f: impl FnOnce(Option<&PartnerRecord>) -> R,
    ) -> Option<R> {
        PARTNERS.with(|c| {
            c.borrow()
                .get(id)
                .filter(|(at, _)| now_ms().saturating_sub(*at) < PARTNER_CACHE_MS)
                .map(|(_, p)| f(p.as_ref()))
        })
    }

    pub async fn partner_uncached(&self, id: &PartnerId) -> ApiResult<Option<PartnerRecord>> {
        let key = keys::partner(id);
        match self.get_text(&key).await? {
            Some(raw) => parse(&key, &raw).map(Some),
            None => Ok(None),
        }
    }

    /// Writes the KV copy of a partner record and its origin index (the partner guard's job).
    pub async fn put_partner(
        &self,
        record: &PartnerRecord,
        old: Option<&PartnerRecord>,
    ) -> ApiResult<()> {
        let body = serde_json::to_string(record).map_err(ApiError::internal)?;
        self.put_text(&keys::partner(&record.partner_id), body)
            .await?;
        for o in &record.allowed_origins {
            if old.is_none_or(|p| !p.allowed_origins.contains(o)) {
                self.put_text(&keys::origin(o, &record.partner_id), "1".into())
                    .await?;
            }
        }
        if let Some(old) = old {
            for o in old
                .allowed_origins
                .iter()
                .filter(|o| !record.allowed_origins.contains(o))
            {
                self.delete(&keys::origin(o, &record.partner_id)).await?;
            }
        }
        Ok(())
    }

    /// This isolate's cache takes a record just written (by the partner guard, maybe elsewhere).
    pub fn remember_partner(&self, record: &PartnerRecord) {
        PARTNERS.with(|c| {
            c.borrow_mut()
                .insert(record.partner_id.clone(), (now_ms(), Some(record.clone())))
        });
    }

    /// This isolate's cache learns that the partner is gone.
    pub fn forget_partner(&self, id: &PartnerId) {
        PARTNERS.with(|c| c.borrow_mut().insert(id.clone(), (now_ms(), None)));
    }

    pub async fn delete_partner(&self, record: &PartnerRecord) -> ApiResult<()> {
        for o in &record.allowed_origins {
            self.delete(&keys::origin(o, &record.partner_id)).await?;
        }
        self.delete(&keys::partner(&record.partner_id)).await
    }

    /// Whether any partner allows `origin` (a preflight carries no credential to say which).
    pub async fn origin_known(&self, origin: &str) -> ApiResult<bool> {
        let page = self
            .kv
            .list(&keys::origin_prefix(origin), 1, None)
            .await
            .map_err(|e| kv_failed("list", e))?;
        Ok(!page.keys.is_empty())
    }

    /// One page of partner ids.
    pub async fn list_partners(
        &self,
        limit: u64,
        cursor: Option<String>,
    ) -> ApiResult<Page<PartnerId>> {
        let (names, next) = self.list_names(keys::ALL_PARTNERS, limit, cursor).await?;
        Ok(Page {
            items: names.iter().filter_map(|n| keys::partner_of(n)).collect(),
            next,
        })
    }

    // ---- connections ---------------------------------------------------------------------

    pub async fn connection(&self, key: &ConnectionKey) -> ApiResult<Option<ConnectionRecord>> {
        match self.get_text(key.as_str()).await? {
            Some(raw) => parse(key.as_str(), &raw).map(Some),
            None => Ok(None),
        }
    }

    /// Writes the record with its metadata, and its id pointer when asked (new connections).
    pub async fn put_connection(
        &self,
        key: &ConnectionKey,
        record: &ConnectionRecord,
        new_id: bool,
    ) -> ApiResult<()> {
        let body = serde_json::to_string(record).map_err(ApiError::internal)?;
        let meta = serde_json::to_string(&record.metadata()).map_err(ApiError::internal)?;
        if new_id {
            // The pointer first: a record is never reachable by listing without its pointer.
            self.put_text(&keys::connection_id(&record.id), key.as_str().to_owned())
                .await?;
        }
        let opts = PutOptions {
            metadata: Some(&meta),
            ..PutOptions::default()
        };
        self.put_with(key.as_str(), &body, opts).await
    }

    pub async fn delete_connection(
        &self,
        key: &ConnectionKey,
        record: &ConnectionRecord,
    ) -> ApiResult<()> {
        self.delete(key.as_str()).await?;
        self.delete(&keys::connection_id(&record.id)).await
    }

    /// Keeps the search index in step with a link that went from `old` to `new` (the guard's
    /// job, after each write). Writes only what changed: a plain refresh writes nothing here.
    pub async fn reindex(
        &self,
        key: &ConnectionKey,
        old: Option<&ConnectionRecord>,
        new: Option<&ConnectionRecord>,
    ) -> ApiResult<()> {
        let (put, delete) = search::diff(old, new);
        let meta = serde_json::to_string(&search::Entry { key: key.clone() })
            .map_err(ApiError::internal)?;
        for entry in put {
            let opts = PutOptions {
                metadata: Some(&meta),
                ..PutOptions::default()
            };
            self.put_with(&entry, "", opts).await?;
        }
        for entry in delete {
            self.delete(&entry).await?;
        }
        Ok(())
    }

    /// One page of the links whose index entries start with `prefix` (from `search`).
    pub async fn search(
        &self,
        prefix: &str,
        limit: u64,
        cursor: Option<String>,
    ) -> ApiResult<Page<ConnectionKey>> {
        let page = self.list(prefix, limit, cursor).await?;
        let mut items: Vec<ConnectionKey> = Vec::new();
        for (_, meta) in page.keys {
            let Some(entry) = meta.and_then(|m| parse_meta::<search::Entry>(&m)) else {
                continue;
            };
            // One link may match on two terms: listed once.
            if !items.contains(&entry.key) {
                items.push(entry.key);
            }
        }
        Ok(Page {
            items,
            next: page.next,
        })
    }

    /// The key an id points to, if it lies under `partner`.
    pub async fn resolve_id(
        &self,
        partner: &PartnerId,
        id: &ConnectionId,
    ) -> ApiResult<Option<ConnectionKey>> {
        let raw = self.get_text(&keys::connection_id(id)).await?;
        Ok(raw.and_then(|k| ConnectionKey::parse_under(partner, &k)))
    }

    /// Every connection, a page at a time (the sweep, the stats count).
    pub async fn list_all_connections(
        &self,
        limit: u64,
        cursor: Option<String>,
    ) -> ApiResult<Page<(ConnectionKey, ConnectionMeta)>> {
        self.list_connections(keys::ALL_CONNECTIONS, limit, cursor)
            .await
    }

    /// The connection keys alone, a page at a time (the re-seal walk reads each through its
    /// guard, so it needs no metadata).
    pub async fn list_connection_keys(
        &self,
        limit: u64,
        cursor: Option<String>,
    ) -> ApiResult<Page<ConnectionKey>> {
        let (names, next) = self
            .list_names(keys::ALL_CONNECTIONS, limit, cursor)
            .await?;
        Ok(Page {
            items: names
                .iter()
                .filter_map(|n| ConnectionKey::parse(n))
                .collect(),
            next,
        })
    }

    /// One partner's connections: `GET /v1/connections`, the purge.
    pub async fn list_partner_connections(
        &self,
        partner: &PartnerId,
        limit: u64,
        cursor: Option<String>,
    ) -> ApiResult<Page<(ConnectionKey, ConnectionMeta)>> {
        self.list_connections(&keys::partner_prefix(partner), limit, cursor)
            .await
    }

    /// One partner user's connections (a user has a handful; `limit` bounds the page).
    pub async fn list_user_connections(
        &self,
        partner: &PartnerId,
        user: &UserId,
        limit: u64,
    ) -> ApiResult<Vec<(ConnectionKey, ConnectionMeta)>> {
        Ok(self
            .list_connections(&keys::user_prefix(partner, user), limit, None)
            .await?
            .items)
    }

    async fn list_names(
        &self,
        prefix: &str,
        limit: u64,
        cursor: Option<String>,
    ) -> ApiResult<(Vec<String>, Option<String>)> {
        let page = self.list(prefix, limit, cursor).await?;
        Ok((
            page.keys.into_iter().map(|(name, _)| name).collect(),
            page.next,
        ))
    }

    /// One page of connections under `prefix`, from metadata alone. Entries whose key or
    /// metadata does not parse (written by no version of ours) are skipped.
    async fn list_connections(
        &self,
        prefix: &str,
        limit: u64,
        cursor: Option<String>,
    ) -> ApiResult<Page<(ConnectionKey, ConnectionMeta)>> {
        let page = self.list(prefix, limit, cursor).await?;
        let items = page
            .keys
            .into_iter()
            .filter_map(|(name, meta)| {
                let key = ConnectionKey::parse(&name)?;
                let meta = parse_meta::<ConnectionMeta>(&meta?)?;
                Some((key, meta))
            })
            .collect();
        Ok(Page {
            items,
            next: page.next,
        })
    }

    /// One page of the keys under `prefix` (a cursor, when given and not empty, goes on).
    async fn list(
        &self,
        prefix: &str,
        limit: u64,
        cursor: Option<String>,
    ) -> ApiResult<crate::kv::Listed> {
        let cursor = cursor.filter(|c| !c.is_empty());
        self.kv
            .list(prefix, limit, cursor.as_deref())
            .await
            .map_err(|e| kv_failed("list", e))
    }

    // ---- repair links --------------------------------------------------------------------

    /// Stores a repair link under its token's hash, kept a week past its expiry (so its page can
    /// say "expired").
    pub async fn put_repair_link(
        &self,
        link_at: &RepairHandle,
        link: &RepairLinkRecord,
        now: keaplink_core::clock::UnixTime,
    ) -> ApiResult<()> {
        let body = serde_json::to_string(link).map_err(ApiError::internal)?;
        let opts = PutOptions {
            expiration_ttl: Some(link.kv_ttl_secs(now)),
            ..PutOptions::default()
        };
        self.put_with(&link_at.storage_key(), &body, opts).await
    }

    pub async fn repair_link(&self, link_at: &RepairHandle) -> ApiResult<Option<RepairLinkRecord>> {
        let key = link_at.storage_key();
        match self.get_text(&key).await? {
            Some(raw) => parse(&key, &raw).map(Some),
            None => Ok(None),
        }
    }

    // ---- OAuth state ---------------------------------------------------------------------

    pub async fn put_state(&self, state: &StateToken, link: &PendingLink) -> ApiResult<()> {
        let body = serde_json::to_string(link).map_err(ApiError::internal)?;
        let opts = PutOptions {
            expiration_ttl: Some(STATE_TTL_SECS as u64),
            ..PutOptions::default()
        };
        self.put_with(&state.storage_key(), &body, opts).await
    }

    /// Reads and deletes a state: whatever happens next, it cannot be used again.
    pub async fn take_state(&self, state: &StateToken) -> ApiResult<Option<PendingLink>> {
        let key = state.storage_key();
        let raw = self.get_text(&key).await?;
        if raw.is_some() {
            self.delete(&key).await?;
        }
        Ok(raw.and_then(|r| serde_json::from_slice(r.as_bytes()).ok()))
    }
    // ---- MCP registrations ---------------------------------------------------------------

    /// When the MCP registration `client_hash` last authorized something (`None`: never, or
    /// not within its lifetime).
    pub async fn mcp_client_used(
        &self,
        client_hash: &str,
    ) -> ApiResult<Option<keaplink_core::clock::UnixTime>> {
        let key = keaplink_core::mcp::oauth::used_key(client_hash);
        Ok(self.get_text(&key).await?.and_then(|t| t.parse().ok()))
    }

    /// Marks that the registration `client_hash` authorized something at `now`; the mark
    /// expires with the registration's lifetime, so an idle one leaves nothing behind.
    pub async fn mark_mcp_client_used(
        &self,
        client_hash: &str,
        now: keaplink_core::clock::UnixTime,
    ) -> ApiResult<()> {
        let key = keaplink_core::mcp::oauth::used_key(client_hash);
        let opts = PutOptions {
            expiration_ttl: Some(keaplink_core::mcp::oauth::REGISTRATION_TTL_SECS as u64),
            ..PutOptions::default()
        };
        self.put_with(&key, &now.to_string(), opts).await
    }

    // ---- Keap hooks ----------------------------------------------------------------------

    /// Routes a hook URL's posts to its link (`index_key` is a hash of the URL's token).
    pub async fn put_hook_index(
        &self,
        index_key: &str,
        entry: &keaplink_core::hooks::InboxEntry,
    ) -> ApiResult<()> {
        let body = serde_json::to_string(entry).map_err(ApiError::internal)?;
        self.put_text(index_key, body).await
    }

    /// The link a hook URL stands for (`None`: no link has it, or no longer).
    pub async fn hook_index(
        &self,
        index_key: &str,
    ) -> ApiResult<Option<keaplink_core::hooks::InboxEntry>> {
        match self.get_text(index_key).await? {
            Some(raw) => parse(index_key, &raw).map(Some),
            None => Ok(None),
        }
    }

    pub async fn delete_hook_index(&self, index_key: &str) -> ApiResult<()> {
        self.delete(index_key).await
    }

    /// Keeps a handshake's `X-Hook-Secret` for ten minutes, for `delayedVerify` (the guard reads
    /// it when Keap's create or verify answer says the echo did not land).
    pub async fn put_hook_secret(
        &self,
        secret_key: &str,
        secret: &keaplink_core::Secret,
    ) -> ApiResult<()> {
        let opts = PutOptions {
            expiration_ttl: Some(600),
            ..PutOptions::default()
        };
        self.put_with(secret_key, secret.expose(), opts).await
    }

    pub async fn hook_secret(&self, secret_key: &str) -> ApiResult<Option<keaplink_core::Secret>> {
        Ok(self
            .get_text(secret_key)
            .await?
            .map(keaplink_core::Secret::new))
    }
}
