//! What Keap's API gateway does before and after every REST call: it logs and counts the call,
//! checks the bearer token (a dead one never reaches the API, nor a quota), spends the client's
//! and the tenant's quotas, plays the faults tests queued, and stamps the quota headers and the
//! tenant on the answer. Handlers find the caller (user and app) in the request's extensions.

use crate::{now, now_ms, Shared};
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Bodies over this are refused before anything else (no Keap call carries more).
const MAX_BODY: usize = 1 << 20;
pub const API_LOG_LEN: usize = 200;
/// Query parameters whose values the log hides: ways a token can travel in a URL.
const SECRET_PARAMS: &[&str] = &["access_token", "refresh_token", "client_secret", "code"];

/// Who a live access token speaks for.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub user: usize,
    pub app: &'static str,
    /// v2 userinfo names another tenant than the token's app (the `wrong_tenant` fault).
    pub wrong_tenant: bool,
}

/// What the next REST calls do instead of reaching the API (each still spends quota: it got
/// through the gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiFaultKind {
    /// HTTP 500.
    ServerError,
    /// Keap's 401 invalid-token fault, for a token that is in fact live.
    Unauthorized,
    /// No answer for `hang_ms`, then a 500.
    Hang,
    /// HTTP 429 with Keap's quota fault, the throttle headers showing it spent.
    Throttle,
    /// The call goes through, but v2 userinfo answers with another tenant than the token's
    /// app: a Keap that contradicts itself, which a client must not believe.
    WrongTenant,
    /// The call is carried out, then its answer is lost: no answer for `hang_ms`, then a 500.
    Drop,
}

#[derive(Debug, Clone, Copy)]
pub struct ApiFault {
    pub kind: ApiFaultKind,
    pub hang: Duration,
}

/// The next `left` REST calls wait at the gateway's door until the last of them arrives (or the
/// deadline passes), then all go on together: a test of concurrent calls is then about calls
/// that were truly at Keap at once, whatever the machine's speed. Each is then judged as if it
/// had just arrived (its token checked, its quota spent).
#[derive(Debug)]
pub struct Gate {
    pub left: usize,
    /// Turns `true` when the gate opens.
    pub open: watch::Sender<bool>,
    pub deadline: Instant,
}

/// One REST request as "Keap" received it: header names only, never their values, and the
/// query with token-bearing parameters' values hidden.
#[derive(Debug, Clone, Serialize)]
pub struct ApiLogEntry {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<String>,
    pub authorized: bool,
    pub body_bytes: usize,
    pub at_ms: u64,
}

pub fn invalid_access_token() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"fault": {"faultstring": "Invalid Access Token",
            "detail": {"errorcode": "keymanagement.service.invalid_access_token"}}})),
    )
        .into_response()
}

fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let key = pair.split('=').next().unwrap_or("");
            let name: String = url::form_urlencoded::parse(key.as_bytes())
                .map(|(k, _)| k.into_owned())
                .next()
                .unwrap_or_default();
            if SECRET_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p)) {
                format!("{key}=[hidden]")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl crate::Sandbox {
    fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        let token = bearer(headers)?;
        let g = self.lock();
        g.access
            .get(token)
            .filter(|a| a.alive && a.expires_at > now())
            .map(|a| Caller {
                user: a.user,
                app: a.app,
                wrong_tenant: false,
            })
    }
}

/// Waits at the gate if one is set: the last caller it expects opens it for all.
async fn hold_at_gate(s: &Shared) {
    let (mut open, deadline) = {
        let mut g = s.lock();
        let Some(gate) = g.api_gate.as_mut() else {
            return;
        };
        gate.left -= 1;
        if gate.left == 0 {
            if let Some(gate) = g.api_gate.take() {
                gate.open.send_replace(true);
            }
            return;
        }
        // Subscribed under the lock: the last caller's `true` cannot come before it.
        (gate.open.subscribe(), gate.deadline)
    };
    let waited = tokio::time::timeout_at(deadline, open.wait_for(|o| *o)).await;
    if waited.is_err() {
        // The last callers never came: open it for whoever waits, and for the ones after (if
        // it is still this gate, and not one set since).
        let mut g = s.lock();
        if g.api_gate
            .as_ref()
            .is_some_and(|gate| gate.deadline == deadline)
        {
            if let Some(gate) = g.api_gate.take() {
                gate.open.send_replace(true);
            }
        }
    }
}

