//! The v1 endpoints: admin, widget-facing (`/v1/me`) and partner back-end.

use crate::auth::Session;
use crate::config::Config;
use crate::guard::{self, Answer, Purpose};
use crate::http::{empty, internal, json, read_json, ApiResult};
use crate::partner_guard;
use crate::random;
use crate::store::Store;
use keaplink_api::ConnectionStatus;
use keaplink_api::{
    AdminStats, ConnectRequest, ConnectResponse, MyConnections, PartnerConnection,
    PartnerConnections, PartnerUpsert, RefreshCounts, ResealReport, TokenRequest, TokenResponse,
};
use keaplink_core::clock::{rfc3339, UnixTime};
use keaplink_core::connection::{
    partner_prefix, user_prefix, ConnectionKey, ALL_CONNECTIONS_PREFIX,
};
use keaplink_core::flow::{PendingLink, StateToken};
use keaplink_core::ids::{ConnectionId, PartnerId, UserId};
use keaplink_core::keap::{authorize_url, KeapApp};
use keaplink_core::{ApiError, ErrorCode};
use worker::{Env, Request, Response};

pub fn parse_partner_id(raw: &str) -> ApiResult<PartnerId> {
    PartnerId::parse(raw).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidId,
            "partner_id must be 1-64 of a-z, 0-9 and -.",
        )
    })
}

fn parse_connection_id(raw: &str) -> ApiResult<ConnectionId> {
    ConnectionId::parse(raw)
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidId, "That is not a connection id of ours."))
}

fn no_connection() -> ApiError {
    ApiError::new(ErrorCode::NoConnection, "No such connection.")
}

/// The connection an id from a path names, if it is this partner's.
async fn resolve(store: &Store, partner: &PartnerId, raw_id: &str) -> ApiResult<ConnectionKey> {
    let id = parse_connection_id(raw_id)?;
    store
        .resolve_id(partner, &id)
        .await?
        .ok_or_else(no_connection)
}

// ---- admin ---------------------------------------------------------------------------------

/// `GET /v1/admin/stats`: connections by status (from KV list metadata, 1,000 per list call) and
/// the refresh outcomes of the last 24 hours.
pub async fn stats(env: &Env, store: &Store, now: UnixTime) -> ApiResult<Response> {
    let mut out = AdminStats {
        as_of: rfc3339(now),
        ..AdminStats::default()
    };
    let mut cursor = None;
    loop {
        let (items, next) = store
            .list_connections(ALL_CONNECTIONS_PREFIX, 1000, cursor)
            .await?;
        for (_, meta) in items {
            out.connections.total += 1;
            match meta.to_api().status {
                ConnectionStatus::Active => out.connections.active += 1,
                ConnectionStatus::NeedsReauth => out.connections.needs_reauth += 1,
            }
        }
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut cursor = None;
    loop {
        let (names, next) = store.list_keys("p/", 1000, cursor).await?;
        out.partners += names.len() as u64;
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let t = crate::ops::refresh_tally(env).await.map_err(internal)?;
    out.refreshes_last_24h = RefreshCounts {
        succeeded: t.succeeded,
        failed: t.failed,
        needs_reauth: t.needs_reauth,
    };
    json(&out, 200)
}

/// `POST /v1/admin/reseal?cursor=&limit=`: one page of the key-rotation walk, partners first
/// (their session secrets), then connections (through their guards). The cursor says which.
pub async fn reseal(req: &Request, env: &Env, store: &Store) -> ApiResult<Response> {
    let url = req.url().map_err(internal)?;
    let mut cursor = None;
    let mut limit = 40u64;
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "cursor" => cursor = Some(v.into_owned()),
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=500).contains(n))
                    .ok_or_else(|| {
                        ApiError::new(ErrorCode::InvalidRequest, "limit must be 1-500.")
                    })?
            }
            _ => {}
        }
    }
    // "p" / "p:<kv cursor>": partners; "c" / "c:<kv cursor>": connections.
    let cursor = cursor.unwrap_or_else(|| "p".into());
    let (phase, kv_cursor) = cursor.split_once(':').unwrap_or((cursor.as_str(), ""));
    let bad_cursor = || ApiError::new(ErrorCode::InvalidRequest, "That cursor is not ours.");
    // A KV cursor that KV refuses is the caller's mistake, not ours.
    let list_page = |prefix: &'static str| async move {
        store
            .list_keys(prefix, limit, Some(kv_cursor.to_owned()))
            .await
            .map_err(|e| {
                if kv_cursor.is_empty() {
                    e
                } else {
                    bad_cursor()
                }
            })
    };
    let mut report = ResealReport::default();
    let next = match phase {
        "p" => {
            let (names, next) = list_page("p/").await?;
            for name in names {
                let Some(id) = name.strip_prefix("p/").and_then(PartnerId::parse) else {
                    continue;
                };
                if let Some(outcome) = partner_guard::reseal(env, &id).await? {
                    outcome.count_into(&mut report);
                }
            }
            Some(next.map_or_else(|| "c".to_owned(), |c| format!("p:{c}")))
        }
        "c" => {
            let (names, next) = list_page(ALL_CONNECTIONS_PREFIX).await?;
            for name in names {
                let Some(key) = ConnectionKey::parse(&name) else {
                    continue;
                };
                if let Some(outcome) = guard::reseal(env, &key).await.map_err(internal)? {
                    outcome.count_into(&mut report);
                }
            }
            next.map(|c| format!("c:{c}"))
        }
        _ => return Err(bad_cursor()),
    };
    report.cursor = next;
    json(&report, 200)
}

