//! One Durable Object that paces refreshes fanned out through the queue, across every isolate:
//! Keap allows an OAuth client about 1,500 token calls a minute over all its apps. The rule
//! (a token bucket whose rate a 429 halves) is `keaplink_core::pace`.

use keaplink_core::pace::{Pace, PaceGrant};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

pub const PACER_BINDING: &str = "REFRESH_PACER";

#[derive(Serialize, Deserialize)]
pub struct Ask {
    /// Refreshes the caller would like to start now.
    pub want: u32,
    /// The caller's last refreshes met a 429.
    pub throttled: bool,
}

#[durable_object(fetch)]
pub struct RefreshPacer {
    pace: RefCell<Option<Pace>>,
    env: Env,
}

impl DurableObject for RefreshPacer {
    fn new(_state: State, env: Env) -> Self {
        Self {
            pace: RefCell::new(None),
            env,
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let ask: Ask = req.json().await?;
        let configured = self
            .env
            .var("KEAP_REFRESH_RATE_PER_MIN")
            .ok()
            .and_then(|v| v.to_string().parse::<f64>().ok())
            .filter(|r| *r > 0.0)
            .unwrap_or(1200.0);
        let now = worker::Date::now().as_millis() as f64;
        // No await below: the whole decision runs without interleaving.
        let mut slot = self.pace.borrow_mut();
        let pace = slot.get_or_insert_with(|| Pace::new(configured, now));
        pace.configure(configured);
        let grant = pace.take(ask.want, ask.throttled, now);
        Response::from_json(&grant)
    }
}

/// Asks the pacer for up to `want` slots.
pub async fn ask(env: &Env, want: u32, throttled: bool) -> worker::Result<PaceGrant> {
    let ask = Ask { want, throttled };
    crate::durable::call(env, PACER_BINDING, "keap-token-endpoint", &ask).await
}
