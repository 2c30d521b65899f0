//! The operator's endpoints (`Authorization: Bearer ADMIN_TOKEN`): partners, stats, the
//! key-rotation walk. One dispatcher checks the token once for all of them.

use super::parse_partner_id;
use crate::auth;
use crate::clock::unix_now;
use crate::config::Config;
use crate::guard;
use crate::http::{empty, json, json_text, read_json};
use crate::partner_guard;
use crate::queue::{enqueue, Job};
use crate::stats;
use crate::store::Store;
use keaplink_api::{
    AdminStats, ConnectionStatus, PartnerList, PartnerUpsert, RefreshCounts, ResealReport,
};
use keaplink_core::clock::rfc3339;
use keaplink_core::cursor::{self, ResealAt};
use keaplink_core::ids::PartnerId;
use keaplink_core::sweep::LIST_PAGE;
use keaplink_core::{query, ApiError, ApiResult, ErrorCode};
use worker::{Env, Method, Request, Response};

/// The admin endpoints under `/v1/admin/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRoute<'a> {
    Stats,
    Reseal,
    Partners,
    Partner(&'a str),
}

impl<'a> AdminRoute<'a> {
    /// The route of the path's segments after `/v1/admin/`.
    pub fn resolve(segments: &[&'a str]) -> Option<AdminRoute<'a>> {
        match segments {
            ["stats"] => Some(AdminRoute::Stats),
            ["reseal"] => Some(AdminRoute::Reseal),
            ["partners"] => Some(AdminRoute::Partners),
            ["partners", id] => Some(AdminRoute::Partner(id)),
            _ => None,
        }
    }

    /// Whether the route reads no query parameter (the listings read `limit` and `cursor`).
    pub fn takes_no_query(&self) -> bool {
        matches!(self, AdminRoute::Stats | AdminRoute::Partner(_))
    }

    pub fn methods(&self) -> &'static [Method] {
        match self {
            AdminRoute::Stats => &[Method::Get],
            AdminRoute::Reseal => &[Method::Post],
            AdminRoute::Partners => &[Method::Get],
            AdminRoute::Partner(_) => &[Method::Put, Method::Get, Method::Delete],
        }
    }
}

/// The one admin dispatcher: the token is checked once, then the route's handler runs.
pub async fn handle(
    req: &mut Request,
    env: &Env,
    cfg: &Config,
    store: &Store,
    route: &AdminRoute<'_>,
    method: &Method,
) -> ApiResult<Response> {
    auth::admin(req, cfg)?;
    match (route, method) {
        (AdminRoute::Stats, _) => stats_answer(env, store).await,
        (AdminRoute::Reseal, _) => reseal(req, env, cfg, store).await,
        (AdminRoute::Partners, _) => partners(req, cfg, store).await,
        (AdminRoute::Partner(raw), Method::Put) => {
            let id = parse_partner_id(raw)?;
            let body: PartnerUpsert = read_json(req, None).await?;
            json_text(
                partner_guard::upsert(env, store, &id, body, unix_now()).await?,
                200,
            )
        }
        (AdminRoute::Partner(raw), Method::Delete) => {
            delete_partner(env, store, &parse_partner_id(raw)?).await
        }
        (AdminRoute::Partner(raw), _) => {
            let id = parse_partner_id(raw)?;
            let record = store
                .partner_uncached(&id)
                .await?
                .ok_or_else(partner_not_found)?;
            json(&record.view(), 200)
        }
    }
}

/// `GET /v1/admin/partners?limit=&cursor=`: one page of partners (the console's picker).
async fn partners(req: &Request, cfg: &Config, store: &Store) -> ApiResult<Response> {
    let url = req.url().map_err(ApiError::internal)?;
    let q = query::parse(url.query().unwrap_or(""), &["limit", "cursor"])?;
    let limit = query::limit(q.get("limit").map(String::as_str), 100, 1000)?;
    const SCOPE: &str = "partners";
    let kv = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(raw) => Some(cursor::open(&cfg.keys, SCOPE, raw)?),
    };
    let page = store.list_partners(limit, kv).await?;
    let mut partners = Vec::with_capacity(page.items.len());
    for id in &page.items {
        if let Some(p) = store.partner(id).await? {
            partners.push(p.view());
        }
    }
    json(
        &PartnerList {
            partners,
            cursor: page.next.map(|c| cursor::issue(&cfg.keys, SCOPE, &c)),
        },
        200,
    )
}

