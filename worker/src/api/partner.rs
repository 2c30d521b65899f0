//! The partner back-end's endpoints (`Authorization: Bearer <api_key>`): a fresh token for a
//! user's link, every link of the partner, disconnecting one.

use super::{no_connection, resolve};
use crate::config::Config;
use crate::guard;
use crate::http::{empty, json, json_text, read_json};
use crate::store::Store;
use keaplink_api::{
    ConnectionStatus, PartnerConnection, PartnerConnections, RepairLink, RepairLinkRequest,
    TokenRequest, TokenResponse,
};
use keaplink_core::clock::{rfc3339, UnixTime};
use keaplink_core::cursor;
use keaplink_core::ids::{PartnerId, UserId};
use keaplink_core::keap::KeapApp;
use keaplink_core::refresh::Purpose;
use keaplink_core::{query, ApiError, ApiResult, ErrorCode};
use worker::{Env, Request, Response};

// The proxy shares these with `/v1/token`; they live below both.
pub use crate::links::{find_connection, usable};

pub async fn token(
    req: &mut Request,
    env: &Env,
    store: &Store,
    cfg: &Config,
    partner: &PartnerId,
    now: UnixTime,
    admit: impl std::future::Future<Output = ApiResult<()>>,
) -> ApiResult<Response> {
    let body: TokenRequest = read_json(req, None).await?;
    let user = UserId::parse(&body.user).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "user must be 1-256 characters without control characters.",
        )
    })?;
    let app = body
        .keap_app
        .as_deref()
        .map(|raw| {
            KeapApp::parse(raw).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    "keap_app must be 1-64 of a-z, 0-9 and -.",
                )
            })
        })
        .transpose()?;
    // The partner's rate limit is asked while the connection is read: neither waits on the other.
    let (admitted, found) =
        futures_util::join!(admit, find_connection(store, partner, &user, app.as_ref()));
    admitted?;
    let (key, record) = found?;
    // The hot path: a fresh token costs the one read above. Anything else goes through the
    // connection's guard, which refreshes at most once however many ask at the same time.
    let record = usable(env, cfg, &key, record, Purpose::Token, now).await?;
    let tokens = record
        .open_tokens(&cfg.keys, &key)
        .map_err(|e| ApiError::internal(format!("the connection's tokens do not open ({e:?})")))?;
    json(
        &TokenResponse {
            access_token: tokens.access_token.expose().to_owned(),
            expires_at: rfc3339(record.access_expires_at),
            keap_app: record.keap_app.as_str().to_owned(),
        },
        200,
    )
}

/// `GET /v1/connections?limit=&cursor=&status=&q=`: every link of the partner, from KV
/// metadata; with `q` (a prefix of a Keap email, app id or partner user id) or
/// `status=needs_reauth`, from the search index (each row then costs one read, so a page holds
/// at most 100).
pub async fn partner_connections(
    req: &Request,
    store: &Store,
    cfg: &Config,
    partner: &PartnerId,
) -> ApiResult<Response> {
    let url = req.url().map_err(ApiError::internal)?;
    let q = query::parse(
        url.query().unwrap_or(""),
        &["limit", "cursor", "status", "q"],
    )?;
    let status = match q.get("status").map(String::as_str) {
        None | Some("") => None,
        Some("active") => Some(ConnectionStatus::Active),
        Some("needs_reauth") => Some(ConnectionStatus::NeedsReauth),
        Some("exported") => Some(ConnectionStatus::Exported),
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "status must be active, needs_reauth or exported.",
            ))
        }
    };
    let search = match q.get("q").map(|t| t.trim()).filter(|t| !t.is_empty()) {
        None => None,
        Some(text) if text.chars().count() > keaplink_core::search::MAX_TERM_CHARS => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "q must be at most 128 characters.",
            ))
        }
        Some(text) => keaplink_core::search::prefix(partner, text),
    };
    let indexed = search.clone().or_else(|| {
        (status == Some(ConnectionStatus::NeedsReauth))
            .then(|| keaplink_core::search::needs_reauth_prefix(partner))
    });
    let max = if indexed.is_some() { 100 } else { 1000 };
    let limit = query::limit(q.get("limit").map(String::as_str), 100, max)?;
    // The cursor is bound to this partner and these filters: it walks no other listing.
    let scope = format!(
        "connections:{partner}:{}:{}",
        q.get("status").map(String::as_str).unwrap_or(""),
        search.as_deref().unwrap_or("")
    );
    let kv_cursor = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(raw) => Some(cursor::open(&cfg.keys, &scope, raw)?),
    };
    let (rows, next) = match indexed {
        Some(prefix) => {
            let page = store.search(&prefix, limit, kv_cursor).await?;
            let records =
                futures_util::future::join_all(page.items.iter().map(|key| store.connection(key)))
                    .await;
            let mut rows = Vec::new();
            for record in records {
                // The index may lag a deletion by a moment: a link that is gone is left out.
                if let Some(r) = record? {
                    if r.partner == *partner && status.is_none_or(|s| s == r.status) {
                        rows.push(PartnerConnection {
                            connection: r.to_api(),
                            user: r.user.as_str().to_owned(),
                        });
                    }
                }
            }
            (rows, page.next)
        }
        None => {
            let page = store
                .list_partner_connections(partner, limit, kv_cursor)
                .await?;
            let rows = page
                .items
                .into_iter()
                .filter(|(_, m)| status.is_none_or(|s| s == m.status))
                .map(|(_, m)| PartnerConnection {
                    connection: m.to_api(),
                    user: m.user.as_str().to_owned(),
                })
                .collect();
            (rows, page.next)
        }
    };
    json(
        &PartnerConnections {
            connections: rows,
            cursor: next.map(|c| cursor::issue(&cfg.keys, &scope, &c)),
        },
        200,
    )
}

