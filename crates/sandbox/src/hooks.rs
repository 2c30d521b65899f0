//! Keap's REST hooks (`/crm/rest/v1/hooks`), as Keap documents them and partners report them:
//! one hook per event key per app; creating one (or `verify`) posts a handshake to its URL with
//! `X-Hook-Secret` while the call is still open, and only an echo of the same header (or a later
//! `delayedVerify` with it) makes it Verified; events go to Verified hooks only, in batches of up
//! to 1,000 object keys (ids, no data); a delivery fails on no answer within the timeout or a
//! status under 200 or from 400, and is tried four times in all (Keap: +30-60 s, +5 min, +30 min;
//! here the gaps are a setting), after which, or at once on a 410, the hook is Inactive.
//!
//! Tests drive it with `/__sandbox/hooks/*`: fire an event in one app, mark a hook Inactive or
//! delete it as someone at Keap would, set the tries' gaps, and read every hook and delivery.

use crate::gateway::Caller;
use crate::{now_ms, random_token, Shared};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;

/// Keap's event keys (`GET /crm/rest/v1/hooks/event_keys`).
pub const EVENT_KEYS: &[&str] = keaplink_core::hooks::EVENT_KEYS;

#[derive(Debug, Clone, Serialize)]
pub struct Hook {
    pub key: u64,
    pub app: &'static str,
    pub event_key: String,
    pub hook_url: String,
    /// "Verified", "Unverified" or "Inactive", as Keap spells them.
    pub status: &'static str,
    /// The last handshake's secret (for `delayedVerify`).
    #[serde(skip)]
    pub secret: Option<String>,
    /// Deliveries tried and failed in a row.
    pub failed_tries: u32,
    pub delivered: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub hook: u64,
    pub try_no: u32,
    pub status: Option<u16>,
    pub at_ms: u64,
}

#[derive(Debug)]
pub struct Hooks {
    pub next_key: u64,
    pub hooks: Vec<Hook>,
    pub attempts: Vec<Attempt>,
    /// Waits before tries 2, 3 and 4 (Keap: 30-60 s, 5 min, 30 min).
    pub gaps_ms: Vec<u64>,
    /// How long a receiver has to answer (Keap: 30 s).
    pub timeout_ms: u64,
    /// Keap "loses" echoes: the handshake's answer is ignored (the hook stays Unverified until
    /// `delayedVerify`), as partners report hooks stuck Unverified.
    pub ignore_echo: bool,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            next_key: 1,
            hooks: Vec::new(),
            attempts: Vec::new(),
            gaps_ms: vec![45_000, 300_000, 1_800_000],
            timeout_ms: 30_000,
            ignore_echo: false,
        }
    }
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/crm/rest/v1/hooks", get(list).post(create))
        .route("/crm/rest/v1/hooks/event_keys", get(event_keys))
        .route("/crm/rest/v1/hooks/{key}", get(one).delete(remove))
        .route("/crm/rest/v1/hooks/{key}/verify", post(verify))
        .route(
            "/crm/rest/v1/hooks/{key}/delayedVerify",
            post(delayed_verify),
        )
}

fn view(h: &Hook) -> Value {
    json!({"key": h.key.to_string(), "eventKey": h.event_key, "hookUrl": h.hook_url, "status": h.status})
}

fn message(status: StatusCode, m: &str) -> Response {
    (status, Json(json!({"message": m}))).into_response()
}

async fn event_keys() -> Response {
    Json(json!(EVENT_KEYS)).into_response()
}

async fn list(State(s): State<Shared>, Extension(c): Extension<Caller>) -> Response {
    let g = s.lock();
    let out: Vec<Value> = g
        .hooks
        .hooks
        .iter()
        .filter(|h| h.app == c.app)
        .map(view)
        .collect();
    Json(out).into_response()
}

fn find(s: &Shared, app: &str, key: &str) -> Option<Hook> {
    let key: u64 = key.parse().ok()?;
    s.lock()
        .hooks
        .hooks
        .iter()
        .find(|h| h.key == key && h.app == app)
        .cloned()
}

/// The hook as Keap answers it, or Keap's 404.
fn answer(s: &Shared, app: &str, key: &str) -> Response {
    match find(s, app, key) {
        Some(h) => Json(view(&h)).into_response(),
        None => message(StatusCode::NOT_FOUND, "Hook not found"),
    }
}

async fn one(
    State(s): State<Shared>,
    Extension(c): Extension<Caller>,
    Path(key): Path<String>,
) -> Response {
    answer(&s, c.app, &key)
}