/// Creates or changes a partner, through its guard: one writer per partner, so a rotation and a
/// re-seal walk never undo each other.
pub async fn put_partner(
    req: &mut Request,
    env: &Env,
    store: &Store,
    id: &PartnerId,
    now: UnixTime,
) -> ApiResult<Response> {
    let body: PartnerUpsert = read_json(req, None).await?;
    let view = partner_guard::upsert(env, store, id, body, now).await?;
    json(&view, 200)
}

fn partner_not_found() -> ApiError {
    ApiError::new(ErrorCode::PartnerNotFound, "No such partner.")
}

pub async fn get_partner(store: &Store, id: &PartnerId) -> ApiResult<Response> {
    let record = store
        .partner_uncached(id)
        .await?
        .ok_or_else(partner_not_found)?;
    json(&record.view(), 200)
}

/// Deletes the partner at once (its key and sessions stop working), then its connections through
/// the queue: their tokens are destroyed and no sweep keeps them alive.
pub async fn delete_partner(
    env: &Env,
    store: &Store,
    id: &PartnerId,
    now: UnixTime,
) -> ApiResult<Response> {
    if !partner_guard::delete(env, store, id).await? {
        return Err(partner_not_found());
    }
    crate::sweep::enqueue(
        env,
        vec![crate::sweep::Job::Purge {
            partner: id.as_str().to_owned(),
            before: now,
            cursor: None,
        }],
    )
    .await
    .map_err(internal)?;
    empty(204)
}

// ---- widget-facing --------------------------------------------------------------------------

/// A user has a handful of links; one page of this size covers them all.
const MY_CONNECTIONS_PAGE: u64 = 1000;

pub async fn my_connections(store: &Store, s: &Session) -> ApiResult<Response> {
    let (items, _) = store
        .list_connections(
            &user_prefix(&s.partner_id, &s.user),
            MY_CONNECTIONS_PAGE,
            None,
        )
        .await?;
    let connections = items.into_iter().map(|(_, m)| m.to_api()).collect();
    json(&MyConnections { connections }, 200)
}

pub async fn connect(
    req: &mut Request,
    store: &Store,
    cfg: &Config,
    s: &Session,
    now: UnixTime,
) -> ApiResult<Response> {
    let body: ConnectRequest = read_json(req, Some(ConnectRequest::default())).await?;
    if let Some(url) = &body.return_to {
        if !s.partner.allows_return_url(url) {
            return Err(ApiError::new(
                ErrorCode::ReturnUrlNotAllowed,
                "return_to must be exactly one of the partner's return_urls.",
            ));
        }
    }
    let state = StateToken::from_random(random::bytes());
    let link = PendingLink {
        partner: s.partner_id.as_str().to_owned(),
        user: s.user.as_str().to_owned(),
        origin: s.origin.clone(),
        return_to: body.return_to,
        created_at: now,
    };
    store.put_state(&state, &link).await?;
    let url = authorize_url(
        &cfg.keap,
        &cfg.client.client_id,
        &cfg.redirect_uri(),
        state.as_str(),
        body.sign_out_first,
    );
    json(
        &ConnectResponse {
            authorize_url: url.to_string(),
        },
        200,
    )
}

