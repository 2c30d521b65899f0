//! One Durable Object that paces refreshes fanned out through the queue, across every isolate:
//! Keap allows an OAuth client about 1,500 token calls a minute over all its apps. The rule
//! (a token bucket whose rate a 429 halves) is `keaplink_core::pace`.

use crate::clock::now_ms;
use crate::config::Config;
use crate::durable;
use keaplink_core::keap_pace::{KeapSignal, Lane};
use keaplink_core::pace::{Pace, PaceGrant};
use keaplink_core::ApiResult;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::future::Future;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

pub const PACER_BINDING: &str = "REFRESH_PACER";

#[derive(Serialize, Deserialize)]
struct Ask {
    /// Refreshes the caller would like to start now.
    want: u32,
    /// The caller's last refreshes met a 429.
    throttled: bool,
    /// What Keap's answers to the caller's last refreshes said of the quota.
    #[serde(default)]
    keap: Option<KeapSignal>,
    /// What the calls are for (refreshes unless said).
    #[serde(default)]
    lane: Lane,
}

#[cfg(feature = "objects")]
#[durable_object(fetch)]
pub struct RefreshPacer {
    pace: RefCell<Option<Pace>>,
    env: Env,
}

#[cfg(feature = "objects")]
impl DurableObject for RefreshPacer {
    fn new(_state: State, env: Env) -> Self {
        Self {
            pace: RefCell::new(None),
            env,
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let ask: Ask = match durable::command(&mut req, PACER_BINDING).await {
            Ok(c) => c,
            Err(e) => return durable::reply::<()>(Err(e)),
        };
        let configured = match Config::cached(&self.env) {
            Ok(cfg) => cfg.refresh_rate_per_min,
            Err(e) => return durable::reply::<()>(Err(e)),
        };
        let now = now_ms() as f64;
        // No await below: the whole decision runs without interleaving.
        let mut slot = self.pace.borrow_mut();
        let pace = slot.get_or_insert_with(|| Pace::new(configured, now));
        pace.configure(configured);
        if let Some(signal) = &ask.keap {
            pace.learn(signal);
        }
        durable::reply(Ok(pace.take_in(ask.lane, ask.want, ask.throttled, now)))
    }
}

/// Asks the pacer for up to `want` slots.
pub fn ask(env: &Env, want: u32, throttled: bool) -> impl Future<Output = ApiResult<PaceGrant>> {
    tell(env, want, throttled, None)
}

/// As `ask`, also telling the pacer what Keap's answers said of the quota.
pub fn tell(
    env: &Env,
    want: u32,
    throttled: bool,
    keap: Option<KeapSignal>,
) -> impl Future<Output = ApiResult<PaceGrant>> {
    call(
        env,
        Ask {
            want,
            throttled,
            keap,
            lane: Lane::Keep,
        },
    )
}

/// Asks the pacer for up to `want` slots of upkeep (checks of links' hooks): granted from the
/// same pace, and none while Keap's day is down to its last tenth (`keap_pace::Lane`).
pub fn ask_upkeep(env: &Env, want: u32) -> impl Future<Output = ApiResult<PaceGrant>> {
    call(
        env,
        Ask {
            want,
            throttled: false,
            keap: None,
            lane: Lane::Upkeep,
        },
    )
}

fn call(env: &Env, ask: Ask) -> impl Future<Output = ApiResult<PaceGrant>> {
    durable::call(env, PACER_BINDING, "keap-token-endpoint", &ask)
}
