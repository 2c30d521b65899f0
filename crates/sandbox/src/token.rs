//! Keap's token endpoint (`POST /token`): code exchange and refresh, with refresh-token rotation,
//! Keap's error bodies, the client quota it shares with the REST API, and the faults tests queue
//! for the next token calls.

use crate::{now, now_ms, quota, random_token, short_hash, AccessGrant, Fault, RefreshGrant};
use crate::{Sandbox, Shared};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

/// What the next token calls do instead of (or on top of) answering normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// HTTP 500.
    ServerError,
    /// HTTP 429 with Keap's quota fault body.
    Throttle,
    /// HTTP 400 `invalid_request`.
    BadRequest,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// No answer for `hang_ms`, then a 500; nothing is done.
    Hang,
    /// The call is carried out (codes spent, tokens rotated), then the answer is lost: no
    /// answer for `hang_ms`, then a 500.
    Drop,
    /// A normal answer without `refresh_token`.
    OmitRefreshToken,
    /// A normal answer whose `scope` lacks the `|app` part.
    OmitApp,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ")?;
    let raw = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

impl Sandbox {
    pub(crate) fn issue_tokens(
        &self,
        user: usize,
        app: &'static str,
        omit_refresh: bool,
        omit_app: bool,
    ) -> serde_json::Value {
        let access = random_token(21);
        let refresh = random_token(21);
        let mut g = self.lock();
        let expires_in = g.expires_in.unwrap_or(self.config.expires_in);
        g.access.insert(
            access.clone(),
            AccessGrant {
                user,
                app,
                expires_at: now() + expires_in,
                alive: true,
            },
        );
        let scope = if omit_app {
            "full".to_owned()
        } else {
            format!("full|{app}.infusionsoft.com")
        };
        let mut body = json!({
            "access_token": access, "token_type": "bearer", "expires_in": expires_in, "scope": scope,
        });
        if !omit_refresh {
            g.refresh.insert(
                refresh.clone(),
                RefreshGrant {
                    user,
                    app,
                    alive: true,
                    rotated: false,
                    answer_lost: false,
                },
            );
            body["refresh_token"] = json!(refresh);
        }
        body
    }
}

pub(crate) async fn token(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    s.count("token");
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let form: HashMap<String, String> = if is_form {
        url::form_urlencoded::parse(&body).into_owned().collect()
    } else {
        HashMap::new()
    };
    // Counted before quotas and faults apply: a refresh that got a 500 was still a refresh call.
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => s.count("token_code"),
        Some("refresh_token") => {
            s.count("token_refresh");
            let mut g = s.lock();
            if g.refresh_times_ms.len() >= 100_000 {
                g.refresh_times_ms.pop_front();
            }
            g.refresh_times_ms.push_back(now_ms());
        }
        _ => {}
    }
    let spent = s.lock().quota.spend_token(now_ms());
    let (mut resp, report) = match spent {
        Err(report) => (quota::violation(), report),
        Ok(report) => (answer(&s, &headers, is_form, &form).await, report),
    };
    report.write(resp.headers_mut());
    resp
}

async fn answer(
    s: &Sandbox,
    headers: &HeaderMap,
    is_form: bool,
    form: &HashMap<String, String>,
) -> Response {
    let field = |k: &str| form.get(k).map(String::as_str);
    let fault = {
        let mut g = s.lock();
        let queued = g.faults.pop_front();
        queued.or_else(|| {
            let chaos = g.chaos.as_mut()?;
            let hang = chaos.hang;
            let kind = chaos.roll(&[
                FaultKind::Throttle,
                FaultKind::ServerError,
                FaultKind::Hang,
                FaultKind::Drop,
            ])?;
            *g.chaos_played
                .entry(format!("token:{kind:?}").to_lowercase())
                .or_default() += 1;
            Some(Fault { kind, hang })
        })
    };
    match fault.map(|f| f.kind) {
        Some(FaultKind::ServerError) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": "server_error"})),
            )
                .into_response()
        }
        Some(FaultKind::Throttle) => return quota::violation(),
        Some(FaultKind::BadRequest) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The request is malformed.",
            )
        }
        Some(FaultKind::Garbage) => {
            return (StatusCode::OK, "<html>upstream error</html>").into_response()
        }
        Some(FaultKind::Hang) => {
            tokio::time::sleep(fault.map_or(Duration::ZERO, |f| f.hang)).await;
            return (StatusCode::INTERNAL_SERVER_ERROR, "timed out").into_response();
        }
        _ => {}
    }
    if !is_form {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "response_type or grant_type is required",
        );
    }
    let (user, app) = match field("grant_type") {
        Some("authorization_code") => {
            let client_ok = field("client_id") == Some(s.config.client_id.as_str())
                && field("client_secret") == Some(s.config.client_secret.as_str());
            if !client_ok {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "Invalid client credentials",
                );
            }
            let grant = field("code").and_then(|c| s.lock().codes.remove(c));
            match grant {
                Some(g)
                    if g.expires_at > now()
                        && Some(g.client_id.as_str()) == field("client_id")
                        && Some(g.redirect_uri.as_str()) == field("redirect_uri") =>
                {
                    (g.user, g.app)
                }
                _ => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Invalid authorization code",
                    )
                }
            }
        }
        Some("refresh_token") => {
            if basic_credentials(headers)
                != Some((s.config.client_id.clone(), s.config.client_secret.clone()))
            {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "Invalid client credentials",
                );
            }
            let presented = field("refresh_token").unwrap_or("");
            let mut g = s.lock();
            *g.refresh_calls.entry(short_hash(presented)).or_default() += 1;
            let revoke_access = g.revoke_access_on_refresh;
            let held = g
                .refresh
                .get(presented)
                .map(|r| (r.alive, r.rotated, r.answer_lost, r.user, r.app));
            let (user, app) = match held {
                // Rotation: the presented token dies at once, even if the answer is then lost.
                Some((true, _, _, user, app)) => {
                    if let Some(r) = g.refresh.get_mut(presented) {
                        r.alive = false;
                        r.rotated = true;
                    }
                    (user, app)
                }
                refused => {
                    match refused {
                        Some((_, true, true, ..)) => g.rotation.reused_after_lost_answer += 1,
                        Some((_, true, false, ..)) => g.rotation.reused += 1,
                        _ => g.rotation.refused_other += 1,
                    }
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "Invalid Refresh Token",
                    );
                }
            };
            if revoke_access {
                g.access
                    .values_mut()
                    .filter(|a| a.user == user && a.app == app)
                    .for_each(|a| a.alive = false);
            }
            (user, app)
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "response_type or grant_type is required",
            )
        }
    };
    let kind = fault.map(|f| f.kind);
    let body = s.issue_tokens(
        user,
        app,
        kind == Some(FaultKind::OmitRefreshToken),
        kind == Some(FaultKind::OmitApp),
    );
    if let Some(Fault {
        kind: FaultKind::Drop,
        hang,
    }) = fault
    {
        if field("grant_type") == Some("refresh_token") {
            let mut g = s.lock();
            g.rotation.dropped += 1;
            if let Some(r) = g.refresh.get_mut(field("refresh_token").unwrap_or("")) {
                r.answer_lost = true;
            }
        }
        tokio::time::sleep(hang).await;
        return (StatusCode::INTERNAL_SERVER_ERROR, "connection lost").into_response();
    }
    (StatusCode::OK, Json(body)).into_response()
}
