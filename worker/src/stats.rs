//! Operations figures behind `GET /v1/admin/stats`, in one Durable Object class: refresh
//! outcomes counted by hour (the rules are `keaplink_core::stats`), and, in a second object of
//! it, the proxy's board: proxied calls by outcome and the picture of Keap's quota every isolate
//! trades its own for every few seconds (the rules are `keaplink_core::{proxy, quota}`).

use crate::clock::{now_ms, unix_now};
use crate::config::Config;
use crate::durable;
use crate::log::{self, Level};
use keaplink_api::proxy::{KeapQuota, ProxyCounts};
use keaplink_core::proxy::ProxyTally;
use keaplink_core::quota::QuotaView;
use keaplink_core::stats::{
    HourlyTally, KeapEventOutcome, KeapEventTally, RefreshOutcome, RefreshTally,
};
use keaplink_core::ApiResult;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::future::Future;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

pub const STATS_BINDING: &str = "OPS_STATS";
const TALLY: &str = "tally";
/// Keap's events, counted by hour (in the refresh outcomes' object).
const KEAP_EVENTS: &str = "keap-events";
/// The object that keeps the proxy's board, and its storage key.
const PROXY_OBJECT: &str = "keap-proxy";
const BOARD: &str = "proxy-tally";
/// The board's counts are written at most this often: isolates report every few seconds, and a
/// restart loses at most these last seconds of counts.
const BOARD_WRITE_DELAY_MS: i64 = 10_000;

#[derive(Serialize, Deserialize)]
/// Externally tagged: an internally tagged enum is read through serde's buffered `Content`, which
/// doubles every payload type's decoding code in the wasm (about 10 KB gzip for the board's).
#[serde(rename_all = "snake_case")]
enum Cmd {
    Record {
        outcome: RefreshOutcome,
    },
    Read,
    /// What became of Keap's events: counted (`Some`) or read (`None`).
    Keap {
        keap: Option<KeapEventOutcome>,
    },
    /// An isolate's report: what it saw of Keap's quota and what it counted; answers the
    /// shared picture.
    ProxySync {
        seen: QuotaView,
        counts: ProxyCounts,
    },
    ProxyRead,
}

#[derive(Debug, Default)]
struct Board {
    quota: QuotaView,
    tally: ProxyTally,
}

#[derive(Serialize, Deserialize)]
struct BoardView {
    quota: QuotaView,
    last_24h: ProxyCounts,
}

#[cfg(feature = "objects")]
#[durable_object(alarm)]
pub struct OpsStats {
    state: State,
    tally: RefCell<Option<HourlyTally>>,
    board: RefCell<Option<Board>>,
    /// A board write is scheduled (an alarm).
    dirty: Cell<bool>,
}