/// `POST /v1/connections/{id}/repair-link`: a single-use link the partner can send its user.
pub async fn repair_link(
    req: &mut Request,
    env: &Env,
    store: &Store,
    partner: &PartnerId,
    raw_id: &str,
) -> ApiResult<Response> {
    let body: RepairLinkRequest = read_json(req, Some(RepairLinkRequest::default())).await?;
    let ttl = keaplink_core::repair::ttl(body.ttl_secs)?;
    let key = resolve(store, partner, raw_id).await?;
    let minted = guard::mint_repair_link(env, &key, ttl)
        .await?
        .ok_or_else(no_connection)?;
    json(
        &RepairLink {
            url: minted.url,
            expires_at: rfc3339(minted.link.expires_at),
        },
        200,
    )
}

/// `POST /v1/connections/{id}/refresh`: an operator's "refresh now", whatever the link's age.
/// Answers the link as it is after the attempt (a failure shows in `status` and `last_error`).
pub async fn refresh_now(
    env: &Env,
    store: &Store,
    partner: &PartnerId,
    raw_id: &str,
) -> ApiResult<Response> {
    let key = resolve(store, partner, raw_id).await?;
    let latest = guard::refresh(env, &key, Purpose::Force)
        .await?
        .ok_or_else(no_connection)?;
    if !latest.tried && latest.record.status == ConnectionStatus::NeedsReauth {
        // Nothing was tried: only the user can restore this link.
        return Err(ApiError::new(
            ErrorCode::NeedsReauth,
            "This link needs the user to reconnect their Keap account; a refresh cannot restore it.",
        ));
    }
    json(
        &PartnerConnection {
            connection: latest.record.to_api(),
            user: latest.record.user.as_str().to_owned(),
        },
        200,
    )
}

/// `GET /v1/connections/{id}`: the link and its timeline, newest first.
pub async fn connection_detail(
    env: &Env,
    store: &Store,
    partner: &PartnerId,
    raw_id: &str,
) -> ApiResult<Response> {
    let key = resolve(store, partner, raw_id).await?;
    let detail = guard::detail(env, &key).await?.ok_or_else(no_connection)?;
    let connection = serde_json::to_string(&PartnerConnection {
        connection: detail.record.to_api(),
        user: detail.record.user.as_str().to_owned(),
    })
    .map_err(ApiError::internal)?;
    // `keaplink_api::ConnectionDetail` (the connection's fields, then `events`), its timeline as
    // the guard wrote it.
    let fields = connection.strip_suffix('}').unwrap_or(&connection);
    json_text(format!("{fields},\"events\":{}}}", detail.events), 200)
}

pub async fn partner_disconnect(
    env: &Env,
    store: &Store,
    partner: &PartnerId,
    raw_id: &str,
) -> ApiResult<Response> {
    let key = resolve(store, partner, raw_id).await?;
    guard::delete(env, &key).await?;
    empty(204)
}
