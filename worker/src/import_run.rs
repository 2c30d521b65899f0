//! One import item's way from the partner's token to a link, as the queue's consumer runs it.
//! Every step is `keaplink_core::import`'s decision; the import job (`imports`) stores each one
//! before the next Keap call, and the new link goes to its own guard, which keeps an existing
//! link as it is. Keap calls per item: a refresh (none when the partner's access token is still
//! good), userinfo, and the app's business name once per app in the import.

use crate::clock::unix_now;
use crate::config::Config;
use crate::guard::{self, Imported};
use crate::imports;
use crate::keap_client::send;
use crate::random;
use crate::store::Store;
use keaplink_api::ImportOutcome;
use keaplink_core::connection::ConnectionKey;
use keaplink_core::ids::UserId;
use keaplink_core::import::{
    after_refresh, after_userinfo, imported_link, item_aad, link_id, linked_outcome,
    should_refresh, which_app, AfterRefresh, AfterUserinfo, Claim, ImportId, ItemTokens,
    NewImported, Released, Settled, Step, WhichApp,
};
use keaplink_core::keap::{
    business_profile_request, parse_business_profile, parse_token_response, parse_userinfo,
    refresh_request, userinfo_request, KeapApp,
};
use keaplink_core::{ApiError, ApiResult};
use worker::Env;

/// What became of one run of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemRun {
    /// It has its outcome (now or before).
    Done,
    /// Try again in this many seconds (Keap throttled or failed, or another worker holds it).
    Retry { secs: u32, throttled: bool },
}

