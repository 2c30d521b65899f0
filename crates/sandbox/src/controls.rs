//! `/__sandbox/*`: how tests steer the sandbox and read what it saw. Faults for the next token
//! or REST calls, counts, every issued secret (for the leak checks), token lifetimes and quirks,
//! quota limits and windows, revocation, a log of REST requests, reset and bulk token seeding.
//! The newer controls parse their own JSON and refuse unknown fields, so a typo fails loudly.

use crate::gateway::{ApiFault, ApiFaultKind, Gate};
use crate::quota::QuotaRequest;
use crate::seed::{self, USERS};
use crate::{now_ms, Fault, FaultKind, Shared};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

fn bad(why: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": why.to_string()})),
    )
        .into_response()
}

/// An empty body reads as `{}`.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body)
}

fn unknown_user(email: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": format!("no sandbox user {email:?}")})),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct FaultRequest {
    kind: FaultKind,
    #[serde(default = "one")]
    count: usize,
    #[serde(default = "default_hang_ms")]
    hang_ms: u64,
}

fn one() -> usize {
    1
}

fn default_hang_ms() -> u64 {
    30_000
}

pub(crate) async fn add_faults(State(s): State<Shared>, Json(r): Json<FaultRequest>) -> Response {
    let mut g = s.lock();
    for _ in 0..r.count.min(10_000) {
        g.faults.push_back(Fault {
            kind: r.kind,
            hang: Duration::from_millis(r.hang_ms),
        });
    }
    Json(json!({"queued": g.faults.len()})).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiFaultRequest {
    kind: ApiFaultKind,
    #[serde(default = "one")]
    count: usize,
    #[serde(default = "default_hang_ms")]
    hang_ms: u64,
}

/// `{kind: "server_error"|"unauthorized"|"hang"|"throttle"|"wrong_tenant", count?: 1,
/// hang_ms?: 30000}`.
pub(crate) async fn add_api_faults(State(s): State<Shared>, body: Bytes) -> Response {
    let r: ApiFaultRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let mut g = s.lock();
    for _ in 0..r.count.min(10_000) {
        g.api_faults.push_back(ApiFault {
            kind: r.kind,
            hang: Duration::from_millis(r.hang_ms),
        });
    }
    Json(json!({"queued": g.api_faults.len()})).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiGateRequest {
    count: usize,
    #[serde(default = "default_gate_ms")]
    timeout_ms: u64,
}

fn default_gate_ms() -> u64 {
    10_000
}

/// `{count, timeout_ms?: 10000}`: the next `count` REST calls are held until all `count` have
/// arrived, then go on together; after `timeout_ms` the gate opens for those already there.
/// Answers `{"count": n}`; a count of 0 removes a gate.
pub(crate) async fn set_api_gate(State(s): State<Shared>, body: Bytes) -> Response {
    let r: ApiGateRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    if r.count > 10_000 || r.timeout_ms > 60_000 {
        return bad("count is at most 10000 and timeout_ms at most 60000");
    }
    let mut g = s.lock();
    if let Some(old) = g.api_gate.take() {
        old.open.send_replace(true);
    }
    if r.count > 0 {
        g.api_gate = Some(Gate {
            left: r.count,
            open: tokio::sync::watch::channel(false).0,
            deadline: tokio::time::Instant::now() + Duration::from_millis(r.timeout_ms),
        });
    }
    Json(json!({ "count": r.count })).into_response()
}

pub(crate) async fn stats(State(s): State<Shared>) -> Response {
    let mut g = s.lock();
    let quota = g.quota.state(now_ms());
    Json(json!({
        "calls": g.calls,
        "refresh_calls_by_token": g.refresh_calls,
        "refresh_times_ms": g.refresh_times_ms,
        "faults_queued": g.faults.len(),
        "live_refresh_tokens": g.refresh.values().filter(|r| r.alive).count(),
        "api_calls": g.api_calls,
        "api_calls_total": g.api_calls.values().sum::<u64>(),
        "api_faults_queued": g.api_faults.len(),
        "api_gate_waiting_for": g.api_gate.as_ref().map(|gate| gate.left),
        "quota": quota,
        "chaos_played": g.chaos_played,
        "rotation": g.rotation,
        "calls_while_spent": g.calls_while_spent,
    }))
    .into_response()
}

/// Every token and SSO session this sandbox ever issued: what the tests' secrets check looks for
/// in the Worker's answers and logs.
pub(crate) async fn issued(State(s): State<Shared>) -> Response {
    let g = s.lock();
    Json(json!({
        "access_tokens": g.access.keys().collect::<Vec<_>>(),
        "refresh_tokens": g.refresh.keys().collect::<Vec<_>>(),
        "sso_sessions": g.sessions.keys().collect::<Vec<_>>(),
    }))
    .into_response()
}

/// A field that may be absent (leave it), `null` (back to the default) or a value.
fn some_or_null<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigRequest {
    /// Lifetime of access tokens issued from now on; `null`: the command line's.
    #[serde(default, deserialize_with = "some_or_null")]
    expires_in: Option<Option<u64>>,
    /// A refresh kills the earlier access tokens of that user and app (Keap may do so).
    revoke_access_on_refresh: Option<bool>,
}

/// `{expires_in?: secs | null, revoke_access_on_refresh?: bool}`; fields left out keep their value.
pub(crate) async fn set_config(State(s): State<Shared>, body: Bytes) -> Response {
    let r: ConfigRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let mut g = s.lock();
    if let Some(e) = r.expires_in {
        g.expires_in = e;
    }
    if let Some(v) = r.revoke_access_on_refresh {
        g.revoke_access_on_refresh = v;
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `{product_quota?, product_throttle?: {limit?, window_ms?, used?}, tenant_throttle?: {limit?,
/// window_ms?, used?: {app: n}}}`. Answers the quota state, as `stats` shows it.
pub(crate) async fn set_quota(State(s): State<Shared>, body: Bytes) -> Response {
    let r: QuotaRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let mut g = s.lock();
    let now = now_ms();
    if let Err(e) = g.quota.configure(r, now) {
        return bad(e);
    }
    Json(g.quota.state(now)).into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct RevokeRequest {
    email: String,
}

/// Kills every token of one Keap user, as when they remove the app in Account Central.
pub(crate) async fn revoke(State(s): State<Shared>, Json(r): Json<RevokeRequest>) -> Response {
    let Some(u) = USERS.iter().position(|x| x.email == r.email) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut g = s.lock();
    g.refresh
        .values_mut()
        .filter(|r| r.user == u)
        .for_each(|r| r.alive = false);
    g.access
        .values_mut()
        .filter(|a| a.user == u)
        .for_each(|a| a.alive = false);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeAccessRequest {
    email: Option<String>,
}

/// `{email?}`: kills the live access tokens (everyone's, or one user's) and leaves refresh tokens
/// alone, so the next API call gets Keap's 401 and a refresh heals it. Answers `{"revoked": n}`.
pub(crate) async fn revoke_access(State(s): State<Shared>, body: Bytes) -> Response {
    let r: RevokeAccessRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let user = match &r.email {
        None => None,
        Some(e) => match seed::user_index(e) {
            Some(u) => Some(u),
            None => return unknown_user(e),
        },
    };
    let mut g = s.lock();
    let mut revoked = 0;
    for a in g.access.values_mut() {
        if a.alive && user.is_none_or(|u| a.user == u) {
            a.alive = false;
            revoked += 1;
        }
    }
    Json(json!({ "revoked": revoked })).into_response()
}

/// `{"requests": [...]}`: the last REST requests, oldest first.
pub(crate) async fn api_log(State(s): State<Shared>) -> Response {
    let g = s.lock();
    Json(json!({ "requests": g.api_log })).into_response()
}

/// Back to the start for everything but sessions and tokens: faults, counts, lifetimes, the
/// config flags, quota windows, the REST log and the contacts (seeded ones restored).
pub(crate) async fn reset(State(s): State<Shared>) -> Response {
    let mut g = s.lock();
    g.faults.clear();
    g.calls.clear();
    g.refresh_calls.clear();
    g.refresh_times_ms.clear();
    g.expires_in = None;
    g.revoke_access_on_refresh = false;
    g.quota = Default::default();
    g.contacts = crate::contacts::Contacts::seeded();
    g.api_faults.clear();
    if let Some(gate) = g.api_gate.take() {
        gate.open.send_replace(true);
    }
    g.api_calls.clear();
    g.api_log.clear();
    g.chaos = None;
    g.chaos_played.clear();
    g.rotation = Default::default();
    g.spent_until_ms = 0;
    g.spent_since_ms = 0;
    g.calls_while_spent = 0;
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChaosRequest {
    /// Share of calls (token and REST) that fail, 0 to 1; 0 ends the chaos.
    rate: f64,
    #[serde(default = "default_hang_ms")]
    hang_ms: u64,
    #[serde(default)]
    seed: u64,
}

/// `{rate, hang_ms?: 30000, seed?: 0}`: from now on each token and REST call fails with
/// probability `rate` (after queued faults), evenly as a 429 (REST: with the throttle headers
/// showing the window spent), a 500, a hang (`hang_ms`, then a 500) or a lost answer (carried
/// out, then the same). What was played is in `stats.chaos_played`.
pub(crate) async fn set_chaos(State(s): State<Shared>, body: Bytes) -> Response {
    let r: ChaosRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    if !(0.0..=1.0).contains(&r.rate) || r.hang_ms > 120_000 {
        return bad("rate is between 0 and 1, and hang_ms at most 120000");
    }
    let mut g = s.lock();
    g.chaos = (r.rate > 0.0).then(|| crate::Chaos {
        rate: r.rate,
        hang: Duration::from_millis(r.hang_ms),
        state: r.seed,
    });
    Json(json!({ "rate": r.rate })).into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct SeedRequest {
    email: String,
    count: usize,
    /// Which of the user's apps the tokens are for; default their first.
    app: Option<String>,
}

/// Mints `count` live token pairs for one Keap user, as if they had linked that many times: for
/// tests that seed many connections without walking the flow for each.
pub(crate) async fn seed(State(s): State<Shared>, Json(r): Json<SeedRequest>) -> Response {
    let Some(u) = USERS.iter().position(|x| x.email == r.email) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let apps = USERS[u].apps;
    let app = match r.app.as_deref() {
        None => apps[0],
        Some(a) => match apps.iter().find(|x| **x == a) {
            Some(x) => x,
            None => return bad(format!("{} cannot reach app {a:?}", r.email)),
        },
    };
    let tokens: Vec<serde_json::Value> = (0..r.count.min(100_000))
        .map(|_| {
            let t = s.issue_tokens(u, app, false, false);
            json!({"access_token": t["access_token"], "refresh_token": t["refresh_token"]})
        })
        .collect();
    Json(json!({ "tokens": tokens })).into_response()
}
