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

/// One control: method, path, body (an example; `-`: none) and what it does. The landing page
/// lists these; a test checks each is a route.
pub struct Control {
    pub method: &'static str,
    pub path: &'static str,
    pub body: &'static str,
    pub what: &'static str,
}

/// Every `/__sandbox/*` control, the ones a partner rehearses with first.
pub const CONTROLS: &[Control] = &[
    Control {
        method: "POST",
        path: "/__sandbox/revoke",
        body: r#"{"email": "ann@ab123.example"}"#,
        what: "Kills every token of that Keap user, as removing the app in Account Central does: keaplink's next refresh of their link is refused, and the link needs its user (needs_reauth).",
    },
    Control {
        method: "POST",
        path: "/__sandbox/revoke-access",
        body: r#"{"email": "ann@ab123.example"} (optional: everyone's)"#,
        what: "Kills the live access tokens only (refresh tokens stay): the next Keap call with one gets Keap's 401, which keaplink's proxy heals with one refresh.",
    },
    Control {
        method: "POST",
        path: "/__sandbox/quota",
        body: r#"{"product_quota": {"used": 150000}}; also "product_throttle", "tenant_throttle": {"limit", "window_ms", "used"}"#,
        what: "Sets Keap's quota windows (the client's day quota and minute throttle, each app's minute throttle): a spent one answers Keap's 429 until its window ends.",
    },
    Control {
        method: "POST",
        path: "/__sandbox/faults",
        body: r#"{"kind": "drop", "count": 1, "hang_ms": 30000}"#,
        what: "Faults for the next token-endpoint calls: server_error, throttle, bad_request, garbage, hang, drop (the refresh is carried out and the answer lost), omit_refresh_token, omit_app.",
    },
    Control {
        method: "POST",
        path: "/__sandbox/api-faults",
        body: r#"{"kind": "wrong_tenant", "count": 1}"#,
        what: "Faults for the next REST calls: server_error, unauthorized, hang, throttle, wrong_tenant (v2 userinfo names another Keap app than the token's).",
    },
    Control {
        method: "POST",
        path: "/__sandbox/api-gate",
        body: r#"{"count": 5, "timeout_ms": 10000}"#,
        what: "Holds the next REST calls until that many have arrived (for tests of calls at once).",
    },
    Control {
        method: "POST",
        path: "/__sandbox/config",
        body: r#"{"expires_in": 60, "revoke_access_on_refresh": true}"#,
        what: "Access-token lifetime for tokens issued from now on (null: back to the default), and whether a refresh kills the earlier access tokens.",
    },
    Control {
        method: "GET",
        path: "/__sandbox/stats",
        body: "-",
        what: "Counts: token and REST calls, live refresh tokens, queued faults, the quota windows.",
    },
    Control {
        method: "GET",
        path: "/__sandbox/api-log",
        body: "-",
        what: "The last REST requests the sandbox got (method, path, app).",
    },
    Control {
        method: "GET",
        path: "/__sandbox/issued",
        body: "-",
        what: "Every token and session it issued (the tests' leak checks look for them in keaplink's answers and logs).",
    },
    Control {
        method: "POST",
        path: "/__sandbox/seed",
        body: r#"{"email": "ann@ab123.example", "count": 10}"#,
        what: "Mints that many live token pairs for one user, for tests that seed many links.",
    },
    Control {
        method: "POST",
        path: "/__sandbox/mint",
        body: r#"{"email": "ann@ab123.example", "app": "ab123", "count": 2} (app and count optional)"#,
        what: "Tokens issued elsewhere, as another integration of the same OAuth client holds them: Keap's token answers (with expires_at and keap_app), to rehearse an import (POST /v1/imports).",
    },
    Control {
        method: "POST",
        path: "/__sandbox/hooks/fire",
        body: r#"{"app": "ab123", "event_key": "contact.add", "ids": [1, 2], "repeat": 1} (ids or count; repeat optional)"#,
        what: "An event in one Keap app: every Verified hook of that app and event key gets the batch, as Keap posts it; failed tries go on after the configured gaps, and four failures (or a 410) make the hook Inactive.",
    },
    Control {
        method: "POST",
        path: "/__sandbox/hooks/config",
        body: r#"{"gaps_ms": [45000, 300000, 1800000], "timeout_ms": 30000, "ignore_echo": false}"#,
        what: "Keap's delivery tries (the waits before tries 2-4, how long a receiver has), and whether handshake echoes are ignored (hooks stay Unverified until delayedVerify).",
    },
    Control {
        method: "GET",
        path: "/__sandbox/hooks",
        body: "-",
        what: "Every REST hook (app, event key, URL, Verified/Unverified/Inactive) and the latest delivery tries.",
    },
    Control {
        method: "POST",
        path: "/__sandbox/hooks/{key}/inactive",
        body: "-",
        what: "Marks a hook Inactive (as Keap does after four failed tries); /__sandbox/hooks/{key}/delete deletes it, as someone in the Keap app might.",
    },
    Control {
        method: "POST",
        path: "/__sandbox/reset",
        body: "-",
        what: "Back to the start for everything but sessions and tokens: faults, counts, lifetimes, quota windows, the REST log, the contacts.",
    },
];

