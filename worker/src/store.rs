//! Workers KV, as keaplink lays it out:
//!
//! | key | value | metadata |
//! |---|---|---|
//! | `p/<partner>` | partner record (JSON, secrets hashed or sealed) | |
//! | `o/<sha256(origin)>/<partner>` | `1`: the origin is allowed by that partner (for preflights) | |
//! | `c/<partner>/<sha256(user)>/<app>` | connection record (JSON, tokens sealed) | `ConnectionMeta` |
//! | `i/<connection id>` | the connection's key | |
//! | `s/<sha256(state)>` | pending link (10 min TTL) | |

use crate::http::{internal, ApiResult};
use keaplink_core::clock::UnixTime;
use keaplink_core::connection::{ConnectionKey, ConnectionMeta, ConnectionRecord};
use keaplink_core::flow::{PendingLink, StateToken, STATE_TTL_SECS};
use keaplink_core::ids::{ConnectionId, PartnerId};
use keaplink_core::partner::{origin_index_key, origin_index_prefix, PartnerRecord};
use std::cell::RefCell;
use std::collections::HashMap;
use worker::kv::KvStore;
use worker::Env;

pub const KV_BINDING: &str = "KV";
/// How long an isolate trusts its copy of a partner record. KV itself may serve a value up to
/// 60 s stale, so this adds no staleness a partner could not already see.
const PARTNER_CACHE_MS: f64 = 30_000.0;

pub struct Store {
    kv: KvStore,
    /// KV values this store read: the sweep reports it.
    reads: std::cell::Cell<u64>,
}

thread_local! {
    static PARTNERS: RefCell<HashMap<String, (f64, Option<PartnerRecord>)>> = RefCell::new(HashMap::new());
}

fn now_ms() -> f64 {
    worker::Date::now().as_millis() as f64
}

impl Store {
    /// Every value read goes through here, so it is counted.
    async fn get_text(&self, key: &str) -> ApiResult<Option<String>> {
        self.reads.set(self.reads.get() + 1);
        self.kv.get(key).text().await.map_err(internal)
    }

    /// How many KV values this store has read.
    pub fn reads(&self) -> u64 {
        self.reads.get()
    }

    pub fn open(env: &Env) -> ApiResult<Store> {
        Ok(Store {
            kv: env.kv(KV_BINDING).map_err(internal)?,
            reads: std::cell::Cell::new(0),
        })
    }

    // ---- partners ------------------------------------------------------------------------

    /// A partner record, from this isolate's cache when recent: the token hot path then costs
    /// one KV read (the connection).
    pub async fn partner(&self, id: &PartnerId) -> ApiResult<Option<PartnerRecord>> {
        let cached = PARTNERS.with(|c| {
            c.borrow()
                .get(id.as_str())
                .filter(|(at, _)| now_ms() - at < PARTNER_CACHE_MS)
                .map(|(_, p)| p.clone())
        });
        if let Some(hit) = cached {
            return Ok(hit);
        }
        let fresh = self.partner_uncached(id).await?;
        PARTNERS.with(|c| {
            c.borrow_mut()
                .insert(id.as_str().to_owned(), (now_ms(), fresh.clone()))
        });
        Ok(fresh)
    }

    pub async fn partner_uncached(&self, id: &PartnerId) -> ApiResult<Option<PartnerRecord>> {
        let raw = self.get_text(&format!("p/{}", id.as_str())).await?;
        raw.map(|r| serde_json::from_str(&r).map_err(internal))
            .transpose()
    }

