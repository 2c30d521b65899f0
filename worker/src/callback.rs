//! `GET /oauth/callback`: the end of the authorization-code flow.

use crate::config::Config;
use crate::guard;
use crate::keap_client::send;
use crate::log::{self, Level};
use crate::random;
use crate::store::Store;
use keaplink_core::clock::UnixTime;
use keaplink_core::connection::{ConnectionKey, ConnectionRecord, NewConnection};
use keaplink_core::flow::{
    self, answer, error_page, CallbackAnswer, CallbackQuery, LinkOutcome, PendingLink, StateToken,
};
use keaplink_core::ids::ConnectionId;
use keaplink_core::keap::{
    code_exchange_request, parse_token_response, parse_userinfo, userinfo_request, KeapFailure,
};
use keaplink_core::{ApiError, ErrorCode};
use serde_json::json;
use worker::{Env, Request, Response};

pub async fn callback(
    req: &Request,
    env: &Env,
    store: &Store,
    cfg: &Config,
    now: UnixTime,
) -> Response {
    let outcome = run(req, env, store, cfg, now).await;
    let answer = match outcome {
        Ok(a) => a,
        Err(e) => {
            log::event(
                Level::Error,
                "callback_failed",
                json!({"code": e.code.as_str(), "cause": e.cause()}),
            );
            error_page(e.code)
        }
    };
    render(answer)
}

async fn run(
    req: &Request,
    env: &Env,
    store: &Store,
    cfg: &Config,
    now: UnixTime,
) -> Result<CallbackAnswer, ApiError> {
    let url = req.url().map_err(ApiError::internal)?;
    let invalid_state = || ApiError::new(ErrorCode::InvalidState, "bad state");
    let query = flow::parse_callback_query(url.query().unwrap_or(""))
        .map_err(|code| ApiError::new(code, "bad callback query"))?;
    let raw_state = match &query {
        CallbackQuery::Code { state, .. } | CallbackQuery::Denied { state, .. } => state,
    };
    let state = StateToken::parse(raw_state).ok_or_else(invalid_state)?;
    // Taken (deleted) before anything else: a state works once, whatever follows.
    let link = store.take_state(&state).await?.ok_or_else(invalid_state)?;
    if link.is_expired(now) {
        return Err(invalid_state());
    }
    let outcome = match query {
        CallbackQuery::Denied { .. } => LinkOutcome::Failed(ErrorCode::AccessDenied),
        CallbackQuery::Code { code, .. } => {
            match link_account(env, store, cfg, &link, &code, now).await {
                Ok(id) => {
                    return Ok(answer(
                        &link,
                        LinkOutcome::Connected {
                            connection_id: id.as_str(),
                        },
                    ));
                }
                Err(e) => {
                    log::event(
                        Level::Warn,
                        "link_failed",
                        json!({"code": e.code.as_str(), "cause": e.cause()}),
                    );
                    LinkOutcome::Failed(e.code)
                }
            }
        }
    };
    Ok(answer(&link, outcome))
}

/// Exchanges the code, learns who linked which app, and stores the connection (replacing the
/// user's earlier link to the same app in place, same id).
async fn link_account(
    env: &Env,
    store: &Store,
    cfg: &Config,
    link: &PendingLink,
    code: &str,
    now: UnixTime,
) -> Result<ConnectionId, ApiError> {
    let (partner, user) = (&link.partner, &link.user);
    if store.partner(partner).await?.is_none() {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            "the partner is gone",
        ));
    }
    let exchange = code_exchange_request(&cfg.keap, &cfg.client, code, &cfg.redirect_uri());
    let answer = send(&exchange, cfg.keap_timeout_ms)
        .await
        .map_err(|f| f.api_error())?;
    let grant = parse_token_response(answer.status, &answer.body).map_err(|f| match f {
        // A refused code is Keap's "no", not a dead link.
        KeapFailure::InvalidGrant => ApiError::new(ErrorCode::KeapError, "Keap refused the code."),
        other => other.api_error(),
    })?;
    let bad = |detail: &str| ApiError::new(ErrorCode::KeapBadResponse, detail.to_owned());
    let refresh_token = grant.refresh_token.ok_or_else(|| bad("no refresh_token"))?;
    let app = grant.keap_app.ok_or_else(|| bad("no app in scope"))?;
    let who_req = userinfo_request(&cfg.keap, &grant.access_token);
    let who_answer = send(&who_req, cfg.keap_timeout_ms)
        .await
        .map_err(|f| f.api_error())?;
    let who = parse_userinfo(who_answer.status, &who_answer.body).map_err(|f| f.api_error())?;

    let key = ConnectionKey::new(partner, user, &app);
    let record = ConnectionRecord::create(
        NewConnection {
            key: &key,
            // The guard keeps the earlier id when this replaces a link.
            id: ConnectionId::from_random(random::bytes()),
            user,
            who,
            app_name: None,
            access_token: grant.access_token,
            refresh_token,
            expires_in: grant.expires_in,
            refresh_lifetime_secs: cfg.refresh.refresh_lifetime_secs,
            now,
            nonce: random::bytes(),
        },
        &cfg.keys,
    );
    Ok(guard::put(env, &key, record).await?.id)
}

/// The page for a callback refused before it was looked at (rate limits).
pub fn refused(e: &ApiError) -> Response {
    let mut resp = render(error_page(e.code));
    if let Some(secs) = e.retry_after {
        let _ = resp.headers_mut().set("retry-after", &secs.to_string());
    }
    resp
}

fn render(answer: CallbackAnswer) -> Response {
    let mut resp = match answer {
        CallbackAnswer::Redirect(to) => {
            match worker::Url::parse(&to).map(|u| Response::redirect_with_status(u, 302)) {
                Ok(Ok(r)) => r,
                _ => return render(error_page(ErrorCode::Internal)),
            }
        }
        CallbackAnswer::Page { status, html } => match Response::from_html(html) {
            Ok(r) => r.with_status(status),
            Err(_) => Response::empty()
                .expect("an empty response")
                .with_status(500),
        },
    };
    let h = resp.headers_mut();
    let _ = h.set("content-security-policy", &flow::popup_csp());
    let _ = h.set("x-frame-options", "DENY");
    let _ = h.set("referrer-policy", "no-referrer");
    let _ = h.set("cache-control", "no-store");
    let _ = h.set("x-content-type-options", "nosniff");
    resp
}
