//! The widget-facing endpoints (`/v1/me`, a partner user's session JWT): the user's links,
//! starting a Keap flow, disconnecting.

use super::{no_connection, resolve};
use crate::auth::Session;
use crate::config::Config;
use crate::guard;
use crate::http::{empty, json, read_json};
use crate::random;
use crate::store::Store;
use keaplink_api::{ConnectRequest, ConnectResponse, MyConnections};
use keaplink_core::clock::UnixTime;
use keaplink_core::flow::{PendingLink, StateToken};
use keaplink_core::keap::authorize_url;
use keaplink_core::{ApiError, ApiResult, ErrorCode};
use worker::{Env, Request, Response};

/// A user has a handful of links; one page of this size covers them all.
const MY_CONNECTIONS_PAGE: u64 = 1000;

pub async fn my_connections(store: &Store, s: &Session) -> ApiResult<Response> {
    let items = store
        .list_user_connections(&s.partner_id, &s.user, MY_CONNECTIONS_PAGE)
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
    // A reconnect names one of this user's own connections.
    let reconnect = match body.connection_id.as_deref() {
        None => None,
        Some(raw) => {
            let key = resolve(store, &s.partner_id, raw).await?;
            if !key.is_users(&s.partner_id, &s.user) {
                return Err(no_connection());
            }
            store.connection(&key).await?.ok_or_else(no_connection)?;
            keaplink_core::ids::ConnectionId::parse(raw)
        }
    };
    let state = StateToken::from_random(random::bytes());
    let link = PendingLink {
        partner: s.partner_id.clone(),
        user: s.user.clone(),
        origin: s.origin.clone(),
        return_to: body.return_to,
        created_at: now,
        reconnect,
        repair: false,
        repair_attempt: None,
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

/// The link an id from a path names, if it is this session's user's (not just this partner's).
async fn users_link(
    store: &Store,
    s: &Session,
    raw_id: &str,
) -> ApiResult<keaplink_core::connection::ConnectionKey> {
    let key = resolve(store, &s.partner_id, raw_id).await?;
    if !key.is_users(&s.partner_id, &s.user) {
        return Err(no_connection());
    }
    Ok(key)
}

pub async fn my_disconnect(
    env: &Env,
    store: &Store,
    cfg: &Config,
    s: &Session,
    raw_id: &str,
) -> ApiResult<Response> {
    let key = users_link(store, s, raw_id).await?;
    guard::delete(env, &key).await?;
    let mut resp = empty(204)?;
    let link = format!(
        "<{}>; rel=\"related\"; title=\"Remove the app on Keap's side in Account Central\"",
        cfg.account_central_url
    );
    let _ = resp.headers_mut().set("link", &link);
    Ok(resp)
}

/// `GET /v1/me/connections/{id}/assistants`: the MCP clients acting in one of the user's links.
pub async fn my_assistants(
    env: &Env,
    store: &Store,
    s: &Session,
    raw_id: &str,
) -> ApiResult<Response> {
    let key = users_link(store, s, raw_id).await?;
    let assistants = guard::mcp_list(env, &key).await?;
    json(&keaplink_api::Assistants { assistants }, 200)
}

/// `DELETE /v1/me/connections/{id}/assistants/{assistant_id}`: ends that MCP client's access now.
pub async fn revoke_assistant(
    env: &Env,
    store: &Store,
    s: &Session,
    raw_id: &str,
    grant: &str,
) -> ApiResult<Response> {
    let key = users_link(store, s, raw_id).await?;
    if !guard::mcp_revoke(env, &key, grant).await? {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "No such assistant in this link (revoked already?).",
        ));
    }
    empty(204)
}
