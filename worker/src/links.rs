//! The link a partner's back-end call names (a user, and the Keap app unless the user has one
//! link), and a usable access token of it: shared by `POST /v1/token` and the proxy.

use crate::clock::unix_now;
use crate::config::Config;
use crate::guard;
use crate::store::Store;
use keaplink_api::ConnectionStatus;
use keaplink_core::clock::UnixTime;
use keaplink_core::connection::{ConnectionKey, ConnectionRecord};
use keaplink_core::ids::{PartnerId, UserId};
use keaplink_core::keap::KeapApp;
use keaplink_core::links;
use keaplink_core::refresh::{Purpose, RefreshState};
use keaplink_core::{ApiError, ApiResult, ErrorCode};
use worker::Env;

pub use keaplink_core::links::no_connection;

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
                        "This user has several Keap apps linked; name one: keap_app in the body of /v1/token, the keaplink-app header on /v1/keap/.",
                    ))
                }
            }
        }
    };
    match store.connection(&key).await? {
        Some(record) => Ok((key, record)),
        // Only on this failing path: the user's other links, to say keap_app is the wrong one.
        None => match app {
            Some(app) => {
                let limit = links::MAX_APPS_NAMED as u64 + 1;
                let others = store.list_user_connections(partner, user, limit).await?;
                Err(links::no_link_in_app(
                    app,
                    others.into_iter().map(|(k, _)| k.app()),
                ))
            }
            None => Err(no_connection()),
        },
    }
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
    if record.status == ConnectionStatus::Exported {
        return Err(keaplink_core::export::refused());
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
    // The use, when the rule wants it recorded (at most once per window per link): through the
    // guard, after the answer is sent, so the token path itself writes nothing.
    if cfg.refresh.keep.record_use(record.uses(), now).is_some() {
        TOUCHES.with(|t| t.borrow_mut().push((key.clone(), now)));
    }
    Ok(record)
}

thread_local! {
    /// Uses to record once this request is answered (`lib.rs` hands them to `waitUntil`).
    static TOUCHES: std::cell::RefCell<Vec<(ConnectionKey, UnixTime)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The uses this request asked to record, taken (the fetch handler records them after the
/// answer with [`record_uses`]).
pub fn take_uses() -> Vec<(ConnectionKey, UnixTime)> {
    TOUCHES.with(|t| std::mem::take(&mut *t.borrow_mut()))
}

/// Records uses through their guards. A failure only means the link may count as idle a while
/// longer (its next call records it): logged, never fatal.
pub async fn record_uses(env: Env, uses: Vec<(ConnectionKey, UnixTime)>) {
    for (key, at) in uses {
        if let Err(e) = guard::refresh(&env, &key, Purpose::Use { at }).await {
            crate::log::failure(crate::log::Level::Error, "use_not_recorded", &e);
        }
    }
}
