//! `GET /oauth/callback`: the end of the authorization-code flow. Exchanges the code, learns
//! who linked which app (v2 userinfo, cross-checked with the token's scope) and the app's
//! business name, and stores the link through its guard, which refuses a reconnect that signed in
//! as someone else (the identity lock). Answers the popup page, the partner's return URL, or (for
//! a repair link) the repair page.

use crate::config::Config;
use crate::guard::{self, Stored};
use crate::keap_client::send;
use crate::log::{self, Level};
use crate::pages;
use crate::random;
use crate::store::Store;
use keaplink_core::clock::UnixTime;
use keaplink_core::connection::{ConnectionKey, ConnectionRecord, NewConnection};
use keaplink_core::flow::{
    self, answer, error_page, CallbackQuery, LinkOutcome, PendingLink, StateToken,
};
use keaplink_core::identity::{self, Mismatch};
use keaplink_core::ids::ConnectionId;
use keaplink_core::keap::{
    business_profile_request, check_tenant, code_exchange_request, parse_business_profile,
    parse_token_response, parse_userinfo, userinfo_request, KeapFailure,
};
use keaplink_core::partner::PartnerRecord;
use keaplink_core::repair::{Page, RepairHandle, RepairLinkRecord};
use keaplink_core::{ApiError, ErrorCode};
use worker::{Env, Request, Response};

/// How a link attempt whose state checked out ended.
enum Linked {
    Connected(ConnectionId, Box<ConnectionRecord>),
    Failed(ErrorCode),
    Mismatch(Mismatch),
}

pub async fn callback(
    req: &Request,
    env: &Env,
    store: &Store,
    cfg: &Config,
    now: UnixTime,
) -> Response {
    match run(req, env, store, cfg, now).await {
        Ok(resp) => resp,
        Err(e) => {
            log::failure(Level::Error, "callback_failed", &e);
            pages::callback(error_page(e.code))
        }
    }
}

async fn run(
    req: &Request,
    env: &Env,
    store: &Store,
    cfg: &Config,
    now: UnixTime,
) -> Result<Response, ApiError> {
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
    let Some(partner) = store.partner(&link.partner).await? else {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            "the partner is gone",
        ));
    };
    let linked = match query {
        CallbackQuery::Denied { .. } => Linked::Failed(ErrorCode::AccessDenied),
        CallbackQuery::Code { code, .. } => {
            match link_account(env, store, cfg, &partner, &link, &code, now).await {
                Ok(l) => l,
                Err(e) => {
                    log::failure(Level::Warn, "link_failed", &e);
                    Linked::Failed(e.code)
                }
            }
        }
    };
    if link.repair {
        return repair_answer(env, store, &partner, &link, &linked, now).await;
    }
    let outcome = match &linked {
        Linked::Connected(id, _) => LinkOutcome::Connected {
            connection_id: id.as_str(),
        },
        Linked::Failed(code) => LinkOutcome::Failed(*code),
        Linked::Mismatch(m) => LinkOutcome::Mismatch(m),
    };
    Ok(pages::callback(answer(&link, outcome)))
}