async fn remove(
    State(s): State<Shared>,
    Extension(c): Extension<Caller>,
    Path(key): Path<String>,
) -> Response {
    let Some(h) = find(&s, c.app, &key) else {
        return message(StatusCode::NOT_FOUND, "Hook not found");
    };
    s.lock().hooks.hooks.retain(|x| x.key != h.key);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct CreateBody {
    #[serde(rename = "eventKey")]
    event_key: String,
    #[serde(rename = "hookUrl")]
    hook_url: String,
}

async fn create(State(s): State<Shared>, Extension(c): Extension<Caller>, body: Bytes) -> Response {
    let Ok(b) = serde_json::from_slice::<CreateBody>(&body) else {
        return message(StatusCode::BAD_REQUEST, "eventKey and hookUrl are required");
    };
    if !EVENT_KEYS.contains(&b.event_key.as_str()) {
        return message(StatusCode::BAD_REQUEST, "Invalid eventKey");
    }
    let key = {
        let mut g = s.lock();
        if g.hooks
            .hooks
            .iter()
            .any(|h| h.app == c.app && h.event_key == b.event_key && h.hook_url == b.hook_url)
        {
            return message(
                StatusCode::BAD_REQUEST,
                "A hook for this eventKey and hookUrl exists",
            );
        }
        let key = g.hooks.next_key;
        g.hooks.next_key += 1;
        g.hooks.hooks.push(Hook {
            key,
            app: c.app,
            event_key: b.event_key,
            hook_url: b.hook_url,
            status: "Unverified",
            secret: None,
            failed_tries: 0,
            delivered: 0,
        });
        key
    };
    handshake(&s, key).await;
    answer(&s, c.app, &key.to_string())
}

async fn verify(
    State(s): State<Shared>,
    Extension(c): Extension<Caller>,
    Path(key): Path<String>,
) -> Response {
    let Some(h) = find(&s, c.app, &key) else {
        return message(StatusCode::NOT_FOUND, "Hook not found");
    };
    set_status(&s, h.key, "Unverified");
    handshake(&s, h.key).await;
    answer(&s, c.app, &key)
}

async fn delayed_verify(
    State(s): State<Shared>,
    Extension(c): Extension<Caller>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(h) = find(&s, c.app, &key) else {
        return message(StatusCode::NOT_FOUND, "Hook not found");
    };
    let given = headers.get("x-hook-secret").and_then(|v| v.to_str().ok());
    if given.is_none() || given != h.secret.as_deref() {
        return message(StatusCode::BAD_REQUEST, "X-Hook-Secret does not match");
    }
    set_status(&s, h.key, "Verified");
    answer(&s, c.app, &key)
}

fn set_status(s: &Shared, key: u64, status: &'static str) {
    let mut g = s.lock();
    if let Some(h) = g.hooks.hooks.iter_mut().find(|h| h.key == key) {
        h.status = status;
        if status == "Verified" {
            h.failed_tries = 0;
        }
    }
}

/// Posts the handshake to the hook's URL and waits for the echo (as Keap does, while the create
/// or verify call is open).
async fn handshake(s: &Shared, key: u64) {
    let secret = random_token(24);
    let (url, timeout, ignore) = {
        let mut g = s.lock();
        let (timeout, ignore) = (g.hooks.timeout_ms, g.hooks.ignore_echo);
        let Some(h) = g.hooks.hooks.iter_mut().find(|h| h.key == key) else {
            return;
        };
        h.secret = Some(secret.clone());
        (h.hook_url.clone(), timeout, ignore)
    };
    let answer = post_to(
        &url,
        &[("x-hook-secret", secret.clone())],
        Vec::new(),
        Duration::from_millis(timeout),
    )
    .await;
    let echoed = matches!(&answer, Some((200, echo)) if echo.as_deref() == Some(secret.as_str()));
    if echoed && !ignore {
        set_status(s, key, "Verified");
    }
}

/// One POST; answers the status and the `x-hook-secret` header (`None`: no answer in time, or
/// not an http URL).
pub async fn post_to(
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Option<(u16, Option<String>)> {
    let uri: axum::http::Uri = url.parse().ok()?;
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let host = uri.host()?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let authority = uri.authority()?.to_string();
    let path = uri.path_and_query().map(|p| p.to_string())?;
    let call = async move {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        let mut req = axum::http::Request::post(path)
            .header("host", authority)
            .header("content-type", "application/json")
            .header("user-agent", "keap-sandbox-resthooks/1");
        for (n, v) in headers {
            req = req.header(*n, v);
        }
        let req = req.body(Full::new(Bytes::from(body))).ok()?;
        let resp = sender.send_request(req).await.ok()?;
        let echo = resp
            .headers()
            .get("x-hook-secret")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Some((resp.status().as_u16(), echo))
    };
    tokio::time::timeout(timeout, call).await.ok().flatten()
}

// ---- controls ----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FireRequest {
    app: String,
    event_key: String,
    /// The objects' ids (default: contact 1).
    #[serde(default)]
    ids: Option<Vec<i64>>,
    /// Or this many ids, 1..=count.
    #[serde(default)]
    count: Option<u64>,
    /// Send the same batch this many times (Keap sending a batch again after a slow 200).
    #[serde(default)]
    repeat: Option<u32>,
}

/// `POST /__sandbox/hooks/fire`: an event in one Keap app. Each Verified hook of that app and
/// event key gets the batch; the answer gives each hook's first try, and later tries run on.
pub async fn fire(State(s): State<Shared>, body: Bytes) -> Response {
    let r: FireRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return crate::controls::bad(e),
    };
    let ids: Vec<i64> = match (r.ids, r.count) {
        (Some(ids), _) => ids,
        (None, Some(n)) => (1..=n.min(1000) as i64).collect(),
        (None, None) => vec![1],
    };
    let object_type = r.event_key.split('.').next().unwrap_or_default().to_owned();
    let stamp = format!("{}", now_ms());
    let batch = json!({
        "event_key": r.event_key,
        "object_type": object_type,
        "object_keys": ids.iter().map(|id| json!({
            "id": id,
            "apiUrl": format!("https://api.infusionsoft.com/crm/rest/v1/{object_type}s/{id}"),
            "timestamp": stamp,
        })).collect::<Vec<_>>(),
    })
    .to_string();
    let targets: Vec<u64> = {
        let g = s.lock();
        g.hooks
            .hooks
            .iter()
            .filter(|h| h.app == r.app && h.event_key == r.event_key && h.status == "Verified")
            .map(|h| h.key)
            .collect()
    };
    let mut first = Vec::new();
    for _ in 0..r.repeat.unwrap_or(1).max(1) {
        for key in &targets {
            let status = deliver(&s, *key, &batch, 1).await;
            first.push(json!({"hook": key.to_string(), "status": status}));
            if !ok(status) {
                tokio::spawn(retry(s.clone(), *key, batch.clone()));
            }
        }
    }
    Json(json!({"hooks": first, "object_keys": ids.len()})).into_response()
}

