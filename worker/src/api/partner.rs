//! The partner back-end's endpoints (`Authorization: Bearer <api_key>`): a fresh token for a
//! user's link, every link of the partner, disconnecting one.

use super::{no_connection, resolve};
use crate::clock::unix_now;
use crate::config::Config;
use crate::guard;
use crate::http::{empty, json, read_json};
use crate::store::Store;
use keaplink_api::{
    ConnectionDetail, ConnectionStatus, PartnerConnection, PartnerConnections, RepairLink,
    RepairLinkRequest, TokenRequest, TokenResponse,
};
use keaplink_core::clock::{rfc3339, UnixTime};
use keaplink_core::connection::{ConnectionKey, ConnectionRecord};
use keaplink_core::cursor;
use keaplink_core::ids::{PartnerId, UserId};
use keaplink_core::keap::KeapApp;
use keaplink_core::refresh::{Purpose, RefreshState};
use keaplink_core::{query, ApiError, ApiResult, ErrorCode};
use worker::{Env, Request, Response};

/// The connection a partner's call names: `user` and, unless the user has exactly one link,
/// the Keap app. Shared by `/v1/token` and the proxy.
pub async fn find_connection(
    store: &Store,
    partner: &PartnerId,
    user: &UserId,
    app: Option<&KeapApp>,
) -> ApiResult<(ConnectionKey, ConnectionRecord)> {
    let key = match app {
        Some(app) => ConnectionKey::new(partner, user, app),
        None => {
            let items = store.list_user_connections(partner, user, 2).await?;
            match items.as_slice() {
                [] => return Err(no_connection()),
                [(key, _)] => key.clone(),
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::AmbiguousConnection,
                        "This user has several Keap apps linked; name one in keap_app.",
                    ))
                }
            }
        }
    };
    let record = store.connection(&key).await?.ok_or_else(no_connection)?;
    Ok((key, record))
}

/// A usable access token of `record`, refreshing it first through its guard when `purpose`
/// needs one. The hot path (a fresh token) costs nothing here: no guard call.
pub async fn usable(
    env: &Env,
    cfg: &Config,
    key: &ConnectionKey,
    mut record: ConnectionRecord,
    purpose: Purpose,
    now: UnixTime,
) -> ApiResult<ConnectionRecord> {
    if cfg
        .refresh
        .needs_refresh(&RefreshState::from(&record), &purpose, None, now)
    {
        record = guard::refresh(env, key, purpose)
            .await?
            .ok_or_else(no_connection)?
            .record;
    }
    if record.status == ConnectionStatus::NeedsReauth {
        return Err(ApiError::new(
            ErrorCode::NeedsReauth,
            "This link needs the user to reconnect their Keap account.",
        ));
    }
    // The 60 s promise counts from the answer, not from the request: a refresh takes time.
    if !record.access_still_usable(unix_now().max(now)) {
        return Err(match record.last_error {
            Some(e) => e.kind.api_error(),
            None => ApiError::internal("an active link with no usable token and no failure"),
        });
    }
    Ok(record)
}

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

/// `GET /v1/connections?limit=&cursor=`: every link of the partner, from KV metadata.
pub async fn partner_connections(
    req: &Request,
    store: &Store,
    cfg: &Config,
    partner: &PartnerId,
) -> ApiResult<Response> {
    let url = req.url().map_err(ApiError::internal)?;
    let q = query::parse(url.query().unwrap_or(""), &["limit", "cursor"])?;
    let limit = query::limit(q.get("limit").map(String::as_str), 100, 1000)?;
    let scope = format!("connections:{partner}");
    let kv_cursor = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(raw) => Some(cursor::open(&cfg.keys, &scope, raw)?),
    };
    let page = store
        .list_partner_connections(partner, limit, kv_cursor)
        .await?;
    let connections = page
        .items
        .into_iter()
        .map(|(_, m)| PartnerConnection {
            connection: m.to_api(),
            user: m.user.as_str().to_owned(),
        })
        .collect();
    json(
        &PartnerConnections {
            connections,
            cursor: page.next.map(|c| cursor::issue(&cfg.keys, &scope, &c)),
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
    json(
        &ConnectionDetail {
            connection: PartnerConnection {
                connection: detail.record.to_api(),
                user: detail.record.user.as_str().to_owned(),
            },
            events: detail.events,
        },
        200,
    )
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