fn partner_not_found() -> ApiError {
    ApiError::new(ErrorCode::PartnerNotFound, "No such partner.")
}

/// `GET /v1/admin/stats`: connections by status (from KV list metadata, 1,000 per list call) and
/// the refresh outcomes of the last 24 hours.
async fn stats_answer(env: &Env, store: &Store) -> ApiResult<Response> {
    let mut out = AdminStats {
        as_of: rfc3339(unix_now()),
        ..AdminStats::default()
    };
    let mut cursor = None;
    loop {
        let page = store.list_all_connections(LIST_PAGE, cursor).await?;
        for (_, meta) in &page.items {
            out.connections.total += 1;
            match meta.status {
                ConnectionStatus::Active => out.connections.active += 1,
                ConnectionStatus::NeedsReauth => out.connections.needs_reauth += 1,
                ConnectionStatus::Exported => out.connections.exported += 1,
            }
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut cursor = None;
    loop {
        let page = store.list_partners(LIST_PAGE, cursor).await?;
        out.partners += page.items.len() as u64;
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let t = stats::refresh_tally(env).await?;
    out.refreshes_last_24h = RefreshCounts {
        succeeded: t.succeeded,
        failed: t.failed,
        needs_reauth: t.needs_reauth,
    };
    out.keap_quota = stats::keap_quota(env).await?;
    out.proxy_last_24h = stats::proxy_tally(env).await?;
    out.keap_events_last_24h = keaplink_core::stats::keap_counts(stats::keap_tally(env).await?);
    json(&out, 200)
}

/// `POST /v1/admin/reseal?cursor=&limit=`: one page of the key-rotation walk, partners first
/// (their session secrets), then connections (through their guards).
async fn reseal(req: &Request, env: &Env, cfg: &Config, store: &Store) -> ApiResult<Response> {
    let url = req.url().map_err(ApiError::internal)?;
    let q = query::parse(url.query().unwrap_or(""), &["limit", "cursor"])?;
    let limit = query::limit(q.get("limit").map(String::as_str), 40, 500)?;
    let at = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => ResealAt::Partners(None),
        Some(raw) => {
            let inner = cursor::open(&cfg.keys, ResealAt::SCOPE, raw)?;
            ResealAt::parse(&inner).ok_or_else(cursor::invalid)?
        }
    };
    let mut report = ResealReport::default();
    let next = match &at {
        ResealAt::Partners(kv) => {
            report.phase = "partners".into();
            let page = store.list_partners(limit, kv.clone()).await?;
            for id in &page.items {
                if let Some(outcome) = partner_guard::reseal(env, id).await? {
                    outcome.count_into(&mut report);
                }
            }
            at.after(page.next)
        }
        ResealAt::Connections(kv) => {
            report.phase = "connections".into();
            let page = store.list_connection_keys(limit, kv.clone()).await?;
            for key in &page.items {
                if let Some(outcome) = guard::reseal(env, key).await? {
                    outcome.count_into(&mut report);
                }
            }
            at.after(page.next)
        }
    };
    report.cursor = next.map(|n| cursor::issue(&cfg.keys, ResealAt::SCOPE, &n.inner()));
    json(&report, 200)
}

/// Deletes the partner at once (its key and sessions stop working), then its connections through
/// the queue: their tokens are destroyed and no sweep keeps them alive.
async fn delete_partner(env: &Env, store: &Store, id: &PartnerId) -> ApiResult<Response> {
    if !partner_guard::delete(env, store, id).await? {
        return Err(partner_not_found());
    }
    let purge = Job::Purge {
        partner: id.clone(),
        before: unix_now(),
        cursor: None,
    };
    enqueue(env, vec![purge]).await?;
    empty(204)
}