fn ok(status: Option<u16>) -> bool {
    matches!(status, Some(200..=399))
}

/// Tries 2 to 4 after the gaps; Inactive after the fourth failure.
async fn retry(s: Shared, key: u64, batch: String) {
    let gaps = s.lock().hooks.gaps_ms.clone();
    for (i, gap) in gaps.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(*gap)).await;
        let active = s
            .lock()
            .hooks
            .hooks
            .iter()
            .any(|h| h.key == key && h.status == "Verified");
        if !active {
            return;
        }
        if ok(deliver(&s, key, &batch, i as u32 + 2).await) {
            return;
        }
    }
    set_status(&s, key, "Inactive");
}

/// One try; a 410 makes the hook Inactive at once.
async fn deliver(s: &Shared, key: u64, batch: &str, try_no: u32) -> Option<u16> {
    let (url, timeout) = {
        let g = s.lock();
        let h = g.hooks.hooks.iter().find(|h| h.key == key)?;
        (h.hook_url.clone(), g.hooks.timeout_ms)
    };
    let status = post_to(
        &url,
        &[],
        batch.as_bytes().to_vec(),
        Duration::from_millis(timeout),
    )
    .await
    .map(|(st, _)| st);
    let mut g = s.lock();
    g.hooks.attempts.push(Attempt {
        hook: key,
        try_no,
        status,
        at_ms: now_ms(),
    });
    if g.hooks.attempts.len() > 1000 {
        g.hooks.attempts.remove(0);
    }
    if let Some(h) = g.hooks.hooks.iter_mut().find(|h| h.key == key) {
        if ok(status) {
            h.delivered += 1;
            h.failed_tries = 0;
        } else {
            h.failed_tries += 1;
            if status == Some(410) {
                h.status = "Inactive";
            }
        }
    }
    status
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    #[serde(default)]
    gaps_ms: Option<Vec<u64>>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    ignore_echo: Option<bool>,
}

/// `POST /__sandbox/hooks/config`.
pub async fn config(State(s): State<Shared>, body: Bytes) -> Response {
    let r: HooksConfig = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return crate::controls::bad(e),
    };
    let mut g = s.lock();
    if let Some(gaps) = r.gaps_ms {
        if gaps.len() != 3 {
            return crate::controls::bad("gaps_ms lists the waits before tries 2, 3 and 4");
        }
        g.hooks.gaps_ms = gaps;
    }
    if let Some(t) = r.timeout_ms {
        g.hooks.timeout_ms = t;
    }
    if let Some(i) = r.ignore_echo {
        g.hooks.ignore_echo = i;
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /__sandbox/hooks`: every hook and the latest delivery tries.
pub async fn all(State(s): State<Shared>) -> Response {
    let g = s.lock();
    Json(json!({"hooks": g.hooks.hooks, "attempts": g.hooks.attempts})).into_response()
}

/// `POST /__sandbox/hooks/{key}/inactive` and `/delete`: what Keap (or someone in the Keap app)
/// does to a hook.
pub async fn act(State(s): State<Shared>, Path((key, action)): Path<(u64, String)>) -> Response {
    let mut g = s.lock();
    let Some(i) = g.hooks.hooks.iter().position(|h| h.key == key) else {
        return crate::controls::bad("no such hook");
    };
    match action.as_str() {
        "inactive" => g.hooks.hooks[i].status = "Inactive",
        "delete" => {
            g.hooks.hooks.remove(i);
        }
        _ => return crate::controls::bad("inactive or delete"),
    }
    StatusCode::NO_CONTENT.into_response()
}