pub async fn gateway(
    State(s): State<Shared>,
    matched: MatchedPath,
    req: Request,
    next: Next,
) -> Response {
    hold_at_gate(&s).await;
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(json!({"message": "The request body is too large."})),
        )
            .into_response();
    };
    let caller = s.caller(&parts.headers);
    {
        let mut g = s.lock();
        let now = now_ms();
        if now < g.spent_until_ms && now > g.spent_since_ms + 1_000 {
            g.calls_while_spent += 1;
        }
        let route = format!("{} {}", parts.method, matched.as_str());
        // The v1 userinfo call was counted as "userinfo" before the REST API existed here.
        if route == "GET /crm/rest/v1/oauth/connect/userinfo" {
            *g.calls.entry("userinfo").or_default() += 1;
        }
        *g.api_calls.entry(route).or_default() += 1;
        if g.api_log.len() >= API_LOG_LEN {
            g.api_log.pop_front();
        }
        g.api_log.push_back(ApiLogEntry {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: redact_query(parts.uri.query().unwrap_or("")),
            headers: parts
                .headers
                .keys()
                .map(|k| k.as_str().to_owned())
                .collect(),
            authorized: caller.is_some(),
            body_bytes: body.len(),
            at_ms: now_ms(),
        });
    }
    let Some(caller) = caller else {
        return invalid_access_token();
    };
    let spent = s.lock().quota.spend_api(caller.app, now_ms());
    let (mut resp, report) = match spent {
        Err(report) => (crate::quota::violation(), report),
        Ok(report) => {
            let fault = {
                let mut g = s.lock();
                let queued = g.api_faults.pop_front();
                queued.or_else(|| {
                    let chaos = g.chaos.as_mut()?;
                    let hang = chaos.hang;
                    let kind = chaos.roll(&[
                        ApiFaultKind::Throttle,
                        ApiFaultKind::ServerError,
                        ApiFaultKind::Hang,
                        ApiFaultKind::Drop,
                    ])?;
                    *g.chaos_played
                        .entry(format!("api:{kind:?}").to_lowercase())
                        .or_default() += 1;
                    Some(ApiFault { kind, hang })
                })
            };
            match fault.map(|f| f.kind) {
                None | Some(ApiFaultKind::WrongTenant) => {
                    let caller = Caller {
                        wrong_tenant: fault.is_some_and(|f| f.kind == ApiFaultKind::WrongTenant),
                        ..caller
                    };
                    let mut req = Request::from_parts(parts, Body::from(body));
                    req.extensions_mut().insert(caller);
                    (next.run(req).await, report)
                }
                Some(ApiFaultKind::ServerError) => (
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        Json(json!({"message": "Internal Server Error"})),
                    )
                        .into_response(),
                    report,
                ),
                // As the real refusal: no quota headers, no tenant.
                Some(ApiFaultKind::Unauthorized) => return invalid_access_token(),
                Some(ApiFaultKind::Throttle) => {
                    let report = report.throttled();
                    // Keap's headers now say the window is spent: a client that heeds them sends
                    // nothing more until it ends (counted above, past a second's grace).
                    let mut g = s.lock();
                    g.spent_since_ms = now_ms();
                    g.spent_until_ms = report.product_throttle.resets_at_ms;
                    (crate::quota::violation(), report)
                }
                Some(ApiFaultKind::Drop) => {
                    let mut req = Request::from_parts(parts, Body::from(body));
                    req.extensions_mut().insert(caller);
                    let _ = next.run(req).await;
                    tokio::time::sleep(fault.map_or(Duration::ZERO, |f| f.hang)).await;
                    (
                        (StatusCode::INTERNAL_SERVER_ERROR, "connection lost").into_response(),
                        report,
                    )
                }
                Some(ApiFaultKind::Hang) => {
                    tokio::time::sleep(fault.map_or(Duration::ZERO, |f| f.hang)).await;
                    (
                        (StatusCode::INTERNAL_SERVER_ERROR, "timed out").into_response(),
                        report,
                    )
                }
            }
        }
    };
    report.write(resp.headers_mut());
    resp.headers_mut()
        .insert("x-keap-tenant-id", HeaderValue::from_static(caller.app));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_hides_token_values_in_queries() {
        assert_eq!(
            redact_query("limit=5&access_token=abc&Access%5Ftoken=x&email=a%40b"),
            "limit=5&access_token=[hidden]&Access%5Ftoken=[hidden]&email=a%40b"
        );
        assert_eq!(redact_query(""), "");
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer tok"),
        );
        assert_eq!(bearer(&h), Some("tok"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic tok"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }
}