    /// Writes the KV copy of a partner record and its origin index (the partner guard's job).
    pub async fn put_partner(
        &self,
        record: &PartnerRecord,
        old: Option<&PartnerRecord>,
    ) -> ApiResult<()> {
        let body = serde_json::to_string(record).map_err(internal)?;
        self.kv
            .put(&format!("p/{}", record.partner_id), body)
            .map_err(internal)?
            .execute()
            .await
            .map_err(internal)?;
        for o in &record.allowed_origins {
            if old.is_none_or(|p| !p.allowed_origins.contains(o)) {
                self.kv
                    .put(&origin_index_key(o, &record.partner_id), "1")
                    .map_err(internal)?
                    .execute()
                    .await
                    .map_err(internal)?;
            }
        }
        if let Some(old) = old {
            for o in old
                .allowed_origins
                .iter()
                .filter(|o| !record.allowed_origins.contains(o))
            {
                self.kv
                    .delete(&origin_index_key(o, &record.partner_id))
                    .await
                    .map_err(internal)?;
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
        PARTNERS.with(|c| {
            c.borrow_mut()
                .insert(id.as_str().to_owned(), (now_ms(), None))
        });
    }

    pub async fn delete_partner(&self, record: &PartnerRecord) -> ApiResult<()> {
        for o in &record.allowed_origins {
            self.kv
                .delete(&origin_index_key(o, &record.partner_id))
                .await
                .map_err(internal)?;
        }
        self.kv
            .delete(&format!("p/{}", record.partner_id))
            .await
            .map_err(internal)?;
        Ok(())
    }

    /// Whether any partner allows `origin` (a preflight carries no credential to say which).
    pub async fn origin_known(&self, origin: &str) -> ApiResult<bool> {
        let page = self
            .kv
            .list()
            .prefix(origin_index_prefix(origin))
            .limit(1)
            .execute()
            .await
            .map_err(internal)?;
        Ok(!page.keys.is_empty())
    }

    // ---- connections ---------------------------------------------------------------------

    pub async fn connection(&self, key: &ConnectionKey) -> ApiResult<Option<ConnectionRecord>> {
        let raw = self.get_text(key.as_str()).await?;
        raw.map(|r| serde_json::from_str(&r).map_err(internal))
            .transpose()
    }

    /// Writes the record with its metadata, and its id pointer when asked (new connections).
    pub async fn put_connection(
        &self,
        key: &ConnectionKey,
        record: &ConnectionRecord,
        new_id: bool,
    ) -> ApiResult<()> {
        let body = serde_json::to_string(record).map_err(internal)?;
        if new_id {
            // The pointer first: a record is never reachable by listing without its pointer.
            let id = ConnectionId::parse(&record.id).ok_or_else(|| internal(()))?;
            self.kv
                .put(&ConnectionKey::index_key(&id), key.as_str())
                .map_err(internal)?
                .execute()
                .await
                .map_err(internal)?;
        }
        self.kv
            .put(key.as_str(), body)
            .map_err(internal)?
            .metadata(record.metadata())
            .map_err(internal)?
            .execute()
            .await
            .map_err(internal)
    }

    pub async fn delete_connection(&self, key: &ConnectionKey, id: &ConnectionId) -> ApiResult<()> {
        self.kv.delete(key.as_str()).await.map_err(internal)?;
        self.kv
            .delete(&ConnectionKey::index_key(id))
            .await
            .map_err(internal)
    }

    /// The key an id points to, if it lies under `partner`.
    pub async fn resolve_id(
        &self,
        partner: &PartnerId,
        id: &ConnectionId,
    ) -> ApiResult<Option<ConnectionKey>> {
        let raw = self.get_text(&ConnectionKey::index_key(id)).await?;
        Ok(raw.and_then(|k| ConnectionKey::parse_under(partner, &k)))
    }

    /// One page of key names under `prefix`.
    pub async fn list_keys(
        &self,
        prefix: &str,
        limit: u64,
        cursor: Option<String>,
    ) -> ApiResult<(Vec<String>, Option<String>)> {
        let mut q = self.kv.list().prefix(prefix.to_owned()).limit(limit);
        if let Some(c) = cursor.filter(|c| !c.is_empty()) {
            q = q.cursor(c);
        }
        let page = q.execute().await.map_err(internal)?;
        let next = if page.list_complete {
            None
        } else {
            page.cursor
        };
        Ok((page.keys.into_iter().map(|k| k.name).collect(), next))
    }

    /// One page of connections under `prefix`, from metadata alone.
    pub async fn list_connections(
        &self,
        prefix: &str,
        limit: u64,
        cursor: Option<String>,
    ) -> ApiResult<(Vec<(String, ConnectionMeta)>, Option<String>)> {
        let mut q = self.kv.list().prefix(prefix.to_owned()).limit(limit);
        if let Some(c) = cursor {
            q = q.cursor(c);
        }
        let page = q.execute().await.map_err(internal)?;
        let items = page
            .keys
            .into_iter()
            .filter_map(|k| {
                let meta = serde_json::from_value::<ConnectionMeta>(k.metadata?).ok()?;
                Some((k.name, meta))
            })
            .collect();
        Ok((
            items,
            if page.list_complete {
                None
            } else {
                page.cursor
            },
        ))
    }

    // ---- OAuth state ---------------------------------------------------------------------

    pub async fn put_state(&self, state: &StateToken, link: &PendingLink) -> ApiResult<()> {
        let body = serde_json::to_string(link).map_err(internal)?;
        self.kv
            .put(&state.storage_key(), body)
            .map_err(internal)?
            .expiration_ttl(STATE_TTL_SECS as u64)
            .execute()
            .await
            .map_err(internal)
    }

    /// Reads and deletes a state: whatever happens next, it cannot be used again.
    pub async fn take_state(&self, state: &StateToken) -> ApiResult<Option<PendingLink>> {
        let key = state.storage_key();
        let raw = self.get_text(&key).await?;
        if raw.is_some() {
            self.kv.delete(&key).await.map_err(internal)?;
        }
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }
}

pub fn unix_now() -> UnixTime {
    (worker::Date::now().as_millis() / 1000) as UnixTime
}