#[cfg(feature = "objects")]
impl DurableObject for OpsStats {
    fn new(state: State, _env: Env) -> Self {
        Self {
            state,
            tally: RefCell::new(None),
            board: RefCell::new(None),
            dirty: Cell::new(false),
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        // Only the counts: the quota picture is seconds old news that the isolates' next
        // reports bring back after a restart.
        let snapshot = self.board.borrow().as_ref().map(|b| b.tally.clone());
        if let Some(tally) = snapshot {
            durable::storage(&self.state).put(BOARD, &tally).await?;
        }
        self.dirty.set(false);
        Response::empty()
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let cmd: Cmd = match durable::command(&mut req, STATS_BINDING).await {
            Ok(c) => c,
            Err(e) => return durable::reply::<()>(Err(e)),
        };
        match cmd {
            Cmd::Record { outcome } => self.refresh_command(Some(outcome)).await,
            Cmd::Read => self.refresh_command(None).await,
            Cmd::Keap { keap } => durable::reply(self.keap_command(keap).await),
            board => self.board_command(board).await,
        }
    }
}

#[cfg(feature = "objects")]
impl OpsStats {
    /// Counts a refresh outcome (`Some`) or reads the last 24 hours' (`None`).
    async fn refresh_command(&self, record: Option<RefreshOutcome>) -> worker::Result<Response> {
        if self.tally.borrow().is_none() {
            let loaded = durable::storage(&self.state)
                .get::<HourlyTally>(TALLY)
                .await?
                .unwrap_or_default();
            self.tally.borrow_mut().get_or_insert(loaded);
        }
        let now = unix_now();
        match record {
            Some(outcome) => {
                // Counted in memory without an await in between, then stored.
                let snapshot = {
                    let mut slot = self.tally.borrow_mut();
                    let t = slot.get_or_insert_with(HourlyTally::default);
                    t.add(now, outcome, 1);
                    t.clone()
                };
                durable::storage(&self.state).put(TALLY, &snapshot).await?;
                durable::reply(Ok(()))
            }
            None => {
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

    /// Counts what became of Keap's events (`Some`), or reads the last 24 hours' (`None`).
    async fn keap_command(&self, record: Option<KeapEventOutcome>) -> ApiResult<RefreshTally> {
        let st = durable::storage(&self.state);
        let fail = keaplink_core::ApiError::internal;
        let mut t: KeapEventTally = st.get(KEAP_EVENTS).await.map_err(fail)?.unwrap_or_default();
        let now = unix_now();
        if let Some(o) = record {
            t.add(now, o);
            st.put(KEAP_EVENTS, &t).await.map_err(fail)?;
        }
        Ok(t.last_24h(now))
    }

    async fn board_command(&self, cmd: Cmd) -> worker::Result<Response> {
        if self.board.borrow().is_none() {
            let tally = durable::storage(&self.state)
                .get::<ProxyTally>(BOARD)
                .await?
                .unwrap_or_default();
            let loaded = Board {
                quota: QuotaView::default(),
                tally,
            };
            self.board.borrow_mut().get_or_insert(loaded);
        }
        let now = now_ms();
        match cmd {
            Cmd::ProxySync { seen, counts } => {
                // Merged in memory without an await in between; written later, once.
                let shared = {
                    let mut slot = self.board.borrow_mut();
                    let board = slot.get_or_insert_with(Board::default);
                    board.quota.merge(&seen, now);
                    board.tally.add(unix_now(), &counts);
                    board.quota.clone()
                };
                if !self.dirty.replace(true) {
                    durable::storage(&self.state)
                        .set_alarm(BOARD_WRITE_DELAY_MS)
                        .await?;
                }
                durable::reply(Ok(shared))
            }
            _ => {
                let view = self.board.borrow().as_ref().map(|b| BoardView {
                    quota: b.quota.clone(),
                    last_24h: b.tally.last_24h(unix_now()),
                });
                durable::reply(Ok(view))
            }
        }
    }
}

fn ask<A: serde::de::DeserializeOwned>(env: &Env, cmd: &Cmd) -> impl Future<Output = ApiResult<A>> {
    durable::call(env, STATS_BINDING, "refresh-outcomes", cmd)
}

/// Counts one refresh attempt. A failure to count is logged, never fatal.
pub async fn record_refresh(env: &Env, outcome: RefreshOutcome) {
    if let Err(e) = ask::<()>(env, &Cmd::Record { outcome }).await {
        log::event(
            Level::Error,
            "stats_record_failed",
            &[("cause", log::Field::OptStr(e.cause()))],
        );
    }
}

pub fn refresh_tally(env: &Env) -> impl Future<Output = ApiResult<RefreshTally>> {
    ask(env, &Cmd::Read)
}

/// Counts what became of one of Keap's events, deployment-wide. A failure to count is logged.
pub async fn record_keap(env: &Env, outcome: KeapEventOutcome) {
    let cmd = Cmd::Keap {
        keap: Some(outcome),
    };
    if let Err(e) = ask::<RefreshTally>(env, &cmd).await {
        log::event(
            Level::Error,
            "stats_record_failed",
            &[("cause", log::Field::OptStr(e.cause()))],
        );
    }
}

/// Keap's events of the last 24 hours, deployment-wide (in the stored shape:
/// `keaplink_core::stats::keap_counts` names them).
pub fn keap_tally(env: &Env) -> impl Future<Output = ApiResult<RefreshTally>> {
    ask(env, &Cmd::Keap { keap: None })
}

fn board(env: &Env) -> impl Future<Output = ApiResult<Option<BoardView>>> {
    durable::call(env, STATS_BINDING, PROXY_OBJECT, &Cmd::ProxyRead)
}

/// Trades an isolate's picture of Keap's quota and its counts of proxied calls for the shared
/// picture.
pub fn proxy_sync(
    env: &Env,
    seen: &QuotaView,
    counts: &ProxyCounts,
) -> impl Future<Output = ApiResult<QuotaView>> {
    let cmd = Cmd::ProxySync {
        seen: seen.clone(),
        counts: counts.clone(),
    };
    durable::call(env, STATS_BINDING, PROXY_OBJECT, &cmd)
}

/// Keap's shared quota as last seen (`None` before any proxied call met Keap).
pub async fn keap_quota(env: &Env) -> ApiResult<Option<KeapQuota>> {
    let reserve = Config::cached(env)?.quota_reserve;
    Ok(board(env)
        .await?
        .and_then(|b| b.quota.to_api(reserve, now_ms())))
}

/// The deployment's shared picture of Keap's quota (`None` before any call met Keap).
pub async fn shared_quota(env: &Env) -> ApiResult<Option<QuotaView>> {
    Ok(board(env).await?.map(|b| b.quota))
}

/// Proxied calls of the last 24 hours, by outcome.
pub async fn proxy_tally(env: &Env) -> ApiResult<ProxyCounts> {
    Ok(board(env).await?.map(|b| b.last_24h).unwrap_or_default())
}
