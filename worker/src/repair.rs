//! `/link/<token>`: the repair link's page, hosted by keaplink for a user who is not on the
//! partner's page. `GET` shows the page and changes nothing (mail scanners open links); the
//! page's button `POST`s to the same URL, which counts an attempt through the connection's guard
//! and starts a sign-out-first, identity-locked reconnect. The link is spent by the restore it
//! brings about (the callback tells the guard); a refused or cancelled attempt ends on a page
//! whose Try again `POST`s to `/link/again/<state>`, another attempt of the same link, while
//! attempts are left.

use crate::config::Config;
use crate::guard::{self, Spend};
use crate::limits;
use crate::pages;
use crate::random;
use crate::store::Store;
use keaplink_core::clock::UnixTime;
use keaplink_core::flow::{PendingLink, StateToken};
use keaplink_core::keap::authorize_url;
use keaplink_core::limits::Endpoint;
use keaplink_core::repair::{LinkState, Page, RepairAttempt, RepairHandle, RepairToken};
use keaplink_core::ApiResult;
use worker::{Env, Method, Request, Response};

/// Answers `GET` or `POST /link/<token>`.
pub async fn handle(
    req: &Request,
    env: &Env,
    cfg: &Config,
    store: &Store,
    raw_token: &str,
    method: &Method,
    now: UnixTime,
) -> ApiResult<Response> {
    if let Some(limited) = throttled(req, env).await {
        return Ok(limited);
    }
    let Some(token) = RepairToken::parse(raw_token) else {
        return Ok(pages::repair(&Page::Unknown));
    };
    attempt(
        env,
        cfg,
        store,
        &token.handle(),
        *method == Method::Post,
        now,
    )
    .await
}

/// Answers `POST /link/again/<state>`: the Try again of a refused or cancelled attempt, whose
/// page holds a state naming the link (never its token).
pub async fn again(
    req: &Request,
    env: &Env,
    cfg: &Config,
    store: &Store,
    raw_state: &str,
    now: UnixTime,
) -> ApiResult<Response> {
    if let Some(limited) = throttled(req, env).await {
        return Ok(limited);
    }
    let Some(state) = StateToken::parse(raw_state) else {
        return Ok(pages::repair(&Page::Unknown));
    };
    // Taken: a Try again button works once (a second press finds nothing).
    let pending = store.take_state(&state).await?;
    let Some(link) = pending.and_then(|p| p.repair_attempt).map(|a| a.link) else {
        return Ok(pages::repair(&Page::Unknown));
    };
    attempt(env, cfg, store, &link, true, now).await
}

/// Counted with the OAuth flow per address: a guesser gets throttled before any lookup.
async fn throttled(req: &Request, env: &Env) -> Option<Response> {
    let check = Endpoint::Callback.per_ip(limits::client_ip(req).as_deref());
    let e = limits::enforce(env, check).await.err()?;
    let mut resp = pages::repair(&Page::Unknown).with_status(429);
    if let Some(secs) = e.retry_after {
        let _ = resp.headers_mut().set("retry-after", &secs.to_string());
    }
    Some(resp)
}

/// The link's page (`go`: false), or an attempt of it: counted by the guard, then to Keap.
async fn attempt(
    env: &Env,
    cfg: &Config,
    store: &Store,
    handle: &RepairHandle,
    go: bool,
    now: UnixTime,
) -> ApiResult<Response> {
    let Some(link) = store.repair_link(handle).await? else {
        return Ok(pages::repair(&Page::Unknown));
    };
    match link.state(now) {
        LinkState::Used => return Ok(pages::repair(&Page::Used)),
        LinkState::Expired => return Ok(pages::repair(&Page::Expired)),
        LinkState::Usable => {}
    }
    let (Some(partner), Some(record)) = (
        store.partner(&link.partner).await?,
        store.connection(&link.key).await?,
    ) else {
        return Ok(pages::repair(&Page::Unknown));
    };
    if !go {
        let api = record.to_api();
        let app = match &api.keap_app_name {
            Some(name) => format!("{name} ({})", api.keap_app),
            None => api.keap_app.clone(),
        };
        return Ok(pages::repair(&Page::Ready {
            partner: &partner.name,
            app: &app,
            email: &record.keap_email,
            expires_at: link.expires_at,
        }));
    }
    // The link's own fields (partner, user, id) do not change: the KV copy read above names them.
    let n = match guard::try_repair_link(env, &link.key, handle).await? {
        Spend::Go(n) => n,
        Spend::Used => return Ok(pages::repair(&Page::Used)),
        Spend::Exhausted => return Ok(pages::repair(&Page::Exhausted)),
        Spend::Gone => return Ok(pages::repair(&Page::Unknown)),
    };
    let state = StateToken::from_random(random::bytes());
    let pending = PendingLink {
        partner: record.partner.clone(),
        user: record.user.clone(),
        origin: None,
        return_to: None,
        created_at: now,
        reconnect: Some(record.id.clone()),
        repair: true,
        repair_attempt: Some(RepairAttempt {
            link: handle.clone(),
            attempt: n,
        }),
    };
    store.put_state(&state, &pending).await?;
    // Always through the sign-out hop: whoever used this browser before must not be linked.
    let to = authorize_url(
        &cfg.keap,
        &cfg.client.client_id,
        &cfg.redirect_uri(),
        state.as_str(),
        true,
    );
    let mut resp = crate::http::redirect(to.as_str(), 303)?;
    let h = resp.headers_mut();
    let _ = h.set("cache-control", "no-store");
    let _ = h.set("referrer-policy", "no-referrer");
    Ok(resp)
}
