//! Operations figures behind `GET /v1/admin/stats`: refresh outcomes counted by hour in one
//! Durable Object (the rules are `keaplink_core::stats`).

use crate::clock::unix_now;
use crate::durable;
use crate::log::{self, Level};
use keaplink_core::stats::{HourlyTally, RefreshOutcome, RefreshTally};
use keaplink_core::ApiResult;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

pub const STATS_BINDING: &str = "OPS_STATS";
const TALLY: &str = "tally";

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Cmd {
    Record { outcome: RefreshOutcome },
    Read,
}

#[durable_object(fetch)]
pub struct OpsStats {
    state: State,
    tally: RefCell<Option<HourlyTally>>,
}

impl DurableObject for OpsStats {
    fn new(state: State, _env: Env) -> Self {
        Self {
            state,
            tally: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let cmd: Cmd = match req.json().await {
            Ok(c) => c,
            Err(e) => return durable::reply::<()>(Err(durable::unreadable(STATS_BINDING, e))),
        };
        if self.tally.borrow().is_none() {
            let loaded = self
                .state
                .storage()
                .get::<HourlyTally>(TALLY)
                .await?
                .unwrap_or_default();
            self.tally.borrow_mut().get_or_insert(loaded);
        }
        let now = unix_now();
        match cmd {
            Cmd::Record { outcome } => {
                // Counted in memory without an await in between, then stored.
                let snapshot = {
                    let mut slot = self.tally.borrow_mut();
                    let t = slot.get_or_insert_with(HourlyTally::default);
                    t.add(now, outcome, 1);
                    t.clone()
                };
                self.state.storage().put(TALLY, &snapshot).await?;
                durable::reply(Ok(()))
            }
            Cmd::Read => {
                let sum = self
                    .tally
                    .borrow()
                    .as_ref()
                    .map(|t| t.last_24h(now))
                    .unwrap_or_default();
                durable::reply(Ok(sum))
            }
        }
    }
}

async fn ask<A: serde::de::DeserializeOwned>(env: &Env, cmd: &Cmd) -> ApiResult<A> {
    durable::call(env, STATS_BINDING, "refresh-outcomes", cmd).await
}

/// Counts one refresh attempt. A failure to count is logged, never fatal.
pub async fn record_refresh(env: &Env, outcome: RefreshOutcome) {
    if let Err(e) = ask::<()>(env, &Cmd::Record { outcome }).await {
        log::event(
            Level::Error,
            "stats_record_failed",
            serde_json::json!({ "cause": e.cause() }),
        );
    }
}

pub async fn refresh_tally(env: &Env) -> ApiResult<RefreshTally> {
    ask(env, &Cmd::Read).await
}

/// Keap's shared quota as last seen. (`None` until the proxy reports what Keap said.)
pub async fn keap_quota(_env: &Env) -> ApiResult<Option<keaplink_api::proxy::KeapQuota>> {
    Ok(None)
}

/// Proxied calls of the last 24 hours, by outcome. (None yet: the proxy is being built.)
pub async fn proxy_tally(_env: &Env) -> ApiResult<keaplink_api::proxy::ProxyCounts> {
    Ok(keaplink_api::proxy::ProxyCounts::default())
}