pub async fn my_disconnect(
    env: &Env,
    store: &Store,
    cfg: &Config,
    s: &Session,
    raw_id: &str,
) -> ApiResult<Response> {
    let key = resolve(store, &s.partner_id, raw_id).await?;
    // The id must belong to this user, not just to this partner.
    if !key
        .as_str()
        .starts_with(&user_prefix(&s.partner_id, &s.user))
    {
        return Err(no_connection());
    }
    guard::delete(env, &key).await.map_err(internal)?;
    let mut resp = empty(204)?;
    let link = format!(
        "<{}>; rel=\"related\"; title=\"Remove the app on Keap's side in Account Central\"",
        cfg.account_central_url
    );
    let _ = resp.headers_mut().set("link", &link);
    Ok(resp)
}

// ---- partner back-end -----------------------------------------------------------------------

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
    // The partner's rate limit is asked while the connection is read: neither waits on the other.
    let lookup = async {
        let key = match body.keap_app.as_deref() {
            Some(raw) => {
                let app = KeapApp::parse(raw).ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidRequest,
                        "keap_app must be 1-64 of a-z, 0-9 and -.",
                    )
                })?;
                ConnectionKey::new(partner, &user, &app)
            }
            None => {
                let (items, _) = store
                    .list_connections(&user_prefix(partner, &user), 2, None)
                    .await?;
                match items.as_slice() {
                    [] => return Err(no_connection()),
                    [(name, _)] => {
                        ConnectionKey::parse_under(partner, name).ok_or_else(|| internal(()))?
                    }
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
        Ok::<_, ApiError>((key, record))
    };
    let (admitted, found) = futures_util::join!(admit, lookup);
    admitted?;
    let (key, mut record) = found?;
    // The hot path: a fresh token costs this one read. Anything else goes through the
    // connection's guard, which refreshes at most once however many ask at the same time.
    if !record.is_fresh(now, cfg.refresh_margin_secs) && record.status == ConnectionStatus::Active {
        record = match guard::refresh(env, &key, Purpose::Token)
            .await
            .map_err(internal)?
        {
            Answer::Record { record, .. } => *record,
            Answer::Gone => return Err(no_connection()),
            Answer::Done | Answer::Resealed { .. } => return Err(internal(())),
        };
    }
    if record.status == ConnectionStatus::NeedsReauth {
        return Err(ApiError::new(
            ErrorCode::NeedsReauth,
            "This link needs the user to reconnect their Keap account.",
        ));
    }
    // The 60 s promise counts from the answer, not from the request: a refresh takes time.
    if !record.access_still_usable(crate::store::unix_now().max(now)) {
        return Err(record
            .last_error
            .map_or_else(|| internal(()), |e| e.kind.api_error()));
    }
    let tokens = record.open_tokens(&cfg.keys, &key).map_err(internal)?;
    json(
        &TokenResponse {
            access_token: tokens.access_token.expose().to_owned(),
            expires_at: rfc3339(record.access_expires_at),
            keap_app: record.keap_app,
        },
        200,
    )
}

#[derive(serde::Deserialize)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn partner_connections(
    req: &Request,
    store: &Store,
    partner: &PartnerId,
) -> ApiResult<Response> {
    let bad = |m: &str| ApiError::new(ErrorCode::InvalidRequest, m);
    let q: ListQuery = req
        .query()
        .map_err(|_| bad("The query string is malformed."))?;
    let limit = match q.limit.as_deref() {
        None => 100,
        Some(l) => l
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| bad("limit must be a number from 1 to 1000."))?,
    };
    let cursor = q.cursor.filter(|c| !c.is_empty());
    if cursor
        .as_ref()
        .is_some_and(|c| c.len() > 1024 || c.chars().any(char::is_control))
    {
        return Err(bad("cursor is not one we gave out."));
    }
    let (items, cursor) = store
        .list_connections(&partner_prefix(partner), limit, cursor)
        .await
        .map_err(|_| bad("cursor is not one we gave out."))?;
    let connections = items
        .into_iter()
        .map(|(_, m)| PartnerConnection {
            connection: m.to_api(),
            user: m.user,
        })
        .collect();
    json(
        &PartnerConnections {
            connections,
            cursor,
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
    guard::delete(env, &key).await.map_err(internal)?;
    empty(204)
}
