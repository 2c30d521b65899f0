//! Links in and out (`Authorization: Bearer <api_key>`): `POST /v1/imports` and
//! `GET /v1/imports/{id}` bring the links a partner already holds; `POST
//! /v1/connections/export` hands links out at a cut-over. The rules are `keaplink_core::import`
//! and `keaplink_core::export`; the import job (`imports`) and each link's guard store them.

use super::no_connection;
use crate::clock::unix_now;
use crate::config::Config;
use crate::guard;
use crate::http::{json, json_text, read_bytes_within, read_json};
use crate::imports;
use crate::queue::{enqueue, Job};
use crate::random;
use crate::store::Store;
use keaplink_api::{ErrorDetail, ExportFailure, ExportRequest, ExportResponse, ImportStarted};
use keaplink_core::export;
use keaplink_core::ids::PartnerId;
use keaplink_core::import::{
    item_aad, read_request, IdempotencyKey, ImportId, ImportRecord, ItemRecord,
    MAX_IMPORT_BODY_BYTES,
};
use keaplink_core::partner::PartnerRecord;
use keaplink_core::{query, ApiError, ApiResult, ErrorCode};
use worker::{Env, Request, Response};

/// `POST /v1/imports`: 202 with a new import, or 200 with the one this `idempotency-key` started
/// within the last day (nothing started again).
pub async fn start(
    req: &mut Request,
    env: &Env,
    cfg: &Config,
    partner: &PartnerId,
) -> ApiResult<Response> {
    let key = match req.headers().get("idempotency-key").ok().flatten() {
        Some(raw) => Some(IdempotencyKey::parse(&raw)?),
        None => None,
    };
    let too_large = || {
        ApiError::new(
            ErrorCode::BodyTooLarge,
            "The body is over the 1 MiB limit of an import: send at most 1,000 links a call.",
        )
    };
    let bytes = read_bytes_within(req, MAX_IMPORT_BODY_BYTES, too_large).await?;
    let now = unix_now();
    // The whole body is read and checked before anything is stored or started.
    let planned = read_request(&bytes)?;
    drop(bytes);
    let fresh = ImportId::from_random(random::bytes());
    let id = match &key {
        Some(k) => imports::remember(env, &k.object_name(partner), fresh).await?,
        None => fresh,
    };
    let items: Vec<ItemRecord> = planned
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let index = i as u32;
            let aad = item_aad(&id, index);
            p.into_record(index, |t| t.seal(&cfg.keys, &aad, random::bytes()))
        })
        .collect();
    let pending: Vec<Job> = items
        .iter()
        .filter(|i| i.is_pending())
        .map(|i| Job::Import {
            import: id.clone(),
            index: i.index,
        })
        .collect();
    let record = ImportRecord::new(id.clone(), partner.clone(), &items, now);
    let created = imports::create(env, record, items).await?;
    if created.record.partner != *partner {
        // Import ids are random: only a forged name could meet another partner's import.
        return Err(imports::no_import());
    }
    let started = ImportStarted {
        import_id: id.as_str().to_owned(),
        status: created.record.status(),
        total: created.record.total,
    };
    if !created.new {
        return json(&started, 200);
    }
    // Queued once the import is stored: each message names an item the job holds. A send that
    // fails part-way leaves items no message names: the job's watchdog queues them again.
    // (Every item settled by the body's rules alone: nothing to queue; the job's alarm sends
    // `import.finished`.)
    if !pending.is_empty() {
        enqueue(env, pending).await?;
    }
    json(&started, 202)
}

/// `GET /v1/imports/{id}?cursor=`: progress and a page of items (404 for another partner's).
pub async fn view(
    req: &Request,
    env: &Env,
    partner: &PartnerId,
    raw_id: &str,
) -> ApiResult<Response> {
    let id = ImportId::parse(raw_id)
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidId, "That is not an import id of ours."))?;
    let url = req.url().map_err(ApiError::internal)?;
    let q = query::parse(url.query().unwrap_or(""), &["cursor"])?;
    let cursor = q.get("cursor").cloned();
    json_text(imports::view(env, &id, partner, cursor).await?, 200)
}

/// `POST /v1/connections/export`: each link frozen through its guard, then its tokens handed
/// out; a link that cannot go is answered in `failed` with the reason.
pub async fn export(
    req: &mut Request,
    env: &Env,
    store: &Store,
    partner: &PartnerId,
    record: &PartnerRecord,
    request_id: &str,
) -> ApiResult<Response> {
    if !record.export_enabled {
        return Err(ApiError::new(
            ErrorCode::ExportDisabled,
            "Export is off for this partner: the deployment's operator allows it (export_enabled).",
        ));
    }
    let body: ExportRequest = read_json(req, None).await?;
    let ids = export::read_ids(&body.connection_ids)?;
    let mut out = ExportResponse {
        links: Vec::with_capacity(ids.len()),
        failed: Vec::new(),
    };
    for id in ids {
        let failed = |e: &ApiError| ExportFailure {
            connection_id: id.as_str().to_owned(),
            error: ErrorDetail {
                code: e.code.as_str().to_owned(),
                message: e.message.clone(),
            },
        };
        let key = match store.resolve_id(partner, &id).await? {
            Some(key) => key,
            None => {
                out.failed.push(failed(&no_connection()));
                continue;
            }
        };
        match guard::export(env, &key, request_id).await {
            Ok(Some(link)) => out.links.push(link),
            Ok(None) => out.failed.push(failed(&no_connection())),
            // Every link answers for itself: links frozen earlier in this request are answered
            // with their tokens whatever happens to a later one (a 500 here would lose them).
            Err(e) if e.status() < 500 => out.failed.push(failed(&e)),
            Err(e) => {
                crate::log::failure(crate::log::Level::Error, "export_failed", &e);
                out.failed.push(failed(&ApiError::new(
                    ErrorCode::Internal,
                    "This link could not be exported just now; try it again.",
                )));
            }
        }
    }
    json(&out, 200)
}
