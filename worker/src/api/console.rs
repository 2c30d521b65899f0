//! What a partner manages for itself (the console's API; `Authorization: Bearer <api_key>`, or
//! the admin token acting for a partner): its settings and secrets, its overview, its webhook
//! deliveries.

use crate::clock::unix_now;
use crate::http::{json, json_text, read_json};
use crate::partner_guard;
use crate::stats;
use crate::store::Store;
use keaplink_api::{PartnerSettings, PartnerStats};
use keaplink_core::clock::rfc3339;
use keaplink_core::deliveries::MAX_DELIVERIES;
use keaplink_core::ids::PartnerId;
use keaplink_core::partner::PartnerRecord;
use keaplink_core::stats::keap_counts;
use keaplink_core::{query, ApiError, ApiResult, ErrorCode};
use worker::{Env, Request, Response};

/// `GET /v1/partner`.
pub fn view(record: &PartnerRecord) -> ApiResult<Response> {
    json(&record.view(), 200)
}

/// `PATCH /v1/partner`: the fields named change, the checks are the admin's.
pub async fn change(
    req: &mut Request,
    env: &Env,
    store: &Store,
    id: &PartnerId,
) -> ApiResult<Response> {
    let change: PartnerSettings = read_json(req, None).await?;
    json_text(
        partner_guard::change(env, store, id, change, false, unix_now()).await?,
        200,
    )
}

/// `POST /v1/partner/rotate-secrets`: a new API key and session secret, shown once. The old ones
/// stop working at once in this isolate, within 30 s everywhere.
pub async fn rotate(env: &Env, store: &Store, id: &PartnerId) -> ApiResult<Response> {
    let view =
        partner_guard::change(env, store, id, PartnerSettings::default(), true, unix_now()).await?;
    json_text(view, 200)
}

/// `GET /v1/stats`: the partner's overview.
pub async fn overview(env: &Env, id: &PartnerId) -> ApiResult<Response> {
    let o = partner_guard::overview(env, id).await?;
    json(
        &PartnerStats {
            as_of: rfc3339(unix_now()),
            connections: o.connections,
            refreshes_last_24h: o.refreshes_last_24h,
            keap_quota: stats::keap_quota(env).await?,
            webhooks: o.webhooks,
            keap_events_last_24h: keap_counts(o.keap_events_last_24h),
        },
        200,
    )
}

/// `GET /v1/webhooks/deliveries?limit=`: newest first.
pub async fn deliveries(req: &Request, env: &Env, id: &PartnerId) -> ApiResult<Response> {
    let url = req.url().map_err(ApiError::internal)?;
    let q = query::parse(url.query().unwrap_or(""), &["limit"])?;
    let limit = query::limit(
        q.get("limit").map(String::as_str),
        50,
        MAX_DELIVERIES as u64,
    )?;
    let deliveries = partner_guard::deliveries(env, id, limit as usize).await?;
    // `keaplink_api::WebhookDeliveries`, its list as the partner guard wrote it.
    json_text(format!("{{\"deliveries\":{deliveries}}}"), 200)
}

/// `POST /v1/webhooks/deliveries/{id}/redeliver`: the same event (same id) queued again.
pub async fn redeliver(env: &Env, id: &PartnerId, raw_event: &str) -> ApiResult<Response> {
    let valid = raw_event.len() <= 40
        && raw_event.starts_with("evt_")
        && raw_event[4..].bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(ApiError::new(
            ErrorCode::InvalidId,
            "That is not a webhook event id of ours (evt_…).",
        ));
    }
    let delivery = partner_guard::redeliver(env, id, raw_event)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "No such webhook delivery."))?;
    json_text(delivery, 202)
}