pub(crate) fn bad(why: impl std::fmt::Display) -> Response {
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
    s.revoke_app(u, None);
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
    g.hooks = Default::default();
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

/// The app of user `u` a control names (their first when none), or why not (for a 400).
fn app_of(u: usize, named: Option<&str>) -> Result<&'static str, String> {
    let apps = USERS[u].apps;
    match named {
        None => Ok(apps[0]),
        Some(a) => apps
            .iter()
            .find(|x| **x == a)
            .copied()
            .ok_or_else(|| format!("{} cannot reach app {a:?}", USERS[u].email)),
    }
}

/// Mints `count` live token pairs for one Keap user, as if they had linked that many times: for
/// tests that seed many connections without walking the flow for each.
pub(crate) async fn seed(State(s): State<Shared>, Json(r): Json<SeedRequest>) -> Response {
    let Some(u) = USERS.iter().position(|x| x.email == r.email) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let app = match app_of(u, r.app.as_deref()) {
        Ok(app) => app,
        Err(why) => return bad(why),
    };
    let tokens: Vec<serde_json::Value> = (0..r.count.min(100_000))
        .map(|_| {
            let t = s.issue_tokens(u, app, false, false);
            json!({"access_token": t["access_token"], "refresh_token": t["refresh_token"]})
        })
        .collect();
    Json(json!({ "tokens": tokens })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MintRequest {
    email: String,
    /// Which of the user's apps; default their first.
    #[serde(default)]
    app: Option<String>,
    /// How many token answers (default 1, at most 10,000).
    #[serde(default)]
    count: Option<usize>,
}

/// `POST /__sandbox/mint`: tokens "issued elsewhere", as another integration of the same OAuth
/// client would hold them (the partner's own database before it moves to keaplink): each is
/// Keap's token answer as that integration got it (`access_token`, `refresh_token`,
/// `expires_in`, `scope`), plus `expires_at` and `keap_app` the way a partner stores them.
/// Live, rotating and counted like any other token of the sandbox.
pub(crate) async fn mint(State(s): State<Shared>, Json(r): Json<MintRequest>) -> Response {
    let Some(u) = USERS.iter().position(|x| x.email == r.email) else {
        return bad(format!("no Keap user {:?} in the sandbox", r.email));
    };
    let app = match app_of(u, r.app.as_deref()) {
        Ok(app) => app,
        Err(why) => return bad(why),
    };
    let count = r.count.unwrap_or(1);
    if !(1..=10_000).contains(&count) {
        return bad("count must be 1 to 10,000");
    }
    let tokens: Vec<serde_json::Value> = (0..count)
        .map(|_| {
            let mut t = s.issue_tokens(u, app, false, false);
            let expires_in = t["expires_in"].as_i64().unwrap_or(0);
            t["expires_at"] = json!(keaplink_core::clock::rfc3339(
                crate::now() as i64 + expires_in
            ));
            t["keap_app"] = json!(app);
            t
        })
        .collect();
    Json(json!({ "tokens": tokens })).into_response()
}