/// Runs item `index` of `import` as far as it goes now.
pub async fn run_item(
    env: &Env,
    cfg: &Config,
    store: &Store,
    import: &ImportId,
    index: u32,
) -> ApiResult<ItemRun> {
    let claimed = imports::claim(env, import, index).await?;
    let lease = match claimed.claim {
        Claim::Done => return Ok(ItemRun::Done),
        Claim::Busy(secs) => {
            return Ok(ItemRun::Retry {
                secs,
                throttled: false,
            })
        }
        Claim::Go(lease) => lease,
    };
    let aad = item_aad(import, index);
    let mut tokens = ItemTokens::open(&cfg.keys, &aad, &lease.tokens)
        .ok_or_else(|| ApiError::internal("an import item's tokens do not open with TOKEN_KEYS"))?;
    let user = UserId::parse(&claimed.user)
        .ok_or_else(|| ApiError::internal("a pending import item without a valid user"))?;
    let partner = claimed.partner;
    let hint = claimed.hint;
    let step = |s: Step| imports::step(env, import, index, s);
    let done = |s: Settled| settle(env, import, index, s);

    // The partner named the app: a link that is already there is found before any refresh, so
    // the partner's token is never spent on it.
    if let (Some(app), false) = (&hint, tokens.rotated) {
        if let Some(existing) = store
            .connection(&ConnectionKey::new(&partner, &user, app))
            .await?
        {
            return done(Settled::linked(ImportOutcome::AlreadyLinked, &existing)).await;
        }
    }

    // At most two rounds: after a refresh the tokens are keaplink's own, and neither Keap's
    // userinfo nor the app asks for another.
    let mut force_refresh = false;
    let (who, app) = loop {
        if should_refresh(&tokens, force_refresh, unix_now()) {
            // Marked before it is sent: if this worker dies now, the item is `lost`, never
            // refreshed a second time with a token Keap may already have rotated.
            if !step(Step::MarkRefresh(lease.number)).await? {
                return Ok(ItemRun::Retry {
                    secs: cfg.import_retry_secs,
                    throttled: false,
                });
            }
            let req = refresh_request(&cfg.keap, &cfg.client, &tokens.refresh_token);
            let answer = match send(&req, cfg.keap_timeout_ms).await {
                Ok(a) => parse_token_response(a.status, &a.body),
                Err(f) => Err(f),
            };
            match after_refresh(&tokens, answer, lease.doubtful, unix_now()) {
                AfterRefresh::Rotated(next) => {
                    // Stored before anything else: from here on the partner's token is dead.
                    let sealed = next.seal(&cfg.keys, &aad, random::bytes());
                    if !step(Step::StoreRotated(lease.number, sealed)).await? {
                        return Ok(ItemRun::Done);
                    }
                    tokens = *next;
                }
                AfterRefresh::Wait(released) => {
                    return wait(cfg, step(Step::Release(lease.number, released))).await
                }
                AfterRefresh::Settle(s) => return done(s).await,
            }
        }
        let Some(access) = tokens.access_token.as_ref() else {
            force_refresh = true;
            continue;
        };
        let answer = match send(&userinfo_request(&cfg.keap, access), cfg.keap_timeout_ms).await {
            Ok(a) => parse_userinfo(a.status, &a.body),
            Err(f) => Err(f),
        };
        let who = match after_userinfo(&tokens, answer) {
            AfterUserinfo::Known(who) => who,
            AfterUserinfo::Wait => {
                return wait(cfg, step(Step::Release(lease.number, Released::Untouched))).await
            }
            AfterUserinfo::Refresh => {
                force_refresh = true;
                continue;
            }
            AfterUserinfo::Settle(s) => return done(s).await,
        };
        match which_app(&tokens, &who, hint.as_ref()) {
            WhichApp::Known(app) => break (who, app),
            WhichApp::Refresh => force_refresh = true,
            WhichApp::Settle(s) => return done(s).await,
        }
    };

    let app_name = business_name(env, cfg, import, &app, &tokens).await?;
    let key = ConnectionKey::new(&partner, &user, &app);
    let own = link_id(import, index);
    let record = imported_link(
        NewImported {
            key: &key,
            user: &user,
            who,
            app_name,
            tokens,
            refresh_lifetime_secs: cfg.refresh.refresh_lifetime_secs,
            now: unix_now(),
            id: own,
            nonce: random::bytes(),
        },
        &cfg.keys,
    )
    .ok_or_else(|| ApiError::internal("an import item reached its link without an access token"))?;
    let own = record.id.clone();
    let found = match guard::import(env, &key, record).await? {
        Imported::New(r) | Imported::AlreadyLinked(r) => r,
    };
    done(linked_outcome(&own, &found)).await
}

/// The app's business name: read from Keap once per app in an import (a courtesy: a failure
/// leaves it out, never fails the item).
async fn business_name(
    env: &Env,
    cfg: &Config,
    import: &ImportId,
    app: &KeapApp,
    tokens: &ItemTokens,
) -> ApiResult<Option<String>> {
    if let Some(known) = imports::app_name(env, import, app).await? {
        return Ok(known);
    }
    let Some(access) = tokens.access_token.as_ref() else {
        return Ok(None);
    };
    let req = business_profile_request(&cfg.keap_api_url, access);
    let name = match send(&req, cfg.keap_timeout_ms).await {
        Ok(a) => parse_business_profile(a.status, &a.body),
        Err(_) => None,
    };
    imports::set_app_name(env, import, app, name.clone()).await?;
    Ok(name)
}

/// Keap throttled or failed: the item lets go (`release`) and comes back later (the pacer
/// slows every consumer too).
async fn wait(
    cfg: &Config,
    release: impl std::future::Future<Output = ApiResult<bool>>,
) -> ApiResult<ItemRun> {
    release.await?;
    Ok(ItemRun::Retry {
        secs: cfg.import_retry_secs,
        throttled: true,
    })
}

/// The item's outcome, given to it by the import's single writer (which sends
/// `import.finished` once the last one has its).
async fn settle(env: &Env, import: &ImportId, index: u32, settled: Settled) -> ApiResult<ItemRun> {
    imports::settle(env, import, index, settled).await?;
    Ok(ItemRun::Done)
}
