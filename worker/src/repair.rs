//! `/link/<token>`: the repair link's page, hosted by keaplink for a user who is not on the
//! partner's page. `GET` shows the page and changes nothing (mail scanners open links); the
//! page's button `POST`s to the same URL, which spends the link through the connection's guard
//! (once, however many presses) and starts a sign-out-first, identity-locked reconnect.

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
use keaplink_core::repair::{LinkState, Page, RepairLinkRecord, RepairToken};
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
    // Counted with the OAuth flow per address: a guesser gets throttled before any lookup.
    let check = Endpoint::Callback.per_ip(limits::client_ip(req).as_deref());
    if let Err(e) = limits::enforce(env, check).await {
        let mut resp = pages::repair(&Page::Unknown).with_status(429);
        if let Some(secs) = e.retry_after {
            let _ = resp.headers_mut().set("retry-after", &secs.to_string());
        }
        return Ok(resp);
    }
    let Some(token) = RepairToken::parse(raw_token) else {
        return Ok(pages::repair(&Page::Unknown));
    };
    let Some(link) = store.repair_link(&token).await? else {
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
    if *method != Method::Post {
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
    let record = match guard::spend_repair_link(env, &link.key, &token).await? {
        Spend::Spent(r) => r,
        Spend::Used => return Ok(pages::repair(&Page::Used)),
        Spend::Gone => return Ok(pages::repair(&Page::Unknown)),
    };
    // The KV copy says "used" too, for the page's next GET anywhere (the guard's is strict).
    let used = RepairLinkRecord {
        used_at: Some(now),
        ..link
    };
    store.put_repair_link(&token, &used, now).await?;
    let state = StateToken::from_random(random::bytes());
    let pending = PendingLink {
        partner: record.partner.clone(),
        user: record.user.clone(),
        origin: None,
        return_to: None,
        created_at: now,
        reconnect: Some(record.id.clone()),
        repair: true,
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