/// Exchanges the code, learns who linked which app, and stores the connection through its guard
/// (a reconnect restores the link in place, same id, or is refused by the identity lock).
async fn link_account(
    env: &Env,
    store: &Store,
    cfg: &Config,
    partner: &PartnerRecord,
    link: &PendingLink,
    code: &str,
    now: UnixTime,
) -> Result<Linked, ApiError> {
    // A reconnect names its connection: it must still be there.
    let expected = match &link.reconnect {
        None => None,
        Some(id) => match store.resolve_id(&link.partner, id).await? {
            Some(key) if key.is_users(&link.partner, &link.user) => Some(key),
            _ => return Ok(Linked::Failed(ErrorCode::NoConnection)),
        },
    };
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
    check_tenant(&who, &app).map_err(|f| f.api_error())?;

    let key = ConnectionKey::new(&link.partner, &link.user, &app);
    if let Some(expected) = expected.filter(|e| *e != key) {
        // The right person may still pick the wrong app on Keap's chooser: refused, whatever
        // the partner's rule, and noted on the link it was meant for.
        let Some(record) = store.connection(&expected).await? else {
            return Ok(Linked::Failed(ErrorCode::NoConnection));
        };
        let m = identity::wrong_app(&record, &who, &app);
        guard::note_mismatch(env, &expected, m.clone()).await?;
        return Ok(Linked::Mismatch(m));
    }
    // The business name is a courtesy: a failure to read it never fails the link.
    let app_name = match send(
        &business_profile_request(&cfg.keap_api_url, &grant.access_token),
        cfg.keap_timeout_ms,
    )
    .await
    {
        Ok(a) => parse_business_profile(a.status, &a.body),
        Err(_) => None,
    };
    let record = ConnectionRecord::create(
        NewConnection {
            key: &key,
            // The guard keeps the earlier id when this replaces a link.
            id: ConnectionId::from_random(random::bytes()),
            user: &link.user,
            who,
            app_name,
            access_token: grant.access_token,
            refresh_token,
            expires_in: grant.expires_in,
            refresh_lifetime_secs: cfg.refresh.refresh_lifetime_secs,
            now,
            nonce: random::bytes(),
        },
        &cfg.keys,
    );
    Ok(
        match guard::put(env, &key, record, partner.reconnect_identity).await? {
            Stored::Linked(r) => Linked::Connected(r.id.clone(), r),
            Stored::Refused(m) => Linked::Mismatch(m),
        },
    )
}

/// The repair page after Keap: restored (which spends the link), or why not, with Try again
/// while the link has attempts left.
async fn repair_answer(
    env: &Env,
    store: &Store,
    partner: &PartnerRecord,
    link: &PendingLink,
    linked: &Linked,
    now: UnixTime,
) -> Result<Response, ApiError> {
    let attempt = link.repair_attempt.as_ref();
    let (mismatch, code) = match linked {
        Linked::Connected(_, record) => {
            if let Some(a) = attempt {
                spend(env, store, &a.link, now).await?;
            }
            let app = record.to_api();
            let label = match &app.keap_app_name {
                Some(name) => format!("{name} ({})", app.keap_app),
                None => app.keap_app.clone(),
            };
            return Ok(pages::repair(&Page::Restored {
                partner: &partner.name,
                app: &label,
            }));
        }
        Linked::Mismatch(m) => (Some(m), ErrorCode::IdentityMismatch),
        Linked::Failed(code) => (None, *code),
    };
    // Another attempt of the same link: a state the page's Try again posts, naming the link by
    // its hash (the page never holds the link's token).
    let again = match attempt.filter(|a| a.may_try_again()) {
        Some(_) => {
            let state = StateToken::from_random(random::bytes());
            let next = PendingLink {
                created_at: now,
                ..link.clone()
            };
            store.put_state(&state, &next).await?;
            Some(format!("/link/again/{}", state.as_str()))
        }
        None => None,
    };
    Ok(pages::repair(&Page::Refused {
        partner: &partner.name,
        mismatch,
        code,
        again: again.as_deref(),
    }))
}

/// A repair link's attempt restored its connection: the guard spends it (what counts), and the
/// KV copy says so for the page's next GET anywhere.
async fn spend(
    env: &Env,
    store: &Store,
    handle: &RepairHandle,
    now: UnixTime,
) -> Result<(), ApiError> {
    let Some(record) = store.repair_link(handle).await? else {
        return Ok(());
    };
    guard::repair_link_restored(env, &record.key, handle).await?;
    let used = RepairLinkRecord {
        used_at: Some(now),
        ..record
    };
    store.put_repair_link(handle, &used, now).await
}

/// The page for a callback refused before it was looked at (rate limits).
pub fn refused(e: &ApiError) -> Response {
    let mut resp = pages::callback(error_page(e.code));
    if let Some(secs) = e.retry_after {
        let _ = resp.headers_mut().set("retry-after", &secs.to_string());
    }
    resp
}
